"""Native-resolution NaViT (Qwen2-VL / Qwen2.5-VL): the shared contract, and what only this paradigm has."""

import numpy as np
import pytest
import torch

from encoder_tests import EncoderTests, random_image
from vlm_encoders import NaViTImageProcessor, NaViTVisionConfig, NaViTVisionModel
from vlm_encoders.geometry import navit_num_image_tokens, smart_resize


class NaViTContract(EncoderTests):
    config_class = NaViTVisionConfig
    model_class = NaViTVisionModel
    processor_class = NaViTImageProcessor
    style = "qwen2-vl"
    rejected_sizes = {(1, 4000): "aspect ratio 4000.0", (4000, 1): "aspect ratio 4000.0"}

    def tiny_config(self, **overrides):
        # 4-px patches, 2x2 merge: factor 8; windows of 2x2 merge blocks so that the test images have several
        style = NaViTVisionConfig.from_variant("qwen2.5-vl-3b" if self.style == "qwen2.5-vl" else "qwen2-vl-2b")
        keep = {k: getattr(style, k) for k in ("norm", "mlp", "hidden_act")}
        windows = dict(window_size=16, fullatt_block_indexes=[1]) if self.style == "qwen2.5-vl" else {}
        tiny = dict(hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4,
                    out_hidden_size=24, patch_size=4, **windows)
        return NaViTVisionConfig(**{**keep, **tiny, **overrides})

    def make_processor(self, config):
        factor = config.patch_size * config.spatial_merge_size
        return NaViTImageProcessor(patch_size=config.patch_size, merge_size=config.spatial_merge_size,
                                   temporal_patch_size=config.temporal_patch_size, min_pixels=2 * factor**2,
                                   max_pixels=80 * factor**2)

    def split_image_embeds(self, output, batch):
        m2 = 4
        return list(output.image_embeds.split((batch["image_grid_thw"].prod(-1) // m2).tolist()))

    def invalid_pixel_inputs(self, config):
        dim = config.patch_dim
        grid = torch.tensor([[1, 4, 6]])
        return [
            (dict(pixel_values=torch.zeros(24, dim + 1), image_grid_thw=grid), ValueError),  # wrong patch size
            (dict(pixel_values=torch.zeros(23, dim), image_grid_thw=grid), ValueError),  # grid says 24 patches
            (dict(pixel_values=torch.zeros(24, dim, dtype=torch.uint8), image_grid_thw=grid), TypeError),
            (dict(pixel_values=torch.zeros(15, dim), image_grid_thw=torch.tensor([[1, 3, 5]])), ValueError),  # odd
            (dict(pixel_values=torch.zeros(24, dim), image_grid_thw=torch.tensor([1, 4, 6])), ValueError),  # 1D
            (dict(pixel_values=torch.zeros(0, dim), image_grid_thw=torch.zeros(0, 3, dtype=torch.long)), ValueError),
            (dict(pixel_values=torch.zeros(24, dim), image_grid_thw=[[1, 4, 6]]), TypeError),
        ]


class TestNaViTQwen2VL(NaViTContract):
    style = "qwen2-vl"


class TestNaViTQwen25VL(NaViTContract):
    style = "qwen2.5-vl"


def test_a_pack_of_four_sizes_equals_each_image_alone():
    """The issue's batching contract: one image alone == the same image in a pack of 4 of different sizes."""
    for style in ("qwen2-vl", "qwen2.5-vl"):
        contract = NaViTContract()
        contract.style = style
        model = contract.build()
        processor = contract.make_processor(model.config)
        sizes = [(45, 61), (40, 40), (17, 90), (64, 64)]
        batch = contract.batch(processor, sizes)
        together = contract.split_image_embeds(contract.run(model, batch), batch)
        assert len({t.shape[0] for t in together}) == 4  # four different token counts
        alone_batch = contract.batch(processor, sizes[:1])
        (alone,) = contract.split_image_embeds(contract.run(model, alone_batch), alone_batch)
        torch.testing.assert_close(alone, together[0], atol=1e-5, rtol=1e-5)


def test_windows_cover_every_block_once_and_stay_inside_one_image():
    from vlm_encoders.modeling_navit import window_order

    grid = torch.tensor([[1, 10, 14], [1, 8, 8], [2, 4, 6]])  # in patches; merge 2 -> 5x7, 4x4, 2x(2x3) blocks
    order, cu = window_order(grid, merge_size=2, window_units=2)
    assert sorted(order.tolist()) == list(range(35 + 16 + 12))
    image_of_block = torch.repeat_interleave(torch.arange(4), torch.tensor([35, 16, 6, 6]))  # frames separately
    lengths = (cu[1:] - cu[:-1]) // 4
    for window in order.split(lengths.tolist()):
        assert len(set(image_of_block[window].tolist())) == 1
    assert lengths.max() == 4 and int(cu[-1]) == 4 * len(order)


def test_variants_are_the_published_towers():
    qwen2 = NaViTVisionConfig.from_variant("qwen2-vl-7b")
    assert (qwen2.hidden_size, qwen2.num_hidden_layers, qwen2.num_attention_heads, qwen2.intermediate_size) == (
        1280, 32, 16, 5120)
    assert qwen2.out_hidden_size == 3584 and qwen2.window_size == 0 and qwen2.patch_dim == 1176
    qwen25 = NaViTVisionConfig.from_variant("qwen2.5-vl-7b")
    assert (qwen25.norm, qwen25.mlp, qwen25.intermediate_size, qwen25.window_merge_units) == ("rmsnorm", "swiglu", 3420, 4)
    assert qwen25.fullatt_block_indexes == [7, 15, 23, 31]
    with pytest.raises(ValueError, match="unknown NaViT variant"):
        NaViTVisionConfig.from_variant("qwen3-vl")


@pytest.mark.parametrize("bad, message", [
    (dict(hidden_size=30, num_attention_heads=4), "not divisible"),
    (dict(hidden_size=24, num_attention_heads=4), "divisible by 4"),
    (dict(norm="batchnorm"), "norm"),
    (dict(window_size=100), "multiple of"),
    (dict(num_hidden_layers=4, fullatt_block_indexes=[7]), "fullatt_block_indexes"),
])
def test_invalid_configs_are_rejected(bad, message):
    with pytest.raises(Exception, match=message):
        NaViTVisionConfig(**bad)


@pytest.mark.parametrize("height, width, tokens", [
    # transformers' defaults (min 56*56, max 28*28*1280); values from paradigms.md section 6
    (224, 224, 64), (336, 336, 144), (448, 448, 256), (896, 896, 1024), (1008, 672, 864), (1024, 768, 999),
    (1080, 1920, 1222), (3508, 2480, 1260), (1, 1, 4),
])
def test_published_token_counts(height, width, tokens):
    processor = NaViTImageProcessor()
    assert processor.get_number_of_image_tokens(height, width) == tokens


def test_the_default_budget_is_always_on():
    from transformers import Qwen2VLImageProcessor

    processor = NaViTImageProcessor()
    assert processor.max_pixels == 28 * 28 * 1280
    photo = processor.get_number_of_image_tokens(3024, 4032)  # a 12 MP phone photo
    assert photo <= 1280  # not the ~15k tokens of an uncapped budget
    assert photo == Qwen2VLImageProcessor().get_number_of_image_patches(3024, 4032) // 4
    uncapped = NaViTImageProcessor(max_pixels=28 * 28 * 16384).get_number_of_image_tokens(3024, 4032)
    assert uncapped == Qwen2VLImageProcessor(max_pixels=28 * 28 * 16384).get_number_of_image_patches(3024, 4032) // 4
    assert uncapped > 10_000


def test_processor_errors_name_the_problem():
    with pytest.raises(ValueError, match="min_pixels=5000 is larger than max_pixels=4000"):
        NaViTImageProcessor(min_pixels=5000, max_pixels=4000)
    processor = NaViTImageProcessor()
    with pytest.raises(ValueError, match="larger than max_pixels"):
        processor(random_image(50, 50), min_pixels=10**6, max_pixels=10**5)
    with pytest.raises(ValueError, match="aspect ratio 250.0"):
        processor(random_image(2, 500))
    with pytest.raises(ValueError, match="describe the model"):
        processor(random_image(50, 50), patch_size=16)
    with pytest.raises(ValueError, match="no pixels"):
        smart_resize(0, 10, factor=28, min_pixels=10, max_pixels=10**6)


def test_budget_is_kept_across_sizes():
    """max_pixels bounds the area unless one side is already at its floor of one merge block."""
    rng = np.random.default_rng(0)
    for _ in range(500):
        height, width = (int(v) for v in rng.integers(1, 5000, 2))
        if max(height, width) / min(height, width) > 200:
            continue
        h, w = smart_resize(height, width, factor=28, min_pixels=3136, max_pixels=28 * 28 * 256)
        assert h % 28 == 0 and w % 28 == 0
        assert h * w <= 28 * 28 * 256 or min(h, w) == 28
        assert h * w >= 3136
        assert navit_num_image_tokens(height, width, patch_size=14, merge_size=2, min_pixels=3136,
                                      max_pixels=28 * 28 * 256) == (h // 28) * (w // 28)


def test_split_image_embeds_and_pooler():
    contract = NaViTContract()
    model = contract.build()
    batch = contract.batch(contract.make_processor(model.config))
    out = contract.run(model, batch)
    parts = model.split_image_embeds(out.image_embeds, batch["image_grid_thw"])
    assert [p.shape[0] for p in parts] == (batch["image_grid_thw"].prod(-1) // 4).tolist()
    torch.testing.assert_close(out.pooler_output, torch.stack([p.mean(0) for p in parts]))
    patches = batch["image_grid_thw"].prod(-1).tolist()
    assert out.last_hidden_state.shape == (3, max(patches), 32)
    for hidden, n in zip(out.last_hidden_state, patches):  # padding rows are zeros, real rows are not
        assert hidden[:n].abs().sum(-1).min() > 0 and (hidden[n:] == 0).all()


def test_feature_extraction_pipeline_batches_correctly():
    """transformers' pipeline unbatches on dim 0: per-image outputs must carry a batch dimension."""
    from transformers import pipeline

    contract = NaViTContract()
    model = contract.build()
    processor = contract.make_processor(model.config)
    extract = pipeline("image-feature-extraction", model=model, image_processor=processor, device="cpu")
    images = [random_image(45, 61, 0), random_image(17, 90, 1), random_image(38, 38, 2)]
    one_by_one = [extract(image, return_tensors=True) for image in images]
    batched = extract(images, batch_size=2, return_tensors=True)
    for alone, together in zip(one_by_one, batched):
        n = alone.shape[1]
        torch.testing.assert_close(together[:, :n], alone, atol=1e-5, rtol=1e-5)
        assert (together[:, n:] == 0).all()
    pooled = [extract(image, pool=True, return_tensors=True) for image in images]
    pooled_batched = extract(images, pool=True, batch_size=3, return_tensors=True)
    for alone, together in zip(pooled, pooled_batched):
        torch.testing.assert_close(together, alone, atol=1e-5, rtol=1e-5)


def test_output_attentions_is_refused_clearly():
    contract = NaViTContract()
    model = contract.build()
    batch = contract.batch(contract.make_processor(model.config))
    with pytest.raises(ValueError, match="output_attentions"):
        model(**batch, output_attentions=True)


def test_mrope_positions_for_two_images_in_one_prompt():
    from vlm_encoders import mrope_position_ids

    ids = torch.tensor([[5, 9, 9, 9, 9, 9, 9, 6, 7, 9, 8]])  # text, a 2x3 image, text, a 1x1 image, text
    grid = torch.tensor([[1, 4, 6], [1, 2, 2]])
    positions, delta = mrope_position_ids(ids, grid, image_token_id=9, spatial_merge_size=2)
    t, h, w = positions[:, 0].tolist()
    assert t == [0, 1, 1, 1, 1, 1, 1, 4, 5, 6, 7]
    assert h == [0, 1, 1, 1, 2, 2, 2, 4, 5, 6, 7]
    assert w == [0, 1, 2, 3, 1, 2, 3, 4, 5, 6, 7]
    assert delta.tolist() == [[8 - 11]]
    with pytest.raises(ValueError, match="hold 7 image tokens but image_grid_thw describes 6"):
        mrope_position_ids(ids, grid[:1], image_token_id=9)
