"""What every image processor of the package shares: checking raw images before transformers converts them.

transformers' conversion accepts things that make no sense as images (empty arrays, NaNs, int64 or
boolean tensors) and fails later with an unrelated message, or not at all. Each processor here
subclasses `CheckedTorchvisionBackend`, so a bad image is rejected up front, with its problem named.
"""

import numpy as np
import torch
from transformers import TorchvisionBackend

_FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def check_raw_image(image) -> None:
    """Reject what no conversion can make sense of, naming the problem."""
    if isinstance(image, np.ndarray):
        if image.dtype != np.uint8 and not np.issubdtype(image.dtype, np.floating):
            raise TypeError(f"numpy images must be uint8 or floating point, got {image.dtype}; "
                            "scale 16-bit data to uint8 (or to floats with do_rescale=False) first")
        if image.size == 0:
            raise ValueError(f"image of shape {image.shape} has no pixels")
        if np.issubdtype(image.dtype, np.floating) and not np.isfinite(image).all():
            raise ValueError("image contains NaN or infinite values")
    elif isinstance(image, torch.Tensor):
        if image.dtype != torch.uint8 and image.dtype not in _FLOAT_DTYPES:
            raise TypeError(f"tensor images must be uint8 or floating point, got {image.dtype}")
        if image.numel() == 0:
            raise ValueError(f"image of shape {tuple(image.shape)} has no pixels")
        if image.is_floating_point() and not torch.isfinite(image).all():
            raise ValueError("image contains NaN or infinite values")
    elif hasattr(image, "size") and hasattr(image, "mode"):  # PIL
        if image.size[0] == 0 or image.size[1] == 0:
            raise ValueError(f"image of size {image.size[0]}x{image.size[1]} (width x height) has no pixels")


class CheckedTorchvisionBackend(TorchvisionBackend):
    """transformers' torchvision image processor, with raw images checked before conversion."""

    def process_image(self, image, *args, **kwargs) -> torch.Tensor:
        """Validate one raw image, then convert it as transformers does (RGB, channels first)."""
        check_raw_image(image)
        image = super().process_image(image, *args, **kwargs)
        if image.ndim != 3 or image.shape[0] != 3:
            raise ValueError(f"expected an RGB image after conversion, got a tensor of shape {tuple(image.shape)}; "
                             "images need 1 (grayscale), 3 (RGB) or 4 (RGBA) channels")
        return image


__all__ = ["CheckedTorchvisionBackend", "check_raw_image"]
