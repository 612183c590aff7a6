"""Image processor of the fixed-patch ViT paradigm: CLIP, SigLIP and LLaVA-1.5 preprocessing.

One pipeline, three published settings (see `ViTImageProcessor.from_style`):
  pad to a square with the mean colour (LLaVA-1.5) -> resize (CLIP: shorter side; SigLIP: squash)
  -> center crop (CLIP) -> rescale to [0, 1] -> normalise.
Pixels equal transformers' `CLIPImageProcessor`, `SiglipImageProcessor` and `LlavaImageProcessor` with
the same settings; the sizes come from `geometry.vit_processed_size`, the token count from
`geometry.vit_num_image_tokens`.
"""

import torch
from torchvision.transforms.v2 import functional as tvF
from transformers.image_processing_utils import BatchFeature
from transformers.image_transforms import group_images_by_shape, reorder_images
from transformers.image_utils import (
    IMAGENET_STANDARD_MEAN,
    IMAGENET_STANDARD_STD,
    OPENAI_CLIP_MEAN,
    OPENAI_CLIP_STD,
    PILImageResampling,
    SizeDict,
)
from transformers.processing_utils import ImagesKwargs

from .geometry import (
    aligned_crop_window,
    pad_to_square_padding,
    shortest_edge_size,
    vit_num_image_tokens,
    vit_processed_size,
)
from .image_processing_base import CheckedTorchvisionBackend

# Above this many pixels, the intermediate image of a shortest-edge resize is not materialised:
# only the span the center crop needs is resized (exactly; see `geometry.aligned_crop_window`).
MAX_INTERMEDIATE_PIXELS = 4096 * 4096


class ViTImageProcessorKwargs(ImagesKwargs, total=False):
    patch_size: int
    include_class_token: bool


