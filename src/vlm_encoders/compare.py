"""`vlm-encoders compare`: what each paradigm does to an image, in tokens, compute, memory and time.

Models carry random weights of the published shapes: the point is tokens, FLOPs, latency and memory,
not features. Each paradigm registers a `ParadigmSpec`: how to build its default (small published)
and `--full` (the size VLMs use) configuration, how to describe its preprocessing, and how to draw
its tokenization. Not part of exported checkpoints.
"""

import os
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources

import torch
from PIL import Image, ImageDraw, ImageFont

from .benchmark import navit_config_flops, peak_memory_mib, vit_config_flops
from .configuration_navit import NaViTVisionConfig
from .configuration_vit import ViTVisionConfig
from .geometry import shortest_edge_size
from .image_processing_navit import NaViTImageProcessor
from .image_processing_vit import ViTImageProcessor
from .modeling_navit import NaViTVisionModel
from .modeling_vit import ViTVisionModel


def sample_images() -> list[str]:
    """The images shipped with the package (a generated document page with text, a chart and a photo region)."""
    folder = resources.files("vlm_encoders") / "assets"
    return sorted(str(p) for p in folder.iterdir() if p.name.endswith(".png"))


@dataclass
class ParadigmSpec:
    name: str
    title: Callable[[bool], str]  # full -> human-readable configuration name
    build: Callable[[bool], tuple]  # full -> (image processor, model)
    describe: Callable[[object, int, int], str]  # (processor, height, width) -> preprocessing in words
    flops: Callable[[object, object, int, int], int]  # (processor, model, height, width) -> encoder FLOPs
    draw: Callable[[Image.Image, object, object], Image.Image]  # (image, processor, model) -> panel


# ---- fixed-patch ViT --------------------------------------------------------------------------------

def _vit_build(full: bool):
    if full:  # LLaVA-1.5's tower: CLIP ViT-L/14 at 336, padded to a square, second-to-last layer
        config = ViTVisionConfig.from_variant("L/14", image_size=336)
        processor = ViTImageProcessor.from_style("llava", image_size=336, patch_size=14)
    else:  # OpenAI CLIP ViT-B/16 at 224
        config = ViTVisionConfig.from_variant("B/16", image_size=224)
        processor = ViTImageProcessor.from_style("clip", image_size=224, patch_size=16)
    torch.manual_seed(0)
    return processor, ViTVisionModel(config).eval()


def _vit_title(full: bool) -> str:
    return "CLIP ViT-L/14@336, LLaVA-1.5 pad-to-square" if full else "CLIP ViT-B/16@224"


def _vit_describe(processor, height: int, width: int) -> str:
    steps = []
    if processor.do_pad and height != width:
        side = max(height, width)
        steps.append(f"pad to {side}x{side}")
        height = width = side
    size = dict(processor.size)
    if size.get("shortest_edge"):
        h, w = shortest_edge_size(height, width, size["shortest_edge"])
        steps.append(f"resize to {w}x{h}")
    else:
        steps.append(f"squash to {size['width']}x{size['height']}")
    if processor.do_center_crop:
        steps.append(f"crop {processor.crop_size['width']}x{processor.crop_size['height']}")
    return ", ".join(steps)


def _vit_flops(processor, model, height: int, width: int) -> int:
    return vit_config_flops(model.config, *processor.get_processed_size(height, width))[1]


def _vit_draw(image: Image.Image, processor, model) -> Image.Image:
    """The image as the model sees it, with its patch grid: every cell is one token."""
    pixels = processor(image, return_tensors="pt")["pixel_values"][0]
    panel = _to_pil(pixels, processor.image_mean, processor.image_std)
    _draw_grid(panel, model.config.patch_size, (255, 40, 40))
    return panel


def _draw_grid(panel: Image.Image, step: int, colour, width: int = 1) -> None:
    draw = ImageDraw.Draw(panel)
    for x in range(0, panel.width - panel.width % step + 1, step):
        draw.line((x, 0, x, panel.height), fill=colour, width=width)
    for y in range(0, panel.height - panel.height % step + 1, step):
        draw.line((0, y, panel.width, y), fill=colour, width=width)


