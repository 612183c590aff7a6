"""Fine-tune a vision-language model (any encoder of vlm-encoders + any causal LLM) with transformers' Trainer.

    python scripts/train.py --config scripts/configs/colours_tiny.py                       # one process
    accelerate launch --config_file scripts/configs/accelerate_ddp.yaml scripts/train.py --config ...
    torchrun --nproc_per_node 2 scripts/train.py --config ... --backend gloo               # CPU, two processes
    python scripts/train.py --config ... stage=2 freeze=encoder lr_projector=2e-4 max_steps=500

A config is a Python file whose `get_config()` returns a dict of keys from `DEFAULTS` (below); `key=value` or
`--key value` on the command line override it, and an unknown key is an error that lists the valid ones.

The model comes from one of: `model` (a saved VisionLanguageModel folder), `encoder` + `llm` (two pretrained
folders joined by a new projector), or `scratch` (configs for random weights: tests and smoke runs). The data
is a `datasets` dataset with an image column, a question column and an answer column: `dataset` is a folder
written by `save_to_disk`, a name `load_dataset` accepts, or `synthetic:colours` (generated, nothing downloaded).
"""

import argparse
import ast
import json
import os
import runpy
import sys

DEFAULTS = dict(
    # model: exactly one of model / encoder+llm / scratch
    model="",
    encoder="",
    llm="",
    projector="mlp2x_gelu",
    scratch=None,  # dict(vision_config=..., text_config=..., image_processor=..., tokenizer_vocab_size=...)
    # data
    dataset="synthetic:colours",
    dataset_split="train",
    num_examples=0,  # 0: all; for synthetic data, how many to generate
    image_column="image",
    question_column="question",
    answer_column="answer",
    prompt="<|user|><image>{question}<|assistant|>",  # or "chat": the processor's chat template
    # what trains (parts: encoder, projector, llm)
    stage=1,  # 1: projector only; 2: projector + llm
    train="",  # explicit parts to train, instead of the stage's
    freeze="",  # parts to freeze on top of the stage's choice
    lora="",  # parts that get LoRA adapters instead of full training (needs peft)
    lora_rank=8,
    lora_alpha=16,
    lora_dropout=0.0,
    learning_rate=1e-3,
    lr_encoder=None,
    lr_projector=None,
    lr_llm=None,
    weight_decay=0.0,
    warmup_steps=0,  # steps, or a fraction of max_steps below 1
    lr_scheduler_type="constant",
    # schedule and batch
    max_steps=100,
    per_device_train_batch_size=8,
    gradient_accumulation_steps=1,
    gradient_checkpointing=False,
    bf16="auto",  # auto: bf16 on a GPU that has it, fp32 elsewhere
    seed=0,
    dataloader_num_workers=0,
    # output
    output_dir="out/train",
    logging_steps=10,
    save_steps=0,  # 0: no intermediate checkpoints
    save_total_limit=2,
    resume="",  # a checkpoint folder, or "last" for the newest in output_dir
    report_to="none",
    backend="",  # torch.distributed backend, e.g. gloo for CPU processes
    # auto: only when the encoder trains. A VLM reads one feature layer of its encoder (LLaVA: the second to
    # last), so the layers after it and any pooling head get no gradient, which DDP must be told about
    ddp_find_unused_parameters="auto",
    # FSDP (version 2) through Trainer: fsdp=True wraps the model's `_no_split_modules`, this encoder's blocks and
    # this LLM's decoder layers; fsdp_config takes Trainer's keys (reshard_after_forward, cpu_offload, ...)
    fsdp=False,
    fsdp_config=None,
)


def parse_value(text: str):
    """'1e-3' -> 0.001, 'True' -> True, 'encoder,llm' -> 'encoder,llm' (Python literals, else the string)."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def load_config(path: str | None, overrides: list[str]) -> dict:
    """DEFAULTS, then the config file's get_config(), then command-line overrides; unknown keys are errors."""
    config = dict(DEFAULTS)
    if path:
        module = runpy.run_path(path)
        if "get_config" not in module:
            raise ValueError(f"{path} has no get_config() function returning the config dict")
        _update(config, module["get_config"](), f"the config file {path}")
    pairs, i = {}, 0
    while i < len(overrides):
        item = overrides[i]
        if item.startswith("--") and "=" not in item:  # --key value
            if i + 1 >= len(overrides):
                raise ValueError(f"{item} needs a value")
            pairs[item[2:]] = parse_value(overrides[i + 1])
            i += 2
            continue
        key, sep, value = item.removeprefix("--").partition("=")
        if not sep:
            raise ValueError(f"cannot read the override {item!r}; write key=value (valid keys: {sorted(DEFAULTS)})")
        pairs[key] = parse_value(value)
        i += 1
    _update(config, pairs, "the command line")
    return config


