"""Configuration of DeepSeek-OCR's DeepEncoder: SAM-B windows -> 16x conv compressor -> CLIP-L global attention."""

from huggingface_hub.dataclasses import strict
from transformers import PreTrainedConfig

from .configuration_sam import SAMVisionConfig
from .configuration_vit import ViTVisionConfig

# DeepSeek-OCR's CLIP stage: CLIP-L/14@224 without its own patch embedding (it takes the compressed SAM map),
# no final norm, positions resampled with antialiasing, the last layer's patch tokens.
DEEPENCODER_CLIP = dict(has_patch_embed=False, pos_embed_antialias=True, post_layernorm="none", pooling="none",
                        feature_layer=-1, feature_select="patch")


@strict
class DeepEncoderConfig(PreTrainedConfig):
    r"""DeepEncoder (Wei et al. 2025, DeepSeek-OCR, arXiv 2510.18234).

    Args:
        sam_config: the SAM stage (SAM-B by default).
        clip_config: the CLIP stage (CLIP-L/14@224 in DeepSeek-OCR's form, see `DEEPENCODER_CLIP`).
        compressor_channels: output channels of the two stride-2 3x3 convolutions between them (256 -> 512 -> 1024).
        out_hidden_size: width of the projected tokens, the LLM's hidden size (1280 for DeepSeek-3B-MoE).
    """

    model_type = "vlmenc_deepencoder"
    sub_configs_defaults = {"sam_config": SAMVisionConfig, "clip_config": ViTVisionConfig}

    sam_config: dict | PreTrainedConfig | None = None
    clip_config: dict | PreTrainedConfig | None = None
    compressor_channels: list[int] | tuple[int, ...] = (512, 1024)
    out_hidden_size: int = 1280
    initializer_range: float = 0.02

    def __post_init__(self, **kwargs):
        if self.sam_config is None:
            self.sam_config = SAMVisionConfig.from_variant("sam-b")
        if self.clip_config is None:
            self.clip_config = ViTVisionConfig.from_variant("L/14", image_size=224, **DEEPENCODER_CLIP)
        self.compressor_channels = list(self.compressor_channels)
        super().__post_init__(**kwargs)

    def validate_architecture(self):
        if len(self.compressor_channels) != 2:
            raise ValueError(f"the compressor has two convolutions, got channels {self.compressor_channels}")
        if self.compressor_channels[-1] != self.clip_config.hidden_size:
            raise ValueError(f"the compressor's last width ({self.compressor_channels[-1]}) must be the CLIP stage's "
                             f"hidden size ({self.clip_config.hidden_size}): its map is CLIP's patch embedding")
        if self.clip_config.has_patch_embed:
            raise ValueError("the CLIP stage is fed with the compressed map: clip_config.has_patch_embed must be False")

    @property
    def vision_dim(self) -> int:
        """Width of the vision features: CLIP's patch tokens and the compressed SAM map side by side (2048)."""
        return self.clip_config.hidden_size + self.compressor_channels[-1]

    @property
    def feature_dim(self) -> int:
        """Width of `image_embeds`, what a VLM receives: already projected, newlines and separators included."""
        return self.out_hidden_size

    @property
    def token_stride(self) -> int:
        """Pixels per side of one output token: the SAM patch, then two stride-2 convolutions (64)."""
        return self.sam_config.patch_size * 4

    @property
    def num_hidden_layers(self) -> int:
        """Transformer blocks in all: SAM's, then CLIP's (the length of `hidden_states` minus one)."""
        return self.sam_config.num_hidden_layers + self.clip_config.num_hidden_layers


__all__ = ["DEEPENCODER_CLIP", "DeepEncoderConfig"]
