"""Feed-forward blocks with explicit sizes."""

import torch
from torch import nn
from transformers.activations import ACT2FN


class QuickGELU(nn.Module):
    """CLIP's x * sigmoid(1.702 x), with the same arithmetic as transformers' (so results are bitwise equal).

    Without autograd it works in place on the fc1 output it is given, a cache-sized slice at a time:
    no fresh (N x 4D) buffer at all, where a fresh one per call costs more in page faults on CPU than
    the arithmetic itself.
    """

    chunk = 64 * 1024  # elements per slice: 256 KiB of fp32, stays in L2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.is_grad_enabled() and x.requires_grad:
            return x * torch.sigmoid(1.702 * x)
        if x.device.type != "cpu" or not x.is_contiguous():  # on a GPU, one kernel beats a loop of launches
            return x.mul_(torch.sigmoid_(1.702 * x))
        for part in x.view(-1).split(self.chunk):
            part.mul_(torch.sigmoid_(1.702 * part))
        return x


class GELU(nn.Module):
    """Exact (erf) GELU; without autograd it overwrites its input, so no second (N x 4D) buffer is made."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.is_grad_enabled() and x.requires_grad:
            return nn.functional.gelu(x)
        return torch.ops.aten.gelu_(x)


def get_activation(name: str) -> nn.Module:
    """The activation module for `hidden_act=name` (quick_gelu, gelu_pytorch_tanh, ... as in transformers)."""
    if name == "quick_gelu":
        return QuickGELU()
    if name == "gelu":
        return GELU()
    if name not in ACT2FN:
        raise ValueError(f"unknown activation {name!r}; known: {sorted(ACT2FN)}")
    return ACT2FN[name]


class Mlp(nn.Module):
    """Linear -> activation -> Linear, the ViT/CLIP/SigLIP feed-forward block."""

    def __init__(self, dim: int, hidden_dim: int, act: str = "gelu", out_dim: int | None = None, bias: bool = True):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden_dim, bias=bias)
        self.act = get_activation(act)
        self.fc2 = nn.Linear(hidden_dim, out_dim or dim, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class SwiGLU(nn.Module):
    """Gated feed-forward: down(act(gate(x)) * up(x)) (Shazeer 2020), gate and up fused into one GEMM."""

    def __init__(self, dim: int, hidden_dim: int, act: str = "silu", bias: bool = True):
        super().__init__()
        self.gate_up_proj = nn.Linear(dim, 2 * hidden_dim, bias=bias)  # [gate | up] on the output axis
        self.act = get_activation(act)
        self.down_proj = nn.Linear(hidden_dim, dim, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, up = self.gate_up_proj(x).chunk(2, dim=-1)  # views of one (N, 2I) buffer
        if torch.is_grad_enabled() and x.requires_grad:
            return self.down_proj(self.act(gate) * up)
        return self.down_proj(self.act(gate).mul_(up))  # no grad: no third (N, I) buffer


__all__ = ["GELU", "Mlp", "QuickGELU", "SwiGLU", "get_activation"]
