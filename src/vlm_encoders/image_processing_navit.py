"""Image processor of the native-resolution paradigm (NaViT; Qwen2-VL and Qwen2.5-VL preprocessing).

  any image -> smart_resize (sides multiples of patch x merge, aspect kept, area in [min_pixels, max_pixels])
  -> rescale + normalise -> patches in merge-block order, each image repeated over `temporal_patch_size`
  frames (a still image is a two-frame video to Qwen2-VL's 3D patch embedding)
  -> pixel_values (total_patches, C * T * P * P) for the whole batch, image_grid_thw (n_images, 3)

Pixels equal transformers' `Qwen2VLImageProcessor` with the same settings, bit for bit. It is faster
because the batch output is allocated once (every target size is known from `smart_resize` before
any pixel work) and each image is written straight into its rows, where transformers builds a
patchified copy per image and then concatenates all of them again.
"""

import torch
from transformers.image_processing_utils import BatchFeature
from transformers.image_transforms import group_images_by_shape
from transformers.image_utils import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD, PILImageResampling, SizeDict
from transformers.processing_utils import ImagesKwargs

from .geometry import navit_num_image_tokens, navit_patch_grid, smart_resize
from .image_processing_base import CheckedTorchvisionBackend


class NaViTImageProcessorKwargs(ImagesKwargs, total=False):
    min_pixels: int
    max_pixels: int
    patch_size: int
    temporal_patch_size: int
    merge_size: int


