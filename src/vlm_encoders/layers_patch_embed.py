"""Patch embedding and the patchify/unpatchify pair it is equivalent to."""

import torch
from torch import nn


class PatchEmbed(nn.Module):
    """Non-overlapping P x P patches -> D-dim tokens, as a stride-P convolution.

    A remainder that does not fill a whole patch is dropped (the convolution's 'valid' padding), which
    is what CLIP and SigLIP do; `geometry.patch_grid` states the same rule.
    """

    def __init__(self, in_channels: int, dim: int, patch_size: int, bias: bool = True):
        super().__init__()
        self.patch_size = patch_size
        self.proj = nn.Conv2d(in_channels, dim, kernel_size=patch_size, stride=patch_size, bias=bias)

    def forward(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        x = self.proj(pixel_values.to(self.proj.weight.dtype))  # (B, D, h, w)
        grid = (x.shape[-2], x.shape[-1])
        return x.flatten(2).transpose(1, 2), grid  # (B, h*w, D), (h, w)


def check_pixel_values(pixel_values, num_channels: int) -> None:
    """Raise a clear error unless `pixel_values` is a floating (B, C, H, W) tensor with `num_channels` channels."""
    if not isinstance(pixel_values, torch.Tensor):
        raise TypeError(f"pixel_values must be a torch.Tensor, got {type(pixel_values).__name__}")
    if pixel_values.ndim != 4 or pixel_values.shape[1] != num_channels:
        raise ValueError(f"pixel_values must be (batch, {num_channels}, height, width), got {tuple(pixel_values.shape)}")
    if not pixel_values.is_floating_point():
        raise TypeError(f"pixel_values must be a floating-point tensor, got {pixel_values.dtype}; "
                        "run the image processor first")


def patchify(images: torch.Tensor, patch_size: int) -> torch.Tensor:
    """(B, C, H, W) -> (B, h*w, C*P*P), row-major patches, each flattened as (C, P, P) like a conv kernel."""
    B, C, H, W = images.shape
    h, w = H // patch_size, W // patch_size
    x = images[:, :, : h * patch_size, : w * patch_size].reshape(B, C, h, patch_size, w, patch_size)
    return x.permute(0, 2, 4, 1, 3, 5).reshape(B, h * w, C * patch_size * patch_size)


def unpatchify(patches: torch.Tensor, grid: tuple[int, int], patch_size: int, channels: int) -> torch.Tensor:
    """Inverse of `patchify`: (B, h*w, C*P*P) -> (B, C, h*P, w*P)."""
    B = patches.shape[0]
    h, w = grid
    x = patches.reshape(B, h, w, channels, patch_size, patch_size).permute(0, 3, 1, 4, 2, 5)
    return x.reshape(B, channels, h * patch_size, w * patch_size)


__all__ = ["PatchEmbed", "check_pixel_values", "patchify", "unpatchify"]
