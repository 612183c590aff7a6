"""scripts/export.py: remote code + safetensors + a model card rendered from measurements, reloaded in a process
without the package, and pushed over HTTP to a local stand-in for the Hub that records what it receives."""

import base64
import importlib.util
import json
import os
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import yaml

from test_vlm import build as build_vlm

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
spec = importlib.util.spec_from_file_location("export_script", os.path.join(ROOT, "scripts", "export.py"))
export = importlib.util.module_from_spec(spec)
spec.loader.exec_module(export)


class LocalHub:
    """Answers the four requests `create_repo` + `upload_folder` make (create, validate-yaml, preupload, commit),
    asking for every file inline ("regular" upload), and keeps the requests and the files it received."""

    def __init__(self):
        self.requests, self.files, self.validated = [], {}, None
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def reply(self, payload, code=200):
                data = json.dumps(payload).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                hub.requests.append((self.path, self.headers.get("authorization")))
                if self.path == "/api/repos/create":
                    repo = json.loads(body)
                    return self.reply({"url": f"{hub.url}/{repo['organization']}/{repo['name']}"})
                if self.path == "/api/validate-yaml":
                    hub.validated = json.loads(body)["content"]
                    return self.reply({"errors": [], "warnings": []})
                if "/preupload/" in self.path:
                    return self.reply({"files": [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False}
                                                 for f in json.loads(body)["files"]]})
                if "/commit/" in self.path:
                    for line in body.decode().splitlines():
                        item = json.loads(line)
                        if item["key"] == "file":
                            hub.files[item["value"]["path"]] = base64.b64decode(item["value"]["content"])
                    repo = self.path.removeprefix("/api/models/").split("/commit/")[0]
                    return self.reply({"commitUrl": f"{hub.url}/{repo}/commit/{'a' * 40}", "commitOid": "a" * 40})
                self.reply({"error": f"unexpected {self.path}"}, 404)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def saved_vlm(tmp_path):
    model, processor = build_vlm("vlmenc_navit")
    model.save_pretrained(tmp_path / "trained")
    processor.save_pretrained(tmp_path / "trained")
    return tmp_path / "trained", model, processor


def header_and_body(card: str):
    _, header, body = card.split("---\n", 2)
    return yaml.safe_load(header), body


def test_export_renders_the_card_reloads_remotely_and_pushes(saved_vlm, tmp_path):
    folder, model, processor = saved_vlm
    out = export.main(["--model", str(folder), "--repo-id", "me/tiny-vlm", "--out", str(tmp_path / "export"),
                       "--base-model", "Qwen/Qwen2-VL-2B-Instruct"])
    files = set(os.listdir(out))
    assert {"README.md", "config.json", "model.safetensors", "modeling_vlm.py", "processing_vlm.py",
            "image_processing_navit.py", "tokenizer.json"} <= files
    assert json.loads(open(os.path.join(out, "config.json")).read())["auto_map"]["AutoModelForImageTextToText"] == \
        "modeling_vlm.VisionLanguageModel"
    header, body = header_and_body(open(os.path.join(out, "README.md")).read())
    assert header["library_name"] == "transformers" and header["pipeline_tag"] == "image-text-to-text"
    assert header["license"] == "apache-2.0" and header["base_model"] == ["Qwen/Qwen2-VL-2B-Instruct"]
    assert "custom_code" in header["tags"] and "{{" not in body
    assert f"| total |  |  | {sum(p.numel() for p in model.parameters()):,} |" in body
    assert 'from_pretrained("me/tiny-vlm", trust_remote_code=True)' in body
    tokens = processor.image_processor.get_number_of_image_tokens(height=1080, width=1920)
    assert "| 1920x1080 | " in body and f" | {tokens} | " in body
    assert "`Qwen2VLForConditionalGeneration`" in body or "No parity measurement" in body

    hub = LocalHub()
    info = export.push(out, "me/tiny-vlm", token="hf_local_test", endpoint=hub.url)
    assert [path for path, _ in hub.requests] == ["/api/repos/create", "/api/validate-yaml",
                                                  "/api/models/me/tiny-vlm/preupload/main",
                                                  "/api/models/me/tiny-vlm/commit/main"]
    assert all(auth == "Bearer hf_local_test" for _, auth in hub.requests)
    assert set(hub.files) == files
    for name, data in hub.files.items():  # every byte of the export arrived
        assert data == open(os.path.join(out, name), "rb").read(), name
    assert hub.validated.startswith("---\n") and "a" * 40 in str(info)


