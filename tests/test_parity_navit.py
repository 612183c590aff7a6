"""Parity with transformers' Qwen2-VL and Qwen2.5-VL vision towers and image processor, at published widths.

Random weights of the published shapes (1280-d, 16 heads, merger to a 7B LLM's 3584); reduced depth
here, the full 32 blocks under `pytest -m slow`. Ours is built from the transformers model by the same
conversion a user runs on a real checkpoint; inputs are a pack of three images of different sizes.
"""

import numpy as np
import PIL.Image
import pytest
import torch
from transformers import Qwen2VLImageProcessor
from transformers.models.qwen2_5_vl.configuration_qwen2_5_vl import Qwen2_5_VLVisionConfig
from transformers.models.qwen2_5_vl.modeling_qwen2_5_vl import Qwen2_5_VisionTransformerPretrainedModel
from transformers.models.qwen2_vl.configuration_qwen2_vl import Qwen2VLVisionConfig
from transformers.models.qwen2_vl.modeling_qwen2_vl import Qwen2VisionTransformerPretrainedModel
from transformers.vision_utils import get_vision_window_index

from vlm_encoders import NaViTImageProcessor, convert_qwen2_vl, navit_processor_from_hf

ODD_SIZES = [(333, 517), (97, 1203), (20, 31), (448, 448), (1, 1), (2000, 13)]
PACK_SIZES = [(333, 517), (200, 120), (448, 448)]  # 864 + 120 + 1024 = 2008 patches: the split path


def images(sizes, seed=0):
    rng = np.random.default_rng(seed)
    return [PIL.Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)) for h, w in sizes]


def qwen2_vl(depth):
    torch.manual_seed(0)
    return Qwen2VisionTransformerPretrainedModel(Qwen2VLVisionConfig(depth=depth, hidden_size=3584)).eval()


def qwen25_vl(depth, fullatt):
    torch.manual_seed(0)
    config = Qwen2_5_VLVisionConfig(depth=depth, hidden_size=1280, intermediate_size=3420, out_hidden_size=3584,
                                    fullatt_block_indexes=fullatt)
    return Qwen2_5_VisionTransformerPretrainedModel(config).eval()


def compare(theirs, ours, batch, window_index=None):
    with torch.no_grad():
        ref = theirs(batch["pixel_values"], grid_thw=batch["image_grid_thw"])
        out = ours(**batch)
    ref_hidden = ref.last_hidden_state
    if window_index is not None:  # transformers returns the tokens still in window order
        m2 = ours.config.spatial_merge_size**2
        restore = torch.argsort(window_index)
        ref_hidden = ref_hidden.view(-1, m2, ref_hidden.shape[-1])[restore].flatten(0, 1)
    patches = batch["image_grid_thw"].prod(-1).tolist()
    ours_hidden = torch.cat([h[:n] for h, n in zip(out.last_hidden_state, patches)])  # padded per image -> packed
    deltas = {"image_embeds": (out.image_embeds - ref.pooler_output).abs().max().item(),
              "last_hidden_state": (ours_hidden - ref_hidden).abs().max().item()}
    assert max(deltas.values()) <= 1e-4, deltas
    return deltas


@pytest.mark.parametrize("depth", [2, pytest.param(32, marks=pytest.mark.slow)])
def test_qwen2_vl_tower_matches_transformers(depth, record_parity):
    theirs = qwen2_vl(depth)
    ours = convert_qwen2_vl(theirs)
    assert ours.config.hidden_size == 1280 and ours.config.out_hidden_size == 3584
    batch = NaViTImageProcessor()(images(PACK_SIZES), return_tensors="pt")
    assert len(set(batch["image_grid_thw"].prod(-1).tolist())) == 3
    deltas = compare(theirs, ours, batch)
    record_parity("navit", "Qwen2VisionTransformerPretrainedModel",
                  f"Qwen2-VL-7B tower, {depth} of 32 blocks, a pack of 3 images", max(deltas.values()))


@pytest.mark.parametrize("depth, fullatt", [(4, [1, 3]), pytest.param(32, [7, 15, 23, 31], marks=pytest.mark.slow)])
def test_qwen25_vl_tower_with_windows_matches_transformers(depth, fullatt, record_parity):
    theirs = qwen25_vl(depth, fullatt)
    ours = convert_qwen2_vl(theirs)
    assert (ours.config.window_size, ours.config.fullatt_block_indexes, ours.config.norm) == (112, fullatt, "rmsnorm")
    batch = NaViTImageProcessor()(images(PACK_SIZES), return_tensors="pt")
    window_index, _ = get_vision_window_index(batch["image_grid_thw"], 2, 112, 14)
    deltas = compare(theirs, ours, batch, window_index)
    record_parity("navit", "Qwen2_5_VisionTransformerPretrainedModel",
                  f"Qwen2.5-VL-7B tower with windows, {depth} of 32 blocks, a pack of 3 images", max(deltas.values()))


