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

from .benchmark import deepencoder_config_flops, navit_config_flops, peak_memory_mib, sam_config_flops, vit_config_flops
from .configuration_deepencoder import DeepEncoderConfig
from .configuration_navit import NaViTVisionConfig
from .configuration_sam import SAMVisionConfig
from .configuration_vit import ViTVisionConfig
from .geometry import DEEPENCODER_MODES, shortest_edge_size
from .image_processing_deepencoder import DeepEncoderImageProcessor
from .image_processing_navit import NaViTImageProcessor
from .image_processing_sam import SAMImageProcessor
from .image_processing_vit import ViTImageProcessor
from .modeling_deepencoder import DeepEncoderModel
from .modeling_navit import NaViTVisionModel
from .modeling_sam import SAMVisionModel
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
    draw: Callable[[Image.Image, object], Image.Image]  # (image, processor) -> panel; no model needed
    processor: Callable[[bool], object]  # full -> image processor alone (visualize and plan build no model)
    plan: Callable[[int, list], tuple]  # (budget, [(h, w)]) -> (setting in words, processor) or (reason, None)
    separators: int = 0  # positions the LLM sees around each image beyond its tokens (e.g. start/end markers)


# ---- fixed-patch ViT --------------------------------------------------------------------------------

def _vit_processor(full: bool):
    if full:  # LLaVA-1.5's tower: CLIP ViT-L/14 at 336, padded to a square
        return ViTImageProcessor.from_style("llava", image_size=336, patch_size=14)
    return ViTImageProcessor.from_style("clip", image_size=224, patch_size=16)  # OpenAI CLIP ViT-B/16 at 224


def _vit_build(full: bool):
    # full: LLaVA-1.5's second-to-last layer of CLIP ViT-L/14@336; default: CLIP ViT-B/16@224
    config = ViTVisionConfig.from_variant("L/14", image_size=336) if full else ViTVisionConfig.from_variant("B/16")
    torch.manual_seed(0)
    return _vit_processor(full), ViTVisionModel(config).eval()


# Published fixed-size towers, fewest tokens first: (name, style, image size, patch size)
_VIT_PLANS = [("CLIP ViT-B/16@224", "clip", 224, 16), ("CLIP ViT-L/14@224", "clip", 224, 14),
              ("LLaVA-1.5 CLIP ViT-L/14@336, pad to square", "llava", 336, 14),
              ("SigLIP so400m/14@384", "siglip", 384, 14)]


def _vit_plan(budget: int, sizes: list) -> tuple:
    """The published tower with the most tokens per image that fits the budget (every image costs the same)."""
    best = None
    for name, style, size, patch in _VIT_PLANS:
        processor = ViTImageProcessor.from_style(style, image_size=size, patch_size=patch)
        if all(processor.get_number_of_image_tokens(h, w) <= budget for h, w in sizes):
            best = (name, processor)
    return best or (f"no published tower fits {budget} tokens (the smallest gives 196)", None)


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


def _vit_draw(image: Image.Image, processor) -> Image.Image:
    """The image as the model sees it, with its patch grid: every cell is one token."""
    pixels = processor(image, return_tensors="pt")["pixel_values"][0]
    panel = _to_pil(pixels, processor.image_mean, processor.image_std)
    _draw_grid(panel, processor.patch_size, (255, 40, 40))
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


def _navit_processor(full: bool):
    return NaViTImageProcessor(max_pixels=28 * 28 * _NAVIT_BUDGET[full])


def _navit_build(full: bool):
    config = NaViTVisionConfig.from_variant("qwen2-vl-7b" if full else "qwen2-vl-2b")
    torch.manual_seed(0)
    return _navit_processor(full), NaViTVisionModel(config).eval()


def _navit_plan(budget: int, sizes: list) -> tuple:
    """The largest `max_pixels` (in whole 28 x 28 blocks) with which no image exceeds the budget.

    max_pixels = budget * 28^2 is the start; an image so elongated that its short side sits at the 28 px
    floor can still exceed it (smart_resize never goes below one block), so the budget is lowered until
    every image fits, or the plan says which image cannot.
    """
    unit = 28 * 28
    for blocks in range(budget, 0, -1):
        if blocks * unit < NaViTImageProcessor.min_pixels:
            break
        processor = NaViTImageProcessor(max_pixels=blocks * unit)
        counts = [processor.get_number_of_image_tokens(h, w) for h, w in sizes]
        if max(counts) <= budget:
            return f"max_pixels = {blocks} x 28^2", processor
    return f"no max_pixels fits {budget} tokens for every image (min_pixels gives at least 4)", None


