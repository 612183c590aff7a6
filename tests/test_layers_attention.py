"""Property tests of the shared attention entry point."""

import types

import pytest
import torch
from transformers import AttentionInterface

import vlm_encoders.layers_attention as la
from vlm_encoders.layers_attention import SelfAttention, attend, window_partition, window_unpartition


def module(implementation="sdpa"):
    m = torch.nn.Module()
    m.config = types.SimpleNamespace(_attn_implementation=implementation)
    m.is_causal = False
    return m.eval()


def qkv(T, B=1, H=4, Dh=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(B, H, T, Dh, generator=g) for _ in range(3)]


def per_sequence_reference(q, k, v, lengths):
    """Plain softmax attention on each sequence separately: (1, T, H, Dh)."""
    outs = []
    for qs, ks, vs in zip(*(t.split(lengths, dim=2) for t in (q, k, v))):
        probs = (qs @ ks.transpose(-1, -2) * qs.shape[-1] ** -0.5).softmax(-1)
        outs.append((probs @ vs).transpose(1, 2))
    return torch.cat(outs, dim=1)


@pytest.mark.parametrize("implementation", ["eager", "sdpa"])
def test_packed_attention_never_crosses_sequences(implementation, monkeypatch):
    lengths = [5, 17, 1, 9]
    q, k, v = qkv(sum(lengths))
    cu = torch.tensor([0, 5, 22, 23, 32], dtype=torch.int32)
    expected = per_sequence_reference(q, k, v, lengths)
    dense, _ = attend(module(implementation), q, k, v, scaling=8**-0.5, cu_seqlens=cu)  # small pack: one masked call
    monkeypatch.setattr(la, "DENSE_PACK_MAX_TOKENS", 8)
    split, _ = attend(module(implementation), q, k, v, scaling=8**-0.5, cu_seqlens=cu)  # large pack: one call each
    torch.testing.assert_close(dense, expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(split, expected, atol=1e-5, rtol=1e-5)


def test_large_packs_build_no_dense_mask(monkeypatch):
    def forbidden(*args, **kwargs):
        raise AssertionError("a dense T x T mask was built for a large pack")

    monkeypatch.setattr(la, "block_diagonal_mask", forbidden)
    lengths = [700, 500]
    q, k, v = qkv(sum(lengths), H=2)
    out, _ = attend(module(), q, k, v, scaling=8**-0.5, cu_seqlens=torch.tensor([0, 700, 1200]))
    torch.testing.assert_close(out, per_sequence_reference(q, k, v, lengths), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("implementation", ["eager", "sdpa"])
def test_equal_and_repeated_lengths_are_batched_not_looped(implementation, monkeypatch):
    """Same-size images / windows: one batched call per distinct length, and the same numbers."""
    calls = []
    inner = la.attention_function(implementation)

    def counting(module, q, *args, **kwargs):
        calls.append(tuple(q.shape))
        return inner(module, q, *args, **kwargs)

    monkeypatch.setattr(la, "attention_function", lambda name: counting)
    lengths = [6] * 5  # all equal: a free view as a batch of 5
    q, k, v = qkv(sum(lengths))
    out, _ = attend(module(implementation), q, k, v, scaling=8**-0.5,
                    cu_seqlens=torch.tensor([0, 6, 12, 18, 24, 30]))
    torch.testing.assert_close(out, per_sequence_reference(q, k, v, lengths), atol=1e-5, rtol=1e-5)
    assert calls == [(5, 4, 6, 8)]
    calls.clear()
    monkeypatch.setattr(la, "DENSE_PACK_MAX_TOKENS", 8)
    lengths = [4, 9, 4, 3, 9, 4]  # windows of an image: a few lengths, repeated; one is unique
    q, k, v = qkv(sum(lengths), seed=1)
    cu = torch.tensor([0, *torch.tensor(lengths).cumsum(0).tolist()])
    out, _ = attend(module(implementation), q, k, v, scaling=8**-0.5, cu_seqlens=cu)
    torch.testing.assert_close(out, per_sequence_reference(q, k, v, lengths), atol=1e-5, rtol=1e-5)
    assert sorted(calls) == sorted([(3, 4, 4, 8), (2, 4, 9, 8), (1, 4, 3, 8)])


def test_packed_attention_rejects_inconsistent_input():
    q, k, v = qkv(10)
    with pytest.raises(ValueError, match="covers 12 tokens but the pack has 10"):
        attend(module(), q, k, v, scaling=1.0, cu_seqlens=torch.tensor([0, 4, 12]))
    q2, k2, v2 = qkv(10, B=2)
    with pytest.raises(ValueError, match="batch size 2"):
        attend(module(), q2, k2, v2, scaling=1.0, cu_seqlens=torch.tensor([0, 4, 10]))


def test_eager_and_sdpa_agree_with_an_additive_mask():
    q, k, v = qkv(13, B=2)
    mask = torch.zeros(2, 1, 13, 13)
    mask[0, :, :, 7:] = torch.finfo(torch.float32).min
    eager, probs = attend(module("eager"), q, k, v, scaling=0.3, attention_mask=mask)
    sdpa, none = attend(module("sdpa"), q, k, v, scaling=0.3, attention_mask=mask)
    torch.testing.assert_close(eager, sdpa, atol=1e-5, rtol=1e-5)
    assert none is None and probs.shape == (2, 4, 13, 13) and probs[0, :, :, 7:].abs().max() == 0


def test_self_attention_follows_the_config_at_call_time():
    calls = []

    def recording_attention(module, query, key, value, attention_mask, scaling, dropout=0.0, **kwargs):
        calls.append(query.shape)
        return la.eager_attention_forward(module, query, key, value, attention_mask, scaling, dropout)

    AttentionInterface.register("recording_test", recording_attention)
    config = types.SimpleNamespace(_attn_implementation="sdpa")
    layer = SelfAttention(config, dim=32, num_heads=4).eval()
    x = torch.randn(2, 9, 32)
    with torch.no_grad():
        sdpa, _ = layer(x)
        config._attn_implementation = "recording_test"
        recorded, _ = layer(x)
    assert calls == [(2, 4, 9, 8)]
    torch.testing.assert_close(sdpa, recorded, atol=1e-5, rtol=1e-5)


def test_window_partition_round_trip_and_window_attention():
    x = torch.randn(2, 11, 9, 6)  # H, W not multiples of the window: padded, then cropped back
    windows, padded = window_partition(x, 4)
    assert windows.shape == (2 * 3 * 3, 4, 4, 6) and padded == (12, 12)
    torch.testing.assert_close(window_unpartition(windows, 4, padded, (11, 9)), x)
    # the top-left window holds exactly the top-left 4 x 4 block of the first image
    torch.testing.assert_close(windows[0], x[0, :4, :4])
    torch.testing.assert_close(windows[3 * 3 - 1, :3, :1], x[0, 8:11, 8:9])


def test_flash_packs_go_to_the_varlen_kernel_in_one_call():
    """Without a GPU, a stand-in registered under a flash name checks what the varlen kernel would receive."""
    received = []

    def fake_flash(module, query, key, value, attention_mask, scaling, dropout=0.0, **kwargs):
        received.append((query.shape, attention_mask, kwargs))
        return query.transpose(1, 2), None

    AttentionInterface.register("fake_flash_attention_test", fake_flash)
    assert la.is_flash_attention("fake_flash_attention_test") and not la.is_flash_attention("sdpa")
    q, k, v = qkv(12)
    cu = torch.tensor([0, 5, 12])
    attend(module("fake_flash_attention_test"), q, k, v, scaling=1.0, cu_seqlens=cu)
    (shape, mask, kwargs), = received
    assert shape == (1, 4, 12, 8) and mask is None
    assert kwargs["cu_seq_lens_q"].dtype == torch.int32 and kwargs["cu_seq_lens_q"].tolist() == [0, 5, 12]
    assert kwargs["max_length_q"] == kwargs["max_length_k"] == 7
