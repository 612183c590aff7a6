"""Image processor of SAM's encoder: longest side to 1024, normalise, pad to a 1024 x 1024 square.

  any image -> resize (longer side to image_size, aspect kept, bilinear) -> rescale + normalise (ImageNet)
  -> zero padding on the bottom and right to image_size x image_size -> pixel_values (B, 3, S, S)

Pixels equal transformers' `SamImageProcessor` with the same settings.
"""

import torch
from torchvision.transforms.v2 import functional as tvF
from transformers.image_processing_utils import BatchFeature
from transformers.image_transforms import group_images_by_shape, reorder_images
from transformers.image_utils import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD, PILImageResampling, SizeDict
from transformers.processing_utils import ImagesKwargs

from .geometry import longest_edge_size, sam_num_image_tokens
from .image_processing_base import CheckedTorchvisionBackend


class SAMImageProcessorKwargs(ImagesKwargs, total=False):
    image_size: int
    patch_size: int


class SAMImageProcessor(CheckedTorchvisionBackend):
    r"""SAM preprocessing for `SAMVisionModel`.

    Args:
        image_size: side of the padded square (1024); the longer image side is resized to it.
        patch_size: the model's patch size, for `get_number_of_image_tokens`.
    """

    resample = PILImageResampling.BILINEAR
    image_mean = IMAGENET_DEFAULT_MEAN
    image_std = IMAGENET_DEFAULT_STD
    size = {"longest_edge": 1024}
    do_resize = True
    do_rescale = True
    do_normalize = True
    do_pad = True
    do_convert_rgb = True
    image_size = 1024
    patch_size = 16
    valid_kwargs = SAMImageProcessorKwargs
    model_input_names = ["pixel_values"]

    def __init__(self, **kwargs):
        if "image_size" in kwargs and "size" not in kwargs:
            kwargs["size"] = {"longest_edge": kwargs["image_size"]}
        super().__init__(**kwargs)

    def get_number_of_image_tokens(self, height: int, width: int, **overrides) -> int:
        return sam_num_image_tokens(height, width, image_size=overrides.get("image_size", self.image_size),
                                    patch_size=overrides.get("patch_size", self.patch_size))

    def get_processed_size(self, height: int, width: int, **overrides) -> tuple[int, int]:
        """(height, width) the encoder receives: always the padded square."""
        longest_edge_size(height, width, 1)  # validates the size
        side = overrides.get("image_size", self.image_size)
        return side, side

    def get_resized_size(self, height: int, width: int, **overrides) -> tuple[int, int]:
        """(height, width) of the image inside the padded square."""
        return longest_edge_size(height, width, overrides.get("image_size", self.image_size))

    def _preprocess(self, images: list[torch.Tensor], do_resize: bool, size: SizeDict, resample, do_rescale: bool,
                    rescale_factor: float, do_normalize: bool, image_mean, image_std, do_pad: bool | None = None,
                    image_size: int | None = None, disable_grouping: bool | None = None, return_tensors=None,
                    **kwargs) -> BatchFeature:
        side = image_size or self.image_size
        grouped, index = group_images_by_shape(images, disable_grouping=disable_grouping)
        processed = {}
        for shape, stacked in grouped.items():
            if do_resize:
                target = longest_edge_size(*stacked.shape[-2:], side)
                stacked = self.resize(stacked, size=SizeDict(height=target[0], width=target[1]), resample=resample)
            stacked = self.rescale_and_normalize(stacked, do_rescale, rescale_factor, do_normalize, image_mean,
                                                 image_std)
            if do_pad:
                h, w = stacked.shape[-2:]
                if h > side or w > side:
                    raise ValueError(f"a {h}x{w} image does not fit the {side}x{side} padding; keep do_resize=True")
                stacked = tvF.pad(stacked, [0, 0, side - w, side - h], fill=0)
            processed[shape] = stacked
        return BatchFeature(data={"pixel_values": reorder_images(processed, index)}, tensor_type=return_tensors)


__all__ = ["SAMImageProcessor"]
