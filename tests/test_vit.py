"""Fixed-patch ViT: the shared contract, plus what only this paradigm has (styles, feature layers, positions)."""

import pytest
import torch

from encoder_tests import EncoderTests, random_image
from vlm_encoders import ViTImageProcessor, ViTVisionConfig, ViTVisionModel


class ViTContract(EncoderTests):
    config_class = ViTVisionConfig
    model_class = ViTVisionModel
    processor_class = ViTImageProcessor
    style = "clip"  # the model family
    processor_style = "clip"  # the preprocessing

    def tiny_config(self, **overrides):
        # odd sizes: 30 px images with 4 px patches leave a remainder the conv must drop (7 x 7 grid)
        base = ViTVisionConfig.from_variant("B/16", style=self.style).to_dict()
        tiny = dict(hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4,
                    image_size=30, patch_size=4, feature_layer=-2 if self.style == "clip" else -1)
        keep = {k: base[k] for k in ("hidden_act", "layer_norm_eps", "class_token", "pre_layernorm", "post_layernorm",
                                     "pooling", "patch_embed_bias", "feature_select")}
        return ViTVisionConfig(**{**keep, **tiny, **overrides})

    def make_processor(self, config):
        return ViTImageProcessor.from_style(self.processor_style, image_size=config.image_size, patch_size=config.patch_size,
                                            include_class_token=config.feature_select == "all" and config.class_token)

    def split_image_embeds(self, output, batch):
        return list(output.image_embeds)

    def invalid_pixel_inputs(self, config):
        size = config.image_size
        return [
            (dict(pixel_values=torch.zeros(1, 4, size, size)), ValueError),  # wrong channel count
            (dict(pixel_values=torch.zeros(3, size, size)), ValueError),  # no batch dimension
            (dict(pixel_values=torch.zeros(1, 3, size, size, dtype=torch.uint8)), TypeError),  # not processed
            (dict(pixel_values=torch.zeros(1, 3, size + 8, size)), ValueError),  # needs interpolate_pos_encoding
            (dict(pixel_values=torch.zeros(1, 3, 2, 2), interpolate_pos_encoding=True), ValueError),  # < one patch
            (dict(pixel_values=[[0.0]]), TypeError),
        ]


class TestViTClip(ViTContract):
    style = "clip"


class TestViTSiglip(ViTContract):
    style = processor_style = "siglip"


class TestViTLlava(ViTContract):
    processor_style = "llava"  # CLIP tower, LLaVA-1.5 preprocessing (pad to square with the mean colour)


def test_variant_names_and_styles():
    clip = ViTVisionConfig.from_variant("L/14", image_size=336)
    assert (clip.hidden_size, clip.num_hidden_layers, clip.patch_size, clip.grid_size) == (1024, 24, 14, 24)
    assert clip.hidden_act == "quick_gelu" and clip.class_token and clip.feature_layer == -2
    siglip = ViTVisionConfig.from_variant("so400m/14", image_size=384)
    assert (siglip.hidden_size, siglip.num_hidden_layers, siglip.intermediate_size) == (1152, 27, 4304)
    assert siglip.grid_size == 27 and not siglip.class_token and siglip.pooling == "map"
    with pytest.raises(ValueError, match="unknown ViT variant 'X/9'"):
        ViTVisionConfig.from_variant("X/9")
    with pytest.raises(ValueError, match="unknown ViT style"):
        ViTVisionConfig.from_variant("B/16", style="dino")


@pytest.mark.parametrize("bad, message", [
    (dict(hidden_size=30, num_attention_heads=4), "not divisible"),
    (dict(pooling="cls", class_token=False), "class_token"),
    (dict(feature_layer=5, num_hidden_layers=2), "outside"),
    (dict(post_layernorm="sometimes"), "post_layernorm"),
    (dict(image_size=8, patch_size=16), "at least one patch"),
])
def test_invalid_configs_are_rejected(bad, message):
    with pytest.raises(Exception, match=message):
        ViTVisionConfig(**bad)


def test_feature_layers_select_the_right_hidden_states():
    config = ViTContract().tiny_config(num_hidden_layers=3, feature_layer=[1, -1], feature_select="all")
    model = ViTVisionModel(config).eval()
    x = torch.randn(2, 3, 30, 30)
    with torch.no_grad():
        out = model(x, output_hidden_states=True)
    assert config.feature_dim == 64 and out.image_embeds.shape == (2, 50, 64)
    torch.testing.assert_close(out.image_embeds, torch.cat([out.hidden_states[1], out.hidden_states[3]], dim=-1))
    config = ViTContract().tiny_config(feature_layer=-2)
    with torch.no_grad():
        out = ViTVisionModel(config).eval()(x, output_hidden_states=True)
    torch.testing.assert_close(out.image_embeds, out.hidden_states[-2][:, 1:])  # LLaVA: patches of layer L-1


def test_interpolated_positions_give_the_counted_tokens_for_any_size():
    """Without a center crop the image keeps its aspect ratio; positions are resampled to its grid."""
    model = ViTVisionModel(ViTContract().tiny_config()).eval()
    processor = ViTImageProcessor.from_style("clip", image_size=30, patch_size=4, do_center_crop=False)
    for height, width in [(1, 9), (30, 30), (45, 61), (200, 33)]:
        batch = processor(random_image(height, width), return_tensors="pt")
        with torch.no_grad():
            out = model(**batch, interpolate_pos_encoding=True)
        assert out.image_embeds.shape[1] == processor.get_number_of_image_tokens(height, width)


def test_output_attentions_needs_eager():
    model = ViTVisionModel(ViTContract().tiny_config()).eval()
    x = torch.randn(1, 3, 30, 30)
    with pytest.raises(ValueError, match="eager"):
        model(x, output_attentions=True)
    model.set_attn_implementation("eager")
    with torch.no_grad():
        out = model(x, output_attentions=True)
    assert len(out.attentions) == 2 and out.attentions[0].shape == (1, 4, 50, 50)
    torch.testing.assert_close(out.attentions[0].sum(-1), torch.ones(1, 4, 50))


def test_return_dict_false_gives_a_tuple():
    model = ViTVisionModel(ViTContract().tiny_config()).eval()
    with torch.no_grad():
        out = model(torch.randn(1, 3, 30, 30), return_dict=False)
    assert isinstance(out, tuple) and out[0].shape == (1, 50, 32)


def test_feature_extraction_pipeline_batches_correctly():
    from transformers import pipeline

    model = ViTVisionModel(ViTContract().tiny_config()).eval()
    processor = ViTImageProcessor.from_style("clip", image_size=30, patch_size=4)
    extract = pipeline("image-feature-extraction", model=model, image_processor=processor, device="cpu")
    images = [random_image(45, 61, 0), random_image(61, 45, 1), random_image(38, 38, 2)]
    one_by_one = [extract(image, return_tensors=True) for image in images]
    batched = extract(images, batch_size=2, return_tensors=True)
    for alone, together in zip(one_by_one, batched):
        assert alone.shape == (1, 50, 32)
        torch.testing.assert_close(together, alone, atol=1e-5, rtol=1e-5)
    pooled = extract(images[0], pool=True, return_tensors=True)
    with torch.no_grad():
        expected = model(**processor(images[0], return_tensors="pt")).pooler_output
    torch.testing.assert_close(pooled, expected)