def test_pushing_without_a_token_fails_before_any_request_and_keeps_the_export(saved_vlm, tmp_path, monkeypatch):
    folder, _, _ = saved_vlm
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setattr("huggingface_hub.get_token", lambda: None)
    hub = LocalHub()
    out = tmp_path / "export"
    with pytest.raises(ValueError, match="no Hugging Face token.*Nothing was uploaded; the export is kept"):
        export.main(["--model", str(folder), "--repo-id", "me/x", "--out", str(out), "--push", "--endpoint", hub.url])
    assert hub.requests == [] and (out / "model.safetensors").exists() and (folder / "model.safetensors").exists()


def test_export_refuses_to_overwrite(saved_vlm, tmp_path):
    folder, _, _ = saved_vlm
    with pytest.raises(ValueError, match="must differ from --model"):
        export.export(str(folder), str(folder), "me/x")
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("keep me")
    with pytest.raises(ValueError, match="not empty; pass --overwrite"):
        export.export(str(folder), str(tmp_path / "busy"), "me/x")
    assert (tmp_path / "busy" / "notes.txt").read_text() == "keep me"


@pytest.mark.parametrize("paradigm", ["vlmenc_vit", "vlmenc_navit", "vlmenc_sam", "vlmenc_deepencoder"])
def test_every_encoder_card_renders_from_measurements(paradigm):
    """Each paradigm's card template: every field filled; the parity and benchmark rows are the JSON's."""
    from test_vlm import ENCODERS

    contract = ENCODERS[paradigm]()
    model = contract.build()
    processor = contract.make_processor(model.config)
    card = export.render_card(model, processor, paradigm, "me/encoder")
    header, body = header_and_body(card)
    assert header["pipeline_tag"] == "image-feature-extraction" and "{{" not in body
    assert header["license"] and header["library_name"] == "transformers" and "custom_code" in header["tags"]
    for section in ("## Usage", "## This checkpoint", "## Limitations", "## Citation", "arity"):
        assert section in body, (paradigm, section)
    assert 'from_pretrained("me/encoder", trust_remote_code=True)' in body
    name = export.CARD_FOR[paradigm]
    for kind in ("parity", "benchmark_cpu_2core", "benchmark_h100"):
        path = os.path.join(ROOT, "model_cards", "measurements", f"{name}_{kind}.json")
        if os.path.exists(path):
            rows = json.load(open(path)).values() if kind == "parity" else export.benchmark_results(path)
            for row in rows:
                cell = f"{row['max_abs_delta']:.1e}" if kind == "parity" else f"{row['ms']:.1f}"
                assert cell in body, (name, kind, cell)


def test_an_encoder_folder_exports_with_its_card(tmp_path):
    """An encoder alone (DeepEncoder here): AutoModel remote code, the encoder's card, a clean-process reload."""
    from test_deepencoder import DeepEncoderContract

    contract = DeepEncoderContract()
    model = contract.build()
    model.save_pretrained(tmp_path / "encoder")
    contract.make_processor(model.config).save_pretrained(tmp_path / "encoder")
    out = export.main(["--model", str(tmp_path / "encoder"), "--repo-id", "me/deepencoder-tiny",
                       "--out", str(tmp_path / "export")])
    config = json.loads(open(os.path.join(out, "config.json")).read())
    assert config["auto_map"]["AutoModel"] == "modeling_deepencoder.DeepEncoderModel"
    assert "modeling_deepencoder.py" in os.listdir(out) and "modeling_vlm.py" not in os.listdir(out)
    header, body = header_and_body(open(os.path.join(out, "README.md")).read())
    assert header["pipeline_tag"] == "image-feature-extraction" and "# DeepEncoder" in body
    assert f"Parameters: {sum(p.numel() for p in model.parameters()):,}" in body
