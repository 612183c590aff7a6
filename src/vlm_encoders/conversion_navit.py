"""Convert transformers' Qwen2-VL and Qwen2.5-VL vision towers (and checkpoints of them) onto `NaViTVisionModel`.

Works on a live model (the vision tower alone, `Qwen2VLModel`, `Qwen2VLForConditionalGeneration` and the
Qwen2.5-VL equivalents), on a state dict, or on a local checkpoint folder (any wrapper prefix, e.g. the
released checkpoints' `visual.`). Every source key is accounted for, every shape asserted.
Not part of exported checkpoints.
"""

import json
import os

import torch
from transformers import PreTrainedConfig

from .configuration_navit import NAVIT_STYLES, NaViTVisionConfig
from .conversion_utils import TowerWeights, beyond_depth, load_checked, read_source
from .image_processing_navit import NaViTImageProcessor
from .modeling_navit import NaViTVisionModel

_STYLES = {"qwen2_vl_vision": "qwen2-vl", "qwen2_vl": "qwen2-vl", "qwen2_5_vl_vision": "qwen2.5-vl",
           "qwen2_5_vl": "qwen2.5-vl"}
_ANCHOR = "patch_embed.proj.weight"  # the vision tower's, once per checkpoint


def navit_config_from_hf(hf_config: PreTrainedConfig, **overrides) -> NaViTVisionConfig:
    """Our config for a transformers Qwen2-VL / Qwen2.5-VL config (the composite or the vision one)."""
    vision = getattr(hf_config, "vision_config", None) or hf_config
    style = _STYLES.get(vision.model_type)
    if style is None:
        raise ValueError(f"cannot convert a {vision.model_type!r} config; expected one of {sorted(_STYLES)}")
    rope = getattr(vision, "rope_parameters", None) or {}
    fields = dict(
        num_hidden_layers=vision.depth, num_attention_heads=vision.num_heads, num_channels=vision.in_channels,
        patch_size=vision.patch_size, temporal_patch_size=vision.temporal_patch_size,
        spatial_merge_size=vision.spatial_merge_size, hidden_act=vision.hidden_act,
        rope_theta=rope.get("rope_theta", 10_000.0),
    )
    if style == "qwen2-vl":  # its `hidden_size` is the LLM width the merger projects to
        fields.update(hidden_size=vision.embed_dim, intermediate_size=int(vision.embed_dim * vision.mlp_ratio),
                      out_hidden_size=vision.hidden_size)
    else:
        fields.update(hidden_size=vision.hidden_size, intermediate_size=vision.intermediate_size,
                      out_hidden_size=vision.out_hidden_size, window_size=vision.window_size,
                      fullatt_block_indexes=list(vision.fullatt_block_indexes))
    return NaViTVisionConfig(**{**NAVIT_STYLES[style], **fields, **overrides})


def convert_navit_state_dict(state_dict: dict[str, torch.Tensor], config: NaViTVisionConfig) -> dict[str, torch.Tensor]:
    """Map a Qwen2-VL / Qwen2.5-VL vision state dict (any wrapper prefix) onto `NaViTVisionModel`'s keys."""
    tower = TowerWeights(state_dict, _ANCHOR)
    take, out = tower.take, {}

    norm_params = ("weight", "bias") if config.norm == "layernorm" else ("weight",)
    out["patch_embed.proj.weight"] = take("patch_embed.proj.weight").flatten(1)  # Conv3d kernel -> (D, C*T*P*P)
    for i in range(config.num_hidden_layers):
        b = f"blocks.{i}."
        for norm in ("norm1", "norm2"):
            for p in norm_params:
                out[b + f"{norm}.{p}"] = take(b + f"{norm}.{p}")
        for p in ("weight", "bias"):
            out[b + f"attn.qkv.{p}"] = take(b + f"attn.qkv.{p}")
            out[b + f"attn.proj.{p}"] = take(b + f"attn.proj.{p}")
            if config.mlp == "swiglu":
                out[b + f"mlp.gate_up_proj.{p}"] = torch.cat([take(b + f"mlp.gate_proj.{p}"), take(b + f"mlp.up_proj.{p}")])
                out[b + f"mlp.down_proj.{p}"] = take(b + f"mlp.down_proj.{p}")
            else:
                out[b + f"mlp.fc1.{p}"] = take(b + f"mlp.fc1.{p}")
                out[b + f"mlp.fc2.{p}"] = take(b + f"mlp.fc2.{p}")
    for p in norm_params:
        out[f"merger.norm.{p}"] = take(f"merger.ln_q.{p}")
    for p in ("weight", "bias"):
        out[f"merger.fc1.{p}"] = take(f"merger.mlp.0.{p}")
        out[f"merger.fc2.{p}"] = take(f"merger.mlp.2.{p}")
    tower.check_all_taken(skip=lambda k: beyond_depth(k, "blocks", config.num_hidden_layers)
                          or k.startswith(_NOT_VISION))
    return out


def convert_qwen2_vl(source, **overrides) -> NaViTVisionModel:
    """Our NaViT from a transformers Qwen2-VL or Qwen2.5-VL model (live) or a local checkpoint folder.

    `overrides` change our config (e.g. `num_hidden_layers=4` keeps the first four blocks).
    """
    hf_config, state_dict = read_source(source)
    config = navit_config_from_hf(hf_config, **overrides)
    return load_checked(NaViTVisionModel(config), convert_navit_state_dict(state_dict, config))


def navit_processor_from_hf(folder: str) -> NaViTImageProcessor:
    """Our image processor with the settings of a Qwen2-VL checkpoint's `preprocessor_config.json`."""
    with open(os.path.join(folder, "preprocessor_config.json")) as f:
        settings = json.load(f)
    keep = ("do_resize", "resample", "do_rescale", "rescale_factor", "do_normalize", "image_mean", "image_std",
            "do_convert_rgb", "min_pixels", "max_pixels", "patch_size", "temporal_patch_size", "merge_size")
    kwargs = {k: v for k, v in settings.items() if k in keep}
    size = settings.get("size") or {}  # transformers stores the pixel budget as size's shortest/longest edge
    kwargs.setdefault("min_pixels", size.get("shortest_edge", size.get("min_pixels", NaViTImageProcessor.min_pixels)))
    kwargs.setdefault("max_pixels", size.get("longest_edge", size.get("max_pixels", NaViTImageProcessor.max_pixels)))
    return NaViTImageProcessor(**kwargs)


# keys that sit under the tower's prefix in some layouts but are not vision weights (buffers of the rotary)
_NOT_VISION = ("rotary_pos_emb.",)



__all__ = ["convert_navit_state_dict", "convert_qwen2_vl", "navit_config_from_hf", "navit_processor_from_hf"]
