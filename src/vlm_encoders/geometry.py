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


# ---- longest edge + pad (SAM) -------------------------------------------------------------------------

def longest_edge_size(height: int, width: int, longest_edge: int) -> tuple[int, int]:
    """Size after scaling the longer side to `longest_edge`, rounding half up (SAM's `_get_preprocess_shape`).

    A side never drops below 1 pixel (transformers would make a 1 x 4000 image 0 pixels tall and fail).
    """
    check_image_size(height, width)
    scale = longest_edge * 1.0 / max(height, width)
    return max(1, int(height * scale + 0.5)), max(1, int(width * scale + 0.5))


def sam_num_image_tokens(height: int, width: int, *, image_size: int, patch_size: int) -> int:
    """Tokens of SAM's encoder: every image is padded to image_size x image_size, so (image_size / P)^2."""
    check_image_size(height, width)
    return (image_size // patch_size) ** 2


def sam_flops(grid: tuple[int, int], *, hidden_size: int, intermediate_size: int, num_layers: int, window_size: int,
              num_global: int, patch_dim: int, output_channels: int) -> int:
    """Analytic forward FLOPs of SAM's encoder on an h x w patch grid (a multiply-add counts 2).

    Windowed blocks attend over padded window_size^2 windows, global blocks over the whole grid; the
    neck is a 1x1 then a 3x3 convolution. Relative-position terms and norms are left out (small).
    """
    h, w = grid
    n, d = h * w, hidden_size
    padded = (-(-h // window_size) * window_size) * (-(-w // window_size) * window_size) if window_size else n
    dense = num_layers * (8 * n * d * d + 4 * n * d * intermediate_size)
    windowed = (num_layers - num_global) * 4 * padded * window_size**2 * d if window_size else 0
    full = (num_global if window_size else num_layers) * 4 * n * n * d
    neck = 2 * n * d * output_channels + 2 * n * output_channels * output_channels * 9
    return dense + windowed + full + neck + 2 * n * patch_dim * d


# ---- serial compression (DeepSeek-OCR's DeepEncoder) -----------------------------------------------------

# mode -> (global view side, how the global view is made, tile side or 0 for no tiles)
DEEPENCODER_MODES = {
    "tiny": (512, "resize", 0),
    "small": (640, "resize", 0),
    "base": (1024, "pad", 0),
    "large": (1280, "pad", 0),
    "gundam": (1024, "pad", 640),
    "gundam-m": (1280, "pad", 1024),
}
DEEPENCODER_MIN_TILES, DEEPENCODER_MAX_TILES = 2, 6  # DeepSeek-OCR's config.py MIN_CROPS / MAX_CROPS


def closest_tile_grid(height: int, width: int, *, tile: int, min_tiles: int, max_tiles: int) -> tuple[int, int]:
    """(columns, rows) of tiles whose aspect ratio is closest to the image's (InternVL's `find_closest_aspect_ratio`).

    Candidates are all grids with min_tiles <= columns * rows <= max_tiles, built and ordered exactly as the
    reference does (a set sorted by area), since ties go to the later candidate when the image has more than
    half the pixels of that larger canvas.
    """
    check_image_size(height, width)
    candidates = {(i, j) for n in range(min_tiles, max_tiles + 1) for i in range(1, n + 1) for j in range(1, n + 1)
                  if min_tiles <= i * j <= max_tiles}
    aspect, area = width / height, width * height
    best, best_diff = (1, 1), float("inf")
    for cols, rows in sorted(candidates, key=lambda grid: grid[0] * grid[1]):
        diff = abs(aspect - cols / rows)
        if diff < best_diff:
            best, best_diff = (cols, rows), diff
        elif diff == best_diff and area > 0.5 * tile * tile * cols * rows:
            best = (cols, rows)
    return best


def deepencoder_layout(height: int, width: int, mode: str, *, patch_size: int = 16, compression: int = 4,
                       min_tiles: int = DEEPENCODER_MIN_TILES, max_tiles: int = DEEPENCODER_MAX_TILES) -> dict:
    """What DeepEncoder makes of a `height` x `width` image in `mode` (Tiny/Small/Base/Large/Gundam/Gundam-M).

    Returns `tiles` (columns, rows; (0, 0) without local views), `vision_tokens` (encoder outputs),
    `positions` (what the LLM sees: a newline after every token row of the global view and of the tiled
    canvas, plus one view separator) and `valid_tokens` (the paper's Eq. 1: tokens of a padded global
    view that cover the image, ceil(N * (1 - (max - min) / max))).
    Gundam tiles images larger than one tile on either side; smaller ones get the global view only.
    A side of one pixel is refused: stretched or padded to a 512-1280 px view it carries nothing to read.
    """
    if mode not in DEEPENCODER_MODES:
        raise ValueError(f"unknown DeepEncoder mode {mode!r}; known: {sorted(DEEPENCODER_MODES)}")
    check_image_size(height, width)
    if min(height, width) < 2:
        raise ValueError(f"a {height}x{width} image is too small for DeepEncoder: each side needs at least 2 pixels")
    if not 1 <= min_tiles <= max_tiles:
        raise ValueError(f"need 1 <= min_tiles <= max_tiles, got {min_tiles} and {max_tiles}")
    side, view, tile = DEEPENCODER_MODES[mode]
    per_side = -(-side // (patch_size * compression))  # ceil(side / 64): 16 at 1024
    vision, positions = per_side * per_side, per_side * (per_side + 1) + 1
    tiles = (0, 0)
    if tile and (height > tile or width > tile):
        tiles = closest_tile_grid(height, width, tile=tile, min_tiles=min_tiles, max_tiles=max_tiles)
        per_tile = -(-tile // (patch_size * compression))
        cols, rows = tiles
        vision += cols * rows * per_tile * per_tile
        positions += (rows * per_tile) * (cols * per_tile + 1)
    global_tokens = per_side * per_side
    valid = global_tokens if view == "resize" else math.ceil(
        global_tokens * (1 - (max(height, width) - min(height, width)) / max(height, width)))
    return {"tiles": tiles, "vision_tokens": vision, "positions": positions, "valid_tokens": valid,
            "global_side": side, "global_view": view}


# ---- native resolution (NaViT / Qwen2-VL) -----------------------------------------------------------

# Qwen2-VL's limit: beyond it one side collapses to a single merge block and the image stops making sense.
MAX_ASPECT_RATIO = 200


def smart_resize(height: int, width: int, *, factor: int, min_pixels: int, max_pixels: int) -> tuple[int, int]:
    """Qwen2-VL's native-resolution target: both sides multiples of `factor`, aspect kept, area budgeted.

    Each side is rounded to the nearest multiple of `factor` (patch x merge = 28 for Qwen2-VL); if the
    area leaves [min_pixels, max_pixels], both sides are rescaled by the same factor first (floored to
    stay under the budget, ceiled to reach the minimum). The arithmetic is transformers'
    `smart_resize`, operation for operation, so that our token counts equal Qwen2-VL's. One property
    of that rule: a side never drops below `factor`, so an image more elongated than
    max_pixels / factor^2 can end up above `max_pixels` (never with the transformers defaults).
    """
    check_image_size(height, width)
    if factor < 1:
        raise ValueError(f"factor must be a positive number of pixels, got {factor}")
    if min_pixels > max_pixels:
        raise ValueError(f"min_pixels={min_pixels} is larger than max_pixels={max_pixels}")
    if max_pixels < factor * factor:
        raise ValueError(f"max_pixels={max_pixels} is below one {factor}x{factor} merge block")
    aspect = max(height, width) / min(height, width)
    if aspect > MAX_ASPECT_RATIO:
        raise ValueError(f"a {height}x{width} image has aspect ratio {aspect:.1f}, above the limit of "
                         f"{MAX_ASPECT_RATIO}; crop or pad it first")
    h_bar, w_bar = round(height / factor) * factor, round(width / factor) * factor
    if h_bar * w_bar > max_pixels:
        beta = math.sqrt(height * width / max_pixels)
        h_bar = max(factor, math.floor(height / beta / factor) * factor)
        w_bar = max(factor, math.floor(width / beta / factor) * factor)
    elif h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h_bar = math.ceil(height * beta / factor) * factor
        w_bar = math.ceil(width * beta / factor) * factor
    return h_bar, w_bar


def navit_patch_grid(
    height: int, width: int, *, patch_size: int, merge_size: int, min_pixels: int, max_pixels: int
) -> tuple[int, int]:
    """(rows, cols) of patches a native-resolution encoder sees for a `height` x `width` image."""
    h, w = smart_resize(height, width, factor=patch_size * merge_size, min_pixels=min_pixels, max_pixels=max_pixels)
    return h // patch_size, w // patch_size


def navit_num_image_tokens(
    height: int, width: int, *, patch_size: int, merge_size: int, min_pixels: int, max_pixels: int
) -> int:
    """Tokens handed to the LLM: one per merge x merge block of patches (Qwen2-VL: 224 x 224 -> 64)."""
    rows, cols = navit_patch_grid(height, width, patch_size=patch_size, merge_size=merge_size,
                                  min_pixels=min_pixels, max_pixels=max_pixels)
    return (rows // merge_size) * (cols // merge_size)


def navit_flops(grids: list[tuple[int, int]], *, hidden_size: int, intermediate_size: int, num_layers: int,
                patch_dim: int, merge_size: int, out_hidden_size: int, gated_mlp: bool = False,
                window_tokens: int = 0, num_full_layers: int | None = None) -> int:
    """Analytic forward FLOPs of a native-resolution encoder on a pack of patch grids (a multiply-add counts 2).

    Attention is per image (packed sequences never attend to each other); with windows of
    `window_tokens` tokens, all but `num_full_layers` layers attend within windows only (an upper
    bound: edge windows are smaller). The merger is LN -> Linear(m^2 D, m^2 D) -> Linear(m^2 D, D_out).
    """
    d, mlp_mats = hidden_size, 3 if gated_mlp else 2
    tokens = [rows * cols for rows, cols in grids]
    n = sum(tokens)
    full = sum(t * t for t in tokens)
    windowed = sum(t * min(t, window_tokens) for t in tokens) if window_tokens else full
    full_layers = num_layers if num_full_layers is None or not window_tokens else num_full_layers
    dense = num_layers * (8 * n * d * d + 2 * mlp_mats * n * d * intermediate_size)
    attention = 4 * d * (full_layers * full + (num_layers - full_layers) * windowed)
    merged, wide = n // merge_size**2, d * merge_size**2
    merger = 2 * merged * wide * (wide + out_hidden_size)
    return dense + attention + merger + 2 * n * patch_dim * d


__all__ = [
    "DEEPENCODER_MODES",
    "MAX_ASPECT_RATIO",
    "aligned_crop_window",
    "center_crop_offsets",
    "check_image_size",
    "closest_tile_grid",
    "deepencoder_layout",
    "pad_to_square_padding",
    "longest_edge_size",
    "navit_flops",
    "navit_num_image_tokens",
    "navit_patch_grid",
    "patch_grid",
    "sam_flops",
    "sam_num_image_tokens",
    "shortest_edge_size",
    "smart_resize",
    "vit_flops",
    "vit_num_image_tokens",
    "vit_processed_size",
]
