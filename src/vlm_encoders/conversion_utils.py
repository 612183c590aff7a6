"""What every conversion from a transformers model or checkpoint shares: reading weights, loading them strictly.

Not part of exported checkpoints.
"""

import json
import os
import re

import torch
from torch import nn


def read_state_dict(folder: str) -> dict[str, torch.Tensor]:
    """All weights of a local checkpoint folder (sharded or not, safetensors or a legacy .bin)."""
    from safetensors.torch import load_file

    index = os.path.join(folder, "model.safetensors.index.json")
    if os.path.exists(index):
        with open(index) as f:
            shards = sorted(set(json.load(f)["weight_map"].values()))
        return {k: v for shard in shards for k, v in load_file(os.path.join(folder, shard)).items()}
    if os.path.exists(os.path.join(folder, "model.safetensors")):
        return load_file(os.path.join(folder, "model.safetensors"))
    if os.path.exists(os.path.join(folder, "pytorch_model.bin")):
        return torch.load(os.path.join(folder, "pytorch_model.bin"), map_location="cpu", weights_only=True)
    raise FileNotFoundError(f"no model.safetensors(.index.json) or pytorch_model.bin in {folder}")


def read_source(source) -> tuple:
    """(transformers config, state dict) of a live transformers model or a local checkpoint folder."""
    if isinstance(source, (str, os.PathLike)):
        from transformers import AutoConfig

        return AutoConfig.from_pretrained(source), read_state_dict(str(source))
    return source.config, source.state_dict()


def beyond_depth(key: str, layers_prefix: str, depth: int) -> bool:
    """Whether `key` belongs to a layer past `depth` (e.g. `blocks.31.` with depth 4): converting to a truncated
    tower drops those on purpose. `layers_prefix` is the layer list's name, e.g. "blocks" or "encoder.layers"."""
    m = re.match(rf"{re.escape(layers_prefix)}\.(\d+)\.", key)
    return m is not None and int(m.group(1)) >= depth


def unique_prefix(state_dict: dict, anchor: str) -> str:
    """The wrapper prefix of the one tower whose `anchor` key appears in the state dict ("" if unwrapped)."""
    prefixes = {k[: -len(anchor)] for k in state_dict if k.endswith(anchor)}
    if len(prefixes) != 1:
        raise ValueError(f"expected one vision tower (a key ending in {anchor!r}), found {len(prefixes)}")
    return prefixes.pop()


class TowerWeights:
    """The weights of one tower inside a checkpoint (found by its `anchor` key, any wrapper prefix).

    `take(name)` hands out a weight by its name inside the tower and remembers it; `untaken()` lists what
    a conversion left behind, so that no weight is silently dropped.
    """

    def __init__(self, state_dict: dict[str, torch.Tensor], anchor: str):
        self.prefix = unique_prefix(state_dict, anchor)
        self.weights = {k[len(self.prefix):]: v for k, v in state_dict.items() if k.startswith(self.prefix)}
        self.taken: set[str] = set()

    def take(self, name: str) -> torch.Tensor:
        if name not in self.weights:
            raise ValueError(f"the checkpoint has no weight {self.prefix + name!r}")
        self.taken.add(name)
        return self.weights[name]

    def check_all_taken(self, skip) -> None:
        """Raise if a weight was neither converted nor meant to be skipped (`skip(name) -> bool`)."""
        left = sorted(k for k in self.weights if k not in self.taken and not skip(k))
        if left:
            raise ValueError(f"{len(left)} vision weights were not converted, e.g. {left[:5]}")


def load_checked(model: nn.Module, converted: dict[str, torch.Tensor]) -> nn.Module:
    """Load converted weights into `model`, requiring every key and every shape to match."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(converted))
    if missing:
        raise ValueError(f"the checkpoint lacks {len(missing)} weights of the model, e.g. {missing[:5]}")
    for name, tensor in converted.items():
        if name not in expected:
            raise ValueError(f"converted weight {name!r} has no place in {type(model).__name__}")
        if tensor.shape != expected[name].shape:
            raise ValueError(f"{name}: checkpoint shape {tuple(tensor.shape)} != model shape {tuple(expected[name].shape)}")
    model.load_state_dict(converted, strict=True)
    return model.eval()


__all__ = ["TowerWeights", "beyond_depth", "load_checked", "read_source", "read_state_dict", "unique_prefix"]
