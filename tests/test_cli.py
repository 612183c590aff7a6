"""The main job, run as a user runs it."""

import json

import PIL.Image
import pytest

from vlm_encoders import PARADIGMS
from vlm_encoders.cli import main
from vlm_encoders.compare import PARADIGM_SPECS, load_image, sample_images


def test_every_registered_paradigm_takes_part_in_compare():
    assert {f"vlmenc_{name}" for name in PARADIGM_SPECS} == set(PARADIGMS)


def test_compare_on_the_shipped_images(tmp_path, capsys):
    names = sorted(p.rsplit("/", 1)[-1] for p in sample_images())
    assert names == ["sample_banner.png", "sample_chart.png", "sample_document.png", "sample_scene.png"]
    code = main(["compare", "--json", str(tmp_path / "out.json"), "--plot", str(tmp_path / "out.png"),
                 "--repeats", "1"])
    assert code == 0
    table = capsys.readouterr().out
    rows = json.loads((tmp_path / "out.json").read_text())
    assert {row["paradigm"] for row in rows} == set(PARADIGM_SPECS)
    assert len(rows) == len(PARADIGM_SPECS) * 4
    images = {p.rsplit("/", 1)[-1]: load_image(p) for p in sample_images()}
    for row in rows:  # compare itself stops if the model's output length differs from this count
        processor = PARADIGM_SPECS[row["paradigm"]].processor(False)
        image = images[row["image"]]
        assert row["tokens"] == processor.get_number_of_image_tokens(height=image.height, width=image.width)
        assert row["positions"] == row["tokens"] + PARADIGM_SPECS[row["paradigm"]].separators
        assert f"{row['tokens']:>6}" in table
        assert row["gflops"] > 0 and row["ms"] > 0 and row["peak_mib"] > 0 and row["llm_prefill_tflops"] > 0
    plot = PIL.Image.open(tmp_path / "out.png")
    assert plot.height >= 448 and plot.width > 2 * 336  # the input and one panel per paradigm, side by side


def test_unreadable_images_are_named_and_skipped(tmp_path, capsys):
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not an image")
    document = next(p for p in sample_images() if p.endswith("sample_document.png"))
    code = main(["compare", str(broken), document, "--repeats", "1", "--paradigms", "vit"])
    captured = capsys.readouterr()
    assert code == 0 and "broken.png" in captured.err and "sample_document.png" in captured.out
    assert main(["compare", str(broken)]) == 1


def test_visualize_draws_one_panel_per_paradigm(tmp_path, capsys):
    from vlm_encoders.compare import visualize_images

    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\x00")
    code = main(["visualize", str(broken), *sample_images()[:2], "--out", str(tmp_path / "tokens.png")])
    captured = capsys.readouterr()
    assert code == 0 and "broken.jpg" in captured.err
    strips = [line.split(" | ") for line in captured.out.splitlines() if line.startswith("input ")]
    assert len(strips) == 2 and all(len(strip) == 1 + len(PARADIGM_SPECS) for strip in strips)
    image = load_image(sample_images()[0])
    for title, name in zip(strips[0][1:], PARADIGM_SPECS):
        tokens = PARADIGM_SPECS[name].processor(False).get_number_of_image_tokens(image.height, image.width)
        assert title.startswith(f"{name}: {tokens} tokens")
    plot = PIL.Image.open(tmp_path / "tokens.png")
    assert plot.height >= 2 * 448
    processors = {name: spec.processor(True) for name, spec in PARADIGM_SPECS.items()}
    _, titles = visualize_images({"x": image}, processors, str(tmp_path / "full.png"), full=True)
    assert [t.split(":")[0] for t in titles[0][1:]] == list(PARADIGM_SPECS)


def test_plan_never_exceeds_the_budget():
    import random

    from vlm_encoders.compare import plan, recommend

    rng = random.Random(0)
    for _ in range(25):
        images = {}
        for i in range(rng.randint(1, 6)):
            height = rng.randint(1, 3000)
            width = max(1, min(int(height * rng.choice([0.01, 0.2, 1, 3, 50, 150])), 6000))
            if max(height, width) / min(height, width) > 150:
                width = height
            images[i] = PIL.Image.new("RGB", (width, height))
        budget = rng.choice([16, 64, 196, 256, 700, 1500])
        rows = plan(images, budget, list(PARADIGM_SPECS))
        assert [r.paradigm for r in rows] == list(PARADIGM_SPECS)
        for row in rows:
            if row.fits:
                assert row.tokens_max <= budget and row.tokens_min <= row.tokens_median <= row.tokens_max
        navit = next(r for r in rows if r.paradigm == "navit")
        aspect = max(max(im.size) / min(im.size) for im in images.values())
        if budget >= 2 * aspect + 4:  # native resolution shrinks to fit unless an image is too elongated for it
            assert navit.fits, (budget, aspect, navit)
        for task in ("ocr", "general"):  # a recommendation exactly when some paradigm fits, and one that fits
            best = recommend(rows, task)
            assert (best is not None) == any(r.fits for r in rows) and (best is None or best.fits)
    rows = plan({0: PIL.Image.new("RGB", (640, 480))}, 100, ["vit"])
    assert not rows[0].fits and "no published tower fits 100" in rows[0].setting


def test_plan_command(tmp_path, capsys):
    code = main(["plan", *sample_images(), "--budget", "256", "--task", "ocr", "--json", str(tmp_path / "p.json")])
    out = capsys.readouterr().out
    rows = json.loads((tmp_path / "p.json").read_text())
    assert code == 0 and "recommended for ocr" in out
    assert {r["paradigm"] for r in rows} == set(PARADIGM_SPECS)
    assert all(r["tokens_max"] <= 256 for r in rows if r["fits"]) and not next(r for r in rows if r["paradigm"] == "sam")["fits"]
    assert main(["plan", "--budget", "0"]) == 2 and "positive" in capsys.readouterr().err


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


def test_benchmark_case_selection():
    from vlm_encoders.benchmark import CASES, QUICK_CASES, select_cases

    assert select_cases(["navit"]) == ["navit-448", "navit-1024", "navit-pack8", "navit-processor"]
    assert select_cases(["vit", "sam-b-1024", "vit"]) == ["clip-l14-336", "siglip-so400m-384", "sam-b-1024"]
    assert set(QUICK_CASES) <= set(CASES)
    with pytest.raises(ValueError, match="unknown benchmark case 'dino'"):
        select_cases(["dino"])
