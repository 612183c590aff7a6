"""DeepSeek-OCR's DeepEncoder: the shared contract, parity with transformers' Unlimited-OCR, the paper's token tables."""

import pytest
import torch

from encoder_tests import EncoderTests, random_image
from test_sam import randomize
from vlm_encoders import DeepEncoderConfig, DeepEncoderImageProcessor, DeepEncoderModel, convert_deepencoder


def tiny_deepencoder_config(**overrides):
    """Real patch (16 px), window (14) and modes, tiny widths and depths: a 1024 px view costs little."""
    sam = dict(hidden_size=32, intermediate_size=40, num_hidden_layers=2, num_attention_heads=2, output_channels=24,
               global_attn_indexes=[1])
    clip = dict(hidden_size=48, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, image_size=224,
                patch_size=14, has_patch_embed=False, pos_embed_antialias=True, post_layernorm="none",
                pooling="none", feature_layer=-1, feature_select="patch")
    return DeepEncoderConfig(**{"sam_config": sam, "clip_config": clip, "compressor_channels": [40, 48],
                                "out_hidden_size": 40, **overrides})


class DeepEncoderContract(EncoderTests):
    config_class = DeepEncoderConfig
    model_class = DeepEncoderModel
    processor_class = DeepEncoderImageProcessor
    supports_flash = False  # SAM's relative positions are an additive bias
    mode = "gundam"
    # a tiled image (2 x 3 tiles of 640) between two that only get the global view
    batch_sizes_hw = [(45, 61), (1000, 700), (38, 38)]
    rejected_sizes = {(1, 1): "too small", (1, 4000): "too small", (4000, 1): "too small"}

    def tiny_config(self, **overrides):
        return tiny_deepencoder_config(**overrides)

    def make_processor(self, config):
        return DeepEncoderImageProcessor(mode=self.mode)

    def split_image_embeds(self, output, batch):
        return list(DeepEncoderModel.split_image_embeds(output.image_embeds, batch["pixel_values"],
                                                        batch.get("pixel_values_local"), batch["image_tiles"]))

    def invalid_pixel_inputs(self, config):
        view, tile = torch.zeros(1, 3, 512, 512), torch.zeros(2, 3, 640, 640)
        return [
            (dict(pixel_values=torch.zeros(1, 3, 512, 448)), ValueError),  # not square
            (dict(pixel_values=torch.zeros(1, 3, 500, 500)), ValueError),  # not a multiple of 64
            (dict(pixel_values=torch.zeros(1, 4, 512, 512)), ValueError),
            (dict(pixel_values=view.to(torch.uint8)), TypeError),
            (dict(pixel_values=view, pixel_values_local=tile), ValueError),  # tiles without their grid
            (dict(pixel_values=view, image_tiles=torch.tensor([[2, 1]])), ValueError),  # a grid without tiles
            (dict(pixel_values=view, pixel_values_local=tile, image_tiles=torch.tensor([[3, 1]])), ValueError),
            (dict(pixel_values=view, pixel_values_local=tile, image_tiles=torch.tensor([2, 1])), ValueError),
        ]


class TestDeepEncoder(DeepEncoderContract):
    pass


class TestDeepEncoderTiny(DeepEncoderContract):
    """Tiny mode (512 px, stretched): the contract's layout and batching tests without tiles."""

    mode = "tiny"
    batch_sizes_hw = [(45, 61), (61, 45), (38, 38)]


def test_mode_errors_are_clear():
    with pytest.raises(ValueError, match="unknown DeepEncoder mode 'huge'"):
        DeepEncoderImageProcessor(mode="huge")
    with pytest.raises(ValueError, match="unknown DeepEncoder mode"):
        DeepEncoderImageProcessor()(random_image(20, 20), mode="huge")
    with pytest.raises(ValueError, match="min_tiles <= max_tiles"):
        DeepEncoderImageProcessor(min_tiles=4, max_tiles=2)
    processor = DeepEncoderImageProcessor(mode="gundam", max_tiles=4)
    assert DeepEncoderImageProcessor(mode="gundam").get_layout(700, 3500)["tiles"] == (5, 1)  # 5:1
    assert processor.get_layout(700, 3500)["tiles"] == (4, 1)  # at most 4 tiles
    batch = processor(random_image(700, 3500), return_tensors="pt")
    assert batch["image_tiles"].tolist() == [[4, 1]] and batch["pixel_values_local"].shape[0] == 4


