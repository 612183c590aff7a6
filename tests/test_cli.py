"""The main job, run as a user runs it."""

import json

import PIL.Image
import pytest

from vlm_encoders import PARADIGMS
from vlm_encoders.cli import main
from vlm_encoders.compare import PARADIGM_SPECS, load_image, sample_images


def test_every_registered_paradigm_takes_part_in_compare():
    assert {f"vlmenc_{name}" for name in PARADIGM_SPECS} == set(PARADIGMS)


def test_compare_on_the_shipped_image(tmp_path, capsys):
    assert sample_images(), "the package ships a sample image"
    code = main(["compare", "--json", str(tmp_path / "out.json"), "--plot", str(tmp_path / "out.png"),
                 "--repeats", "1"])
    assert code == 0
    table = capsys.readouterr().out
    rows = json.loads((tmp_path / "out.json").read_text())
    assert {row["paradigm"] for row in rows} == set(PARADIGM_SPECS)
    for row in rows:
        processor, _ = PARADIGM_SPECS[row["paradigm"]].build(False)
        image = load_image(sample_images()[0])
        assert row["tokens"] == processor.get_number_of_image_tokens(height=image.height, width=image.width)
        assert f"{row['tokens']:>6}" in table
        assert row["gflops"] > 0 and row["ms"] > 0 and row["peak_mib"] > 0
    plot = PIL.Image.open(tmp_path / "out.png")
    assert plot.height >= 448 and plot.width > 2 * 336  # the input and one panel per paradigm, side by side


def test_unreadable_images_are_named_and_skipped(tmp_path, capsys):
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not an image")
    code = main(["compare", str(broken), sample_images()[0], "--repeats", "1"])
    captured = capsys.readouterr()
    assert code == 0 and "broken.png" in captured.err and "sample_document.png" in captured.out
    assert main(["compare", str(broken)]) == 1


def test_unknown_paradigm_is_a_clear_error(capsys):
    assert main(["compare", "--paradigms", "vit,nope"]) == 2
    assert "unknown paradigm(s) ['nope']" in capsys.readouterr().err


def test_benchmark_reports_a_ratio_against_transformers(tmp_path, capsys):
    code = main(["benchmark", "clip-l14-336", "--layers", "1", "--rounds", "1", "--json", str(tmp_path / "b.json")])
    assert code == 0
    results = json.loads((tmp_path / "b.json").read_text())
    assert [r["model"] for r in results] == ["transformers", "vlm-encoders"]
    assert all(r["ratio"] > 0 and r["tokens"] == 577 for r in results)
    assert "ratio = transformers ms / our ms" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["benchmark", "--rounds", "x"])


def test_live_tensor_bytes_counts_peak_activations():
    import torch

    from vlm_encoders.benchmark import LiveTensorBytes

    x = torch.randn(1000)  # made outside the meter: not an activation
    with LiveTensorBytes() as meter:
        a = x * 2  # 4000 bytes live
        b = a + 1  # 8000
        view = b[:10]  # a view: no new storage
        del a
        c = b * 3  # `a` is gone by now: 8000 again, not 12000
    assert meter.peak == 8000 and view.shape == (10,) and c.shape == (1000,)