class NaViTImageProcessor(CheckedTorchvisionBackend):
    r"""Qwen2-VL preprocessing for `NaViTVisionModel`: native resolution, one packed batch.

    Args:
        min_pixels: smallest image area after resizing (default 56 * 56, at least 4 tokens).
        max_pixels: largest image area after resizing (default 28 * 28 * 1280, at most 1280 tokens). Always
            on, so that one huge photo cannot exhaust memory; Qwen2-VL's released configs raise it to
            28 * 28 * 16384.
        patch_size: side of a patch in pixels (14).
        temporal_patch_size: frames per patch (2); a still image is repeated over them.
        merge_size: side of the block of patches merged into one LLM token (2).
    """

    resample = PILImageResampling.BICUBIC
    image_mean = OPENAI_CLIP_MEAN
    image_std = OPENAI_CLIP_STD
    do_resize = True
    do_rescale = True
    do_normalize = True
    do_convert_rgb = True
    min_pixels = 56 * 56
    max_pixels = 28 * 28 * 1280
    patch_size = 14
    temporal_patch_size = 2
    merge_size = 2
    valid_kwargs = NaViTImageProcessorKwargs
    model_input_names = ["pixel_values", "image_grid_thw"]

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        # fail at construction, not on the first image
        smart_resize(self.factor, self.factor, factor=self.factor, min_pixels=self.min_pixels,
                     max_pixels=self.max_pixels)

    @property
    def factor(self) -> int:
        """Resized sides are multiples of this: one merge block of patches."""
        return self.patch_size * self.merge_size

    def get_number_of_image_tokens(self, height: int, width: int, **overrides) -> int:
        """Tokens the model hands to the LLM for a `height` x `width` image, without running anything."""
        return navit_num_image_tokens(height, width, **self._grid_settings(overrides))

    def get_number_of_image_patches(self, height: int, width: int, images_kwargs: dict | None = None) -> int:
        """Patches (rows of pixel_values) for one image; the name and signature vLLM and transformers use."""
        rows, cols = navit_patch_grid(height, width, **self._grid_settings(images_kwargs or {}))
        return rows * cols

    def get_processed_size(self, height: int, width: int, **overrides) -> tuple[int, int]:
        """(height, width) the image is resized to."""
        settings = self._grid_settings(overrides)
        return smart_resize(height, width, factor=settings["patch_size"] * settings["merge_size"],
                            min_pixels=settings["min_pixels"], max_pixels=settings["max_pixels"])

    def _grid_settings(self, overrides: dict) -> dict:
        return {name: overrides.get(name, getattr(self, name))
                for name in ("patch_size", "merge_size", "min_pixels", "max_pixels")}

    def _validate_preprocess_kwargs(self, do_resize=None, resample=None, min_pixels=None, max_pixels=None, **kwargs):
        # the target size comes from min_pixels / max_pixels, not from transformers' `size`
        if do_resize:
            if resample is None:
                raise ValueError("resample must be set when do_resize=True")
            smart_resize(self.factor, self.factor, factor=self.factor, min_pixels=min_pixels, max_pixels=max_pixels)
        super()._validate_preprocess_kwargs(do_resize=False, **kwargs)

    def patchify_into(self, out: torch.Tensor, images: torch.Tensor, mean, std, scale) -> None:
        """Write (B, C, H, W) images as normalised patches into `out` (B, h * w, C * T * P * P).

        Patch order is merge-block major (the m x m patches of one LLM token are consecutive), each
        patch flattened as (C, T, P, P), the layout of Qwen2-VL's Conv3d kernel. The arithmetic is
        transformers' (to float32, subtract the fused mean, divide by the fused std), element by element,
        so the values are the same bits; only the memory traffic differs.
        """
        B, C, H, W = images.shape
        P, m, T = self.patch_size, self.merge_size, self.temporal_patch_size
        rows, cols = H // P, W // P
        pixels = images.to(torch.float32, copy=True)  # normalised in place: contiguous passes are the fast ones
        if mean is not None:
            pixels.sub_(mean.view(C, 1, 1)).div_(std.view(C, 1, 1))
        elif scale is not None:
            pixels.mul_(scale)
        # (B, rows/m, cols/m, m, m, C, P, P): the image in patch order, copied into the first frame's slots
        patches = pixels.view(B, C, rows // m, m, P, cols // m, m, P).permute(0, 2, 5, 3, 6, 1, 4, 7)
        frames = out.view(B, rows // m, cols // m, m, m, C, T, P, P)
        first = frames[..., 0, :, :]
        first.copy_(patches)
        for t in range(1, T):  # a still image: every frame is the same
            frames[..., t, :, :].copy_(first)

    def _preprocess(
        self,
        images: list[torch.Tensor],
        do_resize: bool,
        resample,
        do_rescale: bool,
        rescale_factor: float,
        do_normalize: bool,
        image_mean,
        image_std,
        min_pixels: int,
        max_pixels: int,
        patch_size: int,
        temporal_patch_size: int,
        merge_size: int,
        disable_grouping: bool | None = None,
        return_tensors=None,
        **kwargs,
    ) -> BatchFeature:
        if (patch_size, temporal_patch_size, merge_size) != (self.patch_size, self.temporal_patch_size, self.merge_size):
            raise ValueError("patch_size, temporal_patch_size and merge_size describe the model; set them when "
                             "creating the processor, not per call")
        factor = patch_size * merge_size
        # every image's target size first, so the whole batch output is allocated once
        targets = []
        for image in images:
            height, width = image.shape[-2:]
            if do_resize:
                height, width = smart_resize(height, width, factor=factor, min_pixels=min_pixels,
                                             max_pixels=max_pixels)
            elif height % factor or width % factor:
                raise ValueError(f"with do_resize=False, image sides must be multiples of {factor}, got {height}x{width}")
            targets.append((height, width))
        grid_thw = torch.tensor([[1, h // patch_size, w // patch_size] for h, w in targets], dtype=torch.long)
        counts = (grid_thw[:, 1] * grid_thw[:, 2]).tolist()
        starts = [0]
        for count in counts:
            starts.append(starts[-1] + count)
        dim = images[0].shape[0] * temporal_patch_size * patch_size**2
        pixel_values = torch.empty(starts[-1], dim, dtype=torch.float32, device=images[0].device)

        mean, std, scale = None, None, None
        if do_normalize:  # transformers folds the 1/255 rescale into mean and std; so do we, with its helper
            mean, std, _ = self._fuse_mean_std_and_rescale_factor(
                do_normalize=do_normalize, image_mean=image_mean, image_std=image_std, do_rescale=do_rescale,
                rescale_factor=rescale_factor, device=images[0].device)
            mean, std = (torch.as_tensor(v, dtype=torch.float32, device=images[0].device) for v in (mean, std))
        elif do_rescale:
            scale = rescale_factor

        grouped, index = group_images_by_shape(images, disable_grouping=disable_grouping)
        positions = {}  # shape -> the batch positions of its images, in group order
        for i, (shape, j) in index.items():
            positions.setdefault(shape, {})[j] = i
        for shape, stacked in grouped.items():  # (n, C, H, W) images of one input size at a time
            order = [positions[shape][j] for j in range(len(stacked))]
            height, width = targets[order[0]]
            if do_resize:
                stacked = self.resize(stacked, size=SizeDict(height=height, width=width), resample=resample)
            # images of one input size have one target size; where they sit in the batch output varies
            for k, i in enumerate(order):
                rows = pixel_values[starts[i] : starts[i + 1]]
                self.patchify_into(rows.view(1, counts[i], dim), stacked[k : k + 1], mean, std, scale)
        return BatchFeature(data={"pixel_values": pixel_values, "image_grid_thw": grid_thw},
                            tensor_type=return_tensors)


__all__ = ["NaViTImageProcessor"]
