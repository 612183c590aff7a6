"""Convert transformers' CLIP and SigLIP vision towers (and checkpoints of them) onto `ViTVisionModel`.

An explicit key map, every source key accounted for, every shape asserted (nanoGPT's `from_pretrained`
pattern). Works on a live transformers model, on a state dict, or on a local checkpoint folder
(CLIPModel, CLIPVisionModel, SiglipModel, SiglipVisionModel or a LLaVA checkpoint that contains one).
This file is not part of exported checkpoints: it imports transformers' model classes only for typing.
"""

import json
import os

import torch
from transformers import PreTrainedConfig

from .configuration_vit import VIT_STYLES, ViTVisionConfig
from .conversion_utils import TowerWeights, beyond_depth, load_checked, read_source
from .image_processing_vit import ViTImageProcessor
from .modeling_vit import ViTVisionModel

_VISION_MODEL_TYPES = {"clip": "clip", "clip_vision_model": "clip", "siglip": "siglip", "siglip_vision_model": "siglip"}
_ANCHOR = "embeddings.patch_embedding.weight"  # exists once, in the vision tower, whatever the wrapper


def config_from_hf(hf_config: PreTrainedConfig, **overrides) -> ViTVisionConfig:
    """Our config for a transformers CLIP/SigLIP config (the composite or the vision one)."""
    hf_config = getattr(hf_config, "vision_config", None) or hf_config
    style = _VISION_MODEL_TYPES.get(hf_config.model_type)
    if style is None:
        raise ValueError(f"cannot convert a {hf_config.model_type!r} config; expected one of {sorted(_VISION_MODEL_TYPES)}")
    fields = dict(
        hidden_size=hf_config.hidden_size, intermediate_size=hf_config.intermediate_size,
        num_hidden_layers=hf_config.num_hidden_layers, num_attention_heads=hf_config.num_attention_heads,
        num_channels=hf_config.num_channels, image_size=_as_int(hf_config.image_size, "image_size"),
        patch_size=_as_int(hf_config.patch_size, "patch_size"), hidden_act=hf_config.hidden_act,
        layer_norm_eps=float(hf_config.layer_norm_eps), attention_dropout=hf_config.attention_dropout,
    )
    style_fields = dict(VIT_STYLES[style])
    if style == "siglip" and not getattr(hf_config, "vision_use_head", True):
        style_fields["pooling"] = "none"
    style_fields.pop("hidden_act"), style_fields.pop("layer_norm_eps")  # the checkpoint's own values win
    return ViTVisionConfig(**{**style_fields, **fields, **overrides})


def convert_state_dict(state_dict: dict[str, torch.Tensor], config: ViTVisionConfig) -> dict[str, torch.Tensor]:
    """Map a CLIP/SigLIP vision state dict (any wrapper prefix) onto `ViTVisionModel`'s keys."""
    tower = TowerWeights(state_dict, _ANCHOR if config.has_patch_embed else "embeddings.class_embedding")
    take, out = tower.take, {}

    D = config.hidden_size
    if config.has_patch_embed:
        out["embeddings.patch_embed.proj.weight"] = take("embeddings.patch_embedding.weight")
    if config.has_patch_embed and config.patch_embed_bias:
        out["embeddings.patch_embed.proj.bias"] = take("embeddings.patch_embedding.bias")
    out["embeddings.position_embedding"] = take("embeddings.position_embedding.weight")
    if config.class_token:
        out["embeddings.class_embedding"] = take("embeddings.class_embedding")
    for ours, theirs in (("pre_layernorm", "pre_layrnorm"), ("post_layernorm", "post_layernorm")):
        if f"{theirs}.weight" in tower.weights and (ours == "post_layernorm" or config.pre_layernorm):
            out[f"{ours}.weight"], out[f"{ours}.bias"] = take(f"{theirs}.weight"), take(f"{theirs}.bias")
    for i in range(config.num_hidden_layers):
        s, o = f"encoder.layers.{i}.", f"layers.{i}."
        for p in ("weight", "bias"):
            out[o + f"self_attn.qkv.{p}"] = torch.cat([take(s + f"self_attn.{n}_proj.{p}") for n in "qkv"])
            out[o + f"self_attn.proj.{p}"] = take(s + f"self_attn.out_proj.{p}")
            for n in ("layer_norm1", "layer_norm2", "mlp.fc1", "mlp.fc2"):
                out[o + f"{n}.{p}"] = take(s + f"{n}.{p}")
    if config.pooling == "map":  # torch.nn.MultiheadAttention packs q, k, v in one in_proj
        out["head.probe"] = take("head.probe")
        for p in ("weight", "bias"):
            in_proj = take(f"head.attention.in_proj_{p}")
            out[f"head.q_proj.{p}"], out[f"head.kv_proj.{p}"] = in_proj[:D], in_proj[D:]
            out[f"head.out_proj.{p}"] = take(f"head.attention.out_proj.{p}")
            for n in ("layernorm", "mlp.fc1", "mlp.fc2"):
                out[f"head.{n}.{p}"] = take(f"head.{n}.{p}")
    tower.check_all_taken(skip=lambda k: k.endswith("position_ids")
                          or beyond_depth(k, "encoder.layers", config.num_hidden_layers))
    return out


def load_converted(config: ViTVisionConfig, state_dict: dict[str, torch.Tensor]) -> ViTVisionModel:
    """Build `ViTVisionModel(config)` and load the converted weights, checking every key and shape."""
    return load_checked(ViTVisionModel(config), convert_state_dict(state_dict, config))


def convert_clip(source, **overrides) -> ViTVisionModel:
    """Our ViT from a transformers `CLIPVisionModel`/`CLIPModel` (live) or a local CLIP checkpoint folder.

    `overrides` change our config (e.g. `feature_layer=-1`; LLaVA-1.5's default of -2 is kept otherwise).
    """
    return _convert(source, "clip", overrides)


def convert_siglip(source, **overrides) -> ViTVisionModel:
    """Our ViT from a transformers `SiglipVisionModel`/`SiglipModel` (live) or a local SigLIP checkpoint folder."""
    return _convert(source, "siglip", overrides)


def processor_from_hf(folder: str, patch_size: int) -> ViTImageProcessor:
    """Our image processor with the settings of a checkpoint's `preprocessor_config.json`."""
    with open(os.path.join(folder, "preprocessor_config.json")) as f:
        settings = json.load(f)
    keep = ("do_resize", "size", "resample", "do_center_crop", "crop_size", "do_rescale", "rescale_factor",
            "do_normalize", "image_mean", "image_std", "do_convert_rgb", "do_pad")
    kwargs = {k: v for k, v in settings.items() if k in keep}
    if settings.get("image_processor_type", "").startswith("Llava"):
        kwargs.setdefault("do_pad", True)
    return ViTImageProcessor(patch_size=patch_size, **kwargs)


def _convert(source, family: str, overrides: dict) -> ViTVisionModel:
    hf_config, state_dict = read_source(source)
    config = config_from_hf(hf_config, **overrides)
    if _VISION_MODEL_TYPES[(getattr(hf_config, "vision_config", None) or hf_config).model_type] != family:
        raise ValueError(f"convert_{family} got a {hf_config.model_type!r} model")
    return load_converted(config, state_dict)



def _as_int(value, name: str) -> int:
    if isinstance(value, (list, tuple)):
        if len(set(value)) != 1:
            raise ValueError(f"non-square {name}={value} is not supported by ViTVisionConfig")
        value = value[0]
    return int(value)


__all__ = ["config_from_hf", "convert_clip", "convert_siglip", "convert_state_dict", "load_converted",
           "processor_from_hf"]
