"""Export a saved encoder or VLM for the Hub: self-contained remote code, safetensors, and a model card whose
numbers are measured, never typed; optionally push it.

    python scripts/export.py --model out/train/final --repo-id user/name                 # writes out/export/name
    python scripts/export.py --model out/train/final --repo-id user/name --push [--private]

Steps: load the folder; `register_for_auto_class` so the config records `auto_map`; `save_pretrained` with the
code files beside the weights; render `model_cards/<paradigm>.md` with this model's parameters, token counts
and GFLOPs at stated sizes, and the parity and benchmark JSON in `model_cards/measurements/`; load the folder
again with `trust_remote_code=True` in a fresh process that cannot import vlm_encoders and check it gives the
same output; with `--push`, `create_repo` + `upload_folder` through huggingface_hub. The source folder is
never modified, so a failed push loses nothing.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CARDS = os.path.join(ROOT, "model_cards")
CARD_FOR = {"vlmenc_vit": "vit", "vlmenc_navit": "navit", "vlmenc_sam": "sam", "vlmenc_deepencoder": "deepencoder",
            "vlmenc_vlm": "vlm"}
# sizes (height, width) the card states tokens and GFLOPs for: a square photo, a page, a 16:9 frame
CARD_SIZES = [(448, 448), (1100, 850), (1080, 1920)]

# Python source for a subprocess: from here on `import vlm_encoders` fails, as on a machine without the package
BLOCK_THE_PACKAGE = textwrap.dedent("""
    import sys
    class NoPackage:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] == "vlm_encoders":
                raise ImportError("vlm_encoders is blocked here")
    sys.meta_path.insert(0, NoPackage())
