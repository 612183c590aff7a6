"""Speed and memory of our encoders against the transformers implementation of the same architecture.

One interleaved run per case: warm-up, then alternating A/B rounds, medians, so that a noisy shared
machine slows both sides alike. Reported: tokens, analytic GFLOPs (`geometry.vit_flops`), median ms,
the ratio (reference ms / our ms; > 1 means we are faster), peak activation memory, and the share of
the machine's measured fp32 matmul peak that each side reaches.

Peak memory is the activation memory of one forward: live tensor storage counted op by op on CPU
(`LiveTensorBytes`), `torch.cuda.max_memory_allocated` on CUDA.
Not part of exported checkpoints.
"""

import gc
import statistics
import time
from dataclasses import asdict, dataclass

import torch
from torch.multiprocessing.reductions import StorageWeakRef
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from .geometry import navit_flops, sam_flops, vit_flops

VIT_CASES = {
    # name: (reference family, published vision config); LLaVA-1.5's tower and SigLIP-so400m, batch 1
    "clip-l14-336": ("clip", dict(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24,
                                  num_attention_heads=16, image_size=336, patch_size=14, hidden_act="quick_gelu",
                                  layer_norm_eps=1e-5)),
    "siglip-so400m-384": ("siglip", dict(hidden_size=1152, intermediate_size=4304, num_hidden_layers=27,
                                         num_attention_heads=16, image_size=384, patch_size=14,
                                         hidden_act="gelu_pytorch_tanh", layer_norm_eps=1e-6)),
}
# Qwen2-VL's vision tower (1280-d, 32 blocks, merger to a 7B LLM) with transformers' default pixel budget;
# image sizes (height, width) of each case. The pack mixes a thumbnail, photos and a wide frame.
NAVIT_CASES = {
    "navit-448": [(448, 448)],
    "navit-1024": [(1024, 1024)],
    "navit-pack8": [(224, 224), (336, 336), (448, 448), (480, 640), (640, 480), (600, 800), (512, 384), (720, 1280)],
}
# SAM's image encoder at its published size (transformers' SamVisionModel against ours), batch 1 at 1024 x 1024
SAM_CASES = {"sam-b-1024": dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                                global_attn_indexes=[2, 5, 8, 11], image_size=1024)}
# DeepSeek-OCR's DeepEncoder (SAM-B -> compressor -> CLIP-L) on one Base-mode view of this side, against
# transformers' Unlimited-OCR vision model (the same architecture)
DEEPENCODER_CASES = {"deepencoder-1024": 1024}
# Image processors, transformers' against ours, on 32 photo-sized images (0.3 to 2 megapixels, mixed shapes).
PROCESSOR_CASES = {"navit-processor": 32}
CASES = [*VIT_CASES, *NAVIT_CASES, *SAM_CASES, *DEEPENCODER_CASES, *PROCESSOR_CASES]
# what `vlm-encoders benchmark` runs without arguments: a few minutes on 2 CPU cores
QUICK_CASES = ["clip-l14-336", "siglip-so400m-384", "navit-448", "sam-b-1024", "deepencoder-1024", "navit-processor"]


@dataclass
class Result:
    case: str
    model: str
    tokens: int
    gflops: float
    ms: float
    ratio: float
    peak_mib: float
    pct_of_matmul_peak: float | None
    images_per_s: float | None = None  # image processor cases


