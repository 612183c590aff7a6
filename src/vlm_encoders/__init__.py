"""vlm-encoders: every way of turning an image into tokens for a VLM, behind one Hugging Face interface.

Importing the package registers every paradigm with transformers' Auto classes (`AutoConfig`,
`AutoModel`, `AutoImageProcessor`). Exported checkpoint code never imports this file.
"""

from transformers import AutoConfig, AutoImageProcessor, AutoModel, AutoModelForImageTextToText, AutoProcessor

from .configuration_deepencoder import DeepEncoderConfig
from .configuration_navit import NAVIT_STYLES, NAVIT_VARIANTS, NaViTVisionConfig
from .configuration_sam import SAM_VARIANTS, SAMVisionConfig
from .configuration_vit import VIT_STYLES, VIT_VARIANTS, ViTVisionConfig
from .configuration_vlm import PROJECTORS, VisionLanguageConfig
from .conversion_deepencoder import convert_deepencoder
from .conversion_navit import convert_qwen2_vl, navit_config_from_hf, navit_processor_from_hf
from .conversion_sam import convert_sam
from .conversion_vit import config_from_hf, convert_clip, convert_siglip, processor_from_hf
from .image_processing_deepencoder import DeepEncoderImageProcessor
from .image_processing_navit import NaViTImageProcessor
from .image_processing_sam import SAMImageProcessor
from .image_processing_vit import ViTImageProcessor
from .modeling_deepencoder import DeepEncoderModel, DeepEncoderPreTrainedModel, DeepEncoderVisionModel
from .modeling_navit import NaViTPreTrainedModel, NaViTVisionModel, mrope_position_ids
from .modeling_sam import SAMPreTrainedModel, SAMVisionModel
from .modeling_vit import ViTPreTrainedModel, ViTVisionModel
from .modeling_vlm import VisionLanguageModel
from .outputs import VisionEncoderOutput
from .processing_vlm import VisionLanguageProcessor

__version__ = "0.1.0"

# model_type -> (config, model, image processor); the single registry the CLI, tests and the VLM use.
PARADIGMS = {
    "vlmenc_vit": (ViTVisionConfig, ViTVisionModel, ViTImageProcessor),
    "vlmenc_navit": (NaViTVisionConfig, NaViTVisionModel, NaViTImageProcessor),
    "vlmenc_sam": (SAMVisionConfig, SAMVisionModel, SAMImageProcessor),
    "vlmenc_deepencoder": (DeepEncoderConfig, DeepEncoderModel, DeepEncoderImageProcessor),
}


def _register() -> None:
    for config_class, model_class, processor_class in PARADIGMS.values():
        AutoConfig.register(config_class.model_type, config_class, exist_ok=True)
        AutoModel.register(config_class, model_class, exist_ok=True)
        AutoImageProcessor.register(config_class, image_processor_classes={"torchvision": processor_class},
                                    exist_ok=True)
    AutoConfig.register(VisionLanguageConfig.model_type, VisionLanguageConfig, exist_ok=True)
    AutoModelForImageTextToText.register(VisionLanguageConfig, VisionLanguageModel, exist_ok=True)
    AutoProcessor.register(VisionLanguageConfig, VisionLanguageProcessor, exist_ok=True)


_register()

__all__ = [
    "DeepEncoderConfig",
    "DeepEncoderImageProcessor",
    "DeepEncoderModel",
    "DeepEncoderPreTrainedModel",
    "DeepEncoderVisionModel",
    "NAVIT_STYLES",
    "NAVIT_VARIANTS",
    "NaViTImageProcessor",
    "NaViTPreTrainedModel",
    "NaViTVisionConfig",
    "NaViTVisionModel",
    "PARADIGMS",
    "PROJECTORS",
    "SAMImageProcessor",
    "SAMPreTrainedModel",
    "SAMVisionConfig",
    "SAMVisionModel",
    "SAM_VARIANTS",
    "VIT_STYLES",
    "VIT_VARIANTS",
    "ViTImageProcessor",
    "ViTPreTrainedModel",
    "ViTVisionConfig",
    "ViTVisionModel",
    "VisionEncoderOutput",
    "VisionLanguageConfig",
    "VisionLanguageModel",
    "VisionLanguageProcessor",
    "config_from_hf",
    "convert_clip",
    "convert_deepencoder",
    "convert_qwen2_vl",
    "convert_sam",
    "convert_siglip",
    "mrope_position_ids",
    "navit_config_from_hf",
    "navit_processor_from_hf",
    "processor_from_hf",
]
