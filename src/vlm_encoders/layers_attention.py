"""One attention entry point for every encoder: eager, sdpa, flash, packed variable-length sequences, windows.

Backends come from transformers' attention interface, chosen by `config._attn_implementation` at call
time, so `from_pretrained(..., attn_implementation=...)` and `model.set_attn_implementation(...)` work.

Packed sequences (NaViT-style: the patches of several images back to back, `cu_seqlens` marking where
each image starts) must never attend across images:
  * flash attention: one varlen call over the whole pack;
  * sequences of equal length (same-size images, windows) are a batch: one call, no copy;
  * otherwise, a small pack gets one call with a block-diagonal mask (cheaper than many tiny calls),
    and a large pack gets one batched call per distinct length, so no dense (T x T) mask is ever built.
"""

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

from .layers_pos_embed import rope_rotate

# A pack longer than this is attended image by image: its block-diagonal mask alone would take
# T^2 * 4 bytes (64 MiB at T = 4096) and mostly mask out work that splitting never does.
DENSE_PACK_MAX_TOKENS = 1024


def eager_attention_forward(
    module: nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float,
    dropout: float = 0.0,
    **kwargs,
) -> tuple[torch.Tensor, torch.Tensor]:
    """query/key/value: (B, H, N, Dh); attention_mask: additive, broadcastable to (B, H, N, N)."""
    scores = torch.matmul(query, key.transpose(-1, -2)) * scaling
    if attention_mask is not None:
        scores = scores + attention_mask
    probs = scores.softmax(dim=-1, dtype=torch.float32).to(query.dtype)
    probs = F.dropout(probs, p=dropout, training=module.training)
    return torch.matmul(probs, value).transpose(1, 2).contiguous(), probs  # (B, N, H, Dh), (B, H, N, N)


def is_flash_attention(implementation: str | None) -> bool:
    """Any flavour of flash attention (flash_attention_2/3/4, hub kernels): transformers' own test, "flash" in the name."""
    return implementation is not None and "flash" in implementation


def attention_function(implementation: str | None) -> Callable:
    """The transformers attention function registered under `implementation` (eager is ours)."""
    if implementation in (None, "eager"):
        return eager_attention_forward
    return ALL_ATTENTION_FUNCTIONS.get_interface(implementation, eager_attention_forward)


