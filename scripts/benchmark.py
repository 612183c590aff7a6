"""Time our encoders against transformers in one interleaved run (same as `vlm-encoders benchmark`).

    python scripts/benchmark.py                       # every case, fp32, batch 1, 5 A/B rounds
    python scripts/benchmark.py clip-l14-336 --rounds 9 --json out/bench.json
"""

import sys

from vlm_encoders.cli import main

if __name__ == "__main__":
    sys.exit(main(["benchmark", *sys.argv[1:]]))
