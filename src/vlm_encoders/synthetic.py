"""Generated data for smoke tests and learning checks: nothing is downloaded.

`colour_dataset` draws one coloured square on a noisy background and asks for its colour, so the answer is
visible only in the image: a VLM that answers above chance has learned to read its image tokens.
`train_tokenizer` fits a small byte-level BPE on such texts, with the chat and image tokens as specials.
"""

import numpy as np
from PIL import Image

# name -> RGB; distinct hues, so the task is about reading the image, not about fine colour vision
COLOURS = {
    "red": (220, 40, 40),
    "green": (40, 170, 60),
    "blue": (40, 80, 220),
    "yellow": (235, 205, 40),
    "purple": (140, 60, 180),
    "orange": (245, 140, 30),
}
QUESTION = "What colour is the square?"
SPECIAL_TOKENS = ["<pad>", "<s>", "</s>", "<unk>", "<image>", "<|user|>", "<|assistant|>"]


def colour_image(colour: str, rng: np.random.Generator, size: tuple[int, int] = (64, 64)) -> Image.Image:
    """A grey, noisy `size` (height, width) image with one square of `colour`, at a random place and size."""
    height, width = size
    pixels = rng.normal(128, 30, (height, width, 3)).clip(0, 255)
    side = int(rng.integers(min(height, width) // 3, min(height, width) // 2 + 1))
    top, left = int(rng.integers(0, height - side + 1)), int(rng.integers(0, width - side + 1))
    pixels[top:top + side, left:left + side] = COLOURS[colour]
    return Image.fromarray(pixels.astype(np.uint8))


def colour_dataset(num_examples: int, seed: int = 0, size: tuple[int, int] = (64, 64),
                   colours: tuple[str, ...] = tuple(COLOURS)):
    """A `datasets.Dataset` with columns image (PIL, decoded lazily by `datasets`), question and answer."""
    import datasets

    unknown = sorted(set(colours) - set(COLOURS))
    if unknown:
        raise ValueError(f"unknown colours {unknown}; known: {sorted(COLOURS)}")
    rng = np.random.default_rng(seed)
    answers = [colours[i] for i in rng.integers(0, len(colours), num_examples)]
    images = [colour_image(answer, rng, size) for answer in answers]
    features = datasets.Features({"image": datasets.Image(), "question": datasets.Value("string"),
                                  "answer": datasets.Value("string")})
    return datasets.Dataset.from_dict({"image": images, "question": [QUESTION] * num_examples, "answer": answers},
                                      features=features)


def train_tokenizer(texts: list[str], vocab_size: int = 200, padding_side: str = "left"):
    """A byte-level BPE fitted on `texts`, with `<image>` as the image token and the chat markers as specials."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE(unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tokenizer.train_from_iterator(texts, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, bos_token="<s>", eos_token="</s>", pad_token="<pad>",
                                   unk_token="<unk>", padding_side=padding_side,
                                   extra_special_tokens={"image_token": "<image>"})


__all__ = ["COLOURS", "QUESTION", "SPECIAL_TOKENS", "colour_dataset", "colour_image", "train_tokenizer"]
