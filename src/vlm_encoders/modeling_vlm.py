"""The VLM: any encoder of this package -> projector -> any causal LLM, LLaVA-style.

LLaVA: Liu et al. 2023 (arXiv 2304.08485); LLaVA-1.5: Liu et al. 2023 (arXiv 2310.03744).

input_ids (B, L) with one image token per image position (the processor expands each placeholder)
  -> embed tokens                                                        (B, L, D_llm)
  -> images: encoder -> image_embeds (tokens, D_feat) -> projector       (tokens, D_llm)
  -> scattered, in order, into the image positions
  -> the causal LLM, unchanged: loss, KV cache and generate() are its own
"""

import torch
from torch import nn
from transformers import AutoModelForCausalLM, GenerationMixin, PreTrainedModel
from transformers.modeling_outputs import CausalLMOutputWithPast

from .configuration_vlm import VisionLanguageConfig
from .modeling_navit import NaViTVisionModel
from .modeling_vit import ViTVisionModel

# model_type -> encoder class, the modeling side of configuration_vlm.VISION_CONFIGS (a plain dict: remote
# code runs where nothing has registered our model types).
VISION_MODELS = {"vlmenc_vit": ViTVisionModel, "vlmenc_navit": NaViTVisionModel}


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
    _no_split_modules = ["ViTEncoderLayer", "NaViTBlock"]
    _skip_keys_device_placement = ["past_key_values"]
    _supports_sdpa = True
    _supports_flash_attn = True
    _supports_flex_attn = True
    _supports_attention_backend = True
    _can_compile_fullgraph = False


class VisionLanguageModel(VisionLanguagePreTrainedModel, GenerationMixin):
    """Encoder + projector + causal LLM; `generate()`, the loss, the KV cache are the LLM's own.

    The three parts are named once, `vision_tower`, `projector` and `language_model`: freezing,
    learning rates and what a checkpoint stores all go by these names.
    """

    def __init__(self, config: VisionLanguageConfig):
        super().__init__(config)
        self.vision_tower = VISION_MODELS[config.vision_config.model_type](config.vision_config)
        self.projector = Projector(config.projector, config.vision_feature_dim, config.text_config.hidden_size,
                                   bias=config.projector_bias)
        self.language_model = AutoModelForCausalLM.from_config(config.text_config)
        self.post_init()

    @classmethod
    def from_encoder_and_llm(cls, encoder, llm, projector: str = "mlp2x_gelu", image_token_id: int | None = None,
                             **config_kwargs) -> "VisionLanguageModel":
        """A VLM from a pretrained encoder and a pretrained causal LM (paths or loaded models); a new projector.

        `image_token_id` defaults to the LLM's vocabulary size minus one only if not given; pass the id the
        tokenizer uses for the image token (`VisionLanguageProcessor.from_encoder_and_llm` adds it).
        """
        from transformers import AutoModel

        encoder = AutoModel.from_pretrained(encoder) if isinstance(encoder, str) else encoder
        llm = AutoModelForCausalLM.from_pretrained(llm) if isinstance(llm, str) else llm
        if image_token_id is None:
            raise ValueError("pass image_token_id: the tokenizer's id of the image token")
        config = VisionLanguageConfig(vision_config=encoder.config, text_config=llm.config, projector=projector,
                                      image_token_id=image_token_id, **config_kwargs)
        model = cls(config)
        model.vision_tower.load_state_dict(encoder.state_dict())
        model.language_model.load_state_dict(llm.state_dict())
        return model

    def get_output_embeddings(self) -> nn.Module:
        return self.language_model.get_output_embeddings()

    def get_input_embeddings(self) -> nn.Module:
        return self.language_model.get_input_embeddings()

    def get_image_features(self, pixel_values: torch.Tensor, image_grid_thw: torch.Tensor | None = None) -> torch.Tensor:
        """(total image tokens, D_llm): every image's tokens, image after image, projected to the LLM width."""
        kwargs = {"image_grid_thw": image_grid_thw} if image_grid_thw is not None else {}
        features = self.vision_tower(pixel_values, **kwargs).image_embeds  # (B, N, D) or packed (N, D)
        return self.projector(features.reshape(-1, features.shape[-1]))

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        pixel_values: torch.Tensor | None = None,
        image_grid_thw: torch.LongTensor | None = None,
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
            features = self.get_image_features(pixel_values, image_grid_thw).to(inputs_embeds.dtype)
            positions = input_ids == self.config.image_token_id  # (B, L)
            if int(positions.sum()) != features.shape[0]:
                raise ValueError(
                    f"the prompt has {int(positions.sum())} image-token positions but the images give "
                    f"{features.shape[0]} features; expand each image placeholder with VisionLanguageProcessor "
                    "(the same processor settings the model is run with)")
            inputs_embeds = inputs_embeds.masked_scatter(positions[..., None].to(inputs_embeds.device), features)
        return self.language_model(
            inputs_embeds=inputs_embeds, attention_mask=attention_mask, position_ids=position_ids,
            past_key_values=past_key_values, labels=labels, use_cache=use_cache, logits_to_keep=logits_to_keep,
            **kwargs,
        )


__all__ = ["Projector", "VISION_MODELS", "VisionLanguageModel", "VisionLanguagePreTrainedModel"]
