"""Position embeddings: a learned absolute table resampled to any grid, 2D sin-cos, and 2D RoPE."""

import torch
import torch.nn.functional as F
from torch import nn


def resample_abs_pos_embed(
    pos_embed: torch.Tensor,
    new_grid: tuple[int, int],
    old_grid: tuple[int, int],
    num_prefix_tokens: int = 0,
    mode: str = "bicubic",
    antialias: bool = False,
) -> torch.Tensor:
    """Resample a learned (prefix + h*w, D) table to another patch grid.

    Prefix tokens (CLS) keep their embedding; the grid part is interpolated as an image, with
    `align_corners=False`. Without antialiasing this is CLIP's and SigLIP's `interpolate_pos_encoding`;
    DeepSeek-OCR resamples its SAM and CLIP tables with antialiasing (it matters when shrinking, e.g. 64 -> 40).
    """
    if tuple(new_grid) == tuple(old_grid):
        return pos_embed
    prefix, grid = pos_embed[:num_prefix_tokens], pos_embed[num_prefix_tokens:]
    dim = grid.shape[-1]
    if grid.shape[0] != old_grid[0] * old_grid[1]:
        raise ValueError(f"position table has {grid.shape[0]} grid entries, not {old_grid[0]}x{old_grid[1]}")
    grid = grid.reshape(1, old_grid[0], old_grid[1], dim).permute(0, 3, 1, 2)  # (1, D, h, w)
    grid = F.interpolate(grid.float(), size=tuple(new_grid), mode=mode, align_corners=False,
                         antialias=antialias).to(pos_embed.dtype)
    grid = grid.permute(0, 2, 3, 1).reshape(-1, dim)  # (h' * w', D)
    return torch.cat([prefix, grid], dim=0)


def sincos_2d_pos_embed(
    dim: int, grid: tuple[int, int], temperature: float = 10_000.0, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """Fixed 2D sin-cos table (h*w, dim) in big_vision's layout: [sin(x), cos(x), sin(y), cos(y)]."""
    if dim % 4:
        raise ValueError(f"2D sin-cos position embeddings need a width divisible by 4, got {dim}")
    h, w = grid
    y, x = torch.meshgrid(torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64), indexing="ij")
    omega = torch.arange(dim // 4, dtype=torch.float64) / max(dim // 4 - 1, 1)
    omega = 1.0 / temperature**omega
    y = y.flatten()[:, None] * omega[None]
    x = x.flatten()[:, None] * omega[None]
    return torch.cat([x.sin(), x.cos(), y.sin(), y.cos()], dim=1).to(dtype)


def grid_positions(grid: tuple[int, int], device: torch.device | None = None) -> torch.Tensor:
    """(h*w, 2) integer (row, col) of each patch, row-major."""
    h, w = grid
    rows = torch.arange(h, device=device).repeat_interleave(w)
    cols = torch.arange(w, device=device).repeat(h)
    return torch.stack([rows, cols], dim=-1)


class Rope2D(nn.Module):
    """Axial 2D rotary embedding: half of each head's rotary pairs turn with the row, half with the column.

    The layout is Qwen2-VL's (`VisionRotaryEmbedding` + `apply_rotary_pos_emb_vision`): per position,
    `cat(row_freqs, col_freqs)` is repeated twice along the head dimension and used with `rotate_half`.
    Frequencies are computed in forward, in fp32, instead of living in a buffer: a buffer would be cast
    by `model.to(torch.bfloat16)` (and is garbage after a meta-device `from_pretrained`), while angles
    of large positions need fp32.
    """

    def __init__(self, head_dim: int, theta: float = 10_000.0):
        super().__init__()
        if head_dim % 4:
            raise ValueError(f"2D RoPE needs a head dimension divisible by 4, got {head_dim}")
        self.head_dim, self.theta = head_dim, theta

    def inv_freq(self, device: torch.device | None = None) -> torch.Tensor:
        quarter = self.head_dim // 2  # rotary pairs per axis * 2, as Qwen2-VL's dim = head_dim // 2
        return 1.0 / (self.theta ** (torch.arange(0, quarter, 2, dtype=torch.float32, device=device) / quarter))

    def forward(self, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """positions: (T, 2) integer (row, col) -> cos, sin: (T, head_dim) in fp32."""
        inv_freq = self.inv_freq(positions.device)  # (head_dim / 4,)
        angles = positions.float()[..., None] * inv_freq  # (T, 2, head_dim / 4)
        angles = angles.flatten(-2)  # (T, head_dim / 2): row angles, then column angles
        emb = torch.cat([angles, angles], dim=-1)  # (T, head_dim)
        return emb.cos(), emb.sin()


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat([-x2, x1], dim=-1)


def rope_rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x * cos + rotate_half(x) * sin for x: (..., N, Dh), cos, sin: (N, Dh); fp32 math, x's dtype out.

    Without autograd the two halves are written straight into one output buffer
    ([x1 c1 - x2 s1, x2 c2 + x1 s2], the same products) instead of materialising rotate_half's
    negation, concatenation and three more full-size temporaries: ~2 passes over x instead of ~6.
    """
    dtype = x.dtype
    if torch.is_grad_enabled() and x.requires_grad:
        x = x.float()
        return (x * cos + rotate_half(x) * sin).to(dtype)
    half = x.shape[-1] // 2
    x1, x2 = x[..., :half], x[..., half:]
    out = torch.empty(x.shape, dtype=torch.float32, device=x.device)
    o1, o2 = out[..., :half], out[..., half:]
    torch.mul(x1, cos[..., :half], out=o1).addcmul_(x2, sin[..., :half], value=-1)
    torch.mul(x2, cos[..., half:], out=o2).addcmul_(x1, sin[..., half:])
    return out.to(dtype)


def apply_rope(
    q: torch.Tensor, k: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Rotate q, k: (..., N, Dh) by cos, sin: (N, Dh). Computed in fp32, returned in the input dtype."""
    return rope_rotate(q, cos, sin), rope_rotate(k, cos, sin)


__all__ = ["Rope2D", "apply_rope", "rope_rotate", "grid_positions", "resample_abs_pos_embed", "rotate_half", "sincos_2d_pos_embed"]
