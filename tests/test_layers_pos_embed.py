"""Property tests of position embeddings, with Qwen2-VL's rotary code as the legacy pin."""

import torch
import torch.nn.functional as F
from transformers.models.qwen2_vl.configuration_qwen2_vl import Qwen2VLVisionConfig
from transformers.models.qwen2_vl.modeling_qwen2_vl import Qwen2VLVisionRotaryEmbedding, apply_rotary_pos_emb_vision

from vlm_encoders.layers_pos_embed import (
    Rope2D,
    apply_rope,
    grid_positions,
    resample_abs_pos_embed,
    sincos_2d_pos_embed,
)


def test_resample_keeps_prefix_and_interpolates_the_grid_as_an_image():
    table = torch.randn(1 + 4 * 4, 8)
    assert resample_abs_pos_embed(table, (4, 4), (4, 4), 1) is table
    out = resample_abs_pos_embed(table, (6, 3), (4, 4), num_prefix_tokens=1)
    assert out.shape == (1 + 18, 8)
    torch.testing.assert_close(out[0], table[0])
    grid = table[1:].reshape(1, 4, 4, 8).permute(0, 3, 1, 2)
    expected = F.interpolate(grid, size=(6, 3), mode="bicubic", align_corners=False).permute(0, 2, 3, 1).reshape(18, 8)
    torch.testing.assert_close(out[1:], expected)


def test_sincos_2d_layout():
    table = sincos_2d_pos_embed(16, (3, 5))
    assert table.shape == (15, 16)
    torch.testing.assert_close(table[0], torch.tensor([0.0] * 4 + [1.0] * 4 + [0.0] * 4 + [1.0] * 4))
    # positions in the same column share the x half, positions in the same row share the y half
    torch.testing.assert_close(table[1, :8], table[6, :8])
    torch.testing.assert_close(table[5, 8:], table[7, 8:])


def test_rope_scores_depend_only_on_relative_offsets():
    rope = Rope2D(head_dim=16)
    q, k = torch.randn(16), torch.randn(16)

    def score(p, r):
        cos, sin = rope(torch.tensor([p, r]))
        qr, kr = apply_rope(q[None, None].expand(1, 2, 16).clone(), k[None, None].expand(1, 2, 16).clone(), cos, sin)
        return (qr[0, 0] * kr[0, 1]).sum()

    torch.testing.assert_close(score([0, 0], [2, 3]), score([5, 7], [7, 10]), atol=1e-4, rtol=1e-4)
    assert not torch.allclose(score([0, 0], [2, 3]), score([0, 0], [3, 2]))


def test_rope_matches_qwen2_vl_vision_rotary():
    head_dim, grid = 16, (3, 5)
    positions = grid_positions(grid)
    cos, sin = Rope2D(head_dim)(positions)
    qwen = Qwen2VLVisionRotaryEmbedding(Qwen2VLVisionConfig(embed_dim=4 * head_dim, num_heads=4))
    cos_ref, sin_ref = qwen(torch.zeros(1), positions)
    torch.testing.assert_close(cos, cos_ref)
    torch.testing.assert_close(sin, sin_ref)
    q, k = torch.randn(15, 4, head_dim), torch.randn(15, 4, head_dim)  # Qwen's layout: (T, H, Dh)
    q_ref, k_ref = apply_rotary_pos_emb_vision(q, k, cos_ref, sin_ref)
    q_ours, k_ours = apply_rope(q.transpose(0, 1), k.transpose(0, 1), cos, sin)  # ours: (H, T, Dh)
    torch.testing.assert_close(q_ours.transpose(0, 1), q_ref)
    torch.testing.assert_close(k_ours.transpose(0, 1), k_ref)


def test_rope_frequencies_stay_fp32_in_a_bf16_model():
    rope = Rope2D(head_dim=32).to(torch.bfloat16)
    positions = grid_positions((40, 40))
    cos, sin = rope(positions)
    assert cos.dtype == sin.dtype == torch.float32
    torch.testing.assert_close(cos, Rope2D(head_dim=32)(positions)[0])
    q = torch.randn(1, 2, 1600, 32, dtype=torch.bfloat16)
    assert apply_rope(q, q, cos, sin)[0].dtype == torch.bfloat16


def test_rope_fast_path_equals_the_autograd_formula():
    """Without autograd the rotation writes both halves into one buffer; the numbers are the formula's."""
    from vlm_encoders.layers_pos_embed import rope_rotate, rotate_half

    cos, sin = Rope2D(16)(grid_positions((5, 7)))
    x = torch.randn(2, 3, 4, 35, 16)
    expected = x * cos + rotate_half(x) * sin
    with torch.no_grad():
        fast = rope_rotate(x, cos, sin)
    slow = rope_rotate(x.clone().requires_grad_(), cos, sin)
    torch.testing.assert_close(fast, expected, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(slow, expected)
    assert slow.requires_grad and rope_rotate(x.to(torch.bfloat16), cos, sin).dtype == torch.bfloat16
