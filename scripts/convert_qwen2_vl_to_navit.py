"""Convert a local Qwen2-VL / Qwen2.5-VL checkpoint folder (transformers layout) into a vlm-encoders NaViT checkpoint.

    python scripts/convert_qwen2_vl_to_navit.py --src path/to/Qwen2-VL-7B-Instruct --dst out/navit-qwen2-vl-7b \
        [--remote-code]

Only the vision tower is kept (blocks + merger; the LLM weights are left behind). After converting, it runs
transformers' vision tower from the same folder and ours on the same pack of three differently sized images
(processed with the checkpoint's own preprocessor settings) and writes max |delta| to conversion.json.
"""

import argparse
import json
import os

import numpy as np
import PIL.Image
import torch
from transformers import AutoConfig, AutoModel

from vlm_encoders import NaViTImageProcessor, NaViTVisionConfig, NaViTVisionModel, convert_qwen2_vl
from vlm_encoders.conversion_navit import navit_processor_from_hf


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--src", required=True, help="local folder with config.json and weights")
    parser.add_argument("--dst", required=True, help="output folder")
    parser.add_argument("--remote-code", action="store_true", help="also copy the code (trust_remote_code loading)")
    args = parser.parse_args()

    ours = convert_qwen2_vl(args.src)
    has_processor = os.path.exists(os.path.join(args.src, "preprocessor_config.json"))
    processor = navit_processor_from_hf(args.src) if has_processor else NaViTImageProcessor(
        patch_size=ours.config.patch_size, merge_size=ours.config.spatial_merge_size,
        temporal_patch_size=ours.config.temporal_patch_size)

    reference = AutoModel.from_pretrained(args.src).eval()
    reference = getattr(reference, "visual", None) or getattr(getattr(reference, "model", None), "visual", reference)
    rng = np.random.default_rng(0)
    images = [PIL.Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)) for h, w in
              [(333, 517), (200, 120), (448, 448)]]
    batch = processor(images, return_tensors="pt")
    with torch.no_grad():
        ref = reference(batch["pixel_values"], grid_thw=batch["image_grid_thw"])
        out = ours(**batch)
    deltas = {"image_embeds": (out.image_embeds - ref.pooler_output).abs().max().item()}
    if ours.config.window_size == 0:  # with windows, transformers returns its hidden states in window order
        patches = batch["image_grid_thw"].prod(-1).tolist()
        ours_hidden = torch.cat([h[:n] for h, n in zip(out.last_hidden_state, patches)])  # ours is padded per image
        deltas["last_hidden_state"] = (ours_hidden - ref.last_hidden_state).abs().max().item()

    if args.remote_code:
        NaViTVisionConfig.register_for_auto_class()
        NaViTVisionModel.register_for_auto_class("AutoModel")
        NaViTImageProcessor.register_for_auto_class()
    ours.save_pretrained(args.dst)
    processor.save_pretrained(args.dst)
    source_type = AutoConfig.from_pretrained(args.src).model_type
    with open(os.path.join(args.dst, "conversion.json"), "w") as f:
        json.dump({"source": os.path.abspath(args.src), "source_model_type": source_type, "max_abs_delta": deltas},
                  f, indent=2)
    print(json.dumps(deltas, indent=2))


if __name__ == "__main__":
    main()
