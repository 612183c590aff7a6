"""The contract every paradigm keeps (DESIGN.md, "Contracts every paradigm keeps").

Not collected by itself (no `Test` prefix): each `tests/test_<paradigm>.py` subclasses `EncoderTests`
and fills in the hooks. Tiny configs with odd sizes; no network.
"""

import ast
import importlib.util
import json
import os

import numpy as np
import PIL.Image
import pytest
import torch
from transformers import AutoConfig, AutoImageProcessor, AutoModel

# sizes (height, width) every paradigm must count right: tiny, extreme aspect ratios, odd sizes
TOKEN_COUNT_SIZES = [(1, 1), (1, 4000), (4000, 1), (7, 5), (31, 517), (333, 517), (517, 333), (480, 640), (1080, 1920)]


# the exported-folder check of scripts/export.py: a fresh, offline process where `import vlm_encoders` fails
_spec = importlib.util.spec_from_file_location(
    "export_script", os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "scripts", "export.py"))
_export = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_export)
BLOCK_THE_PACKAGE = _export.BLOCK_THE_PACKAGE


def run_without_package(body: str, tmp_path) -> None:
    """Run Python source `body` where `import vlm_encoders` fails; it must succeed without importing the package."""
    done = _export.run_without_package(body, str(tmp_path))
    assert done.returncode == 0 and "REMOTE-OK" in done.stdout, done.stderr[-3000:]


def random_image(height: int, width: int, seed: int = 0) -> PIL.Image.Image:
    rng = np.random.default_rng(seed)
    return PIL.Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


