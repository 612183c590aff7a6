"""Native-resolution vision transformer (NaViT-style packing; the Qwen2-VL and Qwen2.5-VL vision towers).

NaViT: Dehghani et al. 2023 (arXiv 2307.06304); Qwen2-VL: Wang et al. 2024 (arXiv 2409.12191);
Qwen2.5-VL: Bai et al. 2025 (arXiv 2502.13923).

pixel_values (N, C*T*P*P): the patches of every image of the batch back to back, merge-block order
  -> linear patch embed (= Qwen2-VL's Conv3d with kernel = stride)             (N, D)
  -> [Qwen2.5-VL: reorder merge blocks into 112-px windows]
  -> L x [x + Attn(Norm(x), 2D RoPE, one image (or window) per segment); x + MLP(Norm(x))]
  -> merger: Norm -> the m x m patches of a block side by side -> MLP        (N / m^2, D_out)
  -> [undo the window order]
  -> image_embeds: every image's tokens for the LLM, packed, in row-major order of its merged grid

No padding and no attention across images: `cu_seqlens` marks where each image starts (layers_attention).
Token rule: (h / m) * (w / m) per image of h x w patches, `geometry.navit_num_image_tokens` from the raw size.
"""

import torch
from torch import nn
from transformers import GradientCheckpointingLayer, PreTrainedModel

from .configuration_navit import NaViTVisionConfig
from .layers_attention import SelfAttention
from .layers_mlp import Mlp, SwiGLU
from .layers_pos_embed import Rope2D
from .outputs import VisionEncoderOutput


# Rows per slice of the inference-time MLP. On a CPU, below ~1024 rows the GEMMs lose speed (measured on 2 cores)
# and above it the (N, 4D) intermediate of a big pack costs more in fresh memory than slicing costs. On a GPU every
# slice is a kernel launch and small GEMMs waste the device (1024-row slices ran a 1024² image 9 % slower than
# transformers on an H100), so slices there only bound the memory of very large packs.
MLP_CHUNK_ROWS = {"cpu": 1024}
MLP_CHUNK_ROWS_ACCELERATOR = 16384


def make_norm(kind: str, dim: int, eps: float) -> nn.Module:
    return nn.LayerNorm(dim, eps=eps) if kind == "layernorm" else nn.RMSNorm(dim, eps=eps)