class ViTImageProcessor(CheckedTorchvisionBackend):
    r"""CLIP / SigLIP / LLaVA-1.5 preprocessing for `ViTVisionModel`.

    Args (beyond transformers' usual `size`, `crop_size`, `do_center_crop`, `image_mean`, ...):
        do_pad: pad to a square with the mean colour before resizing (LLaVA-1.5's `expand2square`).
        patch_size: the model's patch size, for `get_number_of_image_tokens`.
        include_class_token: whether the model's `image_embeds` keep the CLS token (`feature_select="all"`).
    """

    resample = PILImageResampling.BICUBIC
    image_mean = OPENAI_CLIP_MEAN
    image_std = OPENAI_CLIP_STD
    size = {"shortest_edge": 224}
    crop_size = {"height": 224, "width": 224}
    default_to_square = False
    do_resize = True
    do_center_crop = True
    do_pad = False
    do_rescale = True
    do_normalize = True
    do_convert_rgb = True
    patch_size = 16
    include_class_token = False
    valid_kwargs = ViTImageProcessorKwargs
    model_input_names = ["pixel_values"]

    @classmethod
    def from_style(cls, style: str, image_size: int = 224, patch_size: int = 16, **overrides) -> "ViTImageProcessor":
        """The published preprocessing of `"clip"`, `"siglip"` or `"llava"` (CLIP's, after padding to a square)."""
        square = {"height": image_size, "width": image_size}
        styles = {
            "clip": dict(size={"shortest_edge": image_size}, crop_size=square, do_center_crop=True, do_pad=False,
                         image_mean=OPENAI_CLIP_MEAN, image_std=OPENAI_CLIP_STD),
            "siglip": dict(size=square, do_center_crop=False, do_pad=False,
                           image_mean=IMAGENET_STANDARD_MEAN, image_std=IMAGENET_STANDARD_STD),
            "llava": dict(size={"shortest_edge": image_size}, crop_size=square, do_center_crop=True, do_pad=True,
                          image_mean=OPENAI_CLIP_MEAN, image_std=OPENAI_CLIP_STD),
        }
        if style not in styles:
            raise ValueError(f"unknown preprocessing style {style!r}; known: {sorted(styles)}")
        return cls(**{**styles[style], "patch_size": patch_size, **overrides})

    def get_number_of_image_tokens(self, height: int, width: int, **overrides) -> int:
        """Tokens the model hands to the LLM for a `height` x `width` image, without running anything."""
        settings = self._size_settings(overrides)
        return vit_num_image_tokens(height, width, patch_size=overrides.get("patch_size", self.patch_size),
                                    include_class_token=overrides.get("include_class_token", self.include_class_token),
                                    **settings)

    def get_processed_size(self, height: int, width: int, **overrides) -> tuple[int, int]:
        """(height, width) of the image the model receives for a `height` x `width` input."""
        return vit_processed_size(height, width, **self._size_settings(overrides))

    def _size_settings(self, overrides: dict) -> dict:
        settings = {name: overrides.get(name, getattr(self, name))
                    for name in ("size", "crop_size", "do_resize", "do_center_crop", "do_pad")}
        for name in ("size", "crop_size"):
            settings[name] = dict(settings[name]) if settings[name] is not None else None
        return settings

    def pad_to_square(self, images: torch.Tensor, image_mean) -> torch.Tensor:
        """Center (B, C, H, W) images on a square of the longer side, filled with the mean colour (as uint8)."""
        left, top, right, bottom = pad_to_square_padding(*images.shape[-2:])
        if not (left or top or right or bottom):
            return images
        fill = [int(m * 255) for m in image_mean]  # LLaVA's expand2square: tuple(int(x * 255) for x in mean)
        return tvF.pad(images, padding=[left, top, right, bottom], fill=fill)

    def resize_and_center_crop(self, images: torch.Tensor, size: SizeDict, crop_size: SizeDict, resample):
        """Shortest-edge resize then center crop, resizing only the cropped span when the resize is huge."""
        height, width = images.shape[-2:]
        new_h, new_w = shortest_edge_size(height, width, size.shortest_edge)
        small = new_h * new_w <= MAX_INTERMEDIATE_PIXELS
        if small or new_h < crop_size.height or new_w < crop_size.width:
            return self.center_crop(self.resize(images, size=size, resample=resample), crop_size)
        top, left = int((new_h - crop_size.height) / 2.0), int((new_w - crop_size.width) / 2.0)
        window_h = aligned_crop_window(height, new_h, crop_size.height)
        if window_h is not None:  # resize rows a:b of the input to the rows the crop needs, exactly
            a, b, new_h, top = window_h
            images = images[..., a:b, :]
        window_w = aligned_crop_window(width, new_w, crop_size.width)
        if window_w is not None:
            a, b, new_w, left = window_w
            images = images[..., a:b]
        images = self.resize(images, size=SizeDict(height=new_h, width=new_w), resample=resample)
        return tvF.crop(images, top, left, crop_size.height, crop_size.width)

    def _preprocess(
        self,
        images: list[torch.Tensor],
        do_resize: bool,
        size: SizeDict,
        resample,
        do_center_crop: bool,
        crop_size: SizeDict,
        do_rescale: bool,
        rescale_factor: float,
        do_normalize: bool,
        image_mean,
        image_std,
        do_pad: bool | None = None,
        disable_grouping: bool | None = None,
        return_tensors=None,
        **kwargs,
    ) -> BatchFeature:
        if do_pad:
            images = [self.pad_to_square(image, image_mean) for image in images]
        grouped, index = group_images_by_shape(images, disable_grouping=disable_grouping)
        processed = {}
        for shape, stacked in grouped.items():  # (n, C, H, W) images of one size at a time
            if do_resize and do_center_crop and size.shortest_edge:
                stacked = self.resize_and_center_crop(stacked, size, crop_size, resample)
            else:
                if do_resize:
                    stacked = self.resize(stacked, size=size, resample=resample)
                if do_center_crop:
                    stacked = self.center_crop(stacked, crop_size)
            processed[shape] = self.rescale_and_normalize(
                stacked, do_rescale, rescale_factor, do_normalize, image_mean, image_std
            )
        return BatchFeature(data={"pixel_values": reorder_images(processed, index)}, tensor_type=return_tensors)



__all__ = ["ViTImageProcessor"]
