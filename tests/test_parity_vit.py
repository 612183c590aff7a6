"""Parity with transformers' CLIP and SigLIP vision towers, at the published widths.

Random weights of the published shapes (CLIP-L/14@336 of LLaVA-1.5, SigLIP-so400m/14@384); reduced
depth here, full depth under `pytest -m slow`. The transformers model is the reference; ours is built
from it by the same conversion a user runs on a real checkpoint.
"""

import json

import numpy as np
import PIL.Image
import pytest
import torch
from transformers import (
    CLIPImageProcessor,
    CLIPVisionConfig,
    CLIPVisionModel,
    LlavaImageProcessor,
    SiglipImageProcessor,
    SiglipVisionConfig,
    SiglipVisionModel,
)

from vlm_encoders import ViTImageProcessor, convert_clip, convert_siglip, processor_from_hf

CLIP_L_336 = dict(hidden_size=1024, intermediate_size=4096, num_attention_heads=16, image_size=336, patch_size=14,
                  hidden_act="quick_gelu", layer_norm_eps=1e-5, projection_dim=768)
SIGLIP_SO400M_384 = dict(hidden_size=1152, intermediate_size=4304, num_attention_heads=16, image_size=384,
                         patch_size=14, hidden_act="gelu_pytorch_tanh", layer_norm_eps=1e-6)
ODD_SIZES = [(333, 517), (517, 333), (97, 1203), (20, 31), (384, 384)]


def odd_images(seed=0):
    rng = np.random.default_rng(seed)
    return [PIL.Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)) for h, w in ODD_SIZES]


def reference(model_class, config_class, shape, depth):
    torch.manual_seed(0)
    return model_class(config_class(**shape, num_hidden_layers=depth)).eval()


def check_parity(ours, theirs, pixel_values, feature_layer, interpolate=False):
    with torch.no_grad():
        ref = theirs(pixel_values, output_hidden_states=True, interpolate_pos_encoding=interpolate)
        out = ours(pixel_values, output_hidden_states=True, interpolate_pos_encoding=interpolate)
    deltas = {
        "last_hidden_state": (out.last_hidden_state - ref.last_hidden_state).abs().max().item(),
        "pooler_output": (out.pooler_output - ref.pooler_output).abs().max().item(),
        "feature_layer": (out.image_embeds - ref.hidden_states[feature_layer][:, ours.embeddings.num_prefix_tokens:])
        .abs().max().item(),
    }
    assert max(deltas.values()) <= 1e-4, deltas
    return deltas


@pytest.mark.parametrize("depth", [2, pytest.param(24, marks=pytest.mark.slow)])
def test_clip_l14_336_matches_transformers(depth, record_parity):
    theirs = reference(CLIPVisionModel, CLIPVisionConfig, CLIP_L_336, depth)
    ours = convert_clip(theirs)
    pixels = CLIPImageProcessor(size={"shortest_edge": 336}, crop_size={"height": 336, "width": 336})(
        odd_images()[:2], return_tensors="pt").pixel_values
    deltas = check_parity(ours, theirs, pixels, feature_layer=-2)
    record_parity("vit", "CLIPVisionModel", f"CLIP ViT-L/14@336, {depth} of 24 layers, 2 images", max(deltas.values()))


@pytest.mark.parametrize("depth", [2, pytest.param(27, marks=pytest.mark.slow)])
def test_siglip_so400m_384_matches_transformers(depth, record_parity):
    theirs = reference(SiglipVisionModel, SiglipVisionConfig, SIGLIP_SO400M_384, depth)
    ours = convert_siglip(theirs)
    assert ours.config.grid_size == 27  # 384 = 27 * 14 + 6: the remainder is dropped, 729 tokens
    pixels = SiglipImageProcessor(size={"height": 384, "width": 384})(odd_images()[:2], return_tensors="pt").pixel_values
    deltas = check_parity(ours, theirs, pixels, feature_layer=-1)
    record_parity("vit", "SiglipVisionModel", f"SigLIP so400m/14@384, {depth} of 27 layers, 2 images",
                  max(deltas.values()))
    assert ours(pixels[:1]).image_embeds.shape == (1, 729, 1152)


def test_interpolated_positions_match_transformers():
    theirs = reference(CLIPVisionModel, CLIPVisionConfig, {**CLIP_L_336, "hidden_size": 256, "intermediate_size": 512,
                                                          "num_attention_heads": 4}, 1)
    ours = convert_clip(theirs, feature_layer=-1)
    check_parity(ours, theirs, torch.randn(1, 3, 448, 280), feature_layer=-1, interpolate=True)


def test_checkpoint_folder_converts_like_the_live_model(tmp_path):
    """The path a user takes with a real checkpoint: a CLIPModel folder (text tower included) on disk."""
    from transformers import CLIPConfig, CLIPModel

    torch.manual_seed(0)
    vision = {**CLIP_L_336, "hidden_size": 256, "intermediate_size": 512, "num_attention_heads": 4,
              "num_hidden_layers": 2}
    config = CLIPConfig(vision_config=vision, text_config=dict(hidden_size=64, intermediate_size=96,
                                                               num_hidden_layers=1, num_attention_heads=2))
    clip = CLIPModel(config).eval()
    clip.save_pretrained(tmp_path)
    CLIPImageProcessor(size={"shortest_edge": 336}, crop_size={"height": 336, "width": 336}).save_pretrained(tmp_path)
    ours = convert_clip(str(tmp_path))
    pixels = torch.randn(1, 3, 336, 336)
    check_parity(ours, clip.vision_model, pixels, feature_layer=-2)
    processor = processor_from_hf(str(tmp_path), patch_size=14)
    reference_processor = CLIPImageProcessor.from_pretrained(tmp_path)
    for image in odd_images():
        torch.testing.assert_close(processor(image, return_tensors="pt").pixel_values,
                                   reference_processor(image, return_tensors="pt").pixel_values, atol=1e-5, rtol=0)


