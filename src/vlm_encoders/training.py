"""Fine-tuning a `VisionLanguageModel` with `transformers.Trainer`.

The model names its three parts once (`VisionLanguageModel.parts`: encoder, projector, llm) and everything
here goes by those names: which parts train, each part's learning rate, which parts get LoRA adapters, and
which weights a parts file stores. The collator turns (image, question, answer) rows into a batch through
the VLM processor with every label masked except the answer's; images are decoded lazily and an image
that fails to decode is skipped and counted instead of stopping the run.
"""

import io
import logging
import os

import torch
from PIL import Image
from transformers import Trainer
from transformers.trainer_pt_utils import get_parameter_names

from .modeling_vlm import VisionLanguageModel

logger = logging.getLogger(__name__)

PARTS = VisionLanguageModel.parts  # encoder -> vision_tower, projector -> projector, llm -> language_model
# LLaVA's stages: (1) align the projector with encoder and LLM frozen; (2) tune the projector and the LLM
STAGE_PARTS = {1: ("projector",), 2: ("projector", "llm")}


def parse_parts(spec) -> list[str]:
    """'encoder,llm' (or a list) -> ['encoder', 'llm'], in the model's order; unknown names are an error."""
    names = [p.strip() for p in spec.split(",")] if isinstance(spec, str) else list(spec or [])
    names = [n for n in names if n]
    unknown = [n for n in names if n not in PARTS]
    if unknown:
        raise ValueError(f"unknown model part(s) {unknown}; the parts are {list(PARTS)}")
    return [p for p in PARTS if p in names]


def part_of(parameter_name: str) -> str:
    """The part a parameter belongs to, by its name (PEFT's `base_model.model.` prefix is skipped)."""
    for prefix in ("base_model.model.", "module."):
        parameter_name = parameter_name.removeprefix(prefix)
    attribute = parameter_name.split(".", 1)[0]
    for part, name in PARTS.items():
        if attribute == name:
            return part
    raise ValueError(f"parameter {parameter_name!r} belongs to none of the parts {list(PARTS.values())}")


def set_trainable(model: torch.nn.Module, parts) -> dict:
    """Train exactly `parts`, freeze the rest; returns {part: (trainable, total)} parameter counts."""
    parts = parse_parts(parts)
    for name, parameter in model.named_parameters():
        parameter.requires_grad_(part_of(name) in parts)
    return parameter_counts(model)


def parameter_counts(model: torch.nn.Module) -> dict:
    """{part: (trainable, total)} as the model stands (after freezing or LoRA)."""
    counts = {part: [0, 0] for part in PARTS}
    for name, parameter in model.named_parameters():
        if ".original_module." in name:  # PEFT keeps a frozen copy of each fully trained part; count it once
            continue
        part = part_of(name)
        counts[part][1] += parameter.numel()
        counts[part][0] += parameter.numel() if parameter.requires_grad else 0
    return {part: tuple(c) for part, c in counts.items()}


def lora_target_modules(model: torch.nn.Module, parts) -> list[str]:
    """Full names of the Linear layers of `parts` that LoRA adapts (the LLM's output head excluded)."""
    parts = parse_parts(parts)
    targets = []
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Linear) and name and part_of(name) in parts:
            if part_of(name) == "llm" and module is model.get_output_embeddings():
                continue
            targets.append(name)
    if parts and not targets:
        raise ValueError(f"the parts {parts} have no Linear layer for LoRA")
    return targets


def apply_lora(model: VisionLanguageModel, parts, rank: int = 8, alpha: int = 16, dropout: float = 0.0,
               train_parts=()):
    """PEFT LoRA adapters on every Linear of `parts`; `train_parts` (e.g. the projector) stay fully trainable."""
    try:
        from peft import LoraConfig, get_peft_model
    except ImportError as error:  # an optional dependency
        raise ImportError("LoRA needs PEFT: pip install peft") from error
    parts, train_parts = parse_parts(parts), parse_parts(train_parts)
    if set(parts) & set(train_parts):
        raise ValueError(f"a part cannot be both LoRA-adapted and fully trained: {sorted(set(parts) & set(train_parts))}")
    config = LoraConfig(r=rank, lora_alpha=alpha, lora_dropout=dropout, target_modules=lora_target_modules(model, parts),
                        modules_to_save=[PARTS[p] for p in train_parts] or None)
    return get_peft_model(model, config)


