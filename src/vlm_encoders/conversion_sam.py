"""Convert transformers' SAM vision encoder (SamModel, SamVisionModel, or a checkpoint of them) onto `SAMVisionModel`.

Not part of exported checkpoints.
"""

import torch
from transformers import PreTrainedConfig

from .configuration_sam import SAMVisionConfig
from .conversion_utils import TowerWeights, beyond_depth, load_checked, read_source
from .modeling_sam import SAMVisionModel

_ANCHOR = "patch_embed.projection.weight"
# SAM itself, and DeepSeek-OCR's SAM stage as transformers ships it (Unlimited-OCR: the same blocks and neck,
# followed by the 16x compressor, which is not part of this encoder)
_SAM_MODEL_TYPES = ("sam", "sam_vision_model", "unlimited_ocr_sam_vision_model")


def sam_config_from_hf(hf_config: PreTrainedConfig, **overrides) -> SAMVisionConfig:
    """Our config for a transformers SAM config (the composite `SamConfig` or `SamVisionConfig`)."""
    vision = getattr(hf_config, "vision_config", None) or hf_config
    if vision.model_type not in _SAM_MODEL_TYPES:
        raise ValueError(f"cannot convert a {vision.model_type!r} config; expected one of {sorted(_SAM_MODEL_TYPES)}")
    fields = dict(
        hidden_size=vision.hidden_size, intermediate_size=vision.mlp_dim or int(vision.hidden_size * vision.mlp_ratio),
        num_hidden_layers=vision.num_hidden_layers, num_attention_heads=vision.num_attention_heads,
        output_channels=vision.output_channels, num_channels=vision.num_channels, image_size=vision.image_size,
        patch_size=vision.patch_size, hidden_act=vision.hidden_act, layer_norm_eps=float(vision.layer_norm_eps),
        qkv_bias=vision.qkv_bias, use_abs_pos=vision.use_abs_pos, use_rel_pos=vision.use_rel_pos,
        window_size=vision.window_size, global_attn_indexes=list(vision.global_attn_indexes),
    )
    return SAMVisionConfig(**{**fields, **overrides})


def convert_sam_state_dict(state_dict: dict[str, torch.Tensor], config: SAMVisionConfig) -> dict[str, torch.Tensor]:
    """Map a transformers SAM vision state dict (any wrapper prefix) onto `SAMVisionModel`'s keys."""
    tower = TowerWeights(state_dict, _ANCHOR)
    take, out = tower.take, {}
    for p in ("weight", "bias"):
        out[f"patch_embed.proj.{p}"] = take(f"patch_embed.projection.{p}")
    if config.use_abs_pos:
        out["pos_embed"] = take("pos_embed").reshape(-1, config.hidden_size)  # (1, g, g, D) -> (g * g, D)
    for i in range(config.num_hidden_layers):
        s, o = f"layers.{i}.", f"blocks.{i}."
        for p in ("weight", "bias"):
            for theirs, ours in (("layer_norm1", "norm1"), ("layer_norm2", "norm2"), ("attn.qkv", "attn.qkv"),
                                 ("attn.proj", "attn.proj"), ("mlp.lin1", "mlp.fc1"), ("mlp.lin2", "mlp.fc2")):
                out[o + f"{ours}.{p}"] = take(s + f"{theirs}.{p}")
        if config.use_rel_pos:
            out[o + "attn.rel_pos_h"] = take(s + "attn.rel_pos_h")
            out[o + "attn.rel_pos_w"] = take(s + "attn.rel_pos_w")
    out["neck.conv1.weight"], out["neck.conv2.weight"] = take("neck.conv1.weight"), take("neck.conv2.weight")
    for p in ("weight", "bias"):
        out[f"neck.norm1.{p}"], out[f"neck.norm2.{p}"] = take(f"neck.layer_norm1.{p}"), take(f"neck.layer_norm2.{p}")
    # proj.*: DeepEncoder's compressor, which sits in its SAM stage
    tower.check_all_taken(skip=lambda k: beyond_depth(k, "layers", config.num_hidden_layers) or k.startswith("proj."))
    return out


def convert_sam(source, **overrides) -> SAMVisionModel:
    """Our SAM encoder from a live transformers `SamModel` / `SamVisionModel` or a local checkpoint folder."""
    hf_config, state_dict = read_source(source)
    config = sam_config_from_hf(hf_config, **overrides)
    return load_checked(SAMVisionModel(config), convert_sam_state_dict(state_dict, config))



__all__ = ["convert_sam", "convert_sam_state_dict", "sam_config_from_hf"]
