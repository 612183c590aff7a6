"""Convert a local CLIP / SigLIP checkpoint folder (transformers layout) into a vlm-encoders ViT checkpoint.

    python scripts/convert_hf_vision_to_vit.py --src path/to/clip-vit-large-patch14-336 --dst out/vit-l14-336 \
        [--family clip|siglip] [--feature-layer -2] [--remote-code]

Works on CLIPModel, CLIPVisionModel, SiglipModel, SiglipVisionModel and LLaVA folders that contain one. After
converting, it runs the transformers model from the same folder and our model on the same pixels and prints
max |delta| of last_hidden_state, pooler_output and the selected feature layer.
"""

import argparse
import json
import os

import torch
from transformers import AutoConfig, AutoModel

from vlm_encoders import ViTImageProcessor, ViTVisionConfig, ViTVisionModel, convert_clip, convert_siglip
from vlm_encoders.conversion_vit import processor_from_hf


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--src", required=True, help="local folder with config.json and weights")
    parser.add_argument("--dst", required=True, help="output folder")
    parser.add_argument("--family", choices=["clip", "siglip"], default=None, help="default: from config.json")
    parser.add_argument("--feature-layer", type=int, default=None, help="hidden state fed to the LLM")
    parser.add_argument("--remote-code", action="store_true", help="also copy the code (trust_remote_code loading)")
    args = parser.parse_args()

    config = AutoConfig.from_pretrained(args.src)
    family = args.family or ("siglip" if config.model_type.startswith("siglip") else "clip")
    overrides = {} if args.feature_layer is None else {"feature_layer": args.feature_layer}
    ours = (convert_siglip if family == "siglip" else convert_clip)(args.src, **overrides)
    has_processor = os.path.exists(os.path.join(args.src, "preprocessor_config.json"))
    processor = processor_from_hf(args.src, ours.config.patch_size) if has_processor else \
        ViTImageProcessor.from_style(family, image_size=ours.config.image_size, patch_size=ours.config.patch_size)

    reference = AutoModel.from_pretrained(args.src).eval()
    reference = getattr(reference, "vision_model", reference)
    pixels = torch.randn(1, 3, ours.config.image_size, ours.config.image_size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ref = reference(pixels, output_hidden_states=True)
        out = ours(pixels)
    layer = ref.hidden_states[ours.config.feature_layers[0]][:, ours.embeddings.num_prefix_tokens:]
    deltas = {
        "last_hidden_state": (out.last_hidden_state - ref.last_hidden_state).abs().max().item(),
        "pooler_output": (out.pooler_output - ref.pooler_output).abs().max().item()
        if out.pooler_output is not None and ref.pooler_output is not None else None,
        "feature_layer": (out.image_embeds[..., : layer.shape[-1]] - layer).abs().max().item(),
    }
    if args.remote_code:
        ViTVisionConfig.register_for_auto_class()
        ViTVisionModel.register_for_auto_class("AutoModel")
        ViTImageProcessor.register_for_auto_class()
    ours.save_pretrained(args.dst)
    processor.save_pretrained(args.dst)
    with open(os.path.join(args.dst, "conversion.json"), "w") as f:
        json.dump({"source": os.path.abspath(args.src), "family": family, "max_abs_delta": deltas}, f, indent=2)
    print(json.dumps(deltas, indent=2))


if __name__ == "__main__":
    main()