def param_groups(model: torch.nn.Module, learning_rates: dict, weight_decay: float) -> list[dict]:
    """Optimizer groups per part (its own learning rate), each split into decayed and not decayed (biases, norms)
    parameters as Trainer does; only trainable parameters."""
    decay = set(get_parameter_names(model, [torch.nn.LayerNorm, torch.nn.Embedding], ["bias", "norm"]))
    groups = []
    for part in PARTS:
        for decayed in (True, False):
            params = [p for n, p in model.named_parameters()
                      if p.requires_grad and part_of(n) == part and (n in decay) == decayed]
            if params:
                groups.append({"params": params, "lr": learning_rates[part],
                               "weight_decay": weight_decay if decayed else 0.0, "part": part})
    return groups


class VLMTrainer(Trainer):
    """`Trainer` whose optimizer gives each part of the VLM its own learning rate.

    part_learning_rates: {part: lr}; a part left out uses `args.learning_rate`. The scheduler scales every
    group alike, so the ratios between parts hold through warmup and decay.
    """

    def __init__(self, *args, part_learning_rates: dict | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        unknown = sorted(set(part_learning_rates or {}) - set(PARTS))
        if unknown:
            raise ValueError(f"learning rates for unknown parts {unknown}; the parts are {list(PARTS)}")
        self.part_learning_rates = {p: (part_learning_rates or {}).get(p) or self.args.learning_rate for p in PARTS}

    def create_optimizer(self, model=None):
        if self.optimizer is None:
            model = model if model is not None else self.model
            optimizer_class, optimizer_kwargs = self.get_optimizer_cls_and_kwargs(self.args, model)
            optimizer_kwargs.pop("lr", None)  # each group carries its own
            self.optimizer = optimizer_class(param_groups(model, self.part_learning_rates, self.args.weight_decay),
                                             **optimizer_kwargs)
        return self.optimizer


def decode_image(value) -> Image.Image | None:
    """A PIL RGB image from what a `datasets.Image(decode=False)` column holds (bytes or a path), a PIL image, or
    None when it cannot be decoded (the caller skips the row)."""
    try:
        if isinstance(value, Image.Image):
            image = value
        elif isinstance(value, dict) and value.get("bytes") is not None:
            image = Image.open(io.BytesIO(value["bytes"]))
        elif isinstance(value, dict) and value.get("path"):
            image = Image.open(value["path"])
        elif isinstance(value, (str, os.PathLike)):
            image = Image.open(value)
        else:
            return None
        image.load()  # decode now: a truncated file fails here, not inside the processor
        return image
    except (OSError, ValueError, SyntaxError) as error:  # PIL's errors for broken or unknown data
        logger.warning("skipping an image that does not decode: %s", error)
        return None


def decode_images(value):
    """One image or a list of them (a multi-image row); a list with any undecodable image gives None."""
    if isinstance(value, (list, tuple)):
        images = [decode_image(v) for v in value]
        return None if any(image is None for image in images) else images
    return decode_image(value)


def lazy_image_transform(image_column: str):
    """For `dataset.set_transform`: decode the image column row by row when a batch is drawn, not up front."""

    def transform(batch: dict) -> dict:
        return {**batch, image_column: [decode_images(value) for value in batch[image_column]]}

    return transform


class VLMDataCollator:
    """(image(s), question, answer) rows -> a VLM batch whose labels are the answer tokens only.

    The text of a row is its prompt + answer + eos. `prompt` is either a template with `{question}` and one
    `<image>` placeholder, which stands for all of the row's images (a row may hold a list of them), or `"chat"`:
    the processor's chat template with a user turn of the images and the question, and the generation prompt.
    Rows whose image is None (did not decode) are skipped and counted in `skipped`; a batch where every image
    fails repeats the last good rows, so a run never stops mid-epoch.
    """

    def __init__(self, processor, prompt: str = "<|user|><image>{question}<|assistant|>", image_column: str = "image",
                 question_column: str = "question", answer_column: str = "answer"):
        if prompt != "chat" and processor.image_token not in prompt:
            raise ValueError(f"the prompt {prompt!r} has no {processor.image_token!r} placeholder for the image "
                             "(or use prompt='chat' for the processor's chat template)")
        self.processor, self.prompt = processor, prompt
        self.image_column, self.question_column, self.answer_column = image_column, question_column, answer_column
        self.skipped = 0
        self._last_good = None

    def __call__(self, examples: list[dict]) -> dict:
        good = [e for e in examples if e[self.image_column] is not None]
        self.skipped += len(examples) - len(good)
        if not good:
            if self._last_good is None:
                raise ValueError("no image of the first batch decodes; check the dataset's image column")
            logger.warning("every image of a batch failed to decode; repeating the previous batch's rows")
            good = self._last_good
        self._last_good = good
        tokenizer = self.processor.tokenizer
        images = [self.images_of(e) for e in good]
        answers = [str(e[self.answer_column]) + tokenizer.eos_token for e in good]
        texts = [self.prompt_text(e[self.question_column], len(ims)) + a for e, ims, a in zip(good, images, answers)]
        batch = self.processor(images=images, text=texts, return_tensors="pt")
        labels = torch.full_like(batch["input_ids"], -100)
        for row, answer in enumerate(tokenizer(answers, add_special_tokens=False)["input_ids"]):
            positions = batch["attention_mask"][row].nonzero().flatten()[-len(answer):]  # the last real tokens
            if batch["input_ids"][row, positions].tolist() != answer:
                raise ValueError("the answer does not tokenize the same inside the full text; end the prompt with "
                                 f"a special token (as '<|assistant|>') so the answer starts a token: {texts[row]!r}")
            labels[row, positions] = batch["input_ids"][row, positions]
        batch["labels"] = labels
        return batch

    def prompt_text(self, question: str, num_images: int = 1) -> str:
        """The prompt of a row, before its answer: what generation is given at inference."""
        if self.prompt == "chat":
            content = [{"type": "image"}] * num_images + [{"type": "text", "text": question}]
            return self.processor.apply_chat_template([{"role": "user", "content": content}],
                                                      add_generation_prompt=True, tokenize=False)
        return self.prompt.format(question=question).replace(self.processor.image_token,
                                                             self.processor.image_token * num_images, 1)

    def images_of(self, example: dict) -> list:
        """The row's images as a list (one image or several)."""
        value = example[self.image_column]
        return list(value) if isinstance(value, (list, tuple)) else [value]


@torch.no_grad()
def answer_accuracy(model, processor, examples, prompt: str = "<|user|><image>{question}<|assistant|>",
                    image_column: str = "image", question_column: str = "question", answer_column: str = "answer",
                    batch_size: int = 32, max_new_tokens: int = 8) -> float:
    """Exact-match accuracy of greedy answers on rows of (image(s), question, answer), prompted as the collator
    prompts them in training: the generated text, stripped, must equal the answer."""
    model.eval()
    prompter = VLMDataCollator(processor, prompt, image_column, question_column, answer_column)
    correct = total = 0
    for start in range(0, len(examples), batch_size):
        rows = [examples[i] for i in range(start, min(start + batch_size, len(examples)))]
        images = [[decode_image(im) for im in prompter.images_of(r)] for r in rows]
        texts = [prompter.prompt_text(r[question_column], len(ims)) for r, ims in zip(rows, images)]
        batch = processor(images=images, text=texts, return_tensors="pt").to(model.device)
        out = model.generate(**batch, max_new_tokens=max_new_tokens, do_sample=False,
                             pad_token_id=processor.tokenizer.pad_token_id)
        answers = processor.batch_decode(out[:, batch["input_ids"].shape[1]:], skip_special_tokens=True)
        correct += sum(a.strip() == str(r[answer_column]).strip() for a, r in zip(answers, rows))
        total += len(rows)
    return correct / max(total, 1)


def save_parts(model: torch.nn.Module, parts, path: str) -> list[str]:
    """Write the weights of `parts` alone to a safetensors file (e.g. a stage-1 projector: a few MB, not the LLM)."""
    from safetensors.torch import save_file

    parts = parse_parts(parts)
    state = {n: t.detach().contiguous().cpu() for n, t in model.state_dict().items() if part_of(n) in parts}
    save_file(state, path, metadata={"parts": ",".join(parts)})
    return sorted(state)


def load_parts(model: torch.nn.Module, path: str) -> list[str]:
    """Load a file from `save_parts` into the model; its keys must all exist in the model."""
    from safetensors.torch import load_file

    state = load_file(path)
    missing = sorted(set(state) - set(model.state_dict()))
    if missing:
        raise ValueError(f"{path} holds weights the model does not have: {missing[:5]}")
    model.load_state_dict(state, strict=False)
    return sorted(state)


__all__ = ["PARTS", "STAGE_PARTS", "VLMDataCollator", "VLMTrainer", "answer_accuracy", "apply_lora", "decode_image",
           "decode_images",
           "lazy_image_transform", "load_parts", "lora_target_modules", "param_groups", "parameter_counts",
           "parse_parts", "part_of", "save_parts", "set_trainable"]
