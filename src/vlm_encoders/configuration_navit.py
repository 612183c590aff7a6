"""Configuration of the native-resolution paradigm (NaViT-style; the Qwen2-VL and Qwen2.5-VL vision towers)."""

from huggingface_hub.dataclasses import strict
from transformers import PreTrainedConfig

# The two published block designs. Qwen2-VL (arXiv 2409.12191): LayerNorm, quick-GELU MLP, full attention
# in every block. Qwen2.5-VL (arXiv 2502.13923): RMSNorm, SwiGLU MLP, attention inside 112-px windows
# except in four evenly spaced blocks.
NAVIT_STYLES = {
    "qwen2-vl": dict(norm="layernorm", mlp="gelu", hidden_act="quick_gelu", intermediate_size=5120, window_size=0,
                     fullatt_block_indexes=[]),
    "qwen2.5-vl": dict(norm="rmsnorm", mlp="swiglu", hidden_act="silu", intermediate_size=3420, window_size=112,
                       fullatt_block_indexes=[7, 15, 23, 31]),
}
# Every released size shares one 32-block, 1280-d, 16-head ViT; they differ in the LLM width the merger
# projects to (`out_hidden_size`, the `hidden_size` of the LLM).
NAVIT_VARIANTS = {
    "qwen2-vl-2b": ("qwen2-vl", 1536),
    "qwen2-vl-7b": ("qwen2-vl", 3584),
    "qwen2-vl-72b": ("qwen2-vl", 8192),
    "qwen2.5-vl-3b": ("qwen2.5-vl", 2048),
    "qwen2.5-vl-7b": ("qwen2.5-vl", 3584),
    "qwen2.5-vl-32b": ("qwen2.5-vl", 5120),
    "qwen2.5-vl-72b": ("qwen2.5-vl", 8192),
}


@strict
class NaViTVisionConfig(PreTrainedConfig):
    r"""Native-resolution vision transformer: packed images of any size, 2D RoPE, a merger to the LLM width.

    Args:
        hidden_size: width of the ViT (1280).
        intermediate_size: MLP width (5120 for Qwen2-VL's GELU MLP, 3420 for Qwen2.5-VL's SwiGLU).
        out_hidden_size: width of the merged tokens handed to the LLM (the LLM's hidden size).
        patch_size: side of a patch in pixels.
        temporal_patch_size: frames per patch; still images are repeated to fill them.
        spatial_merge_size: side of the block of patches the merger turns into one LLM token.
        norm: `"layernorm"` (Qwen2-VL) or `"rmsnorm"` (Qwen2.5-VL), in the blocks and the merger.
        mlp: `"gelu"` (Linear -> `hidden_act` -> Linear; Qwen2-VL) or `"swiglu"` (gated; Qwen2.5-VL).
        window_size: side of the attention windows in pixels (112 in Qwen2.5-VL); 0 means full attention in
            every block. A multiple of patch_size * spatial_merge_size.
        fullatt_block_indexes: blocks that attend over the whole image even when windows are on.
        rope_theta: base of the 2D rotary embedding.
    """

    model_type = "vlmenc_navit"
    base_config_key = "vision_config"

    hidden_size: int = 1280
    intermediate_size: int = 5120
    num_hidden_layers: int = 32
    num_attention_heads: int = 16
    out_hidden_size: int = 3584
    num_channels: int = 3
    patch_size: int = 14
    temporal_patch_size: int = 2
    spatial_merge_size: int = 2
    hidden_act: str = "quick_gelu"
    norm: str = "layernorm"
    mlp: str = "gelu"
    layer_norm_eps: float = 1e-6
    qkv_bias: bool = True
    attention_dropout: float | int = 0.0
    window_size: int = 0
    fullatt_block_indexes: list[int] | tuple[int, ...] = ()
    rope_theta: float | int = 10_000.0
    initializer_range: float = 0.02

    def __post_init__(self, **kwargs):
        self.fullatt_block_indexes = list(self.fullatt_block_indexes)
        super().__post_init__(**kwargs)

    def validate_architecture(self):
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(
                f"hidden_size={self.hidden_size} is not divisible by num_attention_heads={self.num_attention_heads}"
            )
        if self.head_dim % 4:
            raise ValueError(f"2D RoPE needs a head dimension divisible by 4, got {self.head_dim}")
        for name, value, allowed in (("norm", self.norm, ("layernorm", "rmsnorm")),
                                     ("mlp", self.mlp, ("gelu", "swiglu"))):
            if value not in allowed:
                raise ValueError(f"{name}={value!r} is not one of {allowed}")
        if self.window_size:
            unit = self.patch_size * self.spatial_merge_size
            if self.window_size % unit:
                raise ValueError(f"window_size={self.window_size} must be a multiple of patch_size * "
                                 f"spatial_merge_size = {unit} (windows hold whole merge blocks)")
        bad = [i for i in self.fullatt_block_indexes if not 0 <= i < self.num_hidden_layers]
        if bad:
            raise ValueError(f"fullatt_block_indexes {bad} are not blocks of a {self.num_hidden_layers}-block model")

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads

    @property
    def patch_dim(self) -> int:
        """Values per patch in `pixel_values`: C * T * P * P (1176 for Qwen2-VL)."""
        return self.num_channels * self.temporal_patch_size * self.patch_size**2

    @property
    def window_merge_units(self) -> int:
        """Merge blocks per window side (112 px / 28 px = 4 for Qwen2.5-VL); 0 without windows."""
        return self.window_size // (self.patch_size * self.spatial_merge_size) if self.window_size else 0

    @classmethod
    def from_variant(cls, name: str, **overrides) -> "NaViTVisionConfig":
        """`NaViTVisionConfig.from_variant("qwen2-vl-7b")`: the vision tower of that release (random weights)."""
        if name not in NAVIT_VARIANTS:
            raise ValueError(f"unknown NaViT variant {name!r}; known: {sorted(NAVIT_VARIANTS)}")
        style, out_hidden_size = NAVIT_VARIANTS[name]
        return cls(**{**NAVIT_STYLES[style], "out_hidden_size": out_hidden_size, **overrides})


__all__ = ["NAVIT_STYLES", "NAVIT_VARIANTS", "NaViTVisionConfig"]
