"""Feed-forward blocks with explicit sizes."""

import torch
from torch import nn
from transformers.activations import ACT2FN


def get_activation(name: str) -> nn.Module:
    """The activation module transformers uses for `hidden_act=name` (quick_gelu, gelu_pytorch_tanh, ...)."""
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


__all__ = ["Mlp", "get_activation"]