class EncoderTests:
    config_class = None
    model_class = None
    processor_class = None
    atol = 1e-5
    # sizes of the images in a batch for the batching test: different aspect ratios on purpose
    batch_sizes_hw = [(45, 61), (61, 45), (38, 38)]
    # sizes of TOKEN_COUNT_SIZES the paradigm refuses by design -> the message its ValueError must carry
    rejected_sizes: dict[tuple[int, int], str] = {}
    supports_flash = True  # False where attention carries an additive bias flash kernels do not take

    # ---- hooks ---------------------------------------------------------------------------------
    def tiny_config(self, **overrides):
        raise NotImplementedError

    def make_processor(self, config):
        raise NotImplementedError

    def model_kwargs(self, batch) -> dict:
        """Model inputs from a processor output (add fixed flags here)."""
        return dict(batch)

    def split_image_embeds(self, output, batch) -> list[torch.Tensor]:
        """The tokens each image hands to the LLM, one (N_i, D) tensor per image."""
        raise NotImplementedError

    def invalid_pixel_inputs(self, config) -> list[tuple[dict, type]]:
        """(model kwargs, exception type) pairs the model must reject."""
        return []

    # ---- helpers -------------------------------------------------------------------------------
    def build(self, **overrides):
        torch.manual_seed(0)
        return self.model_class(self.tiny_config(**overrides)).eval()

    def batch(self, processor, sizes=None, seed=0):
        images = [random_image(h, w, seed + i) for i, (h, w) in enumerate(sizes or self.batch_sizes_hw)]
        return processor(images, return_tensors="pt")

    def run(self, model, batch, **kwargs):
        with torch.no_grad():
            return model(**self.model_kwargs(batch), **kwargs)

    # ---- 1. token count --------------------------------------------------------------------------
    @pytest.mark.parametrize("size", TOKEN_COUNT_SIZES)
    def test_token_count_matches_processor(self, size):
        model = self.build()
        processor = self.make_processor(model.config)
        if size in self.rejected_sizes:  # refused up front, by the count and by the processor alike
            with pytest.raises(ValueError, match=self.rejected_sizes[size]):
                processor.get_number_of_image_tokens(height=size[0], width=size[1])
            with pytest.raises(ValueError, match=self.rejected_sizes[size]):
                self.batch(processor, [size])
            return
        batch = self.batch(processor, [size])
        (embeds,) = self.split_image_embeds(self.run(model, batch), batch)
        assert embeds.shape[0] == processor.get_number_of_image_tokens(height=size[0], width=size[1])

    def test_hidden_states_count(self):
        model = self.build()
        batch = self.batch(self.make_processor(model.config))
        out = self.run(model, batch, output_hidden_states=True)
        assert len(out.hidden_states) == model.config.num_hidden_layers + 1

    # ---- 2. batching equivalence -----------------------------------------------------------------
    def test_batching_equivalence(self):
        model = self.build()
        processor = self.make_processor(model.config)
        batch = self.batch(processor)
        together = self.split_image_embeds(self.run(model, batch), batch)
        for i, size in enumerate(self.batch_sizes_hw):
            alone_batch = self.batch(processor, [size], seed=i)
            (alone,) = self.split_image_embeds(self.run(model, alone_batch), alone_batch)
            torch.testing.assert_close(alone, together[i], atol=self.atol, rtol=self.atol)

    # ---- 3. attention backends agree -------------------------------------------------------------
    def test_attention_backends_agree(self):
        model = self.build()
        batch = self.batch(self.make_processor(model.config))
        outputs = {}
        for implementation in ("eager", "sdpa"):
            model.set_attn_implementation(implementation)
            assert model.config._attn_implementation == implementation  # the switch really happened
            outputs[implementation] = self.run(model, batch)
        for field in ("last_hidden_state", "image_embeds"):
            torch.testing.assert_close(outputs["eager"][field], outputs["sdpa"][field], atol=1e-4, rtol=1e-4)

    @pytest.mark.skipif(not torch.cuda.is_available(), reason="flash attention needs a CUDA GPU")
    def test_flash_attention_agrees(self):
        if not self.supports_flash:
            pytest.skip(f"{self.model_class.__name__} does not support flash attention")
        pytest.importorskip("flash_attn")
        model = self.build().cuda()
        batch = self.batch(self.make_processor(model.config)).to("cuda")
        reference = self.run(model, batch)
        model.set_attn_implementation("flash_attention_2")
        with torch.autocast("cuda", dtype=torch.bfloat16):
            flash = self.run(model, batch)
        torch.testing.assert_close(flash.image_embeds.float(), reference.image_embeds, atol=5e-2, rtol=5e-2)

    # ---- 4. round trips --------------------------------------------------------------------------
    def test_config_json_round_trip(self, tmp_path):
        config = self.tiny_config()
        config.save_pretrained(tmp_path)
        again = self.config_class.from_pretrained(tmp_path)
        assert again.to_dict() == config.to_dict()
        assert json.loads((tmp_path / "config.json").read_text())["model_type"] == self.config_class.model_type

    def test_save_load_is_bitwise(self, tmp_path):
        model = self.build()
        batch = self.batch(self.make_processor(model.config))
        before = self.run(model, batch)
        model.save_pretrained(tmp_path)
        assert (tmp_path / "model.safetensors").exists()
        again = self.model_class.from_pretrained(tmp_path).eval()
        for name, tensor in model.state_dict().items():
            assert torch.equal(tensor, again.state_dict()[name]), name
        assert torch.equal(self.run(again, batch).image_embeds, before.image_embeds)

    def test_auto_classes(self, tmp_path):
        model = self.build()
        processor = self.make_processor(model.config)
        model.save_pretrained(tmp_path)
        processor.save_pretrained(tmp_path)
        assert type(AutoConfig.from_pretrained(tmp_path)) is self.config_class
        assert type(AutoModel.from_pretrained(tmp_path)) is self.model_class
        loaded = AutoImageProcessor.from_pretrained(tmp_path)
        assert type(loaded) is self.processor_class
        images = [random_image(h, w, i) for i, (h, w) in enumerate(self.batch_sizes_hw)]
        for key, value in processor(images, return_tensors="pt").items():
            assert torch.equal(value, loaded(images, return_tensors="pt")[key]), key

    def test_remote_code_loads_without_the_package(self, tmp_path):
        """A saved folder is self-contained: it loads with trust_remote_code where vlm_encoders cannot be imported."""
        model = self.build()
        processor = self.make_processor(model.config)
        type(model.config).register_for_auto_class()
        self.model_class.register_for_auto_class("AutoModel")
        self.processor_class.register_for_auto_class()
        folder = tmp_path / "checkpoint"
        model.save_pretrained(folder)
        processor.save_pretrained(folder)
        for py in folder.glob("*.py"):  # only `from .module import Name`, the form remote code can follow
            for node in ast.walk(ast.parse(py.read_text())):
                if isinstance(node, ast.ImportFrom) and node.level:
                    assert node.level == 1 and node.module and "." not in node.module, f"{py.name}: {ast.dump(node)}"
                if isinstance(node, ast.Import) or (isinstance(node, ast.ImportFrom) and not node.level):
                    names = [node.module] if isinstance(node, ast.ImportFrom) else [a.name for a in node.names]
                    assert not any(n.split(".")[0] == "vlm_encoders" for n in names), py.name
        image = random_image(*self.batch_sizes_hw[0])
        image.save(tmp_path / "image.png")
        batch = processor(image, return_tensors="pt")
        torch.save({"batch": dict(batch), "embeds": self.run(model, batch).image_embeds}, tmp_path / "expected.pt")
        run_without_package(f"""
            import PIL.Image, torch
            from transformers import AutoImageProcessor, AutoModel
            model = AutoModel.from_pretrained({str(folder)!r}, trust_remote_code=True).eval()
            processor = AutoImageProcessor.from_pretrained({str(folder)!r}, trust_remote_code=True)
            assert type(model).__module__.startswith("transformers_modules"), type(model).__module__
            expected = torch.load({str(tmp_path / 'expected.pt')!r})
            batch = processor(PIL.Image.open({str(tmp_path / 'image.png')!r}), return_tensors="pt")
            for key, value in expected["batch"].items():
                assert torch.equal(batch[key], value), key
            with torch.no_grad():
                embeds = model({self.remote_call_kwargs()}).image_embeds
            assert torch.equal(embeds, expected["embeds"]), (embeds - expected["embeds"]).abs().max()
        """, tmp_path)

    def remote_call_kwargs(self) -> str:
        """Python source of the model kwargs in the remote-code subprocess (names: batch)."""
        return "**batch"

    # ---- 5. training -----------------------------------------------------------------------------
    def test_every_parameter_gets_a_gradient(self):
        model = self.build().train()
        batch = self.batch(self.make_processor(model.config))
        out = model(**self.model_kwargs(batch))
        loss = out.image_embeds.pow(2).mean() + out.last_hidden_state.pow(2).mean()
        if out.pooler_output is not None:
            loss = loss + out.pooler_output.pow(2).mean()
        loss.backward()
        missing = [n for n, p in model.named_parameters() if p.requires_grad and (p.grad is None or not p.grad.any())]
        assert not missing, f"no gradient reaches {missing}"

    def test_gradient_checkpointing_gives_same_gradients(self):
        batch = self.batch(self.make_processor(self.tiny_config()))
        grads = []
        for checkpointing in (False, True):
            model = self.build().train()
            if checkpointing:
                model.activation_checkpointing_enable({"use_reentrant": False})
                assert model.is_activation_checkpointing
            model(**self.model_kwargs(batch)).image_embeds.pow(2).mean().backward()
            grads.append({n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})
        assert grads[0].keys() == grads[1].keys()
        for name in grads[0]:
            torch.testing.assert_close(grads[0][name], grads[1][name], atol=1e-6, rtol=1e-5, msg=name)

    def test_bf16_forward_is_finite(self):
        model = self.build().to(torch.bfloat16)
        batch = self.batch(self.make_processor(model.config))
        kwargs = {k: v.to(torch.bfloat16) if v.is_floating_point() else v for k, v in self.model_kwargs(batch).items()}
        with torch.no_grad():
            out = model(**kwargs)
        assert out.image_embeds.dtype == torch.bfloat16
        assert torch.isfinite(out.image_embeds).all()

    # ---- 7. bad input ----------------------------------------------------------------------------
    def test_processor_rejects_bad_images(self):
        processor = self.make_processor(self.tiny_config())
        bad = [
            (np.zeros((0, 10, 3), dtype=np.uint8), ValueError, "no pixels"),
            (np.zeros((10, 10, 2), dtype=np.uint8), ValueError, "channel"),
            (np.full((10, 10, 3), np.nan, dtype=np.float32), ValueError, "NaN"),
            (np.zeros((10, 10, 3), dtype=np.int64), TypeError, "int64"),
            (torch.zeros(3, 10, 10, dtype=torch.bool), TypeError, "bool"),
            (torch.zeros(3, 10, 10, dtype=torch.complex64), TypeError, "complex"),
        ]
        for image, error, message in bad:
            with pytest.raises(error, match=message):
                processor(image, return_tensors="pt")

    def test_model_rejects_bad_pixel_values(self):
        model = self.build()
        for kwargs, error in self.invalid_pixel_inputs(model.config):
            with pytest.raises(error):
                model(**kwargs)

    @pytest.mark.parametrize("mode", ["L", "LA", "RGBA", "P", "I;16", "CMYK", "1"])
    def test_image_modes_are_converted(self, mode):
        processor = self.make_processor(self.tiny_config())
        image = random_image(37, 53)
        if mode == "I;16":
            converted = PIL.Image.fromarray(np.asarray(image.convert("L"), dtype=np.uint16) * 257)
        else:
            converted = image.convert(mode)
        out = processor(converted, return_tensors="pt")["pixel_values"]
        assert out.shape == processor(image, return_tensors="pt")["pixel_values"].shape
        assert torch.isfinite(out).all()
        if mode == "L":  # grayscale is replicated to three equal channels
            torch.testing.assert_close(out, processor(converted.convert("RGB"), return_tensors="pt")["pixel_values"])

    def test_transparent_pixels_become_white(self):
        processor = self.make_processor(self.tiny_config())
        clear = PIL.Image.new("RGBA", (53, 37), (10, 200, 30, 0))
        white = PIL.Image.new("RGB", (53, 37), (255, 255, 255))
        torch.testing.assert_close(processor(clear, return_tensors="pt")["pixel_values"],
                                   processor(white, return_tensors="pt")["pixel_values"])

    def test_exif_rotation_is_applied_when_loading_files(self, tmp_path):
        """transformers' `load_image` (used for paths and URLs) applies the EXIF orientation; so do we."""
        image = random_image(20, 40)
        exif = PIL.Image.Exif()
        exif[0x0112] = 6  # rotate 90 degrees clockwise on display
        image.save(tmp_path / "rotated.jpg", exif=exif)
        processor = self.make_processor(self.tiny_config())
        from transformers.image_utils import load_image

        loaded = load_image(str(tmp_path / "rotated.jpg"))
        assert loaded.size == (20, 40)  # (width, height) after rotation
        out = processor(str(tmp_path / "rotated.jpg"), return_tensors="pt")
        torch.testing.assert_close(out["pixel_values"], processor(loaded, return_tensors="pt")["pixel_values"])