def _update(config: dict, values: dict, source: str) -> None:
    unknown = sorted(set(values) - set(DEFAULTS))
    if unknown:
        raise ValueError(f"unknown config key(s) {unknown} in {source}; valid keys: {sorted(DEFAULTS)}")
    config.update(values)


def build_model_and_processor(config: dict):
    import torch

    import vlm_encoders  # noqa: F401  (registers the paradigms with the Auto classes)
    from vlm_encoders import PARADIGMS, VisionLanguageConfig, VisionLanguageModel, VisionLanguageProcessor

    sources = [bool(config["model"]), bool(config["encoder"] or config["llm"]), bool(config["scratch"])]
    if sum(sources) != 1:
        raise ValueError("set exactly one model source: model=<saved VLM folder>, encoder=<folder> llm=<folder>, "
                         "or scratch=dict(...)")
    if config["model"]:
        from transformers import AutoProcessor

        return VisionLanguageModel.from_pretrained(config["model"]), AutoProcessor.from_pretrained(config["model"])
    if config["encoder"]:
        if not (config["encoder"] and config["llm"]):
            raise ValueError("encoder= and llm= go together")
        model = VisionLanguageModel.from_encoder_and_llm(config["encoder"], config["llm"], projector=config["projector"])
        processor = VisionLanguageProcessor.from_encoder_and_llm(config["encoder"], config["llm"])
        return model, processor
    from vlm_encoders.synthetic import COLOURS, QUESTION, train_tokenizer

    scratch = dict(config["scratch"])
    vision, text = dict(scratch["vision_config"]), dict(scratch["text_config"])
    corpus = [QUESTION, " ".join(COLOURS), *scratch.get("tokenizer_corpus", [])] * 20
    tokenizer = train_tokenizer(corpus, scratch.get("tokenizer_vocab_size", 200))
    text.update(vocab_size=len(tokenizer), bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                pad_token_id=tokenizer.pad_token_id)
    vlm_config = VisionLanguageConfig(vision_config=vision, text_config=text, projector=config["projector"],
                                      image_token_id=tokenizer.image_token_id)
    torch.manual_seed(config["seed"])
    model = VisionLanguageModel(vlm_config)
    image_processor = PARADIGMS[vision["model_type"]][2](**scratch.get("image_processor", {}))
    return model, VisionLanguageProcessor(image_processor, tokenizer)


def load_training_data(config: dict):
    """The dataset with its image column decoded lazily (set_transform); missing columns are named."""
    import datasets

    from vlm_encoders.training import lazy_image_transform

    name = config["dataset"]
    if name.startswith("synthetic:"):
        from vlm_encoders.synthetic import colour_dataset

        if name != "synthetic:colours":
            raise ValueError(f"unknown synthetic dataset {name!r}; known: synthetic:colours")
        dataset = colour_dataset(config["num_examples"] or 2000, seed=config["seed"])
    elif os.path.isdir(name):
        dataset = datasets.load_from_disk(name)
        if isinstance(dataset, datasets.DatasetDict):
            dataset = dataset[config["dataset_split"]]
    else:
        dataset = datasets.load_dataset(name, split=config["dataset_split"])
    wanted = [config["image_column"], config["question_column"], config["answer_column"]]
    missing = [c for c in wanted if c not in dataset.column_names]
    if missing:
        raise ValueError(f"the dataset has no column(s) {missing}; its columns are {dataset.column_names} (set "
                         "image_column=, question_column=, answer_column=)")
    if config["num_examples"] and not name.startswith("synthetic:"):
        dataset = dataset.select(range(min(config["num_examples"], len(dataset))))
    # keep the encoded bytes: decoding happens per row in the transform, where a broken image is skipped
    feature = dataset.features[config["image_column"]]
    if isinstance(feature, datasets.Image):
        dataset = dataset.cast_column(config["image_column"], datasets.Image(decode=False))
    elif isinstance(getattr(feature, "feature", None), datasets.Image):  # a list of images per row
        dataset = dataset.cast_column(config["image_column"], type(feature)(datasets.Image(decode=False)))
    dataset.set_transform(lazy_image_transform(config["image_column"]))
    return dataset


def trainable_parts(config: dict) -> tuple[list[str], list[str]]:
    """(fully trained parts, LoRA parts) from stage / train / freeze / lora."""
    from vlm_encoders.training import STAGE_PARTS, parse_parts

    if config["stage"] not in STAGE_PARTS:
        raise ValueError(f"stage must be one of {sorted(STAGE_PARTS)}, got {config['stage']!r}")
    train = parse_parts(config["train"]) if config["train"] else list(STAGE_PARTS[config["stage"]])
    lora = parse_parts(config["lora"])
    frozen = set(parse_parts(config["freeze"])) | set(lora)
    return [p for p in train if p not in frozen], lora