# ---- native resolution (NaViT / Qwen2-VL) --------------------------------------------------------------

# Qwen's README recommends a budget of 256 to 1280 tokens per image; the default run takes the low end
# to stay quick on a laptop CPU, --full the transformers default (the high end).
_NAVIT_BUDGET = {False: 256, True: 1280}


def _navit_build(full: bool):
    config = NaViTVisionConfig.from_variant("qwen2-vl-7b" if full else "qwen2-vl-2b")
    processor = NaViTImageProcessor(max_pixels=28 * 28 * _NAVIT_BUDGET[full])
    torch.manual_seed(0)
    return processor, NaViTVisionModel(config).eval()


def _navit_title(full: bool) -> str:
    return f"Qwen2-VL-{'7B' if full else '2B'} ViT, <= {_NAVIT_BUDGET[full]} tokens"


def _navit_describe(processor, height: int, width: int) -> str:
    h, w = processor.get_processed_size(height, width)
    return f"native aspect: resize to {w}x{h}, 2x2 merge"


def _navit_flops(processor, model, height: int, width: int) -> int:
    return navit_config_flops(model.config, [processor.get_processed_size(height, width)])


def _navit_draw(image: Image.Image, processor, model) -> Image.Image:
    """The image at its native-resolution size: thin lines per patch, thick ones per merged token."""
    h, w = processor.get_processed_size(image.height, image.width)
    panel = image.convert("RGB").resize((w, h), Image.Resampling.BICUBIC)
    _draw_grid(panel, processor.patch_size, (255, 170, 170))
    _draw_grid(panel, processor.patch_size * processor.merge_size, (220, 0, 0), width=2)
    return panel


PARADIGM_SPECS = {
    "vit": ParadigmSpec("vit", _vit_title, _vit_build, _vit_describe, _vit_flops, _vit_draw),
    "navit": ParadigmSpec("navit", _navit_title, _navit_build, _navit_describe, _navit_flops, _navit_draw),
}


# ---- running and reporting ----------------------------------------------------------------------------

@dataclass
class CompareRow:
    image: str
    paradigm: str
    configuration: str
    preprocessing: str
    input_size: str
    tokens: int
    gflops: float
    ms: float
    peak_mib: float


def load_image(path: str) -> Image.Image:
    """An RGB image from a path, EXIF orientation applied (as transformers' `load_image` does)."""
    from transformers.image_utils import load_image as hf_load_image

    return hf_load_image(path)


def compare(paths: list[str], paradigms: list[str], full: bool = False, device: str = "cpu", repeats: int = 2,
            progress: bool = True, errors: list[str] | None = None) -> tuple[list[CompareRow], dict]:
    """Run every paradigm on every readable image. Unreadable images are reported in `errors` and skipped."""
    from tqdm.auto import tqdm

    unknown = [p for p in paradigms if p not in PARADIGM_SPECS]
    if unknown:
        raise ValueError(f"unknown paradigm(s) {unknown}; known: {sorted(PARADIGM_SPECS)}")
    images = {}
    for path in paths:
        try:
            images[path] = load_image(path)
        except Exception as error:  # a bad file must not stop the others
            message = f"{path}: cannot read image ({type(error).__name__}: {error})"
            if errors is None:
                raise ValueError(message) from error
            errors.append(message)
    built = {}
    for name in tqdm(paradigms, desc="building models", disable=not progress):
        processor, model = PARADIGM_SPECS[name].build(full)
        built[name] = (processor, model.to(device))
    rows = []
    for (path, image), name in tqdm([(i, n) for i in images.items() for n in paradigms], desc="running",
                                    disable=not progress):
        rows.append(_run_one(path, image, name, *built[name], full=full, device=device, repeats=repeats))
    return rows, {"images": images, "models": built}


