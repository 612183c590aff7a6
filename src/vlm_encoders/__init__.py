"""vlm-encoders: every way of turning an image into tokens for a VLM, behind one Hugging Face interface.

Importing the package registers every paradigm with transformers' Auto classes (`AutoConfig`,
`AutoModel`, `AutoImageProcessor`). Exported checkpoint code never imports this file.
"""

from transformers import AutoConfig, AutoImageProcessor, AutoModel

from .configuration_vit import VIT_STYLES, VIT_VARIANTS, ViTVisionConfig
from .conversion_vit import config_from_hf, convert_clip, convert_siglip, processor_from_hf
from .image_processing_vit import ViTImageProcessor
from .modeling_vit import ViTPreTrainedModel, ViTVisionModel
from .outputs import VisionEncoderOutput

__version__ = "0.1.0"

# model_type -> (config, model, image processor); the single registry the CLI, tests and the VLM use.
PARADIGMS = {
    "vlmenc_vit": (ViTVisionConfig, ViTVisionModel, ViTImageProcessor),
}


def _register() -> None:
    for config_class, model_class, processor_class in PARADIGMS.values():
        AutoConfig.register(config_class.model_type, config_class, exist_ok=True)
        AutoModel.register(config_class, model_class, exist_ok=True)
        AutoImageProcessor.register(config_class, image_processor_classes={"torchvision": processor_class},
                                    exist_ok=True)


_register()

__all__ = [
    "PARADIGMS",
    "VIT_STYLES",
    "VIT_VARIANTS",
    "ViTImageProcessor",
    "ViTPreTrainedModel",
    "ViTVisionConfig",
    "ViTVisionModel",
    "VisionEncoderOutput",
    "config_from_hf",
    "convert_clip",
    "convert_siglip",
    "processor_from_hf",
]