def test_hidden_states_run_through_both_stages():
    torch.manual_seed(0)
    model = DeepEncoderModel(tiny_deepencoder_config()).eval()
    with torch.no_grad():
        out = model(torch.randn(1, 3, 512, 512), output_hidden_states=True)
    shapes = [tuple(h.shape) for h in out.hidden_states]
    assert shapes == [(1, 1024, 32)] * 3 + [(1, 65, 48)] * 2  # SAM input + 2 blocks at 32x32, CLIP 2 blocks at 8x8


def unlimited_ocr_vision(sam_depth=2, clip_depth=2):
    """transformers' Unlimited-OCR vision model, every weight random (its own init leaves SAM near zero at 1e-10,
    which would make any comparison vacuous)."""
    from transformers.models.unlimited_ocr.configuration_unlimited_ocr import UnlimitedOcrVisionConfig
    from transformers.models.unlimited_ocr.modeling_unlimited_ocr import UnlimitedOcrVisionModel

    torch.manual_seed(0)
    config = UnlimitedOcrVisionConfig(sam_config=dict(num_hidden_layers=sam_depth, global_attn_indexes=[1]),
                                      encoder_config=dict(num_hidden_layers=clip_depth))
    return randomize(UnlimitedOcrVisionModel(config).eval())


@pytest.mark.parametrize("side, tokens", [(1024, 256), (640, 100), (512, 64)])
def test_features_match_unlimited_ocr(side, tokens, record_parity):
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
    record_parity("deepencoder", "UnlimitedOcrVisionModel", f"2048-d features at {side}², SAM-B and CLIP-L "
                  "widths, 2 + 2 blocks", delta)


def test_config_rejects_a_clip_stage_with_its_own_patch_embedding():
    from vlm_encoders.configuration_deepencoder import DeepEncoderConfig
    from vlm_encoders.configuration_vit import ViTVisionConfig

    with pytest.raises(Exception, match="has_patch_embed"):
        DeepEncoderConfig(clip_config=ViTVisionConfig.from_variant("L/14", image_size=224).to_dict())
    with pytest.raises(Exception, match="compressor"):
        DeepEncoderConfig(compressor_channels=[512, 768])


@pytest.mark.parametrize("mode, vision, positions", [
    ("tiny", 64, 73), ("small", 100, 111), ("base", 256, 273), ("large", 400, 421),
])
def test_single_view_modes_give_the_papers_token_counts(mode, vision, positions):
    """DeepSeek-OCR Table 1: Tiny 64 / Small 100 / Base 256 / Large 400 vision tokens; +newlines +separator."""
    from vlm_encoders.geometry import deepencoder_layout

    layout = deepencoder_layout(700, 500, mode)
    assert (layout["vision_tokens"], layout["positions"], layout["tiles"]) == (vision, positions, (0, 0))


@pytest.mark.parametrize("height, width, tiles, vision, positions", [
    (896, 896, (2, 2), 656, 693),      # the example
    (1080, 1920, (2, 1), 456, 483),    # a 16:9 frame: two tiles side by side
    (672, 1008, (3, 2), 856, 893),
    (3508, 2480, (2, 3), 856, 903),    # an A4 scan at 300 dpi
    (600, 640, (0, 0), 256, 273),      # both sides <= 640: no tiles, Base only
])
def test_gundam_tiles_and_token_counts(height, width, tiles, vision, positions):
    from vlm_encoders.geometry import deepencoder_layout

    layout = deepencoder_layout(height, width, "gundam")
    assert (layout["tiles"], layout["vision_tokens"], layout["positions"]) == (tiles, vision, positions)


def test_valid_tokens_of_padded_views_follow_eq_1():
    import math

    from vlm_encoders.geometry import deepencoder_layout

    assert deepencoder_layout(1000, 1000, "base")["valid_tokens"] == 256  # square: nothing padded
    assert deepencoder_layout(768, 1024, "base")["valid_tokens"] == math.ceil(256 * (1 - 256 / 1024))  # 192
    assert deepencoder_layout(768, 1024, "small")["valid_tokens"] == 100  # resized modes have no padding
    with pytest.raises(ValueError, match="unknown DeepEncoder mode"):
        deepencoder_layout(10, 10, "huge")


def test_tile_grid_matches_the_reference_rule():
    """Against transformers' Unlimited-OCR implementation of the same InternVL rule (its max is configurable)."""
    import random

    from transformers.models.unlimited_ocr.image_processing_unlimited_ocr import get_optimal_tiled_canvas

    from vlm_encoders.geometry import closest_tile_grid

    rng = random.Random(0)
    for _ in range(300):
        height, width = rng.randint(50, 5000), rng.randint(50, 5000)
        expected = get_optimal_tiled_canvas((height, width), (640, 640), 2, 6)
        assert closest_tile_grid(height, width, tile=640, min_tiles=2, max_tiles=6) == tuple(expected), (height, width)