def _run_one(path, image, name, processor, model, full, device, repeats) -> CompareRow:
    spec = PARADIGM_SPECS[name]
    width, height = image.size
    batch = processor(image, return_tensors="pt").to(device)
    with torch.inference_mode():
        model(**batch)  # warm-up
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            out = model(**batch)
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            times.append(time.perf_counter() - start)
        peak = peak_memory_mib(lambda: model(**batch), device)
    tokens = out.image_embeds.shape[-2]  # (1, N, D) for one image, or (N, D) packed
    expected = processor.get_number_of_image_tokens(height=height, width=width)
    if tokens != expected:  # the contract every paradigm keeps; a mismatch is a bug worth stopping for
        raise RuntimeError(f"{name}: the model returned {tokens} tokens but the processor counts {expected}")
    h, w = processor.get_processed_size(height, width)
    return CompareRow(image=os.path.basename(path), paradigm=name, configuration=spec.title(full),
                      preprocessing=spec.describe(processor, height, width), input_size=f"{w}x{h}", tokens=tokens,
                      gflops=spec.flops(processor, model, height, width) / 1e9,
                      ms=statistics.median(times) * 1e3, peak_mib=peak)


def format_rows(rows: list[CompareRow], images: dict) -> str:
    out = []
    for image_name in dict.fromkeys(r.image for r in rows):
        group = [r for r in rows if r.image == image_name]
        size = next(f"{im.width}x{im.height}" for p, im in images.items() if os.path.basename(p) == image_name)
        out.append(f"{image_name} ({size})")
        header = (f"  {'paradigm':<9} {'configuration':<44} {'preprocessing':<52} {'input':>9} {'tokens':>6} "
                  f"{'GFLOPs':>7} {'ms':>8} {'peak MiB':>8}")
        out += [header, "  " + "-" * (len(header) - 2)]
        for r in group:
            out.append(f"  {r.paradigm:<9} {r.configuration:<44} {r.preprocessing:<52} {r.input_size:>9} "
                       f"{r.tokens:>6} {r.gflops:7.1f} {r.ms:8.1f} {r.peak_mib:8.1f}")
    out.append("random weights of the published shapes: tokens, compute and memory are real, features are not")
    return "\n".join(out)


def plot(rows: list[CompareRow], state: dict, out_path: str, panel_height: int = 448) -> str:
    """One row per image: the input, then one panel per paradigm with its tokenization, titled with its count."""
    font = ImageFont.load_default(size=16)
    strips = []
    for path, image in state["images"].items():
        panels = [(_fit(image, panel_height), f"input {image.width}x{image.height}")]
        for name, (processor, model) in state["models"].items():
            row = next(r for r in rows if r.image == os.path.basename(path) and r.paradigm == name)
            drawn = PARADIGM_SPECS[name].draw(image, processor, model)
            panels.append((_fit(drawn, panel_height), f"{name}: {row.tokens} tokens ({row.configuration})"))
        title_h = 28
        width = sum(max(p.width, int(font.getlength(t)) + 10) for p, t in panels) + 10 * (len(panels) + 1)
        strip = Image.new("RGB", (width, panel_height + title_h + 10), "white")
        draw = ImageDraw.Draw(strip)
        x = 10
        for panel, title in panels:
            draw.text((x, 5), title, fill=(0, 0, 0), font=font)
            strip.paste(panel, (x, title_h))
            x += max(panel.width, int(font.getlength(title)) + 10) + 10
        strips.append(strip)
    canvas = Image.new("RGB", (max(s.width for s in strips), sum(s.height for s in strips)), "white")
    y = 0
    for strip in strips:
        canvas.paste(strip, (0, y))
        y += strip.height
    canvas.save(out_path)
    return out_path


def _fit(image: Image.Image, height: int) -> Image.Image:
    return image.resize((max(1, round(image.width * height / image.height)), height), Image.Resampling.BICUBIC)


def _to_pil(pixels: torch.Tensor, mean, std) -> Image.Image:
    """Undo normalisation of one (3, H, W) tensor."""
    mean = torch.tensor(mean).view(3, 1, 1)
    std = torch.tensor(std).view(3, 1, 1)
    array = ((pixels.float().cpu() * std + mean).clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy()
    return Image.fromarray(array)


__all__ = ["PARADIGM_SPECS", "CompareRow", "ParadigmSpec", "compare", "format_rows", "plot", "sample_images"]