def test_truncated_tower_and_bad_sources_are_explicit():
    theirs = reference(CLIPVisionModel, CLIPVisionConfig, {**CLIP_L_336, "hidden_size": 64, "intermediate_size": 96,
                                                          "num_attention_heads": 4}, 3)
    truncated = convert_clip(theirs, num_hidden_layers=2, feature_layer=-1)  # LLaVA never needs the last layer
    with torch.no_grad():
        ref = theirs(torch.randn(1, 3, 336, 336).clone(), output_hidden_states=True)
    assert truncated.config.num_hidden_layers == 2 and ref.hidden_states[2].shape[-1] == 64
    with pytest.raises(ValueError, match="convert_siglip got a 'clip_vision_model'"):
        convert_siglip(theirs)
    broken = {k: v for k, v in theirs.state_dict().items() if "layers.1.mlp.fc2" not in k}
    from vlm_encoders.conversion_vit import config_from_hf, load_converted

    with pytest.raises(ValueError, match="no weight .*layers.1.mlp.fc2"):
        load_converted(config_from_hf(theirs.config), broken)


@pytest.mark.parametrize("style, reference_processor", [
    ("clip", CLIPImageProcessor(size={"shortest_edge": 336}, crop_size={"height": 336, "width": 336})),
    ("siglip", SiglipImageProcessor(size={"height": 384, "width": 384})),
    ("llava", LlavaImageProcessor(size={"shortest_edge": 336}, crop_size={"height": 336, "width": 336}, do_pad=True)),
])
def test_processor_pixels_match_transformers(style, reference_processor):
    size = 384 if style == "siglip" else 336
    ours = ViTImageProcessor.from_style(style, image_size=size, patch_size=14)
    images = odd_images()
    images += [images[0].convert(mode) for mode in ("L", "LA", "RGBA", "P", "CMYK", "1")]
    images.append(PIL.Image.fromarray((np.asarray(images[1].convert("L"), dtype=np.uint16) * 257)))  # 16-bit
    images += [np.asarray(images[2]), torch.from_numpy(np.asarray(images[3])).permute(2, 0, 1)]
    a = ours(images, return_tensors="pt").pixel_values
    b = reference_processor(images, return_tensors="pt").pixel_values
    assert (a - b).abs().max().item() <= 1e-5


def test_thin_images_are_resized_exactly_without_the_huge_intermediate():
    """A 2 x 600 image resizes (CLIP) to 336 x 100,800 before the crop; we resize only the cropped span."""
    reference_processor = CLIPImageProcessor(size={"shortest_edge": 336}, crop_size={"height": 336, "width": 336})
    ours = ViTImageProcessor.from_style("clip", image_size=336, patch_size=14)
    rng = np.random.default_rng(1)
    for h, w in [(600, 2), (2, 600), (1, 300)]:
        image = PIL.Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
        torch.testing.assert_close(ours(image, return_tensors="pt").pixel_values,
                                   reference_processor(image, return_tensors="pt").pixel_values, atol=1e-5, rtol=0)


def test_conversion_config_keeps_the_checkpoint_values():
    theirs = SiglipVisionConfig(**SIGLIP_SO400M_384, num_hidden_layers=2, vision_use_head=False)
    from vlm_encoders import config_from_hf

    config = config_from_hf(theirs)
    assert (config.layer_norm_eps, config.hidden_act, config.pooling) == (1e-6, "gelu_pytorch_tanh", "none")
    assert json.loads(config.to_json_string())["model_type"] == "vlmenc_vit"


@pytest.mark.parametrize("grid", [16, 10])
def test_deepseek_ocr_clip_stage_fed_with_patch_embeddings(grid):
    """DeepSeek-OCR's CLIP-L stage: no patch embedding of its own, fed with SAM's compressed map (16 x 16 at
    1024 px, 10 x 10 at 640), positions resampled with antialiasing. Against transformers' Unlimited-OCR encoder."""
    from transformers.models.unlimited_ocr.configuration_unlimited_ocr import UnlimitedOcrVisionEncoderConfig
    from transformers.models.unlimited_ocr.modeling_unlimited_ocr import UnlimitedOcrVisionEncoder

    from vlm_encoders import ViTVisionConfig, ViTVisionModel
    from vlm_encoders.conversion_utils import load_checked
    from vlm_encoders.conversion_vit import convert_state_dict

    torch.manual_seed(0)
    theirs = UnlimitedOcrVisionEncoder(UnlimitedOcrVisionEncoderConfig(num_hidden_layers=2)).eval()
    config = ViTVisionConfig.from_variant("L/14", image_size=224, num_hidden_layers=2, has_patch_embed=False,
                                          pos_embed_antialias=True, post_layernorm="none", pooling="none",
                                          feature_layer=-1)
    ours = load_checked(ViTVisionModel(config), convert_state_dict(theirs.state_dict(), config))
    assert ours.get_input_embeddings() is None
    patch_embeds = torch.randn(2, 1024, grid, grid)
    with torch.no_grad():
        expected = theirs(patch_embeds).last_hidden_state  # (2, 1 + grid^2, 1024)
        out = ours(patch_embeds=patch_embeds)
    assert expected.abs().mean() > 1e-2  # a real signal
    assert (out.last_hidden_state - expected).abs().max() <= 1e-4
    torch.testing.assert_close(out.image_embeds, out.last_hidden_state[:, 1:])
    with pytest.raises(ValueError, match="pass patch_embeds"):
        ours(torch.randn(1, 3, 224, 224))
    with pytest.raises(ValueError, match="exactly one"):
        ours()