def test_projected_layout_with_tiles_matches_unlimited_ocr(record_parity):
    """Projector, newline after every row, view separator; a Gundam image (2x2 tiles) and a Base image in one batch."""
    from transformers.models.unlimited_ocr.configuration_unlimited_ocr import UnlimitedOcrConfig
    from transformers.models.unlimited_ocr.modeling_unlimited_ocr import UnlimitedOcrModel

    from vlm_encoders.geometry import deepencoder_layout

    config = UnlimitedOcrConfig(
        vision_config=dict(sam_config=dict(num_hidden_layers=2, global_attn_indexes=[1]),
                           encoder_config=dict(num_hidden_layers=1)),
        text_config=dict(hidden_size=64, intermediate_size=64, moe_intermediate_size=32, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=2, vocab_size=300, n_routed_experts=4,
                         num_experts_per_tok=2, first_k_dense_replace=1))
    torch.manual_seed(0)
    theirs = UnlimitedOcrModel(config).eval()
    randomize(theirs.vision_tower)
    ours = convert_deepencoder(theirs).eval()
    assert type(ours).__name__ == "DeepEncoderModel" and ours.config.out_hidden_size == 64
    pixels, tiles = torch.randn(2, 3, 1024, 1024), torch.randn(4, 3, 640, 640)
    with torch.no_grad():
        expected = theirs.get_image_features(pixels, pixel_values_local=tiles, num_local_patches=[4, 0],
                                             patches_grid=[[2, 2]]).pooler_output
        out = ours(pixels, pixel_values_local=tiles, image_tiles=torch.tensor([[2, 2], [0, 0]]))
    lengths = [deepencoder_layout(896, 896, "gundam")["positions"], deepencoder_layout(600, 600, "gundam")["positions"]]
    assert [e.shape[0] for e in expected] == lengths == [693, 273]
    assert out.image_embeds.shape == (sum(lengths), 64)
    delta = (out.image_embeds - torch.cat(expected)).abs().max().item()
    print(f"DeepEncoder layout max |delta| vs UnlimitedOcrModel.get_image_features: {delta:.2e}")
    assert torch.cat(expected).abs().mean() > 1e-2 and delta <= 1e-4, delta
    record_parity("deepencoder", "UnlimitedOcrModel.get_image_features", "projected layout: a Gundam image (2x2 "
                  "tiles) and a Base image, newlines and separators, 2 + 1 blocks", delta)


@pytest.mark.parametrize("mode", ["gundam", "base", "tiny"])
def test_processor_matches_unlimited_ocr(mode):
    """Global views, tiles and grids equal transformers' Unlimited-OCR processor with DeepSeek-OCR's settings."""
    import numpy as np
    import PIL.Image
    from transformers.models.unlimited_ocr.image_processing_unlimited_ocr import UnlimitedOcrImageProcessor

    from vlm_encoders.image_processing_deepencoder import DeepEncoderImageProcessor

    rng = np.random.default_rng(0)
    sizes = [(896, 896), (1080, 1920), (600, 500), (3508 // 3, 2480 // 3)]
    images = [PIL.Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)) for h, w in sizes]
    side = {"gundam": 1024, "base": 1024, "tiny": 512}[mode]
    theirs = UnlimitedOcrImageProcessor(size={"height": side, "width": side}, tile_size=640, min_patches=2,
                                        max_patches=6, crop_to_patches=mode == "gundam",
                                        maximum_pad_value=0 if mode != "tiny" else 640)
    expected = theirs(images, return_tensors="pt")
    ours = DeepEncoderImageProcessor(mode=mode)
    got = ours(images, return_tensors="pt")
    torch.testing.assert_close(got["pixel_values"], torch.stack(list(expected["pixel_values"])), atol=1e-5, rtol=0)
    if mode == "gundam":
        local = expected["pixel_values_local"]
        local = local if isinstance(local, torch.Tensor) else torch.cat([torch.as_tensor(t) for t in local])
        torch.testing.assert_close(got["pixel_values_local"], local.reshape(-1, 3, 640, 640), atol=1e-5, rtol=0)
        grids = [g if n else [0, 0] for g, n in zip(expected["patches_grid"], expected["num_local_patches"])]
        assert got["image_tiles"].tolist() == grids
    from vlm_encoders.geometry import deepencoder_layout

    for h, w in sizes:
        assert ours.get_number_of_image_tokens(h, w) == deepencoder_layout(h, w, mode)["positions"]
