"""The `vlm-encoders` command: `compare` what each paradigm does to your images, `visualize` it, `plan` a token
budget, `benchmark` against transformers."""

import argparse
import json
import sys
from dataclasses import asdict


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="vlm-encoders",
        description="See how vision-language-model encoders turn images into tokens, and what that costs.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    compare = sub.add_parser(
        "compare", help="run every paradigm on images and print tokens, GFLOPs, latency and memory",
        description="Run every registered paradigm on your images (default: a sample page shipped with the "
                    "package) and print, per image: the preprocessing, the input size the encoder sees, the tokens "
                    "it hands to the LLM, its analytic GFLOPs, latency and peak activation memory. Models have "
                    "random weights of the published shapes.")
    compare.add_argument("images", nargs="*", help="image files (default: the shipped sample page)")
    compare.add_argument("--paradigms", default=None, help="comma-separated subset, e.g. 'vit' (default: all)")
    compare.add_argument("--full", action="store_true",
                         help="the published sizes VLMs use (e.g. CLIP ViT-L/14@336) instead of small published ones")
    compare.add_argument("--device", default="cpu", help="cpu or cuda")
    compare.add_argument("--repeats", type=int, default=1,
                         help="timed runs per model and image, after one warm-up run (median reported; default 1)")
    compare.add_argument("--plot", metavar="PNG", help="draw each paradigm's tokenization of each image to this file")
    compare.add_argument("--json", metavar="FILE", help="also write the table as JSON")
    compare.add_argument("--llm", default="qwen2-7b",
                         help="LLM whose prefill cost of the visual tokens is reported: "
                              "qwen2-0.5b, qwen2-7b, llama-2-7b or llama-3-70b (default: qwen2-7b)")

    visualize = sub.add_parser(
        "visualize", help="draw what each paradigm does to an image (patches, merged tokens, ...) into one PNG",
        description="Draw one panel per paradigm on your image: the image as the encoder receives it, with its "
                    "tokens outlined, each panel titled with the number of tokens. Runs no model (only the "
                    "preprocessing), so it is quick. Several images give one row each.")
    visualize.add_argument("images", nargs="*", help="image files (default: the images shipped with the package)")
    visualize.add_argument("--out", default="tokens.png", help="PNG to write (default: tokens.png)")
    visualize.add_argument("--paradigms", default=None, help="comma-separated subset (default: all)")
    visualize.add_argument("--full", action="store_true", help="the published sizes VLMs use")

    plan = sub.add_parser(
        "plan", help="choose each paradigm's setting for a visual-token budget and show the tokens it gives",
        description="For a budget of visual tokens per image, find each paradigm's setting that keeps every one of "
                    "your images within it (e.g. max_pixels for native resolution, which fixed-size tower), and "
                    "print the resulting tokens per image (min / median / max) and the pixels the encoder sees. "
                    "--task ocr recommends the setting that keeps the most resolution, --task general the one with "
                    "the fewest tokens.")
    plan.add_argument("images", nargs="*", help="image files (default: the images shipped with the package)")
    plan.add_argument("--budget", type=int, required=True, help="visual tokens per image, e.g. 256")
    plan.add_argument("--task", choices=["ocr", "general"], default="general")
    plan.add_argument("--paradigms", default=None, help="comma-separated subset (default: all)")
    plan.add_argument("--json", metavar="FILE", help="also write the plan as JSON")

    bench = sub.add_parser(
        "benchmark", help="time our encoders against the transformers implementation of the same architecture",
        description="Interleaved A/B timing against transformers (fp32, batch 1): tokens, GFLOPs, ms, speed ratio, "
                    "peak activation memory and %% of this machine's matmul peak.")
    bench.add_argument("cases", nargs="*",
                       help="benchmark cases or paradigms (vit, navit, sam, deepencoder); default: one quick case per paradigm "
                            "plus the image-processor case (the navit-1024 and navit-pack8 cases take many minutes "
                            "on a CPU); see --list")
    bench.add_argument("--list", action="store_true", help="list the cases and exit")
    bench.add_argument("--rounds", type=int, default=5, help="timed A/B rounds (median reported)")
    bench.add_argument("--device", default="cpu")
    bench.add_argument("--layers", type=int, default=None, help="reduce depth (quick check; not the published model)")
    bench.add_argument("--json", metavar="FILE", help="also write the results as JSON")

    args = parser.parse_args(argv)
    commands = {"compare": _compare, "visualize": _visualize, "plan": _plan, "benchmark": _benchmark}
    return commands[args.command](args)


def _compare(args) -> int:
    from .compare import PARADIGM_SPECS, compare, format_rows, plot, sample_images

    paths = args.images or sample_images()
    paradigms = args.paradigms.split(",") if args.paradigms else list(PARADIGM_SPECS)
    errors: list[str] = []
    try:
        rows, state = compare(paths, paradigms, full=args.full, device=args.device, repeats=args.repeats,
                              errors=errors, llm=args.llm)
    except ValueError as error:
        print(f"vlm-encoders compare: {error}", file=sys.stderr)
        return 2
    for message in errors:
        print(f"skipped {message}", file=sys.stderr)
    if not rows:
        print("vlm-encoders compare: no readable images", file=sys.stderr)
        return 1
    print(format_rows(rows, state["images"]))
    if args.json:
        with open(args.json, "w") as f:
            json.dump([asdict(r) for r in rows], f, indent=2)
        print(f"wrote {args.json}")
    if args.plot:
        print(f"wrote {plot(rows, state, args.plot)}")
    return 0


def _read(args, errors: list[str]):
    from .compare import PARADIGM_SPECS, check_paradigms, load_images, sample_images

    paradigms = args.paradigms.split(",") if args.paradigms else list(PARADIGM_SPECS)
    check_paradigms(paradigms)
    images = load_images(args.images or sample_images(), errors)
    for message in errors:
        print(f"skipped {message}", file=sys.stderr)
    return paradigms, images


def _visualize(args) -> int:
    from .compare import PARADIGM_SPECS, visualize_images

    try:
        paradigms, images = _read(args, [])
    except ValueError as error:
        print(f"vlm-encoders visualize: {error}", file=sys.stderr)
        return 2
    if not images:
        print("vlm-encoders visualize: no readable images", file=sys.stderr)
        return 1
    processors = {name: PARADIGM_SPECS[name].processor(args.full) for name in paradigms}
    path, titles = visualize_images(images, processors, args.out, full=args.full)
    for strip in titles:
        print(" | ".join(strip))
    print(f"wrote {path}")
    return 0


def _plan(args) -> int:
    from .compare import format_plan, plan

    try:
        paradigms, images = _read(args, [])
        if not images:
            print("vlm-encoders plan: no readable images", file=sys.stderr)
            return 1
        rows = plan(images, args.budget, paradigms)
    except ValueError as error:
        print(f"vlm-encoders plan: {error}", file=sys.stderr)
        return 2
    print(format_plan(rows, args.budget, args.task, len(images)))
    if args.json:
        with open(args.json, "w") as f:
            json.dump([asdict(r) for r in rows], f, indent=2)
    return 0


def _benchmark(args) -> int:
    from . import benchmark

    if args.list:
        print("\n".join(benchmark.CASES))
        return 0
    try:
        results, table = benchmark.run(args.cases or list(benchmark.QUICK_CASES), rounds=args.rounds, device=args.device,
                                       num_layers=args.layers)
    except ValueError as error:
        print(f"vlm-encoders benchmark: {error}", file=sys.stderr)
        return 2
    print(table)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
