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


__all__ = ["DeepEncoderCompressor", "DeepEncoderPreTrainedModel", "DeepEncoderVisionModel"]
