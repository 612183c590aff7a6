"""SAM's image encoder: the shared contract, parity with transformers' SAM, and the memory-light relative positions."""

import numpy as np
import PIL.Image
import pytest
import torch

from encoder_tests import EncoderTests, random_image
from vlm_encoders import SAMImageProcessor, SAMVisionConfig, SAMVisionModel, convert_sam
from vlm_encoders.benchmark import randomize_


class SAMContract(EncoderTests):
    config_class = SAMVisionConfig
    model_class = SAMVisionModel
    processor_class = SAMImageProcessor
    supports_flash = False  # relative positions are an additive bias

    def tiny_config(self, **overrides):
        # 40 px, 4-px patches: a 10 x 10 grid cut into 3 x 3 windows, so windows need padding
        tiny = dict(hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4,
                    output_channels=24, image_size=40, patch_size=4, window_size=3, global_attn_indexes=[1])
        return SAMVisionConfig(**{**tiny, **overrides})

    def make_processor(self, config):
        return SAMImageProcessor(image_size=config.image_size, patch_size=config.patch_size)

    def split_image_embeds(self, output, batch):
        return list(output.image_embeds)

    def invalid_pixel_inputs(self, config):
        size = config.image_size
        return [
            (dict(pixel_values=torch.zeros(1, 4, size, size)), ValueError),
            (dict(pixel_values=torch.zeros(3, size, size)), ValueError),
            (dict(pixel_values=torch.zeros(1, 3, size, size, dtype=torch.uint8)), TypeError),
            (dict(pixel_values=torch.zeros(1, 3, size + 2, size)), ValueError),  # not a multiple of the patch
            (dict(pixel_values=[[0.0]]), TypeError),
        ]


class TestSAM(SAMContract):
    pass


# every weight random: transformers initialises SAM with std 1e-10 and its positions with zeros, which would make a
# comparison vacuous (near-zero outputs agree whatever the mapping)
randomize = randomize_


def published_sam(depth, global_attn_indexes, image_size=1024):
    """transformers' SAM-B vision encoder with random weights of the published shapes."""
    from transformers import SamVisionConfig, SamVisionModel

    torch.manual_seed(0)
    config = SamVisionConfig(hidden_size=768, num_hidden_layers=depth, num_attention_heads=12,
                             global_attn_indexes=global_attn_indexes, image_size=image_size)
    return randomize(SamVisionModel(config).eval())


@pytest.mark.parametrize("depth, global_attn", [(4, [1, 3]), pytest.param(12, [2, 5, 8, 11], marks=pytest.mark.slow)])
def test_sam_b_matches_transformers(depth, global_attn, record_parity):
    theirs = published_sam(depth, global_attn)
    ours = convert_sam(theirs)
    assert ours.config.global_attn_indexes == global_attn and ours.config.output_channels == 256
    rng = np.random.default_rng(0)
    image = PIL.Image.fromarray(rng.integers(0, 256, (600, 900, 3), dtype=np.uint8))
    from transformers import SamImageProcessor

    pixels = SamImageProcessor()(image, return_tensors="pt")["pixel_values"]
    assert torch.equal(pixels, SAMImageProcessor()(image, return_tensors="pt")["pixel_values"])
    with torch.no_grad():
        expected = theirs(pixels).last_hidden_state  # (1, 256, 64, 64)
        got = ours(pixels).last_hidden_state  # (1, 4096, 256)
    assert expected.abs().mean() > 1e-2  # a real signal
    delta = (got - expected.flatten(2).transpose(1, 2)).abs().max().item()
    assert delta <= 1e-4, delta
    record_parity("sam", "SamVisionModel", f"SAM-B @1024, {depth} of 12 blocks (global {global_attn})", delta)


@pytest.mark.parametrize("budget", [2 * 100 * 4 * 7, 2 * 100 * 4 * 100 * 3])  # 7 queries of 1 head; 3 whole heads
def test_relative_position_bias_in_blocks_is_exact(monkeypatch, budget):
    """Cutting the global bias into blocks of heads and queries changes memory, not the numbers."""
    from vlm_encoders.layers_attention import RelPosSelfAttention

    model = SAMVisionModel(SAMContract().tiny_config(window_size=0)).eval()
    pixels = torch.randn(2, 3, 40, 40)
    with torch.no_grad():
        whole = model(pixels).image_embeds
        monkeypatch.setattr(RelPosSelfAttention, "bias_bytes", {"cpu": budget})  # 2 images x 100 keys x 4 B per query
        blocks = model(pixels).image_embeds
    torch.testing.assert_close(blocks, whole, atol=1e-5, rtol=1e-5)


def test_other_grids_interpolate_positions():
    """DeepEncoder feeds SAM other sizes than 1024: absolute and relative positions are resampled."""
    model = SAMVisionModel(SAMContract().tiny_config()).eval()
    with torch.no_grad():
        out = model(torch.randn(1, 3, 24, 56))
    assert out.image_embeds.shape == (1, 6 * 14, 24) and torch.isfinite(out.image_embeds).all()


def test_variants_and_processor_rules():
    b = SAMVisionConfig.from_variant("sam-b")
    assert (b.hidden_size, b.num_hidden_layers, b.global_attn_indexes, b.grid_size) == (768, 12, [2, 5, 8, 11], 64)
    assert SAMVisionConfig.from_variant("sam-h").global_attn_indexes == [7, 15, 23, 31]
    with pytest.raises(ValueError, match="unknown SAM variant"):
        SAMVisionConfig.from_variant("sam-xl")
    processor = SAMImageProcessor()
    assert processor.get_number_of_image_tokens(600, 900) == 4096
    assert processor.get_resized_size(600, 900) == (683, 1024) and processor.get_processed_size(600, 900) == (1024, 1024)
    assert processor(random_image(1, 4000), return_tensors="pt")["pixel_values"].shape == (1, 3, 1024, 1024)


def test_flash_attention_is_refused_clearly():
    model = SAMVisionModel(SAMContract().tiny_config())
    with pytest.raises(ValueError, match="(?i)flash"):
        model.set_attn_implementation("flash_attention_2")


@pytest.mark.parametrize("side", [640, 512])
def test_deepseek_ocr_sam_stage_at_smaller_sizes(side):
    """DeepEncoder runs SAM-B at 640 (Small) and 512 (Tiny): positions resampled with antialiasing, relative
    positions interpolated. Checked against transformers' Unlimited-OCR SAM stage (its compressor left out)."""
    from transformers.models.unlimited_ocr.configuration_unlimited_ocr import UnlimitedOcrSamVisionConfig
    from transformers.models.unlimited_ocr.modeling_unlimited_ocr import UnlimitedOcrSamVisionEncoder

    torch.manual_seed(0)
    config = UnlimitedOcrSamVisionConfig(num_hidden_layers=4, global_attn_indexes=[1, 3])
    theirs = randomize(UnlimitedOcrSamVisionEncoder(config).eval())
    ours = convert_sam(theirs)
    theirs.proj = torch.nn.Identity()  # compare the SAM neck's output, before the 16x compressor
    pixels = torch.randn(1, 3, side, side)
    with torch.no_grad():
        expected = theirs(pixels).last_hidden_state  # (1, 256, side / 16, side / 16)
        got = ours(pixels).last_hidden_state
    delta = (got - expected.flatten(2).transpose(1, 2)).abs().max().item()
    assert expected.abs().mean() > 1e-2  # a real signal
    assert expected.shape[-1] == side // 16 and delta <= 1e-4, delta