def vision_position_ids(grid_thw: torch.Tensor, merge_size: int) -> torch.Tensor:
    """(N, 2) (row, col) of every patch of the pack, in merge-block order, repeated for each frame."""
    positions = []
    for t, h, w in grid_thw.tolist():
        rows = torch.arange(h, device=grid_thw.device).view(h // merge_size, merge_size, 1, 1)
        cols = torch.arange(w, device=grid_thw.device).view(1, 1, w // merge_size, merge_size)
        # (h/m, w/m, m, m) block-major layout, as the processor orders the patches
        rows = rows.expand(-1, -1, w // merge_size, merge_size).transpose(1, 2).flatten()
        cols = cols.expand(h // merge_size, merge_size, -1, -1).transpose(1, 2).flatten()
        positions.append(torch.stack([rows, cols], dim=-1).repeat(t, 1))
    return torch.cat(positions)


def vision_cu_seqlens(grid_thw: torch.Tensor) -> torch.Tensor:
    """(frames + 1,) int32 boundaries of the packed sequences: each frame of each image attends to itself."""
    lengths = torch.repeat_interleave(grid_thw[:, 1] * grid_thw[:, 2], grid_thw[:, 0])
    return nn.functional.pad(lengths.cumsum(0, dtype=torch.int32), (1, 0))


def window_order(grid_thw: torch.Tensor, merge_size: int, window_units: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Qwen2.5-VL's windows: the order of merge blocks that makes every window contiguous, and its boundaries.

    Each frame's (h/m) x (w/m) grid of merge blocks is cut into window_units x window_units windows from
    the top-left (edge windows are smaller); blocks are listed window by window, row-major inside each.
    Returns `order` (U,) over merge blocks of the pack and `cu_window_seqlens` (windows + 1,) int32 in patches.
    """
    orders, lengths, offset = [], [], 0
    for t, h, w in grid_thw.tolist():
        gh, gw = h // merge_size, w // merge_size
        ids = torch.arange(t * gh * gw, device=grid_thw.device).view(t, gh, gw) + offset
        pad_h, pad_w = -gh % window_units, -gw % window_units
        ids = nn.functional.pad(ids, (0, pad_w, 0, pad_h), value=-1)
        nh, nw = (gh + pad_h) // window_units, (gw + pad_w) // window_units
        ids = ids.view(t, nh, window_units, nw, window_units).permute(0, 1, 3, 2, 4).reshape(-1, window_units**2)
        valid = ids >= 0
        orders.append(ids[valid])
        lengths.append(valid.sum(-1))  # blocks per window; never zero, the padding is less than a window
        offset += t * gh * gw
    lengths = torch.cat(lengths) * merge_size**2
    return torch.cat(orders), nn.functional.pad(lengths.cumsum(0, dtype=torch.int32), (1, 0))


def window_permutation(grid_thw: torch.Tensor, merge_size: int, window_units: int):
    """`window_order` at patch level: (patch_order, patch_restore, block_restore, cu_window_seqlens).

    x[patch_order] puts the pack in window order; y[patch_restore] and merged[block_restore] undo it for
    patch-level and merged (one per merge block) tensors.
    """
    block_order, cu_windows = window_order(grid_thw, merge_size, window_units)
    m2 = merge_size**2
    patch_order = (block_order[:, None] * m2 + torch.arange(m2, device=block_order.device)).flatten()
    return patch_order, torch.argsort(patch_order), torch.argsort(block_order), cu_windows


def _pad_per_image(packed: torch.Tensor, lengths: list[int]) -> torch.Tensor:
    """(sum(lengths), D) -> (len(lengths), max(lengths), D), zeros after each image's rows.

    Per-image tensors get a batch dimension so that anything that indexes outputs by image (transformers'
    pipelines unbatch on dim 0) sees one image per row instead of silently cutting a packed tensor.
    """
    return nn.utils.rnn.pad_sequence(packed.split(lengths), batch_first=True)


def _max_seqlen(cu_seqlens: torch.Tensor) -> int:
    return int((cu_seqlens[1:] - cu_seqlens[:-1]).max())


def mrope_position_ids(
    input_ids: torch.Tensor,
    image_grid_thw: torch.Tensor | None,
    *,
    image_token_id: int,
    spatial_merge_size: int = 2,
    attention_mask: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """M-RoPE position ids for a Qwen2-VL-style LLM: (3, B, L) rows (t, h, w), and (B, 1) deltas.

    Text tokens get t = h = w = their running index. The tokens of an image (consecutive
    `image_token_id`s, `(h / m) * (w / m)` of them, images in `image_grid_thw` order across the batch)
    get t = start, h = start + row, w = start + col on its merged grid, and the running index goes on
    from start + max(h, w) / m. Padding (attention_mask 0) gets 0. The delta of a row is its largest
    position + 1 minus its length, what generation adds to the positions of new tokens. These are the
    values of transformers' `Qwen2VLModel.get_rope_index` for images.
    """
    batch, length = input_ids.shape
    position_ids = torch.zeros(3, batch, length, dtype=torch.long, device=input_ids.device)
    grids = image_grid_thw.tolist() if image_grid_thw is not None else []
    is_image = input_ids == image_token_id
    needed = sum(t * (h // spatial_merge_size) * (w // spatial_merge_size) for t, h, w in grids)
    if int(is_image.sum()) != needed:
        raise ValueError(f"input_ids hold {int(is_image.sum())} image tokens but image_grid_thw describes {needed}")
    deltas, image = [], 0
    for b in range(batch):
        keep = attention_mask[b].bool() if attention_mask is not None else torch.ones_like(is_image[b])
        flags = is_image[b][keep].tolist()
        pieces, pos, i = [], 0, 0
        while i < len(flags):
            if not flags[i]:  # a run of text
                j = i
                while j < len(flags) and not flags[j]:
                    j += 1
                pieces.append(torch.arange(pos, pos + j - i).expand(3, -1))
                pos, i = pos + j - i, j
                continue
            t, h, w = grids[image]
            gh, gw = h // spatial_merge_size, w // spatial_merge_size
            tt, hh, ww = torch.meshgrid(torch.arange(t), torch.arange(gh), torch.arange(gw), indexing="ij")
            pieces.append(torch.stack([tt, hh, ww]).flatten(1) + pos)  # (3, t * gh * gw)
            image, i, pos = image + 1, i + t * gh * gw, pos + max(gh, gw)
        positions = torch.cat(pieces, dim=1) if pieces else torch.zeros(3, 0, dtype=torch.long)
        position_ids[:, b, keep] = positions.to(input_ids.device)
        deltas.append(int(positions.max()) + 1 - len(flags) if len(flags) else 0)
    return position_ids, torch.tensor(deltas, device=input_ids.device).unsqueeze(1)


class NaViTPatchEmbed(nn.Module):
    """Flattened (C, T, P, P) patches -> D: Qwen2-VL's Conv3d(kernel = stride = (T, P, P)) written as the
    matrix product it is (one GEMM; a Conv3d over N tiny volumes is several times slower on CPU)."""

    def __init__(self, patch_dim: int, dim: int):
        super().__init__()
        self.proj = nn.Linear(patch_dim, dim, bias=False)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.proj(pixel_values.to(self.proj.weight.dtype))


class NaViTBlock(GradientCheckpointingLayer):
    """Pre-norm block; attention restricted to the segments of `cu_seqlens` (images or windows)."""

    def __init__(self, config: NaViTVisionConfig):
        super().__init__()
        dim = config.hidden_size
        self.norm1 = make_norm(config.norm, dim, config.layer_norm_eps)
        self.attn = SelfAttention(config, dim, config.num_attention_heads, qkv_bias=config.qkv_bias,
                                  dropout=config.attention_dropout)
        self.norm2 = make_norm(config.norm, dim, config.layer_norm_eps)
        if config.mlp == "swiglu":
            self.mlp = SwiGLU(dim, config.intermediate_size, act=config.hidden_act)
        else:
            self.mlp = Mlp(dim, config.intermediate_size, act=config.hidden_act)

    def forward(self, hidden_states: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor], cu_seqlens: torch.Tensor,
                max_seqlen: int) -> torch.Tensor:
        attn_out, _ = self.attn(self.norm1(hidden_states), rope=rope, cu_seqlens=cu_seqlens, max_seqlen=max_seqlen)
        hidden_states = attn_out.add_(hidden_states)  # residual into the fresh projection output, as in ViT
        if torch.is_grad_enabled():
            return self.mlp(self.norm2(hidden_states)).add_(hidden_states)
        # inference: the MLP is per token, so a pack goes through it a slice of rows at a time; the
        # (N, 4D) intermediate never exists whole (270 MB for 8 photos) and stays warm in memory
        chunk = MLP_CHUNK_ROWS.get(hidden_states.device.type, MLP_CHUNK_ROWS_ACCELERATOR)
        for rows in hidden_states.split(chunk, dim=1):
            rows.add_(self.mlp(self.norm2(rows)))
        return hidden_states


class NaViTPatchMerger(nn.Module):
    """Norm, then the m x m patches of each merge block side by side (m^2 D), then an MLP to the LLM width."""

    def __init__(self, config: NaViTVisionConfig):
        super().__init__()
        self.merged_dim = config.hidden_size * config.spatial_merge_size**2
        self.norm = make_norm(config.norm, config.hidden_size, config.layer_norm_eps)
        self.fc1 = nn.Linear(self.merged_dim, self.merged_dim)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(self.merged_dim, config.out_hidden_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.norm(x).view(-1, self.merged_dim)  # (N, D) -> (N / m^2, m^2 D): consecutive patches are a block
        return self.fc2(self.act(self.fc1(x)))


class NaViTPreTrainedModel(PreTrainedModel):
    config_class = NaViTVisionConfig
    base_model_prefix = "navit"
    main_input_name = "pixel_values"
    input_modalities = ("image",)
    supports_gradient_checkpointing = True
    _no_split_modules = ["NaViTBlock"]
    _supports_sdpa = True
    _supports_flash_attn = True
    _supports_attention_backend = True


class NaViTVisionModel(NaViTPreTrainedModel):
    def __init__(self, config: NaViTVisionConfig):
        super().__init__(config)
        self.patch_embed = NaViTPatchEmbed(config.patch_dim, config.hidden_size)
        self.rotary = Rope2D(config.head_dim, config.rope_theta)
        self.blocks = nn.ModuleList(NaViTBlock(config) for _ in range(config.num_hidden_layers))
        self.merger = NaViTPatchMerger(config)
        self.post_init()

    def get_input_embeddings(self) -> nn.Module:
        return self.patch_embed.proj

    def forward(
        self,
        pixel_values: torch.Tensor,
        image_grid_thw: torch.Tensor,
        output_hidden_states: bool | None = None,
        output_attentions: bool | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> VisionEncoderOutput:
        """pixel_values: (N, C*T*P*P) and image_grid_thw: (n_images, 3), as `NaViTImageProcessor` makes them.

        Returns `image_embeds` (N / m^2, D_out): every image's tokens for the LLM, packed image after image,
        each in the row-major order of its merged grid (what a VLM scatters into its prompt; see
        `split_image_embeds`). Per image: `last_hidden_state` (n_images, max patches, D), each image's patches
        in the processor's order (merge-block major), zero rows after them; `pooler_output` (n_images, D_out),
        the mean of each image's tokens; `hidden_states` padded like `last_hidden_state`.
        """
        self._check_inputs(pixel_values, image_grid_thw)
        config = self.config
        output_hidden_states = config.output_hidden_states if output_hidden_states is None else output_hidden_states
        if output_attentions or (output_attentions is None and config.output_attentions):
            raise ValueError("output_attentions is not supported for packed images (one attention map per image, "
                             "each of a different size); run an image alone with a ViT to inspect attention")
        m2 = config.spatial_merge_size**2
        positions = vision_position_ids(image_grid_thw, config.spatial_merge_size)  # (N, 2) row, col
        cu_seqlens = vision_cu_seqlens(image_grid_thw)  # one segment per image (frame)

        x = self.patch_embed(pixel_values)  # (N, D)
        windows = config.window_merge_units > 0
        if windows:  # reorder merge blocks so that every window is contiguous; undone after the merger
            patch_order, patch_restore, block_restore, cu_windows = window_permutation(
                image_grid_thw, config.spatial_merge_size, config.window_merge_units)
            x, positions = x[patch_order], positions[patch_order]
            window_max = _max_seqlen(cu_windows)
        in_image_order = (lambda h: h[patch_restore]) if windows else (lambda h: h)
        rope = self.rotary(positions)  # cos, sin: (N, head_dim), fp32
        max_seqlen = _max_seqlen(cu_seqlens)

        x = x[None]  # (1, N, D): the batch is one pack
        hidden_states = [in_image_order(x[0])] if output_hidden_states else None
        for i, block in enumerate(self.blocks):
            if windows and i not in config.fullatt_block_indexes:
                x = block(x, rope, cu_windows, window_max)  # attention inside 112-px windows
            else:
                x = block(x, rope, cu_seqlens, max_seqlen)  # attention over each whole image
            if output_hidden_states:
                hidden_states.append(in_image_order(x[0]))

        image_embeds = self.merger(x[0])  # (N / m^2, D_out)
        x = in_image_order(x[0])  # (N, D)
        if windows:
            image_embeds = image_embeds[block_restore]
        patches = image_grid_thw.prod(-1).tolist()
        tokens = [n // m2 for n in patches]
        pooled = torch.stack([part.mean(0) for part in image_embeds.split(tokens)])  # (n_images, D_out)
        output = VisionEncoderOutput(
            last_hidden_state=_pad_per_image(x, patches),  # (n_images, max patches, D)
            image_embeds=image_embeds,
            pooler_output=pooled,
            hidden_states=tuple(_pad_per_image(h, patches) for h in hidden_states) if output_hidden_states else None,
        )
        return output if return_dict is not False else output.to_tuple()

    def split_image_embeds(self, image_embeds: torch.Tensor, image_grid_thw: torch.Tensor) -> list[torch.Tensor]:
        """The packed `image_embeds` as one (tokens_i, D_out) tensor per image."""
        return list(image_embeds.split((image_grid_thw.prod(-1) // self.config.spatial_merge_size**2).tolist()))

    def _check_inputs(self, pixel_values, image_grid_thw) -> None:
        config = self.config
        if not isinstance(pixel_values, torch.Tensor):
            raise TypeError(f"pixel_values must be a torch.Tensor, got {type(pixel_values).__name__}")
        if not isinstance(image_grid_thw, torch.Tensor):
            raise TypeError(f"image_grid_thw must be a torch.Tensor, got {type(image_grid_thw).__name__}")
        if pixel_values.ndim != 2 or pixel_values.shape[1] != config.patch_dim:
            raise ValueError(
                f"pixel_values must be (patches, {config.patch_dim}) = (patches, C*T*P*P) as NaViTImageProcessor makes "
                f"them, got {tuple(pixel_values.shape)}"
            )
        if not pixel_values.is_floating_point():
            raise TypeError(f"pixel_values must be floating point, got {pixel_values.dtype}; run the image processor")
        if image_grid_thw.ndim != 2 or image_grid_thw.shape[1] != 3 or image_grid_thw.is_floating_point():
            raise ValueError(f"image_grid_thw must be integer (images, 3) rows of (t, h, w), got "
                             f"{image_grid_thw.dtype} {tuple(image_grid_thw.shape)}")
        if len(image_grid_thw) == 0 or (image_grid_thw < 1).any():
            raise ValueError(f"image_grid_thw must describe at least one image with positive sizes, got {image_grid_thw.tolist()}")
        m = config.spatial_merge_size
        if (image_grid_thw[:, 1:] % m).any():
            raise ValueError(f"image_grid_thw heights and widths must be multiples of spatial_merge_size={m}, got "
                             f"{image_grid_thw.tolist()}")
        expected = int(image_grid_thw.prod(-1).sum())
        if expected != pixel_values.shape[0]:
            raise ValueError(f"image_grid_thw describes {expected} patches but pixel_values has {pixel_values.shape[0]}; "
                             "pass the pixel_values and image_grid_thw of the same processor call")


__all__ = ["NaViTPreTrainedModel", "NaViTVisionModel", "mrope_position_ids", "vision_cu_seqlens", "vision_position_ids",
           "window_order", "window_permutation"]
