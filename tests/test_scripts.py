"""The conversion script, run on a local checkpoint folder as a user would."""

import json
import os
import subprocess
import sys

from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_convert_script_on_a_clip_folder(tmp_path):
    config = CLIPConfig(
        vision_config=dict(hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
                           image_size=56, patch_size=14),
        text_config=dict(hidden_size=32, intermediate_size=48, num_hidden_layers=1, num_attention_heads=2))
    CLIPModel(config).save_pretrained(tmp_path / "src")
    CLIPImageProcessor(size={"shortest_edge": 56}, crop_size={"height": 56, "width": 56}).save_pretrained(tmp_path / "src")
    done = subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "convert_hf_vision_to_vit.py"),
                           "--src", str(tmp_path / "src"), "--dst", str(tmp_path / "dst"), "--remote-code"],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads((tmp_path / "dst" / "conversion.json").read_text())
    assert max(report["max_abs_delta"].values()) <= 1e-4
    saved = json.loads((tmp_path / "dst" / "config.json").read_text())
    assert saved["model_type"] == "vlmenc_vit" and saved["auto_map"]["AutoModel"] == "modeling_vit.ViTVisionModel"
    assert (tmp_path / "dst" / "preprocessor_config.json").exists()


def test_convert_script_on_a_qwen2_vl_folder(tmp_path):
    import torch
    from transformers import Qwen2VLForConditionalGeneration, Qwen2VLImageProcessor

    from tiny_models import tiny_qwen2_vl_config

    config = tiny_qwen2_vl_config()
    torch.manual_seed(0)
    Qwen2VLForConditionalGeneration(config).save_pretrained(tmp_path / "src")
    Qwen2VLImageProcessor(max_pixels=28 * 28 * 300).save_pretrained(tmp_path / "src")
    done = subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "convert_qwen2_vl_to_navit.py"),
                           "--src", str(tmp_path / "src"), "--dst", str(tmp_path / "dst"), "--remote-code"],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads((tmp_path / "dst" / "conversion.json").read_text())
    assert set(report["max_abs_delta"]) == {"image_embeds", "last_hidden_state"}
    assert max(report["max_abs_delta"].values()) <= 1e-4
    saved = json.loads((tmp_path / "dst" / "config.json").read_text())
    assert saved["model_type"] == "vlmenc_navit" and saved["auto_map"]["AutoModel"] == "modeling_navit.NaViTVisionModel"
    assert json.loads((tmp_path / "dst" / "preprocessor_config.json").read_text())["max_pixels"] == 28 * 28 * 300