def block_diagonal_mask(cu_seqlens: torch.Tensor, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """(1, 1, T, T) additive mask that lets each packed sequence attend only to itself."""
    lengths = (cu_seqlens[1:] - cu_seqlens[:-1]).to(device)
    seq_id = torch.repeat_interleave(torch.arange(len(lengths), device=device), lengths)  # (T,)
    same = seq_id[:, None] == seq_id[None, :]
    mask = torch.zeros(same.shape, dtype=dtype, device=device)
    return mask.masked_fill_(~same, torch.finfo(dtype).min)[None, None]


def attend(
    module: nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    *,
    scaling: float,
    dropout: float = 0.0,
    attention_mask: torch.Tensor | None = None,
    cu_seqlens: torch.Tensor | None = None,
    max_seqlen: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Attention over (B, H, N, Dh) tensors -> ((B, N, H, Dh), probabilities or None).

    `module.config._attn_implementation` picks the backend. With `cu_seqlens` (int32, leading 0), the
    batch is one pack (B = 1) of variable-length sequences that never attend to each other.
    """
    implementation = module.config._attn_implementation
    attn_fn = attention_function(implementation)
    if cu_seqlens is None:
        return attn_fn(module, query, key, value, attention_mask, scaling=scaling, dropout=dropout, is_causal=False)
    if attention_mask is not None:
        raise ValueError("packed attention takes cu_seqlens or attention_mask, not both")
    if query.shape[0] != 1:
        raise ValueError(f"packed attention expects one pack (batch size 1), got batch size {query.shape[0]}")
    cu_seqlens = cu_seqlens.to(device=query.device, dtype=torch.int32)
    if cu_seqlens[-1] != query.shape[2]:
        raise ValueError(f"cu_seqlens covers {int(cu_seqlens[-1])} tokens but the pack has {query.shape[2]}")
    if is_flash_attention(implementation):
        if max_seqlen is None:
            max_seqlen = int((cu_seqlens[1:] - cu_seqlens[:-1]).max())
        return attn_fn(
            module, query, key, value, None, scaling=scaling, dropout=dropout, is_causal=False,
            cu_seq_lens_q=cu_seqlens, cu_seq_lens_k=cu_seqlens, max_length_q=max_seqlen, max_length_k=max_seqlen,
        )
    lengths = (cu_seqlens[1:] - cu_seqlens[:-1]).tolist()
    if len(lengths) == 1:  # a pack of one: plain attention
        return attn_fn(module, query, key, value, None, scaling=scaling, dropout=dropout, is_causal=False)
    if len(set(lengths)) == 1:  # equal lengths (same-size images, interior windows): a batch, as a free view
        n, length = len(lengths), lengths[0]
        q, k, v = (t[0].unflatten(1, (n, length)).transpose(0, 1) for t in (query, key, value))  # (n, H, L, Dh)
        out = attn_fn(module, q, k, v, None, scaling=scaling, dropout=dropout, is_causal=False)[0]
        return out.reshape(1, -1, *out.shape[2:]), None  # (1, T, H, Dh)
    if query.shape[2] <= DENSE_PACK_MAX_TOKENS:
        mask = block_diagonal_mask(cu_seqlens, query.dtype, query.device)
        return attn_fn(module, query, key, value, mask, scaling=scaling, dropout=dropout, is_causal=False)
    return _attend_by_length(module, attn_fn, query, key, value, lengths, scaling, dropout), None


def _attend_by_length(module, attn_fn, query, key, value, lengths, scaling, dropout) -> torch.Tensor:
    """A long pack of mixed lengths: one batched call per distinct length, one plain call per unique one.

    Windows of one image come in at most four lengths (interior, right edge, bottom edge, corner), so a
    few batched calls replace hundreds of tiny ones; a sequence whose length is unique is a free slice.
    """
    starts = [0]
    for length in lengths:
        starts.append(starts[-1] + length)
    by_length: dict[int, list[int]] = {}
    for i, length in enumerate(lengths):
        by_length.setdefault(length, []).append(i)
    B, H, T, Dh = query.shape
    out = query.new_empty(B, T, H, Dh)
    for length, members in by_length.items():
        if len(members) == 1:
            s = starts[members[0]]
            q, k, v = (t[:, :, s : s + length] for t in (query, key, value))
            out[:, s : s + length] = attn_fn(module, q, k, v, None, scaling=scaling, dropout=dropout,
                                             is_causal=False)[0]
            continue
        first = torch.tensor([starts[i] for i in members], device=query.device)
        index = (first[:, None] + torch.arange(length, device=query.device)).flatten()  # (n * L,)
        q, k, v = (t[0, :, index].unflatten(1, (len(members), length)).transpose(0, 1) for t in (query, key, value))
        part = attn_fn(module, q, k, v, None, scaling=scaling, dropout=dropout, is_causal=False)[0]  # (n, L, H, Dh)
        out[0, index] = part.reshape(-1, H, Dh)
    return out

def window_partition(x: torch.Tensor, window: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """(B, H, W, C) -> (B * nW, window, window, C), zero-padding H and W up to multiples of `window`.

    Returns the padded size too, for `window_unpartition`. Windows become batch entries, so window
    attention is ordinary attention on them (SAM / ViTDet).
    """
    B, H, W, C = x.shape
    pad_h, pad_w = (window - H % window) % window, (window - W % window) % window
    if pad_h or pad_w:
        x = F.pad(x, (0, 0, 0, pad_w, 0, pad_h))
    Hp, Wp = H + pad_h, W + pad_w
    x = x.view(B, Hp // window, window, Wp // window, window, C)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(-1, window, window, C), (Hp, Wp)


def window_unpartition(
    windows: torch.Tensor, window: int, padded_size: tuple[int, int], size: tuple[int, int]
) -> torch.Tensor:
    """Inverse of `window_partition`: (B * nW, window, window, C) -> (B, H, W, C), padding removed."""
    (Hp, Wp), (H, W) = padded_size, size
    B = windows.shape[0] // ((Hp // window) * (Wp // window))
    x = windows.view(B, Hp // window, Wp // window, window, window, -1).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(B, Hp, Wp, -1)[:, :H, :W]


class SelfAttention(nn.Module):
    """Multi-head self-attention with a fused qkv projection.

    Sizes are explicit; `config` is kept only to read `config._attn_implementation` at call time, so a
    runtime `set_attn_implementation` reaches every layer.
    """

    def __init__(
        self, config, dim: int, num_heads: int, qkv_bias: bool = True, proj_bias: bool = True, dropout: float = 0.0
    ):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"width {dim} is not divisible by {num_heads} heads")
        self.config = config
        self.num_heads, self.head_dim = num_heads, dim // num_heads
        self.scaling = self.head_dim**-0.5
        self.dropout = dropout
        self.is_causal = False  # read by transformers' sdpa/flash functions
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)  # one GEMM instead of three
        self.proj = nn.Linear(dim, dim, bias=proj_bias)

    def forward(
        self,
        x: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        rope: tuple[torch.Tensor, torch.Tensor] | None = None,
        cu_seqlens: torch.Tensor | None = None,
        max_seqlen: int | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        B, N, D = x.shape
        qkv = self.qkv(x).view(B, N, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)  # (3, B, H, N, Dh)
        if rope is not None:  # q and k rotated in one go
            (q, k), v = rope_rotate(qkv[:2], *rope).unbind(0), qkv[2]
        else:
            q, k, v = qkv.unbind(0)
        out, probs = attend(
            self, q, k, v, scaling=self.scaling, dropout=self.dropout if self.training else 0.0,
            attention_mask=attention_mask, cu_seqlens=cu_seqlens, max_seqlen=max_seqlen,
        )
        return self.proj(out.reshape(B, N, D)), probs


def rel_pos_table(size: int, rel_pos: torch.Tensor) -> torch.Tensor:
    """(size, size, C) embeddings of the relative offsets between `size` query and key positions on one axis.

    `rel_pos` holds 2 * n - 1 learned offsets for the grid it was trained on; another grid gets them
    linearly interpolated (SAM / ViTDet's `get_rel_pos`, for equal query and key sizes).
    """
    length = 2 * size - 1
    if rel_pos.shape[0] != length:
        rel_pos = F.interpolate(rel_pos.T[None], size=length, mode="linear")[0].T  # (length, C)
    offsets = torch.arange(size, device=rel_pos.device)
    return rel_pos[offsets[:, None] - offsets[None, :] + size - 1]


def _rel_pos_bias(rel_h: torch.Tensor, rel_w: torch.Tensor) -> torch.Tensor:
    """(B, H, n, h) + (B, H, n, w) -> (B, H, n, h, w), contiguous: the bias of n queries for all h x w keys.

    Without autograd the sum is written into a fresh contiguous buffer: left to itself, the broadcast sum takes a
    strided layout, and flattening it to (queries, keys) would copy all of it once more.
    """
    if torch.is_grad_enabled() and (rel_h.requires_grad or rel_w.requires_grad):
        return (rel_h[..., :, None] + rel_w[..., None, :]).contiguous()
    out = rel_h.new_empty(*rel_h.shape, rel_w.shape[-1])
    return torch.add(rel_h[..., :, None], rel_w[..., None, :], out=out)


class RelPosSelfAttention(nn.Module):
    """Self-attention over a (B, h, w, D) grid with decomposed relative positions (MViTv2; SAM and ViTDet).

    The bias of query (i, j) for key (k, l) is q . Rh[i, k] + q . Rw[j, l]. The reference builds it for all
    query-key pairs at once: heads x (hw)^2 floats, 805 MB per global block of SAM-B at 1024 px. Here the
    per-axis terms are computed once (small), and the bias is expanded for one block of heads and queries at
    a time, so its memory stays under `bias_bytes` whatever the image size.
    """

    # CPU: small blocks that stay in cache while the kernel reads them. GPU: few, large blocks (every block is
    # kernel launches; an H100 ran SAM-B 4x slower than transformers with the CPU's 8 MiB blocks), still far below
    # the reference's whole 805 MB bias per global block.
    bias_bytes = {"cpu": 8 * 2**20}
    bias_bytes_accelerator = 256 * 2**20

    def __init__(self, config, dim: int, num_heads: int, rel_pos_size: int | None, qkv_bias: bool = True,
                 dropout: float = 0.0):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"width {dim} is not divisible by {num_heads} heads")
        self.config = config  # for config._attn_implementation, read at call time
        self.num_heads, self.head_dim = num_heads, dim // num_heads
        self.scaling = self.head_dim**-0.5
        self.dropout = dropout
        self.is_causal = False
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        if rel_pos_size:
            self.rel_pos_h = nn.Parameter(torch.zeros(2 * rel_pos_size - 1, self.head_dim))
            self.rel_pos_w = nn.Parameter(torch.zeros(2 * rel_pos_size - 1, self.head_dim))
        else:
            self.rel_pos_h = self.rel_pos_w = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, h, w, D = x.shape
        N, H, Dh = h * w, self.num_heads, self.head_dim
        q, k, v = self.qkv(x).view(B, N, 3, H, Dh).permute(2, 0, 3, 1, 4).unbind(0)  # (B, H, N, Dh) each
        dropout = self.dropout if self.training else 0.0
        if self.rel_pos_h is None:
            out, _ = attend(self, q, k, v, scaling=self.scaling, dropout=dropout)
            return self.proj(out.reshape(B, h, w, D))
        grid_q = q.reshape(B, H, h, w, Dh)
        rel_h = torch.einsum("bnhwc,hkc->bnhwk", grid_q, rel_pos_table(h, self.rel_pos_h).to(q.dtype))  # (B,H,h,w,h)
        rel_w = torch.einsum("bnhwc,wkc->bnhwk", grid_q, rel_pos_table(w, self.rel_pos_w).to(q.dtype))  # (B,H,h,w,w)
        rel_h, rel_w = rel_h.reshape(B, H, N, h), rel_w.reshape(B, H, N, w)  # per query: a term per key row, column
        # Blocks of (heads, queries) whose bias fits `bias_bytes`. A block of one head keeps its bias, keys and
        # values small enough to stay in cache while the kernel reads them: at SAM-B's 4096 tokens, 512 queries of
        # one head at a time ran a global block 1.5x faster than 128 queries of all 12 heads.
        bias_bytes = self.bias_bytes.get(q.device.type, self.bias_bytes_accelerator)
        budget = max(1, bias_bytes // (B * N * q.element_size()))  # (query, head) pairs per block
        heads, queries = (min(H, budget // N), N) if budget >= N else (1, budget)
        out = q.new_empty(B, N, H, Dh)
        for h0 in range(0, H, heads):
            hs = slice(h0, min(H, h0 + heads))
            for n0 in range(0, N, queries):
                ns = slice(n0, min(N, n0 + queries))
                bias = _rel_pos_bias(rel_h[:, hs, ns], rel_w[:, hs, ns])  # (B, heads, queries, h, w)
                out[:, ns, hs] = attend(self, q[:, hs, ns], k[:, hs], v[:, hs], scaling=self.scaling, dropout=dropout,
                                        attention_mask=bias.flatten(-2))[0]  # (B, queries, heads, Dh)
        return self.proj(out.reshape(B, h, w, D))


__all__ = [
    "DENSE_PACK_MAX_TOKENS",
    "RelPosSelfAttention",
    "SelfAttention",
    "attend",
    "attention_function",
    "block_diagonal_mask",
    "eager_attention_forward",
    "is_flash_attention",
    "rel_pos_table",
    "window_partition",
    "window_unpartition",
]
