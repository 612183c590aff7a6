"""Configuration of the fixed-patch ViT paradigm (ViT, CLIP, SigLIP, the LLaVA-1.5 vision tower)."""

from huggingface_hub.dataclasses import strict
from transformers import PreTrainedConfig

# Sizes as the papers write them: (width, depth, heads, MLP width). CLIP: Radford et al. 2021, Table 20;
# SigLIP shape-optimised so400m: Alabdulmohsin et al. 2023 ("Getting ViT in Shape"), Table 1.
VIT_VARIANTS = {
    "S/16": dict(hidden_size=384, num_hidden_layers=12, num_attention_heads=6, intermediate_size=1536, patch_size=16),
    "B/32": dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072, patch_size=32),
    "B/16": dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072, patch_size=16),
    "L/14": dict(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096, patch_size=14),
    "L/16": dict(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096, patch_size=16),
    "H/14": dict(hidden_size=1280, num_hidden_layers=32, num_attention_heads=16, intermediate_size=5120, patch_size=14),
    "so400m/14": dict(hidden_size=1152, num_hidden_layers=27, num_attention_heads=16, intermediate_size=4304,
                      patch_size=14),
}

# How the two published families differ, everything except the sizes.
VIT_STYLES = {
    # CLIP / LLaVA-1.5: CLS token, LayerNorm before the encoder, post-LN on the pooled CLS only, quick_gelu;
    # LLaVA feeds the LLM the patch tokens of the second-to-last layer.
    "clip": dict(hidden_act="quick_gelu", layer_norm_eps=1e-5, class_token=True, pre_layernorm=True,
                 post_layernorm="pooled", pooling="cls", patch_embed_bias=False, feature_layer=-2,
                 feature_select="patch"),
    # SigLIP: no CLS, post-LN on every token, attention-pooling head, tanh GELU; LLaVA-OneVision uses the last layer.
    "siglip": dict(hidden_act="gelu_pytorch_tanh", layer_norm_eps=1e-6, class_token=False, pre_layernorm=False,
                   post_layernorm="all", pooling="map", patch_embed_bias=True, feature_layer=-1,
                   feature_select="patch"),
}
DEFAULT_STYLE = {"so400m/14": "siglip", "L/16": "siglip"}


@strict
class ViTVisionConfig(PreTrainedConfig):
    r"""Fixed-patch vision transformer: a P x P grid of tokens, learned absolute positions, pre-norm blocks.

    Args:
        class_token: prepend a learned CLS token (CLIP) or not (SigLIP).
        pre_layernorm: LayerNorm on the embeddings before the first block (CLIP's `pre_layrnorm`).
        post_layernorm: where the final LayerNorm goes: `"pooled"` (CLIP: on the pooled vector only),
            `"all"` (SigLIP: on every token of `last_hidden_state`) or `"none"`.
        pooling: `pooler_output`: `"cls"`, `"map"` (SigLIP's attention-pooling head), `"mean"` or `"none"`.
        feature_layer: which hidden state feeds the LLM (`image_embeds`): an index into `hidden_states`
            (0 = embeddings, -1 = last layer, -2 = LLaVA's choice) or a list of indices, concatenated on channels.
        feature_select: `"patch"` (drop the CLS token, LLaVA's "default") or `"all"` (keep it, LLaVA's "full").
        has_patch_embed: False for a tower fed with patch embeddings from another network (DeepSeek-OCR's CLIP
            stage takes SAM's compressed map); it then has no patch-embedding weights.
        pos_embed_antialias: resample the position table with antialiasing (DeepSeek-OCR) instead of CLIP's plain
            bicubic interpolation.
    """

    model_type = "vlmenc_vit"
    base_config_key = "vision_config"

    hidden_size: int = 768
    intermediate_size: int = 3072
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    num_channels: int = 3
    image_size: int = 224
    patch_size: int = 16
    hidden_act: str = "quick_gelu"
    layer_norm_eps: float = 1e-5
    attention_dropout: float | int = 0.0
    qkv_bias: bool = True
    patch_embed_bias: bool = False
    class_token: bool = True
    pre_layernorm: bool = True
    post_layernorm: str = "pooled"
    pooling: str = "cls"
    feature_layer: int | list[int] = -2
    feature_select: str = "patch"
    has_patch_embed: bool = True
    pos_embed_antialias: bool = False
    initializer_range: float = 0.02

    def validate_architecture(self):
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(
                f"hidden_size={self.hidden_size} is not divisible by num_attention_heads={self.num_attention_heads}"
            )
        if self.patch_size < 1 or self.image_size < self.patch_size:
            raise ValueError(f"image_size={self.image_size} must hold at least one patch of patch_size={self.patch_size}")
        for name, value, allowed in (
            ("post_layernorm", self.post_layernorm, ("pooled", "all", "none")),
            ("pooling", self.pooling, ("cls", "map", "mean", "none")),
            ("feature_select", self.feature_select, ("patch", "all")),
        ):
            if value not in allowed:
                raise ValueError(f"{name}={value!r} is not one of {allowed}")
        if self.pooling == "cls" and not self.class_token:
            raise ValueError("pooling='cls' needs class_token=True")
        if self.post_layernorm == "pooled" and self.pooling == "none":
            raise ValueError("post_layernorm='pooled' needs a pooling other than 'none'")
        for index in self.feature_layers:
            if not -(self.num_hidden_layers + 1) <= index <= self.num_hidden_layers:
                raise ValueError(
                    f"feature_layer {index} is outside the {self.num_hidden_layers + 1} hidden states "
                    f"(embeddings + {self.num_hidden_layers} layers)"
                )

    @property
    def feature_layers(self) -> list[int]:
        return [self.feature_layer] if isinstance(self.feature_layer, int) else list(self.feature_layer)

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads

    @property
    def grid_size(self) -> int:
        """Patches per side of the position table (the remainder of image_size is dropped, as the conv does)."""
        return self.image_size // self.patch_size

    @property
    def num_prefix_tokens(self) -> int:
        return int(self.class_token)

    @property
    def feature_dim(self) -> int:
        """Width of `image_embeds`: hidden_size times the number of feature layers."""
        return self.hidden_size * len(self.feature_layers)

    @classmethod
    def from_variant(cls, name: str, style: str | None = None, **overrides) -> "ViTVisionConfig":
        """`ViTVisionConfig.from_variant("L/14", image_size=336)` is the CLIP-L/14@336 tower of LLaVA-1.5.

        `style` is `"clip"` or `"siglip"` (default: the family that published the variant).
        """
        if name not in VIT_VARIANTS:
            raise ValueError(f"unknown ViT variant {name!r}; known: {sorted(VIT_VARIANTS)}")
        style = style or DEFAULT_STYLE.get(name, "clip")
        if style not in VIT_STYLES:
            raise ValueError(f"unknown ViT style {style!r}; known: {sorted(VIT_STYLES)}")
        return cls(**{**VIT_VARIANTS[name], **VIT_STYLES[style], **overrides})


__all__ = ["VIT_STYLES", "VIT_VARIANTS", "ViTVisionConfig"]
