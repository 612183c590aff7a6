"""The feed-forward blocks: inference fast paths compute what the autograd formulas compute."""

import torch

from vlm_encoders.layers_mlp import Mlp, QuickGELU, SwiGLU


def test_quick_gelu_in_place_slices_equal_the_formula():
    # more elements than one slice, not a multiple of it (vectorised sigmoid and its scalar tail can
    # differ in the last bit, so the check is to float32 rounding, not bitwise)
    x = torch.randn(3, 1000, 77)
    expected = x * torch.sigmoid(1.702 * x)
    with torch.no_grad():
        torch.testing.assert_close(QuickGELU()(x.clone()), expected, atol=1e-6, rtol=1e-6)
        strided = x.transpose(0, 1).clone().transpose(0, 1)  # not contiguous: no slicing
        torch.testing.assert_close(QuickGELU()(strided), expected, atol=1e-6, rtol=1e-6)
    assert torch.equal(QuickGELU()(x.clone().requires_grad_()), expected)


def test_swiglu_is_the_gated_formula_and_trains():
    torch.manual_seed(0)
    mlp = SwiGLU(8, 12, act="silu")
    x = torch.randn(5, 8, requires_grad=True)
    gate, up = mlp.gate_up_proj.weight[:12], mlp.gate_up_proj.weight[12:]
    bg, bu = mlp.gate_up_proj.bias[:12], mlp.gate_up_proj.bias[12:]
    expected = mlp.down_proj(torch.nn.functional.silu(x @ gate.T + bg) * (x @ up.T + bu))
    out = mlp(x)
    torch.testing.assert_close(out, expected)
    with torch.no_grad():
        torch.testing.assert_close(mlp(x), expected)
    out.sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in mlp.parameters())


def test_mlp_shapes():
    assert Mlp(8, 32, act="gelu", out_dim=4)(torch.randn(2, 8)).shape == (2, 4)