def vit_config_flops(config, height: int, width: int) -> tuple[int, int]:
    """(tokens, forward FLOPs) of a `ViTVisionConfig` model on pixel_values of `height` x `width`."""
    patches = (height // config.patch_size) * (width // config.patch_size)
    tokens = patches + config.num_prefix_tokens
    flops = vit_flops(tokens, hidden_size=config.hidden_size, intermediate_size=config.intermediate_size,
                      num_layers=config.num_hidden_layers, patch_dim=config.num_channels * config.patch_size**2,
                      num_patches=patches)
    return tokens, flops


def navit_config_flops(config, sizes: list[tuple[int, int]]) -> int:
    """Forward FLOPs of a `NaViTVisionConfig` model on a pack of images resized to `sizes` (height, width)."""
    grids = [(h // config.patch_size, w // config.patch_size) for h, w in sizes]
    window_tokens = (config.window_size // config.patch_size) ** 2
    return navit_flops(grids, hidden_size=config.hidden_size, intermediate_size=config.intermediate_size,
                       num_layers=config.num_hidden_layers, patch_dim=config.patch_dim,
                       merge_size=config.spatial_merge_size, out_hidden_size=config.out_hidden_size,
                       gated_mlp=config.mlp == "swiglu", window_tokens=window_tokens,
                       num_full_layers=len(config.fullatt_block_indexes))


def sam_config_flops(config, height: int, width: int) -> int:
    """Forward FLOPs of a `SAMVisionConfig` encoder on pixel_values of `height` x `width`."""
    c = config
    return sam_flops((height // c.patch_size, width // c.patch_size), hidden_size=c.hidden_size,
                     intermediate_size=c.intermediate_size, num_layers=c.num_hidden_layers, window_size=c.window_size,
                     num_global=len(c.global_attn_indexes), patch_dim=c.num_channels * c.patch_size**2,
                     output_channels=c.output_channels)


def deepencoder_config_flops(config, sides: list[int], project: bool = True) -> int:
    """Forward FLOPs of DeepEncoder on square views of these sides (a global view and any tiles): SAM, the two
    stride-2 convolutions, CLIP on the compressed grid plus CLS, and (with `project`) the linear projector."""
    total = 0
    for side in sides:
        grid = side // config.sam_config.patch_size  # SAM's grid, 64 at 1024
        (c1, c2), c0 = config.compressor_channels, config.sam_config.output_channels
        compressor = 2 * 9 * ((grid // 2) ** 2 * c1 * c0 + (grid // 4) ** 2 * c2 * c1)
        clip = config.clip_config
        tokens = (grid // 4) ** 2
        total += sam_config_flops(config.sam_config, side, side) + compressor + vit_flops(
            tokens + 1, hidden_size=clip.hidden_size, intermediate_size=clip.intermediate_size,
            num_layers=clip.num_hidden_layers, patch_dim=0, num_patches=0)
        if project:
            total += 2 * tokens * config.vision_dim * config.out_hidden_size
    return total


def matmul_peak_gflops(device: str = "cpu", size: int = 2048, repeats: int = 10) -> float:
    """Best fp32 GEMM throughput of this machine (GFLOP/s): the ceiling any encoder can reach."""
    a, b = torch.randn(size, size, device=device), torch.randn(size, size, device=device)
    best = float("inf")
    for _ in range(repeats + 1):
        _sync(device)
        start = time.perf_counter()
        a @ b
        _sync(device)
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best / 1e9


class LiveTensorBytes(TorchDispatchMode):
    """Peak bytes of tensor storage created inside the mode and still alive (activations, not weights).

    Counts every op's outputs by storage (views are free), and releases a storage once nothing refers to it.
    Allocator-independent, so CPU numbers are comparable between models (the RSS high-water mark is not:
    glibc keeps freed arenas). Workspace an op allocates and frees internally is not seen.
    """

    def __init__(self):
        super().__init__()
        self.live, self.current, self.peak = {}, 0, 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for key, (ref, nbytes) in list(self.live.items()):
            if ref.expired():
                self.current -= nbytes
                del self.live[key]
        for tensor in tree_leaves(out):
            if isinstance(tensor, torch.Tensor):
                storage = tensor.untyped_storage()
                if storage._cdata not in self.live:
                    self.live[storage._cdata] = (StorageWeakRef(storage), storage.nbytes())
                    self.current += storage.nbytes()
        self.peak = max(self.peak, self.current)
        return out


def peak_memory_mib(fn, device: str) -> float:
    """Extra memory one call of `fn` needs at its peak, in MiB."""
    gc.collect()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        fn()
        torch.cuda.synchronize()
        return (torch.cuda.max_memory_allocated() - before) / 2**20
    with LiveTensorBytes() as meter:
        fn()
    return meter.peak / 2**20


@dataclass
class Pair:
    """What one case times: the transformers model and ours on the same inputs, and the work they do."""

    runs: dict  # model name -> zero-argument callable; "transformers" first
    tokens: int
    flops: int


def randomize_(model: torch.nn.Module) -> torch.nn.Module:
    """Every weight random (norm scales near 1). transformers initialises SAM's weights with std 1e-10: activations
    that small become subnormal floats, which CPUs compute far more slowly, and that is not the work a trained
    checkpoint does."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name and name.endswith("weight"):
                p.normal_(1.0, 0.05)
            else:
                p.normal_(0.0, 0.02)
    return model


def build_pair(case: str, num_layers: int | None = None):
    """The transformers reference with random weights of the published shape, and ours converted from it."""
    torch.manual_seed(0)
    if case in SAM_CASES:
        from transformers import SamVisionConfig, SamVisionModel

        from .conversion_sam import convert_sam

        shape = {**SAM_CASES[case], **({"num_hidden_layers": num_layers} if num_layers else {})}
        shape["global_attn_indexes"] = [i for i in shape["global_attn_indexes"] if i < shape["num_hidden_layers"]]
        reference = randomize_(SamVisionModel(SamVisionConfig(**shape)).eval())
        return reference, convert_sam(reference)
    if case in DEEPENCODER_CASES:
        from transformers.models.unlimited_ocr.configuration_unlimited_ocr import UnlimitedOcrVisionConfig
        from transformers.models.unlimited_ocr.modeling_unlimited_ocr import UnlimitedOcrVisionModel

        from .conversion_deepencoder import convert_deepencoder

        depth = {}
        if num_layers:  # SAM keeps its last block global, as DeepSeek-OCR's [2, 5, 8, 11] does
            depth = dict(sam_config=dict(num_hidden_layers=num_layers, global_attn_indexes=[num_layers - 1]),
                         encoder_config=dict(num_hidden_layers=num_layers))
        reference = randomize_(UnlimitedOcrVisionModel(UnlimitedOcrVisionConfig(**depth)).eval())
        return reference, convert_deepencoder(reference)
    if case in NAVIT_CASES:
        from transformers.models.qwen2_vl.configuration_qwen2_vl import Qwen2VLVisionConfig
        from transformers.models.qwen2_vl.modeling_qwen2_vl import Qwen2VisionTransformerPretrainedModel

        from .conversion_navit import convert_qwen2_vl

        reference = Qwen2VisionTransformerPretrainedModel(Qwen2VLVisionConfig(depth=num_layers or 32, hidden_size=3584))
        return reference.eval(), convert_qwen2_vl(reference)
    from transformers import CLIPVisionConfig, CLIPVisionModel, SiglipVisionConfig, SiglipVisionModel

    from .conversion_vit import convert_clip, convert_siglip

    family, shape = VIT_CASES[case]
    shape = {**shape, **({"num_hidden_layers": num_layers} if num_layers else {})}
    if family == "clip":
        reference = CLIPVisionModel(CLIPVisionConfig(**shape)).eval()
        return reference, convert_clip(reference)
    reference = SiglipVisionModel(SiglipVisionConfig(**shape)).eval()
    return reference, convert_siglip(reference)


def _vit_pair(reference, ours, device: str) -> Pair:
    config = ours.config
    pixels = torch.randn(1, 3, config.image_size, config.image_size, device=device)
    tokens, flops = vit_config_flops(config, config.image_size, config.image_size)
    return Pair({"transformers": lambda: reference(pixels), "vlm-encoders": lambda: ours(pixels)}, tokens, flops)


def _sam_pair(reference, ours, device: str) -> Pair:
    c = ours.config
    pixels = torch.randn(1, 3, c.image_size, c.image_size, device=device)
    flops = sam_config_flops(c, c.image_size, c.image_size)
    return Pair({"transformers": lambda: reference(pixels), "vlm-encoders": lambda: ours(pixels)}, c.grid_size**2, flops)


def _deepencoder_pair(case: str, reference, ours, device: str) -> Pair:
    side = DEEPENCODER_CASES[case]
    pixels = torch.randn(1, 3, side, side, device=device)
    flops = deepencoder_config_flops(ours.config, [side], project=False)
    return Pair({"transformers": lambda: reference(pixels), "vlm-encoders": lambda: ours(pixels)},
                (side // ours.config.token_stride) ** 2, flops)


def _navit_pair(case: str, reference, ours, device: str) -> Pair:
    """Both towers on one pack of the case's images; for a pack, ours also runs the images one by one."""
    import numpy as np
    from PIL import Image

    from .image_processing_navit import NaViTImageProcessor

    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)) for h, w in NAVIT_CASES[case]]
    processor = NaViTImageProcessor()
    batch = processor(images, return_tensors="pt").to(device)
    runs = {"transformers": lambda: reference(batch["pixel_values"], grid_thw=batch["image_grid_thw"]),
            "vlm-encoders": lambda: ours(**batch)}
    if len(images) > 1:  # packing must cost no more per image than encoding the images alone
        alone = [processor(image, return_tensors="pt").to(device) for image in images]
        runs["vlm-encoders 1-by-1"] = lambda: [ours(**b) for b in alone]
    sizes = [processor.get_processed_size(image.height, image.width) for image in images]
    tokens = sum(processor.get_number_of_image_tokens(image.height, image.width) for image in images)
    return Pair(runs, tokens, navit_config_flops(ours.config, sizes))


def _processor_pair(case: str) -> Pair:
    """Qwen2VLImageProcessor against ours on the same PIL images; first checks the outputs are identical."""
    import numpy as np
    from PIL import Image
    from transformers import Qwen2VLImageProcessor

    from .image_processing_navit import NaViTImageProcessor

    rng = np.random.default_rng(0)
    images = []
    for _ in range(PROCESSOR_CASES[case]):
        pixels, aspect = rng.uniform(0.3e6, 2e6), rng.uniform(0.5, 2.0)
        height = int((pixels / aspect) ** 0.5)
        images.append(Image.fromarray(rng.integers(0, 256, (height, int(pixels / height), 3), dtype=np.uint8)))
    theirs, ours = Qwen2VLImageProcessor(), NaViTImageProcessor()
    a, b = theirs(images, return_tensors="pt"), ours(images, return_tensors="pt")
    if not (torch.equal(a["pixel_values"], b["pixel_values"]) and torch.equal(a["image_grid_thw"], b["image_grid_thw"])):
        raise RuntimeError("the processors disagree; timing them would compare different work")
    return Pair({"transformers": lambda: theirs(images, return_tensors="pt"),
                 "vlm-encoders": lambda: ours(images, return_tensors="pt")},
                tokens=int(b["image_grid_thw"].prod(-1).sum()) // 4, flops=0)


def benchmark_case(case: str, rounds: int = 5, warmup: int = 1, device: str = "cpu", num_layers: int | None = None,
                   peak: float | None = None) -> list[Result]:
    if case in PROCESSOR_CASES:
        pair, peak = _processor_pair(case), None  # no matmuls: the share of the matmul peak means nothing
    else:
        reference, ours = build_pair(case, num_layers)
        reference.to(device), ours.to(device)
        if case in SAM_CASES:
            pair = _sam_pair(reference, ours, device)
        elif case in DEEPENCODER_CASES:
            pair = _deepencoder_pair(case, reference, ours, device)
        elif case in NAVIT_CASES:
            pair = _navit_pair(case, reference, ours, device)
        else:
            pair = _vit_pair(reference, ours, device)
    times = {name: [] for name in pair.runs}
    with torch.inference_mode():
        for _ in range(warmup):
            for fn in pair.runs.values():
                fn()
        for _ in range(rounds):  # A, B, A, B, ...: drift on a shared machine hits both sides
            for name, fn in pair.runs.items():
                _sync(device)
                start = time.perf_counter()
                fn()
                _sync(device)
                times[name].append(time.perf_counter() - start)
        memory = {name: peak_memory_mib(fn, device) for name, fn in pair.runs.items()}
    medians = {name: statistics.median(t) for name, t in times.items()}
    return [
        Result(case=case, model=name, tokens=pair.tokens, gflops=pair.flops / 1e9, ms=medians[name] * 1e3,
               ratio=medians["transformers"] / medians[name], peak_mib=memory[name],
               pct_of_matmul_peak=100 * pair.flops / 1e9 / medians[name] / peak if peak else None,
               images_per_s=PROCESSOR_CASES[case] / medians[name] if case in PROCESSOR_CASES else None)
        for name in pair.runs
    ]


def format_table(results: list[Result], peak: float | None) -> str:
    header = f"{'case':<20} {'model':<19} {'tokens':>6} {'GFLOPs':>8} {'ms':>9} {'ratio':>6} {'peak MiB':>9} {'% peak':>7}"
    lines = [header, "-" * len(header)]
    for r in results:
        memory = f"{r.peak_mib:9.1f}"
        share = f"{r.pct_of_matmul_peak:6.1f}%" if r.pct_of_matmul_peak is not None else f"{'n/a':>7}"
        if r.images_per_s is not None:
            share += f"  {r.images_per_s:.1f} images/s"
        lines.append(f"{r.case:<20} {r.model:<19} {r.tokens:>6} {r.gflops:8.1f} {r.ms:9.1f} {r.ratio:6.3f} {memory} {share}")
    if peak:
        lines.append(f"fp32 matmul peak of this machine: {peak:.1f} GFLOP/s ({torch.get_num_threads()} threads)")
    lines.append("ratio = transformers ms / our ms (> 1: we are faster); medians of interleaved rounds")
    return "\n".join(lines)


def select_cases(names: list[str]) -> list[str]:
    """Case names, where a paradigm name (e.g. `navit`) stands for all of its cases."""
    selected = []
    for name in names:
        matches = [name] if name in CASES else [c for c in CASES if c.startswith(f"{name}-")]
        if name == "vit":
            matches = list(VIT_CASES)
        if not matches:
            raise ValueError(f"unknown benchmark case {name!r}; known: {CASES} (or a paradigm: vit, navit, sam, deepencoder)")
        selected += [c for c in matches if c not in selected]
    return selected


def run(cases: list[str], rounds: int = 5, device: str = "cpu", num_layers: int | None = None) -> tuple[list, str]:
    cases = select_cases(cases)
    peak = matmul_peak_gflops(device)
    results = [r for case in cases for r in benchmark_case(case, rounds, device=device, num_layers=num_layers,
                                                           peak=peak)]
    return [asdict(r) for r in results], format_table(results, peak)


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


__all__ = ["CASES", "DEEPENCODER_CASES", "NAVIT_CASES", "VIT_CASES", "LiveTensorBytes", "PROCESSOR_CASES", "QUICK_CASES", "SAM_CASES", "deepencoder_config_flops", "navit_config_flops", "randomize_", "sam_config_flops", "select_cases", "benchmark_case", "build_pair", "format_table", "matmul_peak_gflops", "peak_memory_mib", "run", "vit_config_flops"]