def training_arguments(config: dict, train_parts=()):
    import torch
    from transformers import TrainingArguments

    find_unused = config["ddp_find_unused_parameters"]
    if find_unused == "auto":
        find_unused = "encoder" in train_parts
    bf16 = config["bf16"]
    if bf16 == "auto":
        bf16 = torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    return TrainingArguments(
        output_dir=config["output_dir"], max_steps=config["max_steps"], learning_rate=config["learning_rate"],
        per_device_train_batch_size=config["per_device_train_batch_size"],
        gradient_accumulation_steps=config["gradient_accumulation_steps"], weight_decay=config["weight_decay"],
        warmup_steps=config["warmup_steps"], lr_scheduler_type=config["lr_scheduler_type"],
        activation_checkpointing=config["gradient_checkpointing"],  # transformers' new name for it
        activation_checkpointing_kwargs={"use_reentrant": False} if config["gradient_checkpointing"] else None,
        bf16=bool(bf16), seed=config["seed"], data_seed=config["seed"], logging_steps=config["logging_steps"],
        save_strategy="steps" if config["save_steps"] else "no", save_steps=config["save_steps"] or 500,
        save_total_limit=config["save_total_limit"], report_to=config["report_to"],
        remove_unused_columns=False,  # the collator needs the image and text columns the model does not take
        dataloader_num_workers=config["dataloader_num_workers"], ddp_backend=config["backend"] or None,
        ddp_find_unused_parameters=find_unused, use_cpu=not torch.cuda.is_available(),
        fsdp=bool(config["fsdp"]), fsdp_config=config["fsdp_config"],
    )


def main(argv: list[str] | None = None, callbacks=None) -> dict:
    """Train; returns a summary (final loss, steps, parts, skipped images, output folder)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", help="a Python file with get_config()")
    args, overrides = parser.parse_known_args(argv)
    config = load_config(args.config, overrides)

    from transformers.trainer_utils import get_last_checkpoint

    from vlm_encoders.training import VLMDataCollator, VLMTrainer, apply_lora, parameter_counts, save_parts, \
        set_trainable

    train_parts, lora_parts = trainable_parts(config)
    model, processor = build_model_and_processor(config)
    dataset = load_training_data(config)
    set_trainable(model, train_parts)
    if lora_parts:
        model = apply_lora(model, lora_parts, config["lora_rank"], config["lora_alpha"], config["lora_dropout"],
                           train_parts=train_parts)
    counts = parameter_counts(model)
    if not any(trainable for trainable, _ in counts.values()):
        raise ValueError("nothing to train: every part is frozen (check stage=, train=, freeze=, lora=)")
    collator = VLMDataCollator(processor, config["prompt"], config["image_column"], config["question_column"],
                               config["answer_column"])
    learning_rates = {part: config[f"lr_{part}"] for part in ("encoder", "projector", "llm")}
    trainer = VLMTrainer(model=model, args=training_arguments(config, train_parts), train_dataset=dataset, data_collator=collator,
                         processing_class=processor, part_learning_rates=learning_rates, callbacks=callbacks)
    resume = config["resume"] or None
    if resume == "last":
        resume = get_last_checkpoint(config["output_dir"])
        if resume is None:
            raise ValueError(f"resume=last but {config['output_dir']} holds no checkpoint-* folder")
    if trainer.is_world_process_zero():
        described = ", ".join(f"{p} {t:,}/{n:,}" for p, (t, n) in counts.items())
        print(f"trainable parameters (part trainable/total): {described}; LoRA on {lora_parts or 'nothing'}")
    result = trainer.train(resume_from_checkpoint=resume)

    summary = {"train_loss": result.training_loss, "global_step": result.global_step, "train_parts": train_parts,
               "lora_parts": lora_parts, "skipped_images": collator.skipped, "output_dir": config["output_dir"],
               "wrapped_as": type(trainer.model_wrapped).__name__, "world_size": trainer.args.world_size,
               "gradient_checkpointing": bool(getattr(model, "is_activation_checkpointing", False)),
               "losses": [(h["step"], h["loss"]) for h in trainer.state.log_history if "loss" in h]}
    if trainer.is_world_process_zero():
        final = os.path.join(config["output_dir"], "final")
        if lora_parts:  # a plain VisionLanguageModel folder, loadable and exportable without PEFT
            model = model.merge_and_unload()
        model.save_pretrained(final)
        processor.save_pretrained(final)
        trained = train_parts + lora_parts
        save_parts(model, trained, os.path.join(config["output_dir"], "trained_parts.safetensors"))
        with open(os.path.join(config["output_dir"], "train_summary.json"), "w") as f:
            json.dump(summary, f, indent=2)
        if collator.skipped:
            print(f"skipped {collator.skipped} example(s) whose image did not decode")
        print(f"final loss {summary['losses'][-1][1] if summary['losses'] else float('nan'):.4f}; model in {final}")
    return summary


if __name__ == "__main__":
    try:
        main()
    except ValueError as error:  # configuration and data errors: one clear line, no traceback
        sys.exit(f"error: {error}")
