"""Fixed-patch vision transformer (ViT; CLIP, SigLIP and the LLaVA-1.5 vision tower).

Dosovitskiy et al. 2020 (arXiv 2010.11929); CLIP: Radford et al. 2021 (arXiv 2103.00020);
SigLIP: Zhai et al. 2023 (arXiv 2303.15343); LLaVA-1.5: Liu et al. 2023 (arXiv 2310.03744).

pixel_values (B, C, H, W)
  -> P x P patches, conv embed -> [CLS] + patches + learned positions (resampled if the grid differs)
  -> pre-LN (CLIP) -> L x [x + Attn(LN(x)); x + MLP(LN(x))]
  -> last_hidden_state (B, [1 +] h*w, D); post-LN on every token (SigLIP) or on the pooled vector (CLIP)
  -> pooler_output (B, D): CLS / attention pooling / mean
  -> image_embeds (B, h*w, D * len(feature_layers)): hidden_states[feature_layer], CLS dropped (LLaVA)

Token rule: (H // P) * (W // P) patches (+1 with the CLS kept); `geometry.vit_num_image_tokens` from
the raw image size.
"""

import torch
from torch import nn
from transformers import GradientCheckpointingLayer, PreTrainedModel
from transformers import initialization as init

from .configuration_vit import ViTVisionConfig
from .layers_attention import SelfAttention, attend
from .layers_mlp import Mlp
from .layers_patch_embed import PatchEmbed, check_pixel_values
from .layers_pos_embed import resample_abs_pos_embed
from .outputs import VisionEncoderOutput


class ViTVisionEmbeddings(nn.Module):
    def __init__(self, config: ViTVisionConfig):
        super().__init__()
        self.grid_size = config.grid_size
        self.num_prefix_tokens = config.num_prefix_tokens
        self.patch_embed = PatchEmbed(config.num_channels, config.hidden_size, config.patch_size,
                                      bias=config.patch_embed_bias) if config.has_patch_embed else None
        self.antialias = config.pos_embed_antialias
        self.class_embedding = nn.Parameter(torch.empty(config.hidden_size)) if config.class_token else None
        num_positions = self.num_prefix_tokens + self.grid_size**2
        self.position_embedding = nn.Parameter(torch.empty(num_positions, config.hidden_size))

    def forward(self, pixel_values: torch.Tensor | None, interpolate_pos_encoding: bool = False,
                patch_embeds: torch.Tensor | None = None) -> torch.Tensor:
        if patch_embeds is not None:  # (B, D, h, w) from another network: positions always follow its grid
            grid = tuple(patch_embeds.shape[-2:])
            x = patch_embeds.flatten(2).transpose(1, 2)  # (B, h*w, D)
            interpolate_pos_encoding = True
        else:
            x, grid = self.patch_embed(pixel_values)  # (B, h*w, D)
        if grid != (self.grid_size, self.grid_size) and not interpolate_pos_encoding:
            raise ValueError(
                f"pixel_values of size {tuple(pixel_values.shape[-2:])} give a {grid[0]}x{grid[1]} patch grid, but the "
                f"position table is {self.grid_size}x{self.grid_size}; pass interpolate_pos_encoding=True to resample it"
            )
        if self.class_embedding is not None:
            x = torch.cat([self.class_embedding.to(x.dtype).expand(x.shape[0], 1, -1), x], dim=1)  # (B, 1 + h*w, D)
        pos = resample_abs_pos_embed(self.position_embedding, grid, (self.grid_size, self.grid_size),
                                     self.num_prefix_tokens, antialias=self.antialias)
        return x + pos.to(x.dtype)


