import os
import sys

import torch

sys.path.insert(0, os.path.dirname(__file__))  # `from encoder_tests import EncoderTests`
torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


import json  # noqa: E402

import pytest  # noqa: E402

# Parity runs write what they measured here when set (e.g. model_cards/measurements): the model cards render
# their parity tables from these files, so no number in a card is typed by hand. Unset: nothing is written.
PARITY_DIR = os.environ.get("VLMENC_RECORD_PARITY")


@pytest.fixture
def record_parity(request):
    """record(card, reference, setting, max_abs_delta): one row of `<card>_parity.json`, keyed by the test id."""

    def record(card: str, reference: str, setting: str, max_abs_delta: float) -> None:
        if not PARITY_DIR:
            return
        path = os.path.join(PARITY_DIR, f"{card}_parity.json")
        rows = json.load(open(path)) if os.path.exists(path) else {}
        rows[request.node.nodeid] = {"reference": reference, "setting": setting,
                                     "max_abs_delta": float(max_abs_delta), "test": request.node.nodeid}
        with open(path, "w") as f:
            json.dump(dict(sorted(rows.items())), f, indent=2)

    return record
