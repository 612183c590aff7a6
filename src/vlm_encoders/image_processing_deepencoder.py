"""Image processor of DeepSeek-OCR's DeepEncoder: the resolution modes, and Gundam's tiles.

  Tiny / Small: resize (stretch) to 512 / 640          -> pixel_values (B, 3, S, S)
  Base / Large: longer side to 1024 / 1280, pad to a square with grey (127) -> pixel_values
  Gundam (-M): Base (Large) as the global view, plus 640 (1024) px tiles on the InternVL grid closest to the
               image's aspect ratio (2 to 6 tiles) when a side exceeds one tile -> pixel_values_local (T, 3, t, t)
  image_tiles (B, 2): (columns, rows) of each image's tiles, (0, 0) for none

Pixels equal transformers' `UnlimitedOcrImageProcessor` with the same settings.
"""

import torch
from torchvision.transforms.v2 import functional as tvF
from transformers.image_processing_utils import BatchFeature
from transformers.image_utils import IMAGENET_STANDARD_MEAN, IMAGENET_STANDARD_STD, PILImageResampling, SizeDict
from transformers.processing_utils import ImagesKwargs

from .geometry import DEEPENCODER_MAX_TILES, DEEPENCODER_MIN_TILES, DEEPENCODER_MODES, closest_tile_grid, \
    deepencoder_layout
from .image_processing_base import CheckedTorchvisionBackend


class DeepEncoderImageProcessorKwargs(ImagesKwargs, total=False):
    mode: str
    min_tiles: int
    max_tiles: int


class DeepEncoderImageProcessor(CheckedTorchvisionBackend):
    r"""DeepSeek-OCR preprocessing.

    Args:
        mode: `"tiny"`, `"small"`, `"base"`, `"large"`, `"gundam"` or `"gundam-m"` (DeepSeek-OCR Table 1).
        min_tiles, max_tiles: the range of Gundam's tile grids (DeepSeek-OCR: 2 and 6).
        background_color: the padding colour of Base / Large views (DeepSeek-OCR: 127 grey).
    """

    resample = PILImageResampling.BICUBIC
    image_mean = IMAGENET_STANDARD_MEAN
    image_std = IMAGENET_STANDARD_STD
    do_resize = True
    size = {"height": 1024, "width": 1024}  # set from the mode; transformers' validation wants one
    do_rescale = True
    do_normalize = True
    do_convert_rgb = True
    mode = "base"
    min_tiles = DEEPENCODER_MIN_TILES
    max_tiles = DEEPENCODER_MAX_TILES
    background_color = [127, 127, 127]
    valid_kwargs = DeepEncoderImageProcessorKwargs
    model_input_names = ["pixel_values", "pixel_values_local", "image_tiles"]

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        if self.mode not in DEEPENCODER_MODES:
            raise ValueError(f"unknown DeepEncoder mode {self.mode!r}; known: {sorted(DEEPENCODER_MODES)}")
        if not 1 <= self.min_tiles <= self.max_tiles:
            raise ValueError(f"need 1 <= min_tiles <= max_tiles, got {self.min_tiles} and {self.max_tiles}")

    def get_layout(self, height: int, width: int, **overrides) -> dict:
        """Everything DeepEncoder makes of the image with these settings (see `geometry.deepencoder_layout`):
        tiles, vision tokens, positions, the valid tokens of a padded view."""
        return deepencoder_layout(height, width, overrides.get("mode", self.mode),
                                  min_tiles=overrides.get("min_tiles", self.min_tiles),
                                  max_tiles=overrides.get("max_tiles", self.max_tiles))

    def get_number_of_image_tokens(self, height: int, width: int, **overrides) -> int:
        """Positions the LLM sees for the image: tokens, a newline per row, one view separator."""
        return self.get_layout(height, width, **overrides)["positions"]

    def get_processed_size(self, height: int, width: int, **overrides) -> tuple[int, int]:
        """(height, width) of the global view the encoder receives."""
        side = self.get_layout(height, width, **overrides)["global_side"]
        return side, side

    def _global_view(self, image: torch.Tensor, side: int, view: str, resample) -> torch.Tensor:
        if view == "resize":  # Tiny / Small: stretched, aspect not kept
            return self.resize(image, SizeDict(height=side, width=side), resample=resample)
        height, width = image.shape[-2:]
        scale = side / max(height, width)
        resized = self.resize(image, SizeDict(height=max(1, round(height * scale)), width=max(1, round(width * scale))),
                              resample=resample)
        h, w = resized.shape[-2:]
        left, top = (side - w) // 2, (side - h) // 2
        return tvF.pad(resized, [left, top, side - w - left, side - h - top], fill=list(self.background_color))

    def _tiles(self, image: torch.Tensor, tile: int, resample, min_tiles: int, max_tiles: int):
        height, width = image.shape[-2:]
        cols, rows = closest_tile_grid(height, width, tile=tile, min_tiles=min_tiles, max_tiles=max_tiles)
        canvas = self.resize(image, SizeDict(height=tile * rows, width=tile * cols), resample=resample)
        tiles = [canvas[..., r * tile:(r + 1) * tile, c * tile:(c + 1) * tile] for r in range(rows) for c in range(cols)]
        return torch.stack(tiles), (cols, rows)

    def _preprocess(self, images: list[torch.Tensor], resample, do_rescale: bool, rescale_factor: float,
                    do_normalize: bool, image_mean, image_std, mode: str | None = None, min_tiles: int | None = None,
                    max_tiles: int | None = None, return_tensors=None, **kwargs) -> BatchFeature:
        mode = mode or self.mode
        if mode not in DEEPENCODER_MODES:
            raise ValueError(f"unknown DeepEncoder mode {mode!r}; known: {sorted(DEEPENCODER_MODES)}")
        side, view, tile = DEEPENCODER_MODES[mode]
        min_tiles, max_tiles = min_tiles or self.min_tiles, max_tiles or self.max_tiles
        globals_, locals_, grids = [], [], []
        for image in images:  # one at a time: every image has its own tile grid
            image = image[None]  # (1, C, H, W)
            height, width = image.shape[-2:]
            deepencoder_layout(height, width, mode, min_tiles=min_tiles, max_tiles=max_tiles)  # refuses bad sizes
            globals_.append(self._global_view(image, side, view, resample))
            if tile and max(height, width) > tile:
                tiles, grid = self._tiles(image[0], tile, resample, min_tiles, max_tiles)
                locals_.append(tiles)
                grids.append(grid)
            else:
                grids.append((0, 0))
        normalize = lambda x: self.rescale_and_normalize(x, do_rescale, rescale_factor, do_normalize,  # noqa: E731
                                                         image_mean, image_std)
        data = {"pixel_values": normalize(torch.cat(globals_)), "image_tiles": torch.tensor(grids, dtype=torch.long)}
        if locals_:
            data["pixel_values_local"] = normalize(torch.cat(locals_))
        return BatchFeature(data=data, tensor_type=return_tensors)


__all__ = ["DeepEncoderImageProcessor"]
