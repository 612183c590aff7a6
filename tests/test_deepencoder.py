"""DeepSeek-OCR's DeepEncoder (work in progress, issue 5): the vision features against transformers' Unlimited-OCR.

The paradigm is not registered yet (modes, layout and processor come next); these tests pin what exists.
"""

import pytest
import torch

from vlm_encoders.conversion_deepencoder import convert_deepencoder


def unlimited_ocr_vision(sam_depth=2, clip_depth=2):
    """transformers' Unlimited-OCR vision model, every weight random (its own init leaves SAM near zero at 1e-10,
    which would make any comparison vacuous)."""
    from transformers.models.unlimited_ocr.configuration_unlimited_ocr import UnlimitedOcrVisionConfig
    from transformers.models.unlimited_ocr.modeling_unlimited_ocr import UnlimitedOcrVisionModel

    torch.manual_seed(0)
    config = UnlimitedOcrVisionConfig(sam_config=dict(num_hidden_layers=sam_depth, global_attn_indexes=[1]),
                                      encoder_config=dict(num_hidden_layers=clip_depth))
    model = UnlimitedOcrVisionModel(config).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name and name.endswith("weight"):
                p.normal_(1.0, 0.05)
            else:
                p.normal_(0.0, 0.02)
    return model


@pytest.mark.parametrize("side, tokens", [(1024, 256), (640, 100), (512, 64)])
def test_features_match_unlimited_ocr(side, tokens):
    """Base (1024), Small (640) and Tiny (512): 16x compression, 2048-d features (CLIP patch tokens + SAM map)."""
    theirs = unlimited_ocr_vision()
    ours = convert_deepencoder(theirs)
    pixels = torch.randn(1, 3, side, side)
    with torch.no_grad():
        expected = theirs(pixels).last_hidden_state
        got = ours(pixels).image_embeds
    assert got.shape == expected.shape == (1, tokens, 2048)
    assert expected.abs().mean() > 1e-2  # a real signal, not the near-zero output of an untrained init
    delta = (got - expected).abs().max().item()
    assert delta <= 1e-4, delta


def test_config_rejects_a_clip_stage_with_its_own_patch_embedding():
    from vlm_encoders.configuration_deepencoder import DeepEncoderConfig
    from vlm_encoders.configuration_vit import ViTVisionConfig

    with pytest.raises(Exception, match="has_patch_embed"):
        DeepEncoderConfig(clip_config=ViTVisionConfig.from_variant("L/14", image_size=224).to_dict())
    with pytest.raises(Exception, match="compressor"):
        DeepEncoderConfig(compressor_channels=[512, 768])