""")


def run_without_package(body: str, workdir: str) -> subprocess.CompletedProcess:
    """Run Python source `body` in a fresh, offline process where `import vlm_encoders` fails."""
    script = BLOCK_THE_PACKAGE + textwrap.dedent(body) + textwrap.dedent("""
        assert not any(m.startswith("vlm_encoders") for m in sys.modules)
        print("REMOTE-OK")
    """)
    env = {**os.environ, "HF_MODULES_CACHE": os.path.join(workdir, "modules"), "HF_HUB_OFFLINE": "1"}
    env.pop("PYTHONPATH", None)
    return subprocess.run([sys.executable, "-c", script], cwd=workdir, env=env, capture_output=True, text=True)


def load(folder: str):
    """(model, processor, model_type) of a folder saved by this package (an encoder or a VLM)."""
    import vlm_encoders  # noqa: F401  (registers the paradigms)
    from transformers import AutoImageProcessor, AutoModel, AutoModelForImageTextToText, AutoProcessor

    with open(os.path.join(folder, "config.json")) as f:
        model_type = json.load(f).get("model_type")
    if model_type not in CARD_FOR:
        raise ValueError(f"{folder} holds a {model_type!r} model; export takes {sorted(CARD_FOR)}")
    if model_type == "vlmenc_vlm":
        return AutoModelForImageTextToText.from_pretrained(folder).eval(), AutoProcessor.from_pretrained(folder), model_type
    return AutoModel.from_pretrained(folder).eval(), AutoImageProcessor.from_pretrained(folder), model_type


# ---- the model card ----------------------------------------------------------------------------------

def _table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def parameters_section(model, model_type: str) -> str:
    if model_type == "vlmenc_vlm":
        kinds = {"encoder": model.config.vision_config.model_type, "projector": model.config.projector,
                 "llm": model.config.text_config.model_type}
        rows = [[part, f"`{attribute}`", f"`{kinds[part]}`",
                 f"{sum(p.numel() for p in getattr(model, attribute).parameters()):,}"]
                for part, attribute in model.parts.items()]
        rows.append(["total", "", "", f"{sum(p.numel() for p in model.parameters()):,}"])
        return _table(["part", "attribute", "type", "parameters"], rows)
    return f"Parameters: {sum(p.numel() for p in model.parameters()):,} (`{type(model).__name__}`)."


def tokens_section(model, processor, model_type: str) -> str:
    from vlm_encoders.compare import PARADIGM_SPECS

    encoder = model.vision_tower if model_type == "vlmenc_vlm" else model
    image_processor = processor.image_processor if model_type == "vlmenc_vlm" else processor
    spec = PARADIGM_SPECS[encoder.config.model_type.removeprefix("vlmenc_")]
    rows = []
    for height, width in CARD_SIZES:
        tokens = image_processor.get_number_of_image_tokens(height=height, width=width)
        gflops = spec.flops(image_processor, encoder, height, width) / 1e9
        rows.append([f"{width}x{height}", spec.describe(image_processor, height, width), tokens, f"{gflops:.3g}"])
    return _table(["image (w x h)", "preprocessing", "tokens", "encoder GFLOPs"], rows)


def parity_section(card: str) -> str:
    path = os.path.join(CARDS, "measurements", f"{card}_parity.json")
    if not os.path.exists(path):
        return "_No parity measurement recorded for this card._"
    rows = json.load(open(path)).values()
    return _table(["against (transformers)", "setting", "max abs difference"],
                  [[f"`{r['reference']}`", r["setting"], f"{r['max_abs_delta']:.1e}"] for r in rows]) + (
        "\n\nRecorded by the test suite with `VLMENC_RECORD_PARITY=model_cards/measurements python -m pytest "
        "-m 'slow or not slow' ...` (random weights of the published shapes).")


def benchmark_results(path: str) -> list[dict]:
    """The result rows of a benchmark JSON: a list from `vlm-encoders benchmark --json`, or runs of such lists
    with their commands ({"machine": ..., "runs": [{"command": ..., "results": [...]}]})."""
    data = json.load(open(path))
    if isinstance(data, dict):
        return [r for run in data["runs"] for r in run["results"]]
    return data


# measurement file suffix -> the machine it was measured on, as the card names it
BENCHMARK_MACHINES = {"cpu_2core": "2 CPU cores", "h100": "one NVIDIA H100 (convolutions in TF32, torch's default)"}


def benchmark_section(card: str) -> str:
    sections = []
    for suffix, machine in BENCHMARK_MACHINES.items():
        path = os.path.join(CARDS, "measurements", f"{card}_benchmark_{suffix}.json")
        if not os.path.exists(path):
            continue
        rows = [[r["case"], r["model"], r["tokens"], f"{r['gflops']:.0f}", f"{r['ms']:.1f}", f"{r['ratio']:.2f}",
                 f"{r['peak_mib']:.0f}"] for r in benchmark_results(path)]
        sections.append(f"On {machine}:\n\n" + _table(
            ["case", "model", "tokens", "GFLOPs", "ms", "speed vs transformers", "peak MiB"], rows))
    if not sections:
        return "_No benchmark recorded for this card._"
    return "\n\n".join(sections) + ("\n\nfp32, batch 1, medians of interleaved rounds; peak MiB is the extra "
                                     "memory of one forward.")


def render_card(model, processor, model_type: str, repo_id: str, base_model: list[str] | None = None,
                license: str = "apache-2.0") -> str:
    """The card of `model_cards/<paradigm>.md` with every `{{field}}` filled from this model and measured JSON."""
    import yaml

    card = CARD_FOR[model_type]
    text = open(os.path.join(CARDS, f"{card}.md")).read()
    header, body = {}, text
    if text.startswith("---\n"):
        _, raw, body = text.split("---\n", 2)
        header = yaml.safe_load(raw) or {}
    header.update(license=license, library_name="transformers",
                  tags=list(dict.fromkeys([*header.get("tags", []), "custom_code", "vlm-encoders"])))
    if base_model:
        header["base_model"] = base_model
    fields = {
        "repo_id": repo_id,
        "parameters": parameters_section(model, model_type),
        "tokens": tokens_section(model, processor, model_type),
        "parity": parity_section(card),
        "benchmark": benchmark_section(card),
    }
    for name, value in fields.items():
        body = body.replace("{{" + name + "}}", value)
    if "{{" in body:
        left = body[body.index("{{"):body.index("{{") + 40]
        raise ValueError(f"model_cards/{card}.md has a field this script does not fill: {left!r}")
    return "---\n" + yaml.safe_dump(header, sort_keys=False) + "---\n" + body


# ---- export, check, push -------------------------------------------------------------------------------

def sample_inputs(processor, model_type: str) -> dict:
    """A generated image (and, for a VLM, a prompt) through the folder's own processor."""
    import numpy as np
    from PIL import Image

    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (61, 45, 3), dtype=np.uint8))
    if model_type == "vlmenc_vlm":
        return dict(processor(images=[[image]], text=[f"{processor.image_token}Describe the image."],
                              return_tensors="pt"))
    return dict(processor(image, return_tensors="pt"))


