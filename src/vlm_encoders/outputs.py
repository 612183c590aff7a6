"""Typed outputs shared by every encoder.

`last_hidden_state` comes first on purpose: `pipeline("image-feature-extraction")` returns the first
field of a model's output.
"""

from dataclasses import dataclass

import torch
from transformers.utils import ModelOutput


@dataclass
class VisionEncoderOutput(ModelOutput):
    """What every vision encoder of the package returns.

    Args:
        last_hidden_state: `(B, N, D)` every token of the last layer (after the final norm where the
            architecture has one), the encoder's own view of the image.
        image_embeds: `(B, N_llm, D_feat)` the tokens a VLM hands to its projector: the configured
            feature layer(s), with the configured token selection (e.g. LLaVA's patch tokens of the
            second-to-last layer). `N_llm` equals the image processor's `get_number_of_image_tokens`.
        pooler_output: `(B, D)` one vector per image (CLS, attention pooling or mean), if configured.
        hidden_states: the input of the first layer and the output of every layer, if requested.
        attentions: per-layer attention probabilities `(B, H, N, N)`, if requested (eager attention only).
    """

    last_hidden_state: torch.FloatTensor | None = None
    image_embeds: torch.FloatTensor | None = None
    pooler_output: torch.FloatTensor | None = None
    hidden_states: tuple[torch.FloatTensor, ...] | None = None
    attentions: tuple[torch.FloatTensor, ...] | None = None


__all__ = ["VisionEncoderOutput"]