def _navit_title(full: bool) -> str:
    return f"Qwen2-VL-{'7B' if full else '2B'} ViT, <= {_NAVIT_BUDGET[full]} tokens"


def _navit_describe(processor, height: int, width: int) -> str:
    h, w = processor.get_processed_size(height, width)
    return f"native aspect: resize to {w}x{h}, 2x2 merge"


def _navit_flops(processor, model, height: int, width: int) -> int:
    return navit_config_flops(model.config, [processor.get_processed_size(height, width)])


def _navit_draw(image: Image.Image, processor) -> Image.Image:
    """The image at its native-resolution size: thin lines per patch, thick ones per merged token."""
    h, w = processor.get_processed_size(image.height, image.width)
    panel = image.convert("RGB").resize((w, h), Image.Resampling.BICUBIC)
    _draw_grid(panel, processor.patch_size, (255, 170, 170))
    _draw_grid(panel, processor.patch_size * processor.merge_size, (220, 0, 0), width=2)
    return panel


# ---- SAM's windowed encoder ------------------------------------------------------------------------------

def _sam_processor(full: bool):
    return SAMImageProcessor()  # SAM is published at 1024 only


def _sam_build(full: bool):
    torch.manual_seed(0)
    return _sam_processor(full), SAMVisionModel(SAMVisionConfig.from_variant("sam-h" if full else "sam-b")).eval()


def _sam_title(full: bool) -> str:
    return f"SAM ViT-{'H' if full else 'B'} image encoder @1024"


def _sam_describe(processor, height: int, width: int) -> str:
    h, w = processor.get_resized_size(height, width)
    return f"resize to {w}x{h}, pad to {processor.image_size}x{processor.image_size}"


def _sam_flops(processor, model, height: int, width: int) -> int:
    side = processor.image_size
    return sam_config_flops(model.config, side, side)


def _sam_draw(image: Image.Image, processor) -> Image.Image:
    """The padded 1024 x 1024 input with SAM's 14 x 14-patch attention windows (each cell of them is a token)."""
    pixels = processor(image, return_tensors="pt")["pixel_values"][0]
    panel = _to_pil(pixels, processor.image_mean, processor.image_std)
    _draw_grid(panel, processor.patch_size, (255, 170, 170))
    _draw_grid(panel, processor.patch_size * 14, (220, 0, 0), width=3)
    return panel


def _sam_plan(budget: int, sizes: list) -> tuple:
    processor = SAMImageProcessor()
    tokens = processor.get_number_of_image_tokens(1, 1)
    if tokens <= budget:
        return "SAM-B @1024 (the only published size)", processor
    return f"SAM @1024 gives {tokens} tokens, over {budget} (its own setting has no smaller size)", None


# ---- serial compression: DeepSeek-OCR's DeepEncoder --------------------------------------------------------

def _deepencoder_processor(full: bool):
    return DeepEncoderImageProcessor(mode="gundam" if full else "base")


def _deepencoder_build(full: bool):
    torch.manual_seed(0)
    return _deepencoder_processor(full), DeepEncoderModel(DeepEncoderConfig()).eval()


def _deepencoder_title(full: bool) -> str:
    return f"DeepEncoder SAM-B>conv>CLIP-L, {'Gundam' if full else 'Base'}"


def _deepencoder_describe(processor, height: int, width: int) -> str:
    layout = processor.get_layout(height, width)
    side = layout["global_side"]
    view = f"stretch to {side}x{side}" if layout["global_view"] == "resize" else f"pad to {side}x{side}"
    cols, rows = layout["tiles"]
    tiles = f" + {cols}x{rows} tiles of {DEEPENCODER_MODES[processor.mode][2]}" if cols else ""
    return f"{view}{tiles}; {layout['vision_tokens']} tokens + newlines"


def _deepencoder_flops(processor, model, height: int, width: int) -> int:
    layout = processor.get_layout(height, width)
    cols, rows = layout["tiles"]
    tile = DEEPENCODER_MODES[processor.mode][2]
    return deepencoder_config_flops(model.config, [layout["global_side"]] + [tile] * (cols * rows))


