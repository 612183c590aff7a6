"""Configuration of the SAM image encoder (ViTDet-style: windowed attention, a few global blocks, relative positions, neck)."""

from huggingface_hub.dataclasses import strict
from transformers import PreTrainedConfig

# Kirillov et al. 2023 ("Segment Anything", arXiv 2304.02643), image encoders B / L / H.
SAM_VARIANTS = {
    "sam-b": dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, global_attn_indexes=[2, 5, 8, 11]),
    "sam-l": dict(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16,
                  global_attn_indexes=[5, 11, 17, 23]),
    "sam-h": dict(hidden_size=1280, num_hidden_layers=32, num_attention_heads=16,
                  global_attn_indexes=[7, 15, 23, 31]),
}


@strict
class SAMVisionConfig(PreTrainedConfig):
    r"""SAM's image encoder: a plain ViT whose blocks attend inside 14 x 14 windows except a few global ones.

    Args:
        window_size: side of the attention windows in patches (14); 0 means global attention everywhere.
        global_attn_indexes: blocks that attend over the whole image.
        output_channels: channels of the neck's output map (256), the width of the encoder's tokens.
        use_abs_pos: add a learned absolute position table (interpolated to other grids).
        use_rel_pos: add decomposed relative position biases (MViTv2) to the attention scores.
        intermediate_size: MLP width (4 x hidden_size).
    """

    model_type = "vlmenc_sam"
    base_config_key = "vision_config"

    hidden_size: int = 768
    intermediate_size: int = 3072
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    output_channels: int = 256
    num_channels: int = 3
    image_size: int = 1024
    patch_size: int = 16
    hidden_act: str = "gelu"
    layer_norm_eps: float = 1e-6
    attention_dropout: float | int = 0.0
    qkv_bias: bool = True
    use_abs_pos: bool = True
    use_rel_pos: bool = True
    window_size: int = 14
    global_attn_indexes: list[int] | tuple[int, ...] = (2, 5, 8, 11)
    initializer_range: float = 0.02

    def __post_init__(self, **kwargs):
        self.global_attn_indexes = list(self.global_attn_indexes)
        super().__post_init__(**kwargs)

    def validate_architecture(self):
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(
                f"hidden_size={self.hidden_size} is not divisible by num_attention_heads={self.num_attention_heads}"
            )
        if self.image_size % self.patch_size:
            raise ValueError(f"image_size={self.image_size} must be a multiple of patch_size={self.patch_size}")
        bad = [i for i in self.global_attn_indexes if not 0 <= i < self.num_hidden_layers]
        if bad:
            raise ValueError(f"global_attn_indexes {bad} are not blocks of a {self.num_hidden_layers}-block model")

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads

    @property
    def grid_size(self) -> int:
        """Patches per side at `image_size` (64 for SAM at 1024): the size of the position tables."""
        return self.image_size // self.patch_size

    @property
    def feature_dim(self) -> int:
        """Width of `image_embeds`: the neck's output channels."""
        return self.output_channels

    @classmethod
    def from_variant(cls, name: str, **overrides) -> "SAMVisionConfig":
        """`SAMVisionConfig.from_variant("sam-b")`: SAM's ViT-B image encoder (DeepSeek-OCR and Vary use it)."""
        if name not in SAM_VARIANTS:
            raise ValueError(f"unknown SAM variant {name!r}; known: {sorted(SAM_VARIANTS)}")
        variant = SAM_VARIANTS[name]
        return cls(**{**variant, "intermediate_size": 4 * variant["hidden_size"], **overrides})


__all__ = ["SAM_VARIANTS", "SAMVisionConfig"]
