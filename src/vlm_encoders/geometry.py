"""Pure size math: resize targets, crops, grids and tokens per image.

Every token-count rule of the package lives here, once. Image processors call these functions to
produce pixels, the VLM processor calls them to expand image placeholders, and the tests compare them
with what the models return. No torch, no PIL: plain integers in, plain integers out.

Sizes are (height, width) throughout, as in transformers.
"""

from __future__ import annotations

import math


def check_image_size(height: int, width: int) -> None:
    """Raise a ValueError naming the problem if (height, width) is not a usable image size."""
    if not (isinstance(height, int) and isinstance(width, int)):
        raise TypeError(f"image height and width must be ints, got {type(height).__name__} and {type(width).__name__}")
    if height < 1 or width < 1:
        raise ValueError(f"image of size {height}x{width} (height x width) has no pixels")


def shortest_edge_size(height: int, width: int, shortest_edge: int) -> tuple[int, int]:
    """Size after resizing the shorter side to `shortest_edge`, keeping the aspect ratio.

    The longer side is truncated, not rounded, exactly as transformers' `get_resize_output_image_size`
    (and torchvision's `Resize(int)`) do, so that our processors produce the same pixels as CLIP's.
    """
    check_image_size(height, width)
    short, long = (width, height) if width <= height else (height, width)
    new_short, new_long = shortest_edge, int(shortest_edge * long / short)
    return (new_long, new_short) if width <= height else (new_short, new_long)


def center_crop_offsets(height: int, width: int, crop_height: int, crop_width: int) -> tuple[int, int, int, int]:
    """(top, left, pad_top, pad_left) of a centered crop; images smaller than the crop are zero-padded first.

    Mirrors transformers' `TorchvisionBackend.center_crop`: padding puts the extra pixel on the bottom/right,
    and the crop origin is truncated toward zero.
    """
    pad_top = (crop_height - height) // 2 if crop_height > height else 0
    pad_left = (crop_width - width) // 2 if crop_width > width else 0
    padded_h, padded_w = max(height, crop_height), max(width, crop_width)
    return int((padded_h - crop_height) / 2.0), int((padded_w - crop_width) / 2.0), pad_top, pad_left


def pad_to_square_padding(height: int, width: int) -> tuple[int, int, int, int]:
    """(left, top, right, bottom) padding that centers an image on a square of its longer side (LLaVA-1.5)."""
    side = max(height, width)
    left, top = (side - width) // 2, (side - height) // 2
    return left, top, side - width - left, side - height - top


def vit_processed_size(
    height: int,
    width: int,
    *,
    size: dict,
    crop_size: dict | None = None,
    do_resize: bool = True,
    do_center_crop: bool = False,
    do_pad: bool = False,
) -> tuple[int, int]:
    """Size of the image a fixed-patch ViT processor hands to the model.

    The three published behaviours are settings of the same pipeline (pad -> resize -> crop):
    CLIP: `size={"shortest_edge": S}` + center crop S x S; SigLIP: `size={"height": S, "width": S}`
    (a squash); LLaVA-1.5: pad to a square with the mean colour, then CLIP's resize and crop.
    """
    check_image_size(height, width)
    if do_pad:
        height = width = max(height, width)
    if do_resize:
        if "shortest_edge" in size and size["shortest_edge"]:
            height, width = shortest_edge_size(height, width, size["shortest_edge"])
        elif size.get("height") and size.get("width"):
            height, width = size["height"], size["width"]
        else:
            raise ValueError(f"size must have 'shortest_edge' or 'height' and 'width', got {size}")
    if do_center_crop:
        if not crop_size or not crop_size.get("height") or not crop_size.get("width"):
            raise ValueError(f"center cropping needs crop_size with 'height' and 'width', got {crop_size}")
        height, width = crop_size["height"], crop_size["width"]
    return height, width


def aligned_crop_window(length: int, resized_length: int, crop_length: int) -> tuple[int, int, int, int] | None:
    """Input span that a centered crop of a resized axis depends on, aligned so resizing only that span is exact.

    Resizing `length` -> `resized_length` and keeping the centered `crop_length` (as CLIP does) wastes
    memory when the resized axis is huge: a 1x4000 image becomes 336 x 1,344,000 pixels before the crop.
    Only the input pixels under the crop's filter support matter. Cropping the input to [a, b) and resizing
    it to n = (b - a) * resized_length / length pixels reproduces the full resize exactly when the output
    grid lines up, i.e. when a and b are multiples of length / gcd(length, resized_length); then the crop
    starts at `start` in the small resize. Returns (a, b, n, start), or None when nothing would be saved.
    """
    if resized_length <= crop_length:
        return None
    scale = length / resized_length  # input pixels per output pixel
    radius = 2 * max(scale, 1.0) + 1  # bicubic support (2 taps each side, widened when downscaling), +1 margin
    top = int((resized_length - crop_length) / 2.0)
    step = length // math.gcd(length, resized_length)
    lo = (top + 0.5) * scale - radius
    hi = (top + crop_length - 0.5) * scale + radius
    a = max(0, math.floor(lo / step) * step)
    b = min(length, math.ceil(hi / step) * step)
    if b - a >= length:
        return None
    n = (b - a) * resized_length // length
    start = top - a * resized_length // length
    return a, b, n, start


def patch_grid(height: int, width: int, patch_size: int) -> tuple[int, int]:
    """Rows and columns of non-overlapping patches; a stride-P convolution drops the remainder.

    This is why SigLIP-so400m/14 at 384 px yields 27 x 27 = 729 patches (384 = 27 * 14 + 6).
    """
    check_image_size(height, width)
    if height < patch_size or width < patch_size:
        raise ValueError(f"a {height}x{width} image is smaller than one {patch_size}x{patch_size} patch")
    return height // patch_size, width // patch_size


def vit_num_image_tokens(
    height: int,
    width: int,
    *,
    patch_size: int,
    size: dict,
    crop_size: dict | None = None,
    do_resize: bool = True,
    do_center_crop: bool = False,
    do_pad: bool = False,
    include_class_token: bool = False,
) -> int:
    """Tokens a fixed-patch ViT hands to the LLM for an input image of `height` x `width` pixels."""
    h, w = vit_processed_size(
        height, width, size=size, crop_size=crop_size, do_resize=do_resize, do_center_crop=do_center_crop, do_pad=do_pad
    )
    rows, cols = patch_grid(h, w, patch_size)
    return rows * cols + int(include_class_token)


def vit_flops(num_tokens: int, *, hidden_size: int, intermediate_size: int, num_layers: int, patch_dim: int,
              num_patches: int) -> int:
    """Analytic forward FLOPs of a ViT (a multiply-add counts 2), as in nanoGPT's `estimate_mfu`.

    per layer: qkv + out projections 4 * 2ND^2, attention scores and weighted sum 2 * 2N^2D, MLP 2 * 2NDI;
    plus the patch embedding 2 * patches * (C P^2) * D. Norms, softmax and activations are left out
    (they are memory-bound, not FLOP-bound).
    """
    n, d = num_tokens, hidden_size
    per_layer = 8 * n * d * d + 4 * n * n * d + 4 * n * d * intermediate_size
    return num_layers * per_layer + 2 * num_patches * patch_dim * d


__all__ = [
    "aligned_crop_window",
    "center_crop_offsets",
    "check_image_size",
    "pad_to_square_padding",
    "patch_grid",
    "shortest_edge_size",
    "vit_flops",
    "vit_num_image_tokens",
    "vit_processed_size",
]
