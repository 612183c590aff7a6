"""The size math against transformers' own functions, and its invariants."""

import numpy as np
import pytest
import torch
from transformers import TorchvisionBackend
from transformers.image_transforms import get_resize_output_image_size
from transformers.image_utils import ChannelDimension, SizeDict

from vlm_encoders import geometry

SIZES = [(1, 1), (1, 4000), (4000, 1), (7, 5), (333, 517), (517, 333), (480, 640), (1080, 1920), (336, 336)]


@pytest.mark.parametrize("height, width", SIZES)
def test_shortest_edge_size_matches_transformers(height, width):
    image = np.zeros((3, height, width), dtype=np.uint8)
    expected = get_resize_output_image_size(image, 336, default_to_square=False,
                                            input_data_format=ChannelDimension.FIRST)
    assert geometry.shortest_edge_size(height, width, 336) == tuple(expected)


@pytest.mark.parametrize("height, width", [(10, 10), (11, 10), (10, 13), (4, 9), (3, 3)])
def test_center_crop_offsets_match_transformers(height, width):
    image = torch.arange(height * width, dtype=torch.float32).reshape(1, height, width) + 1
    crop = TorchvisionBackend().center_crop(image, SizeDict(height=6, width=6))[0]
    top, left, pad_top, pad_left = geometry.center_crop_offsets(height, width, 6, 6)
    padded = torch.zeros(max(height, 6), max(width, 6))
    padded[pad_top:pad_top + height, pad_left:pad_left + width] = image[0]
    torch.testing.assert_close(crop, padded[top:top + 6, left:left + 6])


@pytest.mark.parametrize("length, resized, crop", [(4000, 1344000, 336), (600, 100800, 336), (300, 100800, 336),
                                                   (40, 13440, 336)])
def test_aligned_crop_window_is_exact_and_covers_the_crop(length, resized, crop):
    a, b, n, start = geometry.aligned_crop_window(length, resized, crop)
    assert n * length == (b - a) * resized  # same scale as the full resize
    assert start * length == (int((resized - crop) / 2.0) * length - a * resized)  # same grid
    assert 0 <= start and start + crop <= n and 0 <= a < b <= length


def test_aligned_crop_window_declines_when_nothing_is_saved():
    assert geometry.aligned_crop_window(7, 2352, 336) is None  # the filter margin spans the whole input
    assert geometry.aligned_crop_window(480, 336, 336) is None  # nothing to crop
    assert geometry.aligned_crop_window(4001, 268867, 336) is None  # coprime sizes: no exact sub-grid


def test_token_counts_of_published_settings():
    clip = dict(size={"shortest_edge": 336}, crop_size={"height": 336, "width": 336}, do_center_crop=True)
    siglip = dict(size={"height": 384, "width": 384})
    for h, w in SIZES:
        assert geometry.vit_num_image_tokens(h, w, patch_size=14, **clip) == 576  # LLaVA-1.5
        assert geometry.vit_num_image_tokens(h, w, patch_size=14, **siglip) == 729  # 27 x 27, not 27.4^2
        assert geometry.vit_num_image_tokens(h, w, patch_size=14, include_class_token=True, **clip) == 577


@pytest.mark.parametrize("height, width", [(0, 5), (5, 0), (-1, 3)])
def test_empty_images_are_rejected(height, width):
    with pytest.raises(ValueError, match="has no pixels"):
        geometry.vit_processed_size(height, width, size={"height": 32, "width": 32})


def test_flops_formula_equals_torch_flop_counter():
    """The analytic count equals what torch counts on the real model (matmuls, conv, attention)."""
    from torch.utils.flop_counter import FlopCounterMode

    from vlm_encoders import ViTVisionConfig, ViTVisionModel

    config = ViTVisionConfig.from_variant("B/16", hidden_size=64, intermediate_size=96, num_attention_heads=4,
                                          num_hidden_layers=3, image_size=48, patch_size=8)
    model = ViTVisionModel(config).eval()
    model.set_attn_implementation("eager")  # torch's counter does not see the CPU flash-attention kernel
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(torch.randn(1, 3, 48, 48))
    analytic = geometry.vit_flops(37, hidden_size=64, intermediate_size=96, num_layers=3, patch_dim=3 * 8 * 8,
                                  num_patches=36)
    assert counter.get_total_flops() == analytic
