"""Convert transformers' Unlimited-OCR vision model (DeepSeek-OCR's DeepEncoder) onto `DeepEncoderVisionModel`.

Work in progress with the paradigm (issue 5). Not part of exported checkpoints.
"""

from transformers import PreTrainedConfig

from .configuration_deepencoder import DEEPENCODER_CLIP, DeepEncoderConfig
from .configuration_vit import VIT_STYLES, ViTVisionConfig
from .conversion_sam import _ANCHOR as SAM_ANCHOR
from .conversion_sam import convert_sam_state_dict, sam_config_from_hf
from .conversion_utils import load_checked, read_source, unique_prefix
from .conversion_vit import convert_state_dict
from .modeling_deepencoder import DeepEncoderModel, DeepEncoderVisionModel


def deepencoder_config_from_hf(hf_config: PreTrainedConfig, **overrides) -> DeepEncoderConfig:
    """Our config for a transformers `UnlimitedOcrConfig` or `UnlimitedOcrVisionConfig`."""
    vision = getattr(hf_config, "vision_config", None) or hf_config
    if vision.model_type != "unlimited_ocr_vision":
        raise ValueError(f"cannot convert a {vision.model_type!r} config; expected an Unlimited-OCR vision config")
    clip = vision.encoder_config
    style = {k: v for k, v in VIT_STYLES["clip"].items() if k not in ("hidden_act", "layer_norm_eps")}
    clip_config = ViTVisionConfig(**{
        **style, **DEEPENCODER_CLIP,
        "hidden_size": clip.hidden_size, "intermediate_size": clip.intermediate_size,
        "num_hidden_layers": clip.num_hidden_layers, "num_attention_heads": clip.num_attention_heads,
        "image_size": clip.image_size, "patch_size": clip.patch_size, "hidden_act": clip.hidden_act,
        "layer_norm_eps": float(clip.layer_norm_eps),
    })
    return DeepEncoderConfig(sam_config=sam_config_from_hf(vision.sam_config).to_dict(),
                             clip_config=clip_config.to_dict(),
                             compressor_channels=list(vision.sam_config.downsample_channels), **overrides)


def convert_deepencoder(source) -> DeepEncoderVisionModel | DeepEncoderModel:
    """Our DeepEncoder from a live Unlimited-OCR model or a local checkpoint folder.

    The vision model alone (`UnlimitedOcrVisionModel`) gives `DeepEncoderVisionModel`; a whole model (with its
    projector, image newline and view separator) gives `DeepEncoderModel`.
    """
    hf_config, state_dict = read_source(source)
    heads = {k.rsplit(".", 1)[-1] if "multi_modal_projector" not in k else "projector." + k.rsplit(".", 1)[-1]: v
             for k, v in state_dict.items()
             if "multi_modal_projector." in k or k.endswith(("image_newline", "view_separator"))}
    if heads:
        width = heads["projector.weight"].shape[0]
        config = deepencoder_config_from_hf(hf_config, out_hidden_size=width)
        vision = _convert_vision(state_dict, config)
        converted = {f"vision.{k}": v for k, v in vision.items()} | heads
        return load_checked(DeepEncoderModel(config), converted)
    config = deepencoder_config_from_hf(hf_config)
    return load_checked(DeepEncoderVisionModel(config), _convert_vision(state_dict, config))


def _convert_vision(state_dict, config: DeepEncoderConfig) -> dict:
    converted = {f"sam.{k}": v for k, v in convert_sam_state_dict(state_dict, config.sam_config).items()}
    sam_prefix = unique_prefix(state_dict, SAM_ANCHOR)
    for conv in ("conv1", "conv2"):  # the compressor sits in the SAM stage's `proj` there
        converted[f"compressor.{conv}.weight"] = state_dict[f"{sam_prefix}proj.{conv}.weight"]
    converted.update({f"clip.{k}": v for k, v in convert_state_dict(state_dict, config.clip_config).items()})
    return converted


__all__ = ["convert_deepencoder", "deepencoder_config_from_hf"]
