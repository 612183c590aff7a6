"""The VLM: any encoder of this package -> projector -> any causal LLM, LLaVA-style.

LLaVA: Liu et al. 2023 (arXiv 2304.08485); LLaVA-1.5: Liu et al. 2023 (arXiv 2310.03744).

input_ids (B, L) with one image token per image position (the processor expands each placeholder)
  -> embed tokens                                                        (B, L, D_llm)
  -> images: encoder -> image_embeds (tokens, D_feat) -> projector       (tokens, D_llm)
  -> scattered, in order, into the image positions
  -> the causal LLM, unchanged: loss, KV cache and generate() are its own
"""

import itertools

import torch
from torch import nn
from transformers import AutoModel, AutoModelForCausalLM, GenerationMixin, PreTrainedModel
from transformers.loss.loss_utils import ForCausalLMLoss
from transformers.modeling_outputs import CausalLMOutputWithPast

from .configuration_vlm import VisionLanguageConfig
from .modeling_deepencoder import DeepEncoderModel
from .modeling_navit import NaViTVisionModel, mrope_position_ids
from .modeling_sam import SAMVisionModel
from .modeling_vit import ViTVisionModel

# model_type -> encoder class, the modeling side of configuration_vlm.VISION_CONFIGS (a plain dict: remote
# code runs where nothing has registered our model types).
VISION_MODELS = {"vlmenc_vit": ViTVisionModel, "vlmenc_navit": NaViTVisionModel, "vlmenc_sam": SAMVisionModel,
                 "vlmenc_deepencoder": DeepEncoderModel}
# LLMs whose rotary positions have (t, h, w) rows (Qwen2-VL's M-RoPE). transformers has no *ForCausalLM for
# them: their base model gets our LM head, and positions come from the image grids (mrope_position_ids).
MROPE_TEXT_MODELS = ("qwen2_vl_text", "qwen2_5_vl_text")
# what the processors give besides the text: pixels, and each paradigm's description of them
IMAGE_INPUTS = ("pixel_values", "image_grid_thw", "pixel_values_local", "image_tiles")


class TextModelWithHead(nn.Module):
    """A base text model (e.g. Qwen2-VL's M-RoPE LLM) + an LM head: the causal-LM interface the VLM uses."""

    def __init__(self, config):
        super().__init__()
        if getattr(config, "tie_word_embeddings", False):
            raise ValueError(f"a {config.model_type!r} LLM with tied input and output embeddings is not supported yet")
        self.config = config
        self.model = AutoModel.from_config(config)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)

    def get_input_embeddings(self) -> nn.Module:
        return self.model.get_input_embeddings()

    def get_output_embeddings(self) -> nn.Module:
        return self.lm_head

    def forward(self, inputs_embeds, attention_mask=None, position_ids=None, past_key_values=None, labels=None,
                use_cache=None, logits_to_keep=0, num_items_in_batch=None, **kwargs) -> CausalLMOutputWithPast:
        out = self.model(inputs_embeds=inputs_embeds, attention_mask=attention_mask, position_ids=position_ids,
                         past_key_values=past_key_values, use_cache=use_cache, **kwargs)
        hidden = out.last_hidden_state
        keep = slice(-logits_to_keep, None) if isinstance(logits_to_keep, int) else logits_to_keep
        logits = self.lm_head(hidden[:, keep])
        # num_items_in_batch: Trainer's count of label tokens over the whole (accumulated, multi-process) batch
        loss = None if labels is None else ForCausalLMLoss(logits, labels, vocab_size=self.config.vocab_size,
                                                           num_items_in_batch=num_items_in_batch)
        return CausalLMOutputWithPast(loss=loss, logits=logits, past_key_values=out.past_key_values,
                                      hidden_states=out.hidden_states, attentions=out.attentions)


