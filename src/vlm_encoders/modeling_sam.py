"""SAM's image encoder (ViTDet-style ViT): windowed attention, a few global blocks, relative positions, a conv neck.

Segment Anything: Kirillov et al. 2023 (arXiv 2304.02643); ViTDet: Li et al. 2022 (arXiv 2203.16527);
decomposed relative positions: MViTv2, Li et al. 2022 (arXiv 2112.01526). DeepSeek-OCR's DeepEncoder
and Vary use SAM-B as their high-resolution stage.

pixel_values (B, C, H, W), e.g. 1024 x 1024 padded
  -> 16 x 16 patches, conv embed + learned absolute positions (resampled for other grids)  (B, h, w, D)
  -> L x [x + Attn(LN(x)) inside 14 x 14 windows (global in a few blocks), relative positions; x + MLP(LN(x))]
  -> neck: Conv1x1 D -> 256, LN, Conv3x3 256 -> 256, LN                                    (B, 256, h, w)
  -> image_embeds (B, h * w, 256), row-major

Token rule: (H / 16) * (W / 16) of the padded input: 4096 at 1024 px.
"""

import torch
from torch import nn
from transformers import GradientCheckpointingLayer, PreTrainedModel
from transformers import initialization as init

from .configuration_sam import SAMVisionConfig
from .layers_attention import RelPosSelfAttention, window_partition, window_unpartition
from .layers_mlp import Mlp
from .layers_patch_embed import PatchEmbed, check_pixel_values
from .layers_pos_embed import resample_abs_pos_embed
from .outputs import VisionEncoderOutput


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channels of a (B, C, h, w) map."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class SAMBlock(GradientCheckpointingLayer):
    """Pre-norm block over a (B, h, w, D) grid; attention inside windows unless `window_size` is 0."""

    def __init__(self, config: SAMVisionConfig, window_size: int):
        super().__init__()
        dim = config.hidden_size
        self.window_size = window_size
        rel_pos_size = (window_size or config.grid_size) if config.use_rel_pos else None
        self.norm1 = nn.LayerNorm(dim, eps=config.layer_norm_eps)
        self.attn = RelPosSelfAttention(config, dim, config.num_attention_heads, rel_pos_size,
                                        qkv_bias=config.qkv_bias, dropout=config.attention_dropout)
        self.norm2 = nn.LayerNorm(dim, eps=config.layer_norm_eps)
        self.mlp = Mlp(dim, config.intermediate_size, act=config.hidden_act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[1:3]
        y = self.norm1(x)
        if self.window_size:
            windows, padded = window_partition(y, self.window_size)  # (B * nW, ws, ws, D), zero padding
            y = window_unpartition(self.attn(windows), self.window_size, padded, (h, w))
        else:
            y = self.attn(y)
        if torch.is_grad_enabled():
            x = x + y
            return x + self.mlp(self.norm2(x))
        x = y.add_(x)  # inference: residuals added into fresh buffers, as in the other encoders
        return self.mlp(self.norm2(x)).add_(x)


class SAMNeck(nn.Module):
    def __init__(self, config: SAMVisionConfig):
        super().__init__()
        out = config.output_channels
        self.conv1 = nn.Conv2d(config.hidden_size, out, kernel_size=1, bias=False)
        self.norm1 = LayerNorm2d(out, eps=1e-6)
        self.conv2 = nn.Conv2d(out, out, kernel_size=3, padding=1, bias=False)
        self.norm2 = LayerNorm2d(out, eps=1e-6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, h, w, D) -> (B, C_out, h, w)
        return self.norm2(self.conv2(self.norm1(self.conv1(x.permute(0, 3, 1, 2)))))


class SAMPreTrainedModel(PreTrainedModel):
    config_class = SAMVisionConfig
    base_model_prefix = "sam"
    main_input_name = "pixel_values"
    input_modalities = ("image",)
    supports_gradient_checkpointing = True
    _no_split_modules = ["SAMBlock"]
    _supports_sdpa = True
    _supports_flash_attn = False  # relative-position biases are additive masks, which flash kernels do not take
    _supports_attention_backend = True

    @torch.no_grad()
    def _init_weights(self, module):
        super()._init_weights(module)
        if isinstance(module, SAMVisionModel) and module.pos_embed is not None:
            init.normal_(module.pos_embed, std=self.config.initializer_range)
        elif isinstance(module, RelPosSelfAttention) and module.rel_pos_h is not None:
            init.normal_(module.rel_pos_h, std=self.config.initializer_range)
            init.normal_(module.rel_pos_w, std=self.config.initializer_range)


class SAMVisionModel(SAMPreTrainedModel):
    def __init__(self, config: SAMVisionConfig):
        super().__init__(config)
        self.patch_embed = PatchEmbed(config.num_channels, config.hidden_size, config.patch_size, bias=True)
        grid = config.grid_size
        self.pos_embed = nn.Parameter(torch.zeros(grid * grid, config.hidden_size)) if config.use_abs_pos else None
        self.blocks = nn.ModuleList(
            SAMBlock(config, 0 if i in config.global_attn_indexes else config.window_size)
            for i in range(config.num_hidden_layers)
        )
        self.neck = SAMNeck(config)
        self.post_init()

    def get_input_embeddings(self) -> nn.Module:
        return self.patch_embed.proj

    def forward(
        self,
        pixel_values: torch.Tensor,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> VisionEncoderOutput:
        """pixel_values: (B, C, H, W) with H and W multiples of the patch size (the processor pads to image_size)."""
        self._check_pixel_values(pixel_values)
        output_hidden_states = self.config.output_hidden_states if output_hidden_states is None else output_hidden_states
        x, (h, w) = self.patch_embed(pixel_values)  # (B, h*w, D)
        if self.pos_embed is not None:
            grid = self.config.grid_size
            # other grids (DeepEncoder's 640 px mode: 40 x 40) resample the table bicubically with antialiasing,
            # as DeepSeek-OCR does
            x = x + resample_abs_pos_embed(self.pos_embed, (h, w), (grid, grid), antialias=True).to(x.dtype)
        x = x.view(x.shape[0], h, w, -1)  # (B, h, w, D): the blocks work on the grid
        hidden_states = [x.flatten(1, 2)] if output_hidden_states else None
        for block in self.blocks:
            x = block(x)
            if output_hidden_states:
                hidden_states.append(x.flatten(1, 2))
        features = self.neck(x)  # (B, C_out, h, w)
        tokens = features.flatten(2).transpose(1, 2)  # (B, h*w, C_out)
        output = VisionEncoderOutput(
            last_hidden_state=tokens,
            image_embeds=tokens,
            pooler_output=tokens.mean(dim=1),
            hidden_states=tuple(hidden_states) if output_hidden_states else None,
        )
        return output if return_dict is not False else output.to_tuple()

    def _check_pixel_values(self, pixel_values: torch.Tensor) -> None:
        check_pixel_values(pixel_values, self.config.num_channels)
        patch = self.config.patch_size
        if pixel_values.shape[-2] % patch or pixel_values.shape[-1] % patch:
            raise ValueError(f"pixel_values of size {tuple(pixel_values.shape[-2:])} are not multiples of the "
                             f"{patch}-pixel patch; SAMImageProcessor pads images to {self.config.image_size}")


__all__ = ["SAMPreTrainedModel", "SAMVisionModel"]