def test_small_pack_uses_the_masked_path_and_still_matches():
    theirs = qwen2_vl(1)
    ours = convert_qwen2_vl(theirs)
    batch = NaViTImageProcessor()(images([(60, 60), (100, 40), (28, 300)]), return_tensors="pt")
    assert batch["pixel_values"].shape[0] <= 1024
    compare(theirs, ours, batch)


@pytest.mark.parametrize("settings", [{}, dict(min_pixels=28 * 28 * 64, max_pixels=28 * 28 * 256),
                                      dict(max_pixels=28 * 28 * 16384), dict(do_normalize=False)])
def test_processor_matches_transformers_bit_for_bit(settings):
    imgs = images(ODD_SIZES, seed=1)
    theirs = Qwen2VLImageProcessor(**settings)(imgs, return_tensors="pt")
    ours = NaViTImageProcessor(**settings)(imgs, return_tensors="pt")
    assert torch.equal(ours["image_grid_thw"], theirs["image_grid_thw"])
    assert torch.equal(ours["pixel_values"], theirs["pixel_values"])
    for (h, w), (t, gh, gw) in zip(ODD_SIZES, theirs["image_grid_thw"].tolist()):
        assert NaViTImageProcessor(**settings).get_number_of_image_tokens(h, w) == gh * gw // 4


def test_checkpoint_folder_with_a_wrapper_prefix_converts(tmp_path):
    """A saved Qwen2-VL model (LLM + vision under `model.visual.`) converts from disk, processor included."""
    from transformers import Qwen2VLForConditionalGeneration

    from tiny_models import tiny_qwen2_vl_config

    config = tiny_qwen2_vl_config()
    torch.manual_seed(0)
    full = Qwen2VLForConditionalGeneration(config).eval()
    full.save_pretrained(tmp_path)
    Qwen2VLImageProcessor(max_pixels=28 * 28 * 200).save_pretrained(tmp_path)
    ours = convert_qwen2_vl(str(tmp_path))
    processor = navit_processor_from_hf(str(tmp_path))
    assert processor.max_pixels == 28 * 28 * 200
    batch = processor(images(PACK_SIZES), return_tensors="pt")
    compare(full.model.visual, ours, batch)


def test_conversion_reports_what_it_cannot_place():
    theirs = qwen2_vl(1)
    state = theirs.state_dict()
    state["blocks.0.attn.extra.weight"] = torch.zeros(1)
    from vlm_encoders.conversion_navit import convert_navit_state_dict, navit_config_from_hf

    with pytest.raises(ValueError, match="not converted"):
        convert_navit_state_dict(state, navit_config_from_hf(theirs.config))
    del state["blocks.0.attn.extra.weight"], state["merger.ln_q.bias"]
    with pytest.raises(ValueError, match="merger.ln_q.bias"):
        convert_navit_state_dict(state, navit_config_from_hf(theirs.config))


def test_mrope_positions_match_get_rope_index():
    from transformers import Qwen2VLConfig, Qwen2VLModel

    from vlm_encoders import mrope_position_ids

    config = Qwen2VLConfig(
        text_config=dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1,
                         intermediate_size=64, vocab_size=100, bos_token_id=1, eos_token_id=2, pad_token_id=0,
                         rope_parameters={"rope_type": "default", "mrope_section": [1, 1, 2], "rope_theta": 1e4}),
        vision_config=dict(depth=1, embed_dim=32, num_heads=2, hidden_size=32),
        image_token_id=99, vision_start_token_id=98, vision_end_token_id=97)
    model = Qwen2VLModel(config)
    grids = torch.tensor([[1, 4, 6], [1, 8, 4], [1, 2, 2], [1, 2, 8]])

    def prompt(parts):  # ints: an image of that many tokens between vision start/end; tuples: text
        ids = []
        for part in parts:
            ids += [98] + [99] * part + [97] if isinstance(part, int) else list(range(3, 3 + part[0]))
        return ids

    rows = [prompt([(3,), 6, (2,), 8, (4,)]), prompt([(5,), 1, (2,)]), prompt([4, (9,)])]
    length = max(map(len, rows))
    ids = torch.zeros(len(rows), length, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for i, row in enumerate(rows):  # left padding, as for generation
        ids[i, length - len(row):], mask[i, length - len(row):] = torch.tensor(row), 1
    expected, expected_delta = model.get_rope_index(ids, (ids == 99).int(), image_grid_thw=grids, attention_mask=mask)
    positions, delta = mrope_position_ids(ids, grids, image_token_id=99, spatial_merge_size=2, attention_mask=mask)
    assert torch.equal(positions, expected) and torch.equal(delta, expected_delta)
