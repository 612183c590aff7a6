"""DeepSeek-OCR's DeepEncoder: serial compression of a high-resolution image.

DeepSeek-OCR: Wei et al. 2025 (arXiv 2510.18234).

pixel_values (B, 3, S, S), S = 512 / 640 / 1024 / 1280 by mode
  -> SAM-B: 16 x 16 patches, windowed attention, neck           (B, 256, S/16, S/16)   many tokens, cheap attention
  -> compressor: Conv3x3 s2 256->512, Conv3x3 s2 512->1024       (B, 1024, S/64, S/64)  16x fewer tokens
  -> CLIP-L with the compressed map as its patch embedding       (B, 1 + (S/64)^2, 1024) global attention, few tokens
  -> features: CLIP's patch tokens beside the compressed map     (B, (S/64)^2, 2048)

Work in progress (issue 5): the features above match transformers' Unlimited-OCR vision model; the projector,
the newline / view-separator layout, the Gundam tiles and the processor modes come next.
"""

import torch
from torch import nn
from transformers import PreTrainedModel
from transformers import initialization as init

from .configuration_deepencoder import DeepEncoderConfig
from .modeling_sam import SAMVisionModel
from .modeling_vit import ViTVisionModel
from .outputs import VisionEncoderOutput


class DeepEncoderCompressor(nn.Module):
    """Two stride-2 3x3 convolutions without bias: 16x fewer positions, 4x more channels."""

    def __init__(self, in_channels: int, channels: list[int]):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, channels[0], kernel_size=3, stride=2, padding=1, bias=False)
        self.conv2 = nn.Conv2d(channels[0], channels[1], kernel_size=3, stride=2, padding=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2(self.conv1(x))


class DeepEncoderPreTrainedModel(PreTrainedModel):
    config_class = DeepEncoderConfig
    base_model_prefix = "deepencoder"
    main_input_name = "pixel_values"
    input_modalities = ("image",)
    supports_gradient_checkpointing = True
    _no_split_modules = ["SAMBlock", "ViTEncoderLayer"]
    _supports_sdpa = True
    _supports_attention_backend = True


class DeepEncoderVisionModel(DeepEncoderPreTrainedModel):
    def __init__(self, config: DeepEncoderConfig):
        super().__init__(config)
        self.sam = SAMVisionModel(config.sam_config)
        self.compressor = DeepEncoderCompressor(config.sam_config.output_channels, config.compressor_channels)
        self.clip = ViTVisionModel(config.clip_config)
        self.post_init()

    def forward(self, pixel_values: torch.Tensor, return_dict: bool | None = None, **kwargs) -> VisionEncoderOutput:
        """pixel_values: (B, 3, S, S) with S a multiple of 64 -> features (B, (S/64)^2, 2048)."""
        sam_tokens = self.sam(pixel_values).last_hidden_state  # (B, (S/16)^2, 256)
        B, N, C = sam_tokens.shape
        side = int(N**0.5)
        sam_map = sam_tokens.transpose(1, 2).reshape(B, C, side, side)  # (B, 256, S/16, S/16)
        compressed = self.compressor(sam_map)  # (B, 1024, S/64, S/64)
        clip_tokens = self.clip(patch_embeds=compressed).image_embeds  # (B, (S/64)^2, 1024), CLS dropped
        features = torch.cat([clip_tokens, compressed.flatten(2).transpose(1, 2)], dim=-1)  # (B, (S/64)^2, 2048)
        output = VisionEncoderOutput(last_hidden_state=features, image_embeds=features,
                                     pooler_output=features.mean(dim=1))
        return output if return_dict is not False else output.to_tuple()


class DeepEncoderModel(DeepEncoderPreTrainedModel):
    """DeepEncoder + linear projector + DeepSeek-OCR's token layout: what the LLM receives for each image.

    Per image: [tiled canvas, a newline after every token row] + [global view, a newline after every row]
    + [view separator], the canvas only when the image was tiled (Gundam modes).
    """

    def __init__(self, config: DeepEncoderConfig):
        super().__init__(config)
        self.vision = DeepEncoderVisionModel(config)
        self.projector = nn.Linear(config.feature_dim, config.out_hidden_size)
        self.image_newline = nn.Parameter(torch.empty(config.out_hidden_size))
        self.view_separator = nn.Parameter(torch.empty(config.out_hidden_size))
        self.post_init()

    @torch.no_grad()
    def _init_weights(self, module):
        super()._init_weights(module)
        if isinstance(module, DeepEncoderModel):  # DeepSeek-OCR: std = 1 / sqrt(width)
            std = self.config.out_hidden_size**-0.5
            init.normal_(module.image_newline, std=std)
            init.normal_(module.view_separator, std=std)

    def forward(self, pixel_values: torch.Tensor, pixel_values_local: torch.Tensor | None = None,
                image_tiles: torch.Tensor | None = None, return_dict: bool | None = None,
                **kwargs) -> VisionEncoderOutput:
        """pixel_values: (B, 3, S, S) global views; pixel_values_local: (T, 3, s, s) the tiles of all images, image by
        image, row-major; image_tiles: (B, 2) (columns, rows) of each image's tiles, (0, 0) for none.

        Returns `image_embeds` (sum of positions, D_out) packed image after image (see `split_image_embeds`),
        `last_hidden_state` (B, N, 2048) the global views' features, `pooler_output` (B, D_out).
        """
        features = self.vision(pixel_values).image_embeds  # (B, n*n, 2048)
        global_features = self.projector(features)  # (B, n*n, D)
        B, N, D = global_features.shape
        n = int(N**0.5)
        newline = self.image_newline.to(global_features.dtype)
        tiles = image_tiles.tolist() if image_tiles is not None else [[0, 0]] * B
        if pixel_values_local is None and any(cols * rows for cols, rows in tiles):
            raise ValueError("image_tiles describes tiles but no pixel_values_local were given")
        if pixel_values_local is not None:
            local = self.projector(self.vision(pixel_values_local).image_embeds)  # (T, m*m, D)
            per_image = local.split([cols * rows for cols, rows in tiles])
        sequences = []
        for b in range(B):
            parts = []
            cols, rows = tiles[b]
            if cols * rows:
                m = int(per_image[b].shape[1] ** 0.5)
                canvas = per_image[b].view(rows, cols, m, m, D).transpose(1, 2).reshape(rows * m, cols * m, D)
                parts.append(_with_newlines(canvas, newline))
            parts.append(_with_newlines(global_features[b].view(n, n, D), newline))
            parts.append(self.view_separator.to(global_features.dtype)[None])
            sequences.append(torch.cat(parts))
        image_embeds = torch.cat(sequences)  # (sum of positions, D)
        pooled = torch.stack([seq.mean(0) for seq in sequences])
        output = VisionEncoderOutput(last_hidden_state=features, image_embeds=image_embeds, pooler_output=pooled)
        return output if return_dict is not False else output.to_tuple()


def _with_newlines(grid: torch.Tensor, newline: torch.Tensor) -> torch.Tensor:
    """(rows, cols, D) -> (rows * (cols + 1), D): the learned newline after every row."""
    rows, _, D = grid.shape
    return torch.cat([grid, newline.expand(rows, 1, D)], dim=1).reshape(-1, D)


__all__ = ["DeepEncoderCompressor", "DeepEncoderModel", "DeepEncoderPreTrainedModel", "DeepEncoderVisionModel"]
