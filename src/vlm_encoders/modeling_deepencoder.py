"""DeepSeek-OCR's DeepEncoder: serial compression of a high-resolution image.

DeepSeek-OCR: Wei et al. 2025 (arXiv 2510.18234).

pixel_values (B, 3, S, S), S = 512 / 640 / 1024 / 1280 by mode
  -> SAM-B: 16 x 16 patches, windowed attention, neck           (B, 256, S/16, S/16)   many tokens, cheap attention
  -> compressor: Conv3x3 s2 256->512, Conv3x3 s2 512->1024       (B, 1024, S/64, S/64)  16x fewer tokens
  -> CLIP-L with the compressed map as its patch embedding       (B, 1 + (S/64)^2, 1024) global attention, few tokens
  -> features: CLIP's patch tokens beside the compressed map     (B, (S/64)^2, 2048)
  -> linear projector to the LLM width; a newline after every token row; Gundam's tiles as one canvas
     before the global view; a view separator                    image_embeds (positions, D_llm), packed
"""

import math

import torch
from torch import nn
from transformers import PreTrainedModel
from transformers import initialization as init

from .configuration_deepencoder import DeepEncoderConfig
from .layers_patch_embed import check_pixel_values
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
    """SAM -> compressor -> CLIP: (B, 3, S, S) square views -> (B, (S/64)^2, 2048) features, before the projector."""

    def __init__(self, config: DeepEncoderConfig):
        super().__init__(config)
        self.sam = SAMVisionModel(config.sam_config)
        self.compressor = DeepEncoderCompressor(config.sam_config.output_channels, config.compressor_channels)
        self.clip = ViTVisionModel(config.clip_config)
        self.post_init()

    def forward(self, pixel_values: torch.Tensor, output_hidden_states: bool | None = None,
                return_dict: bool | None = None, **kwargs) -> VisionEncoderOutput:
        """pixel_values: (B, 3, S, S) with S a multiple of 64 -> features (B, (S/64)^2, 2048).

        hidden_states, if asked: SAM's patch embedding and every SAM block (B, (S/16)^2, D_sam), then every CLIP
        block (B, 1 + (S/64)^2, D_clip): one entry per block plus the input, as for a single tower.
        """
        check_square_views(pixel_values, self.config.token_stride, "pixel_values")
        output_hidden_states = self.config.output_hidden_states if output_hidden_states is None else output_hidden_states
        sam = self.sam(pixel_values, output_hidden_states=output_hidden_states)
        sam_tokens = sam.last_hidden_state  # (B, (S/16)^2, 256)
        B, N, C = sam_tokens.shape
        side = math.isqrt(N)
        sam_map = sam_tokens.transpose(1, 2).reshape(B, C, side, side)  # (B, 256, S/16, S/16)
        compressed = self.compressor(sam_map)  # (B, 1024, S/64, S/64): 16x fewer positions
        clip = self.clip(patch_embeds=compressed, output_hidden_states=output_hidden_states)
        clip_tokens = clip.image_embeds  # (B, (S/64)^2, 1024), CLS dropped
        features = torch.cat([clip_tokens, compressed.flatten(2).transpose(1, 2)], dim=-1)  # (B, (S/64)^2, 2048)
        hidden_states = sam.hidden_states + clip.hidden_states[1:] if output_hidden_states else None
        output = VisionEncoderOutput(last_hidden_state=features, image_embeds=features,
                                     pooler_output=features.mean(dim=1), hidden_states=hidden_states)
        return output if return_dict is not False else output.to_tuple()