class ViTEncoderLayer(GradientCheckpointingLayer):
    """Pre-norm transformer block."""

    def __init__(self, config: ViTVisionConfig):
        super().__init__()
        self.layer_norm1 = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.self_attn = SelfAttention(config, config.hidden_size, config.num_attention_heads,
                                       qkv_bias=config.qkv_bias, dropout=config.attention_dropout)
        self.layer_norm2 = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.mlp = Mlp(config.hidden_size, config.intermediate_size, act=config.hidden_act)

    def forward(self, hidden_states: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        attn_out, probs = self.self_attn(self.layer_norm1(hidden_states))
        # residuals are added into the fresh projection outputs: same sums (addition commutes), two fewer
        # (N x D) buffers per layer; autograd is fine since a Linear's backward never reads its output
        hidden_states = attn_out.add_(hidden_states)
        hidden_states = self.mlp(self.layer_norm2(hidden_states)).add_(hidden_states)
        return hidden_states, probs


class ViTPoolingHead(nn.Module):
    """SigLIP's multi-head attention pooling (MAP): one learned probe attends over all tokens, then an MLP."""

    def __init__(self, config: ViTVisionConfig):
        super().__init__()
        dim = config.hidden_size
        self.config = config  # for config._attn_implementation
        self.num_heads, self.head_dim = config.num_attention_heads, config.head_dim
        self.is_causal = False
        self.probe = nn.Parameter(torch.empty(1, 1, dim))
        self.q_proj = nn.Linear(dim, dim)
        self.kv_proj = nn.Linear(dim, 2 * dim)
        self.out_proj = nn.Linear(dim, dim)
        self.layernorm = nn.LayerNorm(dim, eps=config.layer_norm_eps)
        self.mlp = Mlp(dim, config.intermediate_size, act=config.hidden_act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, N, D = x.shape
        q = self.q_proj(self.probe.expand(B, 1, D)).view(B, 1, self.num_heads, self.head_dim).transpose(1, 2)
        k, v = self.kv_proj(x).view(B, N, 2, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4).unbind(0)
        pooled, _ = attend(self, q, k, v, scaling=self.head_dim**-0.5)  # (B, 1, H, Dh)
        pooled = self.out_proj(pooled.reshape(B, 1, D))
        pooled = pooled + self.mlp(self.layernorm(pooled))
        return pooled[:, 0]  # (B, D)


class ViTPreTrainedModel(PreTrainedModel):
    config_class = ViTVisionConfig
    base_model_prefix = "vit"
    main_input_name = "pixel_values"
    input_modalities = ("image",)
    supports_gradient_checkpointing = True
    _no_split_modules = ["ViTEncoderLayer"]
    _supports_sdpa = True
    _supports_flash_attn = True
    _supports_flex_attn = True
    _supports_attention_backend = True

    @torch.no_grad()
    def _init_weights(self, module):
        super()._init_weights(module)
        std = self.config.initializer_range
        if isinstance(module, ViTVisionEmbeddings):
            if module.class_embedding is not None:
                init.normal_(module.class_embedding, std=module.class_embedding.shape[-1] ** -0.5)
            init.normal_(module.position_embedding, std=std)
        elif isinstance(module, ViTPoolingHead):
            init.normal_(module.probe, std=std)


class ViTVisionModel(ViTPreTrainedModel):
    def __init__(self, config: ViTVisionConfig):
        super().__init__(config)
        dim = config.hidden_size
        self.embeddings = ViTVisionEmbeddings(config)
        self.pre_layernorm = nn.LayerNorm(dim, eps=config.layer_norm_eps) if config.pre_layernorm else nn.Identity()
        self.layers = nn.ModuleList(ViTEncoderLayer(config) for _ in range(config.num_hidden_layers))
        self.post_layernorm = nn.LayerNorm(dim, eps=config.layer_norm_eps) if config.post_layernorm != "none" else None
        self.head = ViTPoolingHead(config) if config.pooling == "map" else None
        self.post_init()

    def get_input_embeddings(self) -> nn.Module | None:
        return self.embeddings.patch_embed.proj if self.embeddings.patch_embed is not None else None

    def forward(
        self,
        pixel_values: torch.Tensor | None = None,
        interpolate_pos_encoding: bool = False,
        output_hidden_states: bool | None = None,
        output_attentions: bool | None = None,
        return_dict: bool | None = None,
        patch_embeds: torch.Tensor | None = None,
        **kwargs,
    ) -> VisionEncoderOutput:
        """pixel_values: (B, C, H, W) as the image processor makes them; or, for a tower without its own patch
        embedding (`has_patch_embed=False`), patch_embeds: (B, D, h, w) from another network."""
        if (pixel_values is None) == (patch_embeds is None):
            raise ValueError("pass exactly one of pixel_values and patch_embeds")
        if patch_embeds is not None:
            if patch_embeds.ndim != 4 or patch_embeds.shape[1] != self.config.hidden_size:
                raise ValueError(f"patch_embeds must be (batch, {self.config.hidden_size}, h, w), got "
                                 f"{tuple(patch_embeds.shape)}")
        elif self.embeddings.patch_embed is None:
            raise ValueError("this tower has no patch embedding (has_patch_embed=False): pass patch_embeds")
        else:
            self._check_pixel_values(pixel_values)
        output_hidden_states = self.config.output_hidden_states if output_hidden_states is None else output_hidden_states
        output_attentions = self.config.output_attentions if output_attentions is None else output_attentions
        if output_attentions and self.config._attn_implementation != "eager":
            raise ValueError("output_attentions=True needs attn_implementation='eager' (sdpa and flash return no weights)")
        wanted = {i % (len(self.layers) + 1) for i in self.config.feature_layers}  # hidden-state indices to keep

        x = self.pre_layernorm(self.embeddings(pixel_values, interpolate_pos_encoding, patch_embeds))  # (B, [1+] hw, D)
        hidden_states, attentions, kept = [x], [], {0: x} if 0 in wanted else {}
        for i, layer in enumerate(self.layers, start=1):
            x, probs = layer(x)
            if output_hidden_states:
                hidden_states.append(x)
            if output_attentions:
                attentions.append(probs)
            if i in wanted:
                kept[i] = x

        if self.config.post_layernorm == "all":  # SigLIP: every token, before pooling
            x = self.post_layernorm(x)
        pooled = self._pool(x)
        image_embeds = torch.cat([kept[i % (len(self.layers) + 1)] for i in self.config.feature_layers], dim=-1)
        if self.config.feature_select == "patch":
            image_embeds = image_embeds[:, self.embeddings.num_prefix_tokens :]  # (B, h*w, D * n_layers)
        output = VisionEncoderOutput(
            last_hidden_state=x,
            image_embeds=image_embeds,
            pooler_output=pooled,
            hidden_states=tuple(hidden_states) if output_hidden_states else None,
            attentions=tuple(attentions) if output_attentions else None,
        )
        return output if return_dict is not False else output.to_tuple()

    def _pool(self, x: torch.Tensor) -> torch.Tensor | None:
        """(B, N, D) last-layer tokens -> (B, D); CLIP normalises the pooled vector, not the tokens."""
        pooling = self.config.pooling
        if pooling == "none":
            return None
        if pooling == "map":
            return self.head(x)
        pooled = x[:, 0] if pooling == "cls" else x[:, self.embeddings.num_prefix_tokens :].mean(dim=1)
        return self.post_layernorm(pooled) if self.config.post_layernorm == "pooled" else pooled

    def _check_pixel_values(self, pixel_values: torch.Tensor) -> None:
        check_pixel_values(pixel_values, self.config.num_channels)
        patch = self.config.patch_size
        if pixel_values.shape[-2] < patch or pixel_values.shape[-1] < patch:
            raise ValueError(f"pixel_values of size {tuple(pixel_values.shape[-2:])} hold no {patch}x{patch} patch")


__all__ = ["ViTPreTrainedModel", "ViTVisionModel"]