class Projector(nn.Module):
    """Encoder features -> LLM embeddings: LLaVA-1.5's two-layer MLP, one Linear, or nothing."""

    def __init__(self, kind: str, in_dim: int, out_dim: int, bias: bool = True):
        super().__init__()
        self.kind = kind
        if kind == "mlp2x_gelu":
            self.linear_1, self.act, self.linear_2 = nn.Linear(in_dim, out_dim, bias), nn.GELU(), nn.Linear(out_dim, out_dim, bias)
        elif kind == "linear":
            self.linear_1 = nn.Linear(in_dim, out_dim, bias)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        if self.kind == "mlp2x_gelu":
            return self.linear_2(self.act(self.linear_1(features)))
        if self.kind == "linear":
            return self.linear_1(features)
        return features


class VisionLanguagePreTrainedModel(PreTrainedModel):
    config_class = VisionLanguageConfig
    base_model_prefix = ""
    main_input_name = "input_ids"
    input_modalities = ("image", "text")
    supports_gradient_checkpointing = True
    _no_split_modules = ["ViTEncoderLayer", "NaViTBlock", "SAMBlock"]
    _skip_keys_device_placement = ["past_key_values"]
    _supports_sdpa = True
    _supports_flash_attn = True
    _supports_flex_attn = True
    _supports_attention_backend = True
    _can_compile_fullgraph = False


