"""The VLM processor: images + text -> model inputs, each image placeholder expanded to the exact token count.

The count comes from the encoder's image processor (`get_number_of_image_tokens(height, width)`), the
same function the contract tests hold equal to the model's output length, so placeholders and features
cannot disagree. Everything is checked before any pixel is processed: placeholder and image counts,
the visual-token budget, and a truncation that would cut through an image.
"""

import numpy as np
import torch
from transformers import ProcessorMixin
from transformers.image_processing_utils import BatchFeature
from transformers.image_utils import get_image_size, infer_channel_dimension_format, load_image

# LLaVA-style chat: one `<image>` per image item of a message, roles as plain tags.
DEFAULT_CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "<|{{ message['role'] }}|>"
    "{%- if message['content'] is string -%}{{ message['content'] }}"
    "{%- else -%}{%- for part in message['content'] -%}"
    "{%- if part['type'] == 'image' -%}<image>{%- elif part['type'] == 'text' -%}{{ part['text'] }}{%- endif -%}"
    "{%- endfor -%}{%- endif -%}\n"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}<|assistant|>{%- endif -%}"
)


class VisionLanguageProcessor(ProcessorMixin):
    r"""Image processor + tokenizer + chat template for `VisionLanguageModel`.

    Args:
        image_processor: the encoder's image processor (any paradigm of this package).
        tokenizer: the LLM's tokenizer; it must know the image token as one special token.
        chat_template: a Jinja chat template that writes `image_token` once per image item.
        image_token: the placeholder users write in prompts, one per image (default `"<image>"`); each is
            expanded to as many image tokens as the encoder gives that image.
        max_image_tokens: visual-token budget per image (None: no limit). Paradigms with a resolution knob
            (NaViT's `max_pixels`) are fitted to it; for the others an image over budget is an error.
        max_image_tokens_per_sample: budget for all images of one prompt together (None: no limit).
    """

    def __init__(self, image_processor=None, tokenizer=None, chat_template=None, image_token: str = "<image>",
                 max_image_tokens: int | None = None, max_image_tokens_per_sample: int | None = None, **kwargs):
        self.image_token = image_token
        self.max_image_tokens = max_image_tokens
        self.max_image_tokens_per_sample = max_image_tokens_per_sample
        super().__init__(image_processor, tokenizer, chat_template=chat_template or DEFAULT_CHAT_TEMPLATE)
        self.image_token_id = tokenizer.convert_tokens_to_ids(image_token) if tokenizer is not None else None
        if tokenizer is not None and (self.image_token_id is None or self.image_token_id == tokenizer.unk_token_id):
            raise ValueError(f"the tokenizer has no token {image_token!r}; add it as a special token first "
                             "(tokenizer.add_special_tokens({'additional_special_tokens': [...]}))")

    @classmethod
    def from_encoder_and_llm(cls, encoder: str, llm: str, image_token: str = "<image>", **kwargs):
        """The encoder folder's image processor + the LLM folder's tokenizer (the image token added if missing)."""
        from transformers import AutoImageProcessor, AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(llm)
        if image_token not in tokenizer.get_vocab():
            tokenizer.add_special_tokens({"additional_special_tokens": [image_token]})
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        tokenizer.padding_side = "left"  # generation appends on the right
        return cls(AutoImageProcessor.from_pretrained(encoder), tokenizer, image_token=image_token, **kwargs)

    def __call__(self, images=None, text=None, return_tensors=None, padding=True, truncation=False,
                 max_length=None, return_labels: bool = False, **kwargs) -> BatchFeature:
        if text is None:
            raise ValueError("VisionLanguageProcessor needs text (with one image placeholder per image)")
        texts = [text] if isinstance(text, str) else list(text)
        images = self._flatten_images(images)
        per_text = [t.count(self.image_token) for t in texts]
        if sum(per_text) != len(images):
            raise ValueError(f"the text has {sum(per_text)} {self.image_token!r} placeholder(s) "
                             f"({per_text} per prompt) but {len(images)} image(s) were given")

        image_kwargs = self._budget_kwargs()
        sizes = [self._image_size(image) for image in images]
        counts = [self.image_processor.get_number_of_image_tokens(h, w, **image_kwargs) for h, w in sizes]
        self._check_budget(counts, per_text, sizes)

        expanded, start = [], 0
        for t, n in zip(texts, per_text):
            pieces = t.split(self.image_token)
            out = pieces[0]
            for count, piece in zip(counts[start:start + n], pieces[1:]):
                out += self.image_token * count + piece
            expanded.append(out)
            start += n
        text_inputs = self.tokenizer(expanded, padding=padding, truncation=truncation, max_length=max_length,
                                     return_tensors=return_tensors, **kwargs)
        self._check_image_tokens(text_inputs["input_ids"], counts, per_text)
        data = dict(text_inputs)
        if images:
            data.update(self.image_processor(images, return_tensors=return_tensors, **image_kwargs))
        if return_labels:
            ids = torch.as_tensor(text_inputs["input_ids"])
            labels = ids.clone()
            labels[ids == self.image_token_id] = -100
            if "attention_mask" in text_inputs:
                labels[torch.as_tensor(text_inputs["attention_mask"]) == 0] = -100
            data["labels"] = labels
        return BatchFeature(data=data, tensor_type=return_tensors)

    def batch_decode(self, *args, **kwargs):
        return self.tokenizer.batch_decode(*args, **kwargs)

    def decode(self, *args, **kwargs):
        return self.tokenizer.decode(*args, **kwargs)

    def post_process_image_text_to_text(self, generated_outputs, skip_special_tokens=True, **kwargs):
        return self.tokenizer.batch_decode(generated_outputs, skip_special_tokens=skip_special_tokens, **kwargs)

    @property
    def model_input_names(self) -> list[str]:
        names = list(self.tokenizer.model_input_names) + list(self.image_processor.model_input_names)
        return list(dict.fromkeys(names))

    # ---- checks, all before any compute ----------------------------------------------------------------

    def _budget_kwargs(self) -> dict:
        """Settings that fit a paradigm's own resolution knob to `max_image_tokens` (NaViT: max_pixels)."""
        if self.max_image_tokens is None or not hasattr(self.image_processor, "max_pixels"):
            return {}
        factor = self.image_processor.patch_size * self.image_processor.merge_size
        return {"max_pixels": min(self.image_processor.max_pixels, self.max_image_tokens * factor * factor)}

    def _check_budget(self, counts, per_text, sizes) -> None:
        if self.max_image_tokens is not None:
            for (h, w), count in zip(sizes, counts):
                if count > self.max_image_tokens:
                    raise ValueError(f"a {h}x{w} image gives {count} visual tokens, over max_image_tokens="
                                     f"{self.max_image_tokens}; this encoder has no resolution setting to fit it")
        if self.max_image_tokens_per_sample is not None:
            start = 0
            for i, n in enumerate(per_text):
                total = sum(counts[start:start + n])
                if total > self.max_image_tokens_per_sample:
                    raise ValueError(f"prompt {i} has {n} image(s) giving {total} visual tokens, over "
                                     f"max_image_tokens_per_sample={self.max_image_tokens_per_sample}")
                start += n

    def _check_image_tokens(self, input_ids, counts, per_text) -> None:
        start = 0
        for i, (row, n) in enumerate(zip(input_ids, per_text)):
            expected = sum(counts[start:start + n])
            found = int((torch.as_tensor(row) == self.image_token_id).sum())
            if found != expected:
                raise ValueError(
                    f"prompt {i} should hold {expected} image tokens after tokenization but holds {found}: "
                    "truncation (max_length) cut through an image, or the prompt already contained image tokens")
            start += n

    def _flatten_images(self, images) -> list:
        if images is None:
            return []
        if not isinstance(images, (list, tuple)):
            return [images]
        flat = []
        for item in images:
            flat += list(item) if isinstance(item, (list, tuple)) else [item]
        return [load_image(image) if isinstance(image, str) else image for image in flat]

    @staticmethod
    def _image_size(image) -> tuple[int, int]:
        if hasattr(image, "size") and hasattr(image, "mode"):  # PIL: (width, height)
            return image.size[1], image.size[0]
        array = image.numpy() if isinstance(image, torch.Tensor) else np.asarray(image)
        if array.ndim == 2:
            return array.shape
        return get_image_size(array, infer_channel_dimension_format(array, num_channels=(1, 3, 4)))


__all__ = ["DEFAULT_CHAT_TEMPLATE", "VisionLanguageProcessor"]