def check_remote_code(folder: str, model_type: str, expected) -> None:
    """Load `folder` with trust_remote_code in a process without vlm_encoders; its output must equal `expected`."""
    import torch

    with tempfile.TemporaryDirectory() as work:
        torch.save(expected, os.path.join(work, "expected.pt"))
        auto = "AutoModelForImageTextToText" if model_type == "vlmenc_vlm" else "AutoModel"
        field = "logits" if model_type == "vlmenc_vlm" else "image_embeds"
        done = run_without_package(f"""
            import torch
            from transformers import {auto}
            model = {auto}.from_pretrained({folder!r}, trust_remote_code=True).eval()
            assert type(model).__module__.startswith("transformers_modules"), type(model).__module__
            expected = torch.load("expected.pt")
            with torch.no_grad():
                got = model(**expected["inputs"]).{field}
            assert torch.equal(got, expected["output"]), (got - expected["output"]).abs().max()
        """, work)
    if done.returncode or "REMOTE-OK" not in done.stdout:
        raise RuntimeError(f"the exported folder does not reload with trust_remote_code:\n{done.stderr[-3000:]}")


def export(model_dir: str, out_dir: str, repo_id: str, base_model: list[str] | None = None,
           license: str = "apache-2.0", overwrite: bool = False) -> str:
    import torch

    if os.path.abspath(out_dir) == os.path.abspath(model_dir):
        raise ValueError("--out must differ from --model: export never writes into the source folder")
    if os.path.isdir(out_dir) and os.listdir(out_dir) and not overwrite:
        raise ValueError(f"{out_dir} is not empty; pass --overwrite to replace its files")
    model, processor, model_type = load(model_dir)
    type(model.config).register_for_auto_class()
    type(model).register_for_auto_class("AutoModelForImageTextToText" if model_type == "vlmenc_vlm" else "AutoModel")
    if model_type == "vlmenc_vlm":
        type(processor).register_for_auto_class("AutoProcessor")
    type(processor.image_processor if model_type == "vlmenc_vlm" else processor).register_for_auto_class(
        "AutoImageProcessor")
    model.save_pretrained(out_dir)
    processor.save_pretrained(out_dir)
    with open(os.path.join(out_dir, "README.md"), "w") as f:
        f.write(render_card(model, processor, model_type, repo_id, base_model, license))
    inputs = sample_inputs(processor, model_type)
    with torch.no_grad():
        out = model(**inputs)
    check_remote_code(out_dir, model_type, {"inputs": inputs,
                                            "output": out.logits if model_type == "vlmenc_vlm" else out.image_embeds})
    return out_dir


def push(folder: str, repo_id: str, token: str | None = None, private: bool = False, endpoint: str | None = None):
    """create_repo + upload_folder; without a token, a clear error before any request (the folder stays)."""
    from huggingface_hub import HfApi, get_token

    token = token or get_token()
    if not token:
        raise ValueError(f"no Hugging Face token: run `hf auth login`, set HF_TOKEN or pass --token. Nothing was "
                         f"uploaded; the export is kept in {folder}")
    api = HfApi(endpoint=endpoint, token=token)
    api.create_repo(repo_id, private=private, exist_ok=True)
    return api.upload_folder(repo_id=repo_id, folder_path=folder, commit_message="Upload with vlm-encoders export")


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="a folder saved by save_pretrained (an encoder or a VLM)")
    parser.add_argument("--repo-id", required=True, help="user/name on the Hub (also used in the card's snippets)")
    parser.add_argument("--out", help="export folder (default: out/export/<name>)")
    parser.add_argument("--base-model", action="append", help="the checkpoint(s) this one was made from, for the card")
    parser.add_argument("--license", default="apache-2.0")
    parser.add_argument("--overwrite", action="store_true", help="replace the files of a non-empty --out")
    parser.add_argument("--push", action="store_true", help="upload to the Hub after the checks pass")
    parser.add_argument("--private", action="store_true")
    parser.add_argument("--token", help="Hub token (default: the logged-in one or HF_TOKEN)")
    parser.add_argument("--endpoint", help="Hub endpoint (default: huggingface.co or HF_ENDPOINT)")
    args = parser.parse_args(argv)
    out = args.out or os.path.join("out", "export", args.repo_id.split("/")[-1])
    export(args.model, out, args.repo_id, args.base_model, args.license, args.overwrite)
    print(f"exported to {out}: weights, remote code, README.md; reloads with trust_remote_code")
    if args.push:
        info = push(out, args.repo_id, args.token, args.private, args.endpoint)
        print(f"pushed: {getattr(info, 'commit_url', info)}")
    return out


if __name__ == "__main__":
    try:
        main()
    except ValueError as error:
        sys.exit(f"error: {error}")