class VisionLanguageModel(VisionLanguagePreTrainedModel, GenerationMixin):
    """Encoder + projector + causal LLM; `generate()`, the loss, the KV cache are the LLM's own.

    The three parts are named once, in `parts` (user-facing name -> attribute): freezing, learning rates,
    LoRA targets and what a checkpoint stores all go by these names (see `vlm_encoders.training`).
    """

    parts = {"encoder": "vision_tower", "projector": "projector", "llm": "language_model"}

    def __init__(self, config: VisionLanguageConfig):
        super().__init__(config)
        self.vision_tower = VISION_MODELS[config.vision_config.model_type](config.vision_config)
        self.projector = Projector(config.projector, config.vision_feature_dim, config.text_config.hidden_size,
                                   bias=config.projector_bias)
        if self.uses_mrope:
            self.language_model = TextModelWithHead(config.text_config)
        else:
            self.language_model = AutoModelForCausalLM.from_config(config.text_config)
        self.rope_deltas = None  # M-RoPE: per-row offset of decode positions, set at each prefill
        # the blocks FSDP wraps and device maps never split: this encoder's and this LLM's, as named in the model
        # (Accelerate looks every name up and fails on one the model does not contain)
        llm = getattr(self.language_model, "model", self.language_model) if self.uses_mrope else self.language_model
        present = {type(module).__name__ for module in self.modules()}
        names = [*self.vision_tower._no_split_modules, *(llm._no_split_modules or [])]
        self._no_split_modules = [name for name in dict.fromkeys(names) if name in present]
        self.post_init()

    @property
    def uses_mrope(self) -> bool:
        return self.config.text_config.model_type in MROPE_TEXT_MODELS

    @classmethod
    def from_encoder_and_llm(cls, encoder, llm, projector: str = "mlp2x_gelu", image_token: str = "<image>",
                             image_token_id: int | None = None, **config_kwargs) -> "VisionLanguageModel":
        """A VLM from a pretrained encoder and a pretrained causal LM (folders, or loaded models); a new projector.

        The image token is the LLM tokenizer's `image_token` if it has one; otherwise it is added after the last
        token (id = len(tokenizer)), exactly as `VisionLanguageProcessor.from_encoder_and_llm` adds it, and the
        LLM's embeddings grow to hold it. With loaded models, pass `image_token_id` yourself.
        """
        from transformers import AutoModel, AutoTokenizer

        if image_token_id is None:
            if not isinstance(llm, str):
                raise ValueError("with a loaded LLM, pass image_token_id (the tokenizer's id of the image token)")
            tokenizer = AutoTokenizer.from_pretrained(llm)
            vocab = tokenizer.get_vocab()
            image_token_id = vocab[image_token] if image_token in vocab else len(tokenizer)
        encoder = AutoModel.from_pretrained(encoder) if isinstance(encoder, str) else encoder
        llm = AutoModelForCausalLM.from_pretrained(llm) if isinstance(llm, str) else llm
        if image_token_id >= llm.get_input_embeddings().num_embeddings:
            llm.resize_token_embeddings(image_token_id + 1)
        config = VisionLanguageConfig(vision_config=encoder.config.to_dict(), text_config=llm.config.to_dict(),
                                      projector=projector, image_token_id=image_token_id, **config_kwargs)
        model = cls(config)
        model.vision_tower.load_state_dict(encoder.state_dict())
        model.language_model.load_state_dict(llm.state_dict())
        return model.eval()

    def get_output_embeddings(self) -> nn.Module:
        return self.language_model.get_output_embeddings()

    def get_input_embeddings(self) -> nn.Module:
        return self.language_model.get_input_embeddings()

    def get_image_features(self, pixel_values: torch.Tensor, image_grid_thw: torch.Tensor | None = None,
                           pixel_values_local: torch.Tensor | None = None,
                           image_tiles: torch.Tensor | None = None) -> torch.Tensor:
        """(total image tokens, D_llm): every image's tokens, image after image, projected to the LLM width.

        Besides pixel_values, each paradigm takes its own image inputs: NaViT's `image_grid_thw`, DeepEncoder's
        tiles (`pixel_values_local`, `image_tiles`).
        """
        extra = {"image_grid_thw": image_grid_thw, "pixel_values_local": pixel_values_local, "image_tiles": image_tiles}
        features = self.vision_tower(pixel_values, **{k: v for k, v in extra.items() if v is not None}).image_embeds
        return self.projector(features.reshape(-1, features.shape[-1]))  # (B, N, D) or packed (N, D) -> (N_all, D)

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        pixel_values: torch.Tensor | None = None,
        image_grid_thw: torch.LongTensor | None = None,
        pixel_values_local: torch.Tensor | None = None,
        image_tiles: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        past_key_values=None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.LongTensor | None = None,
        use_cache: bool | None = None,
        logits_to_keep: int | torch.Tensor = 0,
        **kwargs,
    ) -> CausalLMOutputWithPast:
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("pass exactly one of input_ids and inputs_embeds")
        if inputs_embeds is None:
            inputs_embeds = self.get_input_embeddings()(input_ids)  # (B, L, D_llm)
        if pixel_values is not None:  # only at prefill: generate() drops pixel_values once a cache exists
            if input_ids is None:
                raise ValueError("images need input_ids, to find the image positions")
            features = self.get_image_features(pixel_values, image_grid_thw, pixel_values_local,
                                               image_tiles).to(inputs_embeds.dtype)
            positions = input_ids == self.config.image_token_id  # (B, L)
            if int(positions.sum()) != features.shape[0]:
                raise ValueError(
                    f"the prompt has {int(positions.sum())} image-token positions but the images give "
                    f"{features.shape[0]} features; expand each image placeholder with VisionLanguageProcessor "
                    "(the same processor settings the model is run with)")
            inputs_embeds = inputs_embeds.masked_scatter(positions[..., None].to(inputs_embeds.device), features)
        if self.uses_mrope and (position_ids is None or position_ids.ndim == 2):
            position_ids = self._mrope_positions(input_ids, pixel_values, image_grid_thw, attention_mask,
                                                 past_key_values, inputs_embeds)
        return self.language_model(
            inputs_embeds=inputs_embeds, attention_mask=attention_mask, position_ids=position_ids,
            past_key_values=past_key_values, labels=labels, use_cache=use_cache, logits_to_keep=logits_to_keep,
            **kwargs,
        )


    def _expand_inputs_for_generation(self, expand_size: int = 1, is_encoder_decoder: bool = False,
                                      input_ids: torch.LongTensor | None = None, **model_kwargs):
        """Beam search / several samples per prompt: repeat each prompt's own images with it.

        transformers repeats every tensor along dim 0, which is right for text but not for images: a prompt
        may hold several images (or none), NaViT's pixel_values are packed patches, and DeepEncoder's tiles
        are a tensor of their own. So images are assigned to prompts by counting each prompt's image tokens,
        then repeated prompt by prompt.
        """
        images = {key: model_kwargs.pop(key) for key in IMAGE_INPUTS if model_kwargs.get(key) is not None}
        input_ids, model_kwargs = super()._expand_inputs_for_generation(expand_size, is_encoder_decoder, input_ids,
                                                                        **model_kwargs)
        if "pixel_values" in images and expand_size > 1:
            images = self._repeat_images_per_prompt(input_ids[::expand_size], images, expand_size)
        return input_ids, {**model_kwargs, **images}

    def _repeat_images_per_prompt(self, input_ids, images: dict, times: int) -> dict:
        """Select the rows of every image input so that each prompt's images follow it `times` times."""
        pixel_values, grids, tiles = images["pixel_values"], images.get("image_grid_thw"), images.get("image_tiles")
        # each image's token count, and how many rows it owns in each image input
        if grids is not None:  # NaViT: image i owns a contiguous span of packed patches
            patches = grids.prod(-1).tolist()
            tokens = [p // self.config.vision_config.spatial_merge_size**2 for p in patches]
            spans = {"pixel_values": patches, "image_grid_thw": [1] * len(patches)}
        elif tiles is not None:  # DeepEncoder: one global view each, and a span of tiles
            local = images.get("pixel_values_local")
            tokens = DeepEncoderModel.positions_per_image(pixel_values, local, tiles,
                                                          self.config.vision_config.token_stride)
            spans = {"pixel_values": [1] * len(tokens), "image_tiles": [1] * len(tokens)}
            if local is not None:
                spans["pixel_values_local"] = (tiles[:, 0] * tiles[:, 1]).tolist()
        else:  # one (C, H, W) entry per image, all giving the same number of tokens
            per_image = int((input_ids == self.config.image_token_id).sum()) // max(len(pixel_values), 1)
            tokens, spans = [per_image] * len(pixel_values), {"pixel_values": [1] * len(pixel_values)}
        per_prompt, image = [], 0
        for row in input_ids:
            need, mine = int((row == self.config.image_token_id).sum()), []
            while need > 0 and image < len(tokens):
                mine.append(image)
                need -= tokens[image]
                image += 1
            if need:
                raise ValueError("the prompts' image tokens do not split into whole images")
            per_prompt.append(mine)
        order = [i for mine in per_prompt for _ in range(times) for i in mine]
        repeated = dict(images)
        for key, lengths in spans.items():
            starts = [0, *itertools.accumulate(lengths)]
            device = images[key].device
            rows = torch.cat([torch.arange(starts[i], starts[i + 1], device=device) for i in order])
            repeated[key] = images[key][rows]
        return repeated

    def _mrope_positions(self, input_ids, pixel_values, image_grid_thw, attention_mask, past_key_values,
                         inputs_embeds) -> torch.Tensor:
        """(3, B, L) positions for an M-RoPE LLM, as `Qwen2VLForConditionalGeneration` computes them.

        Prefill with images: from the image grids (`mrope_position_ids`), remembering each row's delta.
        Otherwise the text position (counted over the attention mask, so left padding is skipped) plus the
        delta of the last prefill, zero for a text-only one.
        """
        past = past_key_values.get_seq_length() if past_key_values is not None else 0
        if pixel_values is not None and input_ids is not None and past == 0:
            positions, self.rope_deltas = mrope_position_ids(
                input_ids, image_grid_thw, image_token_id=self.config.image_token_id,
                spatial_merge_size=self.config.vision_config.spatial_merge_size, attention_mask=attention_mask)
            return positions
        batch, length = inputs_embeds.shape[:2]
        if past == 0:
            self.rope_deltas = None
        if attention_mask is not None:
            text = (attention_mask.long().cumsum(-1) - 1).masked_fill(attention_mask == 0, 0)[:, -length:]
        else:
            text = torch.arange(past, past + length, device=inputs_embeds.device).expand(batch, -1)
        if self.rope_deltas is not None:
            text = text + self.rope_deltas.to(text.device)
        return text[None].expand(3, -1, -1)


__all__ = ["Projector", "TextModelWithHead", "VISION_MODELS", "VisionLanguageModel", "VisionLanguagePreTrainedModel"]