def _deepencoder_draw(image: Image.Image, processor) -> Image.Image:
    """The global view with one cell per output token (64 px: a 16-px SAM patch, compressed 4x per side), and
    Gundam's tiles beside it, each with its own token cells."""
    batch = processor(image, return_tensors="pt")
    panel = _to_pil(batch["pixel_values"][0], processor.image_mean, processor.image_std)
    _draw_grid(panel, 64, (220, 0, 0), width=2)
    cols, rows = batch["image_tiles"][0].tolist()
    if not cols:
        return panel
    tiles = [_to_pil(t, processor.image_mean, processor.image_std) for t in batch["pixel_values_local"]]
    side = tiles[0].width
    canvas = Image.new("RGB", (cols * side + (cols - 1) * 8, rows * side + (rows - 1) * 8), "white")
    for i, tile in enumerate(tiles):
        _draw_grid(tile, 64, (0, 90, 220), width=2)
        canvas.paste(tile, ((i % cols) * (side + 8), (i // cols) * (side + 8)))
    canvas = _fit(canvas, panel.height)
    both = Image.new("RGB", (canvas.width + 16 + panel.width, panel.height), "white")
    both.paste(canvas, (0, 0))
    both.paste(panel, (canvas.width + 16, 0))
    return both


def _deepencoder_plan(budget: int, sizes: list) -> tuple:
    """The mode with the most positions per image (median) in which every image fits the budget."""
    best = None
    for mode in DEEPENCODER_MODES:
        processor = DeepEncoderImageProcessor(mode=mode)
        try:
            counts = sorted(processor.get_number_of_image_tokens(h, w) for h, w in sizes)
        except ValueError as error:  # e.g. a 1-pixel side: no mode takes it
            return f"cannot take every image: {error}", None
        if counts[-1] <= budget and (best is None or counts[len(counts) // 2] > best[0]):
            best = (counts[len(counts) // 2], mode, processor)
    if best is None:
        return f"even Tiny mode gives 73 positions per image, over {budget}", None
    return f"mode = {best[1]}", best[2]


PARADIGM_SPECS = {
    "vit": ParadigmSpec("vit", _vit_title, _vit_build, _vit_describe, _vit_flops, _vit_draw, _vit_processor,
                        _vit_plan),
    # Qwen2-VL wraps each image in <|vision_start|> ... <|vision_end|>: 224^2 -> 64 tokens, 66 positions
    "navit": ParadigmSpec("navit", _navit_title, _navit_build, _navit_describe, _navit_flops, _navit_draw,
                          _navit_processor, _navit_plan, separators=2),
    "sam": ParadigmSpec("sam", _sam_title, _sam_build, _sam_describe, _sam_flops, _sam_draw, _sam_processor,
                        _sam_plan),
    # positions already hold DeepSeek-OCR's newlines and view separator: no separators beyond them
    "deepencoder": ParadigmSpec("deepencoder", _deepencoder_title, _deepencoder_build, _deepencoder_describe,
                                _deepencoder_flops, _deepencoder_draw, _deepencoder_processor, _deepencoder_plan),
}


# ---- the LLM side: what the visual tokens cost to prefill --------------------------------------------------

# name -> (parameters, layers, hidden size), from the published configs
LLM_SIZES = {
    "qwen2-0.5b": (0.49e9, 24, 896),
    "qwen2-7b": (7.6e9, 28, 3584),
    "llama-2-7b": (6.7e9, 32, 4096),
    "llama-3-70b": (70.6e9, 80, 8192),
}


def llm_prefill_flops(positions: int, llm: str) -> int:
    """Forward FLOPs of prefilling `positions` tokens: 2 per parameter per token, plus causal attention."""
    if llm not in LLM_SIZES:
        raise ValueError(f"unknown LLM size {llm!r}; known: {sorted(LLM_SIZES)}")
    params, layers, hidden = LLM_SIZES[llm]
    return int(2 * params * positions + 2 * layers * positions * positions * hidden)


# ---- running and reporting ----------------------------------------------------------------------------

@dataclass
class CompareRow:
    image: str
    paradigm: str
    configuration: str
    preprocessing: str
    input_size: str
    tokens: int
    positions: int
    gflops: float
    ms: float
    peak_mib: float
    llm: str
    llm_prefill_tflops: float


def load_image(path: str) -> Image.Image:
    """An RGB image from a path, EXIF orientation applied (as transformers' `load_image` does)."""
    from transformers.image_utils import load_image as hf_load_image

    return hf_load_image(path)


def check_paradigms(paradigms: list[str]) -> None:
    unknown = [p for p in paradigms if p not in PARADIGM_SPECS]
    if unknown:
        raise ValueError(f"unknown paradigm(s) {unknown}; known: {sorted(PARADIGM_SPECS)}")


def load_images(paths: list[str], errors: list[str] | None = None) -> dict:
    """{path: RGB image} of the readable files; each unreadable one is named in `errors` (or raises)."""
    images = {}
    for path in paths:
        try:
            images[path] = load_image(path)
        except Exception as error:  # a bad file must not stop the others
            message = f"{path}: cannot read image ({type(error).__name__}: {error})"
            if errors is None:
                raise ValueError(message) from error
            errors.append(message)
    return images


def compare(paths: list[str], paradigms: list[str], full: bool = False, device: str = "cpu", repeats: int = 1,
            progress: bool = True, errors: list[str] | None = None, llm: str = "qwen2-7b") -> tuple[list[CompareRow], dict]:
    """Run every paradigm on every readable image. Unreadable images are reported in `errors` and skipped."""
    from tqdm.auto import tqdm

    check_paradigms(paradigms)
    llm_prefill_flops(1, llm)  # an unknown LLM name fails before any model is built
    images = load_images(paths, errors)
    built = {}
    for name in tqdm(paradigms, desc="building models", disable=not progress):
        processor, model = PARADIGM_SPECS[name].build(full)
        built[name] = (processor, model.to(device))
    rows = []
    for (path, image), name in tqdm([(i, n) for i in images.items() for n in paradigms], desc="running",
                                    disable=not progress):
        rows.append(_run_one(path, image, name, *built[name], full=full, device=device, repeats=repeats, llm=llm))
    return rows, {"images": images, "models": built}


def _run_one(path, image, name, processor, model, full, device, repeats, llm) -> CompareRow:
    spec = PARADIGM_SPECS[name]
    width, height = image.size
    batch = processor(image, return_tensors="pt").to(device)
    with torch.inference_mode():
        # the first run warms up and is metered for memory (the meter slows it, so it is not timed)
        peak = peak_memory_mib(lambda: model(**batch), device)
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            out = model(**batch)
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            times.append(time.perf_counter() - start)
    tokens = out.image_embeds.shape[-2]  # (1, N, D) for one image, or (N, D) packed
    expected = processor.get_number_of_image_tokens(height=height, width=width)
    if tokens != expected:  # the contract every paradigm keeps; a mismatch is a bug worth stopping for
        raise RuntimeError(f"{name}: the model returned {tokens} tokens but the processor counts {expected}")
    h, w = processor.get_processed_size(height, width)
    positions = tokens + spec.separators
    return CompareRow(image=os.path.basename(path), paradigm=name, configuration=spec.title(full),
                      preprocessing=spec.describe(processor, height, width), input_size=f"{w}x{h}", tokens=tokens,
                      positions=positions, gflops=spec.flops(processor, model, height, width) / 1e9,
                      ms=statistics.median(times) * 1e3, peak_mib=peak, llm=llm,
                      llm_prefill_tflops=llm_prefill_flops(positions, llm) / 1e12)


def format_rows(rows: list[CompareRow], images: dict) -> str:
    out = []
    for image_name in dict.fromkeys(r.image for r in rows):
        group = [r for r in rows if r.image == image_name]
        size = next(f"{im.width}x{im.height}" for p, im in images.items() if os.path.basename(p) == image_name)
        out.append(f"{image_name} ({size})")
        header = (f"  {'paradigm':<9} {'configuration':<44} {'preprocessing':<52} {'input':>9} {'tokens':>6} "
                  f"{'positions':>9} {'GFLOPs':>7} {'ms':>8} {'peak MiB':>8} {'LLM TFLOPs':>10}")
        out += [header, "  " + "-" * (len(header) - 2)]
        for r in group:
            out.append(f"  {r.paradigm:<9} {r.configuration:<44} {r.preprocessing:<52} {r.input_size:>9} "
                       f"{r.tokens:>6} {r.positions:>9} {r.gflops:7.1f} {r.ms:8.1f} {r.peak_mib:8.1f} "
                       f"{r.llm_prefill_tflops:10.2f}")
    if rows:
        out.append(f"positions: tokens plus the paradigm's separators; LLM TFLOPs: prefilling those positions in "
                   f"{rows[0].llm} (2 FLOPs per parameter per token + causal attention)")
    out.append("random weights of the published shapes: tokens, compute and memory are real, features are not")
    return "\n".join(out)


def plot(rows: list[CompareRow], state: dict, out_path: str, panel_height: int = 448) -> str:
    """`compare --plot`: the visualisation of `visualize`, for every image of the run."""
    processors = {name: processor for name, (processor, _) in state["models"].items()}
    return visualize_images(state["images"], processors, out_path, panel_height=panel_height)[0]


def visualize_images(images: dict, processors: dict, out_path: str, full: bool = False,
                     panel_height: int = 448) -> tuple[str, list[list[str]]]:
    """One strip per image: the input, then one panel per paradigm with its tokenization, titled with its count.

    Needs no model: every panel comes from the paradigm's image processor. Returns the path and the panel
    titles of each strip.
    """
    font = ImageFont.load_default(size=16)
    strips, titles = [], []
    for path, image in images.items():
        panels = [(_fit(image, panel_height), f"input {image.width}x{image.height}")]
        for name, processor in processors.items():
            spec = PARADIGM_SPECS[name]
            tokens = processor.get_number_of_image_tokens(image.height, image.width)
            drawn = spec.draw(image, processor)
            panels.append((_fit(drawn, panel_height), f"{name}: {tokens} tokens ({spec.title(full)})"))
        titles.append([title for _, title in panels])
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
    return out_path, titles


# ---- plan: settings that fit a token budget -------------------------------------------------------------

@dataclass
class PlanRow:
    paradigm: str
    setting: str
    fits: bool
    tokens_min: int | None
    tokens_median: float | None
    tokens_max: int | None
    pixels_median: float | None  # input pixels the encoder sees per image (resolution kept)


def plan(images: dict, budget: int, paradigms: list[str]) -> list[PlanRow]:
    """For each paradigm, the setting that keeps every image within `budget` tokens, and the tokens it gives."""
    check_paradigms(paradigms)
    if budget < 1:
        raise ValueError(f"the token budget must be a positive number of tokens, got {budget}")
    sizes = [(image.height, image.width) for image in images.values()]
    rows = []
    for name in paradigms:
        setting, processor = PARADIGM_SPECS[name].plan(budget, sizes)
        if processor is None:
            rows.append(PlanRow(name, setting, False, None, None, None, None))
            continue
        counts = [processor.get_number_of_image_tokens(h, w) for h, w in sizes]
        if max(counts) > budget:  # a plan that breaks its own budget is a bug, not a result
            raise RuntimeError(f"{name}: the plan {setting!r} gives {max(counts)} > {budget} tokens")
        pixels = [a * b for a, b in (processor.get_processed_size(h, w) for h, w in sizes)]
        rows.append(PlanRow(name, setting, True, min(counts), statistics.median(counts), max(counts),
                            statistics.median(pixels)))
    return rows


def recommend(rows: list[PlanRow], task: str) -> PlanRow | None:
    """ocr: the plan that keeps the most pixels per image (small text needs resolution);
    general: the plan with the fewest tokens (the LLM's cost), ties broken by resolution."""
    fitting = [r for r in rows if r.fits]
    if not fitting:
        return None
    if task == "ocr":
        return max(fitting, key=lambda r: (r.pixels_median, -r.tokens_median))
    if task == "general":
        return min(fitting, key=lambda r: (r.tokens_median, -r.pixels_median))
    raise ValueError(f"unknown task {task!r}; known: ocr, general")


def format_plan(rows: list[PlanRow], budget: int, task: str, n_images: int) -> str:
    header = f"  {'paradigm':<9} {'setting':<46} {'min':>5} {'median':>7} {'max':>5} {'input px (median)':>18}"
    out = [f"token budget {budget} per image, {n_images} image(s), task {task}", header, "  " + "-" * (len(header) - 2)]
    for r in rows:
        if r.fits:
            out.append(f"  {r.paradigm:<9} {r.setting:<46} {r.tokens_min:>5} {r.tokens_median:>7.1f} "
                       f"{r.tokens_max:>5} {r.pixels_median:>18,.0f}")
        else:
            out.append(f"  {r.paradigm:<9} {r.setting}")
    best = recommend(rows, task)
    out.append(f"recommended for {task}: {best.paradigm} ({best.setting})" if best else "no paradigm fits this budget")
    return "\n".join(out)


def _fit(image: Image.Image, height: int) -> Image.Image:
    return image.resize((max(1, round(image.width * height / image.height)), height), Image.Resampling.BICUBIC)


def _to_pil(pixels: torch.Tensor, mean, std) -> Image.Image:
    """Undo normalisation of one (3, H, W) tensor."""
    mean = torch.tensor(mean).view(3, 1, 1)
    std = torch.tensor(std).view(3, 1, 1)
    array = ((pixels.float().cpu() * std + mean).clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy()
    return Image.fromarray(array)


__all__ = ["LLM_SIZES", "PARADIGM_SPECS", "CompareRow", "ParadigmSpec", "PlanRow", "compare", "format_plan", "format_rows",
           "llm_prefill_flops", "load_images", "plan", "plot", "recommend", "sample_images", "visualize_images"]
