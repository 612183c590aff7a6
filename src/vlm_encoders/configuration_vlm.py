"""Configuration of the VLM: any registered vision encoder, a projector, and any causal LLM transformers has."""

from huggingface_hub.dataclasses import strict
from transformers import AutoConfig, PreTrainedConfig
from transformers.configuration_utils import SubConfigSpec

from .configuration_deepencoder import DeepEncoderConfig
from .configuration_navit import NaViTVisionConfig
from .configuration_sam import SAMVisionConfig
from .configuration_vit import ViTVisionConfig

# model_type -> config class of every encoder the VLM can hold. A plain dict, not AutoConfig: in remote
# code (a fresh process without this package) nothing has registered our model types with transformers.
VISION_CONFIGS = {config.model_type: config for config in (ViTVisionConfig, NaViTVisionConfig, SAMVisionConfig,
                                                            DeepEncoderConfig)}

# Projectors between the encoder's `image_embeds` and the LLM's embeddings, by exact name:
#   mlp2x_gelu: Linear -> GELU -> Linear (LLaVA-1.5); linear: one Linear (LLaVA-1);
#   identity: none, for encoders whose output already has the LLM's width (NaViT's merger).
PROJECTORS = ("mlp2x_gelu", "linear", "identity")


@strict
class VisionLanguageConfig(PreTrainedConfig):
    r"""A vision encoder of any paradigm of this package + a projector + any causal LM.

    Args:
        vision_config: the encoder's config (a dict needs its `model_type`, e.g. `"vlmenc_navit"`).
        text_config: any causal LM config transformers knows (a dict needs its `model_type`, e.g. `"llama"`).
        projector: `"mlp2x_gelu"`, `"linear"` or `"identity"` (see `PROJECTORS`).
        image_token_id: the id of the placeholder token that image features replace, one per position.
        projector_bias: whether the projector's linear layers have biases.
    """

    model_type = "vlmenc_vlm"
    sub_configs_defaults = {
        "vision_config": ViTVisionConfig,
        "text_config": SubConfigSpec(config_class=AutoConfig, model_type="llama"),
    }

    vision_config: dict | PreTrainedConfig | None = None
    text_config: dict | PreTrainedConfig | None = None
    projector: str = "mlp2x_gelu"
    projector_bias: bool = True
    image_token_id: int = 32000
    tie_word_embeddings: bool = False

    def __post_init__(self, **kwargs):
        if isinstance(self.vision_config, dict):  # pick the encoder's class by its exact model_type
            vision = dict(self.vision_config)
            model_type = vision.pop("model_type", None)
            if model_type not in VISION_CONFIGS:
                raise ValueError(f"vision_config has model_type {model_type!r}; registered encoders: "
                                 f"{sorted(VISION_CONFIGS)}")
            self.vision_config = VISION_CONFIGS[model_type](**vision)
        super().__post_init__(**kwargs)

    def validate_architecture(self):
        if self.projector not in PROJECTORS:
            raise ValueError(f"projector={self.projector!r} is not one of {PROJECTORS}")
        if self.vision_config.model_type not in VISION_CONFIGS:
            raise ValueError(f"vision_config has model_type {self.vision_config.model_type!r}; registered encoders: "
                             f"{sorted(VISION_CONFIGS)}")
        vocab = getattr(self.text_config, "vocab_size", None)
        if vocab is not None and not 0 <= self.image_token_id < vocab:
            raise ValueError(f"image_token_id={self.image_token_id} is outside the LLM's vocabulary of {vocab} tokens")
        if self.projector == "identity" and self.vision_feature_dim != self.text_config.hidden_size:
            raise ValueError(f"projector='identity' needs the encoder's feature width ({self.vision_feature_dim}) to "
                             f"equal the LLM's hidden size ({self.text_config.hidden_size})")

        if self.text_config.model_type in ("qwen2_vl_text", "qwen2_5_vl_text") and \
                self.vision_config.model_type != "vlmenc_navit":
            raise ValueError(f"an M-RoPE LLM ({self.text_config.model_type!r}) takes its image positions from "
                             "image_grid_thw, which only the native-resolution encoder (vlmenc_navit) gives")

    @property
    def vision_feature_dim(self) -> int:
        """Width of the encoder's `image_embeds`, the projector's input."""
        vision = self.vision_config
        if vision.model_type == "vlmenc_navit":
            return vision.out_hidden_size
        return vision.feature_dim


__all__ = ["PROJECTORS", "VISION_CONFIGS", "VisionLanguageConfig"]