class DeepEncoderModel(DeepEncoderPreTrainedModel):
    """DeepEncoder + linear projector + DeepSeek-OCR's token layout: what the LLM receives for each image.

    Per image: [tiled canvas, a newline after every token row] + [global view, a newline after every row]
    + [view separator], the canvas only when the image was tiled (Gundam modes). The newline and separator
    are learned vectors in the LLM's space, so they come after the projector and `image_embeds` is already
    the LLM's width: a VLM puts an identity projector after this model.
    """

    def __init__(self, config: DeepEncoderConfig):
        super().__init__(config)
        self.vision = DeepEncoderVisionModel(config)
        self.projector = nn.Linear(config.vision_dim, config.out_hidden_size)
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

    def get_input_embeddings(self) -> nn.Module:
        return self.vision.sam.patch_embed.proj

    def forward(self, pixel_values: torch.Tensor, pixel_values_local: torch.Tensor | None = None,
                image_tiles: torch.Tensor | None = None, output_hidden_states: bool | None = None,
                return_dict: bool | None = None, **kwargs) -> VisionEncoderOutput:
        """pixel_values: (B, 3, S, S) global views; pixel_values_local: (T, 3, s, s) the tiles of all images, image by
        image, row-major; image_tiles: (B, 2) (columns, rows) of each image's tiles, (0, 0) for none.

        Returns `image_embeds` (sum of positions, D_out) packed image after image (see `split_image_embeds`),
        `last_hidden_state` (B, n*n, 2048) the global views' features, `pooler_output` (B, D_out) the mean of
        each image's positions, `hidden_states` of the global views if asked.
        """
        tiles = self._check_tiles(pixel_values, pixel_values_local, image_tiles)
        vision = self.vision(pixel_values, output_hidden_states=output_hidden_states)
        global_features = self.projector(vision.image_embeds)  # (B, n*n, D)
        B, N, D = global_features.shape
        n = math.isqrt(N)
        newline = self.image_newline.to(global_features.dtype)
        separator = self.view_separator.to(global_features.dtype)[None]  # (1, D)
        if pixel_values_local is not None:
            local = self.projector(self.vision(pixel_values_local).image_embeds)  # (T, m*m, D)
            per_image = local.split([cols * rows for cols, rows in tiles])
        sequences = []
        for b, (cols, rows) in enumerate(tiles):
            parts = []
            if cols * rows:  # the tiles as one canvas: token rows run across tiles
                m = math.isqrt(per_image[b].shape[1])
                canvas = per_image[b].view(rows, cols, m, m, D).transpose(1, 2).reshape(rows * m, cols * m, D)
                parts.append(_with_newlines(canvas, newline))  # (rows*m * (cols*m + 1), D)
            parts.append(_with_newlines(global_features[b].view(n, n, D), newline))  # (n * (n + 1), D)
            parts.append(separator)
            sequences.append(torch.cat(parts))
        image_embeds = torch.cat(sequences)  # (sum of positions, D)
        pooled = torch.stack([seq.mean(0) for seq in sequences])
        output = VisionEncoderOutput(last_hidden_state=vision.last_hidden_state, image_embeds=image_embeds,
                                     pooler_output=pooled, hidden_states=vision.hidden_states)
        return output if return_dict is not False else output.to_tuple()

    @staticmethod
    def positions_per_image(pixel_values: torch.Tensor, pixel_values_local: torch.Tensor | None,
                            image_tiles: torch.Tensor | None, token_stride: int = 64) -> list[int]:
        """How many rows of `image_embeds` each image gives, from the input shapes alone."""
        n = pixel_values.shape[-1] // token_stride
        m = pixel_values_local.shape[-1] // token_stride if pixel_values_local is not None else 0
        tiles = image_tiles.tolist() if image_tiles is not None else [[0, 0]] * len(pixel_values)
        return [n * (n + 1) + 1 + rows * m * (cols * m + 1) for cols, rows in tiles]

    @staticmethod
    def split_image_embeds(image_embeds: torch.Tensor, pixel_values, pixel_values_local=None, image_tiles=None,
                           token_stride: int = 64) -> tuple[torch.Tensor, ...]:
        """The packed `image_embeds` cut into one (positions_i, D) tensor per image."""
        return image_embeds.split(DeepEncoderModel.positions_per_image(pixel_values, pixel_values_local, image_tiles,
                                                                       token_stride))

    def _check_tiles(self, pixel_values, pixel_values_local, image_tiles) -> list[list[int]]:
        """Tiles and grid agree; the views' own shapes are checked by `DeepEncoderVisionModel`."""
        if image_tiles is None:
            if pixel_values_local is not None:
                raise ValueError("pixel_values_local needs image_tiles, the (columns, rows) of each image's tiles")
            return [[0, 0]] * len(pixel_values)
        if image_tiles.shape != (len(pixel_values), 2):
            raise ValueError(f"image_tiles must be (batch, 2) = ({len(pixel_values)}, 2), one (columns, rows) per "
                             f"image, got {tuple(image_tiles.shape)}")
        tiles = image_tiles.tolist()
        wanted = sum(cols * rows for cols, rows in tiles)
        if (image_tiles < 0).any():
            raise ValueError(f"image_tiles holds a negative count: {tiles}")
        if wanted and pixel_values_local is None:
            raise ValueError(f"image_tiles describes {wanted} tiles but no pixel_values_local were given")
        if pixel_values_local is not None:
            if len(pixel_values_local) != wanted:
                raise ValueError(f"image_tiles describes {wanted} tiles but pixel_values_local holds "
                                 f"{len(pixel_values_local)}")
        return tiles


def check_square_views(views, token_stride: int, name: str) -> None:
    """Raise unless `views` are (B, 3, S, S) floats with S a multiple of `token_stride` (the processor's modes)."""
    check_pixel_values(views, 3)
    height, width = views.shape[-2:]
    if height != width or height % token_stride:
        raise ValueError(f"{name} must be square views whose side is a multiple of {token_stride} pixels (the "
                         f"DeepEncoderImageProcessor modes: 512, 640, 1024, 1280), got {height}x{width}")


def _with_newlines(grid: torch.Tensor, newline: torch.Tensor) -> torch.Tensor:
    """(rows, cols, D) -> (rows * (cols + 1), D): the learned newline after every row."""
    rows, _, D = grid.shape
    return torch.cat([grid, newline.expand(rows, 1, D)], dim=1).reshape(-1, D)


__all__ = ["DeepEncoderCompressor", "DeepEncoderModel", "DeepEncoderPreTrainedModel", "DeepEncoderVisionModel"]
