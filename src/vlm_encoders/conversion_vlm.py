"""Convert transformers' LLaVA (`LlavaForConditionalGeneration`, or a local checkpoint of it) onto `VisionLanguageModel`.

CLIP/SigLIP tower -> our ViT (conversion_vit), the two-layer projector -> ours, the LLM kept as the
`AutoModelForCausalLM` it is. Both key layouts are read: transformers 5's (`model.vision_tower.`,
`model.multi_modal_projector.`, `model.language_model.`, `lm_head.`) and the older one
(`vision_tower.`, `multi_modal_projector.`, `language_model.model.`, `language_model.lm_head.`).
Not part of exported checkpoints.
"""

from .configuration_vlm import VisionLanguageConfig
from .conversion_utils import load_checked, read_source
from .conversion_vit import config_from_hf, convert_state_dict
from .modeling_vlm import VisionLanguageModel

_SELECT = {"default": "patch", "full": "all"}


def convert_llava(source) -> VisionLanguageModel:
    """Our VLM from a live `LlavaForConditionalGeneration` or a local LLaVA checkpoint folder."""
    hf_config, state_dict = read_source(source)
    if hf_config.model_type != "llava":
        raise ValueError(f"convert_llava got a {hf_config.model_type!r} model")
    if getattr(hf_config, "projector_hidden_act", "gelu") != "gelu":
        raise ValueError(f"projector_hidden_act={hf_config.projector_hidden_act!r}: only LLaVA-1.5's GELU MLP is mapped")
    vision = config_from_hf(hf_config.vision_config, feature_layer=hf_config.vision_feature_layer,
                            feature_select=_SELECT[hf_config.vision_feature_select_strategy])
    config = VisionLanguageConfig(vision_config=vision.to_dict(), text_config=hf_config.text_config.to_dict(),
                                  projector="mlp2x_gelu", projector_bias=hf_config.multimodal_projector_bias,
                                  image_token_id=hf_config.image_token_id,
                                  tie_word_embeddings=hf_config.tie_word_embeddings)
    model = VisionLanguageModel(config)

    def part(*prefixes):
        for prefix in prefixes:
            found = {k[len(prefix):]: v for k, v in state_dict.items() if k.startswith(prefix)}
            if found:
                return found
        raise ValueError(f"the checkpoint has no weights under {prefixes}")

    converted = {f"vision_tower.{k}": v for k, v in
                 convert_state_dict(part("model.vision_tower.", "vision_tower."), vision).items()}
    for k, v in part("model.multi_modal_projector.", "multi_modal_projector.").items():
        converted[f"projector.{k}"] = v
    for k, v in part("model.language_model.", "language_model.model.").items():
        converted[f"language_model.model.{k}"] = v
    lm_head = {k: v for k, v in state_dict.items() if k in ("lm_head.weight", "language_model.lm_head.weight")}
    if lm_head:
        converted["language_model.lm_head.weight"] = next(iter(lm_head.values()))
    elif config.tie_word_embeddings:
        converted["language_model.lm_head.weight"] = converted["language_model.model.embed_tokens.weight"]
    return load_checked(model, converted)


__all__ = ["convert_llava"]
