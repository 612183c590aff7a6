"""The `vlm-encoders` command: `compare` what each paradigm does to your images, `benchmark` against transformers."""

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
    compare.add_argument("--repeats", type=int, default=2, help="timed runs per model and image (median reported)")
    compare.add_argument("--plot", metavar="PNG", help="draw each paradigm's tokenization of each image to this file")
    compare.add_argument("--json", metavar="FILE", help="also write the table as JSON")

    bench = sub.add_parser(
        "benchmark", help="time our encoders against the transformers implementation of the same architecture",
        description="Interleaved A/B timing against transformers (fp32, batch 1): tokens, GFLOPs, ms, speed ratio, "
                    "peak activation memory and %% of this machine's matmul peak.")
    bench.add_argument("cases", nargs="*", help="benchmark cases (default: all); see --list")
    bench.add_argument("--list", action="store_true", help="list the cases and exit")
    bench.add_argument("--rounds", type=int, default=5, help="timed A/B rounds (median reported)")
    bench.add_argument("--device", default="cpu")
    bench.add_argument("--layers", type=int, default=None, help="reduce depth (quick check; not the published model)")
    bench.add_argument("--json", metavar="FILE", help="also write the results as JSON")

    args = parser.parse_args(argv)
    if args.command == "compare":
        return _compare(args)
    return _benchmark(args)


def _compare(args) -> int:
    from .compare import PARADIGM_SPECS, compare, format_rows, plot, sample_images

    paths = args.images or sample_images()
    paradigms = args.paradigms.split(",") if args.paradigms else list(PARADIGM_SPECS)
    errors: list[str] = []
    try:
        rows, state = compare(paths, paradigms, full=args.full, device=args.device, repeats=args.repeats, errors=errors)
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


def _benchmark(args) -> int:
    from . import benchmark

    if args.list:
        print("\n".join(benchmark.CASES))
        return 0
    try:
        results, table = benchmark.run(args.cases or list(benchmark.CASES), rounds=args.rounds, device=args.device,
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
