"""C-bar end to end: `gcp-robust eval-corruption --protocol cifar10-c-bar` with the pretrained
ResNet-20 on real CIFAR-10 photos (stored, resumed, identical at any batch size, normalised by a
baseline run), the summary and table of C-bar runs, and `gcp-robust corrupt` in the released
layout."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import run_cli_in_process, stored_cells
from PIL import Image

from robustbench_gcp.corruptions import corrupt, names
from robustbench_gcp.data.folders import eval_transform
from robustbench_gcp.report import corruption_table
from robustbench_gcp.results import Cell, ResultStore
from robustbench_gcp.rng import image_streams
from robustbench_gcp.summaries import pack_flags, summarize_corruptions

C_BAR = names("cifar10-c-bar")


@pytest.fixture(scope="module")
def runs(tmp_path_factory, resnet20_file, resnet44_file, cifar_test_dir) -> dict:
    """A ResNet-20 run (batch 50), the same run at batch 7 in another store, and a ResNet-44 run
    normalised by the ResNet-20 one: 40 real photos, the 10 corruptions × 5 severities."""
    root = tmp_path_factory.mktemp("cbar")
    common = ["eval-corruption", "--data", str(cifar_test_dir), "--protocol", "cifar10-c-bar", "--limit", "40",
              "--workers", "0", "--quiet"]
    resnet20 = [*common, "--model", "CIFAR10_ResNet20_GAP", "--checkpoint", str(resnet20_file)]
    first = run_cli_in_process(*resnet20, "--batch-size", "50", "--db", str(root / "r.sqlite"),
                               "--json", str(root / "r20.json"))
    small = run_cli_in_process(*resnet20, "--batch-size", "7", "--db", str(root / "small.sqlite"))
    other = run_cli_in_process(*common, "--model", "CIFAR10_ResNet44_GAP", "--checkpoint", str(resnet44_file),
                               "--db", str(root / "r.sqlite"), "--json", str(root / "r44.json"),
                               "--baseline-run", "CIFAR10_ResNet20_GAP")
    for result in (first, small, other):
        assert result.returncode == 0, result.stderr
    return {"root": root, "resnet20": resnet20, "first": first, "other": other,
            "r20": json.loads((root / "r20.json").read_text()), "r44": json.loads((root / "r44.json").read_text())}


def test_a_c_bar_run_reports_its_10_corruptions_and_their_mean_error(runs):
    summary = runs["r20"]
    assert summary["protocol"] == "cifar10-c-bar" and summary["n"] == 40
    assert list(summary["errors"]) == C_BAR  # the generator's table order
    rates = [rate for per_severity in summary["errors"].values() for rate in per_severity]
    assert None not in rates and summary["mean_error"] == pytest.approx(np.mean(rates), abs=1e-3)
    assert summary["mCE"] is None and summary["relative_mCE"] is None and summary["baseline"] is None
    assert summary["mean_error"] > summary["clean_error"]
    assert "| ripple (error %)" in runs["first"].stdout and "pass --baseline-run for their mCE" in runs["first"].stdout


def _resnet20_cells(db: Path) -> dict:
    store = ResultStore(db)
    (run,) = store.runs("corruption", models=["CIFAR10_ResNet20_GAP"])
    return store.cells(run)


def test_a_rerun_resumes_everything_and_a_batch_size_changes_no_count(runs):
    root = runs["root"]
    before = stored_cells(root / "r.sqlite")
    again = run_cli_in_process(*runs["resnet20"], "--batch-size", "13", "--db", str(root / "r.sqlite"),
                               "--json", str(root / "again.json"))
    assert again.returncode == 0, again.stderr
    assert (root / "again.json").read_bytes() == (root / "r20.json").read_bytes()
    assert stored_cells(root / "r.sqlite") == before  # nothing computed again
    small, large = _resnet20_cells(root / "small.sqlite"), _resnet20_cells(root / "r.sqlite")
    assert len(small) == 51 and small == large  # batch 7 and batch 50: the same counts and per-image outcomes


def test_the_mce_of_a_c_bar_run_is_relative_to_its_baseline_run(runs):
    ours, base = runs["r44"], runs["r20"]
    assert ours["baseline"]["model"] == "CIFAR10_ResNet20_GAP"
    ce = [sum(ours["errors"][n]) / sum(base["errors"][n]) for n in C_BAR]
    assert ours["mCE"] == pytest.approx(100 * np.mean(ce), abs=1e-3)
    relative = [sum(e - ours["clean_error"] for e in ours["errors"][n]) /
                sum(e - base["clean_error"] for e in base["errors"][n]) for n in C_BAR]
    assert ours["relative_mCE"] == pytest.approx(100 * np.mean(relative), abs=1e-3)
    low, high = ours["mCE_ci"]
    assert low < ours["mCE"] < high
    assert "relative to run 1 (CIFAR10_ResNet20_GAP" in runs["other"].stdout
    table = run_cli_in_process("table", "--db", str(runs["root"] / "r.sqlite"), "--baseline-run", "1")
    assert table.returncode == 0, table.stderr
    assert "| mCE " in table.stdout and "100.00" in table.stdout  # the baseline itself is 100


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--protocol", "cifar10-c", "--baseline-run", "1"], "--baseline-run normalises the mCE of a C-bar run"),
        (["--corruptions", "ripple"], "--corruptions ripple: C-bar corruptions need --protocol"),
        (["--protocol", "cifar10-c-bar", "--corruptions", "caustic_refraction"],
         "corruption 'caustic_refraction' is not part of protocol 'cifar10-c-bar' (it is in imagenet-c-bar)"),
        (["--protocol", "cifar10-c-bar", "--source", "cifar10-c"], "generates its corruptions on the fly"),
        (["--protocol", "cifar10-c-bar", "--severities", "0,1"], "severities are 1 to 5 (levels 1-5 of cifar10-c-bar"),
        (["--protocol", "cifar10-c-bar", "--severities", "6"], "severities are 1 to 5 (levels 1-5 of cifar10-c-bar"),
    ],
)
def test_bad_c_bar_options_get_one_clear_line(extra, message, resnet20_file, cifar_test_dir, tmp_path):
    result = run_cli_in_process("eval-corruption", "--model", "CIFAR10_ResNet20_GAP", "--checkpoint",
                                str(resnet20_file), "--data", str(cifar_test_dir), "--limit", "10", "--quiet",
                                "--db", str(tmp_path / "r.sqlite"), *extra)
    assert result.returncode == 2 and message in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_a_baseline_of_another_protocol_is_refused(runs, resnet20_file, cifar_test_dir):
    db = runs["root"] / "r.sqlite"
    plain = run_cli_in_process("eval-corruption", "--model", "CIFAR10_ResNet44_GAP", "--data", str(cifar_test_dir),
                               "--protocol", "cifar10-c", "--corruptions", "fog", "--severities", "1", "--limit",
                               "10", "--workers", "0", "--quiet", "--db", str(db), "--name", "plain")
    assert plain.returncode == 0, plain.stderr
    result = run_cli_in_process(*runs["resnet20"], "--limit", "10", "--db", str(db), "--baseline-run", "plain")
    assert result.returncode == 2 and "is a cifar10-c run, not cifar10-c-bar" in result.stderr, result.stderr


def _stored_c_bar_run(store: ResultStore, model: str, seed: int):
    """A complete ImageNet-sized (224 px, 1000 classes) imagenet-c-bar run over 50 images."""
    config = {"model": model, "protocol": "imagenet-c-bar", "source": "generated", "input_size": 224,
              "model_classes": 1000, "dataset": "val", "limit": 50, "seed": 0}
    run = store.run("corruption", model, config)
    rng = np.random.default_rng(seed)
    for name, level in [("clean", "0"), *((n, str(s)) for n in names("imagenet-c-bar") for s in range(1, 6))]:
        correct = rng.random(50) < (0.8 if name == "clean" else 0.8 - 0.1 * int(level))
        store.add_cell(run, Cell(name, level, 50, int((~correct).sum()), 0, 0, pack_flags(correct)))
    return run


def test_imagenet_sized_c_bar_runs_never_get_alexnet_s_normalisation(tmp_path):
    store = ResultStore(tmp_path / "r.sqlite")
    run, baseline = _stored_c_bar_run(store, "resnet50_gcp", 1), _stored_c_bar_run(store, "resnet50_gap", 2)
    alone = summarize_corruptions(run, store.cells(run), [])
    assert alone["mCE"] is None and alone["relative_mCE"] is None and alone["mean_error"] is not None
    table = corruption_table(store, [run])
    assert "(CE)" not in table and "| caustic_refraction (error %)" in table
    normalised = summarize_corruptions(run, store.cells(run), [], baseline=baseline,
                                       baseline_cells=store.cells(baseline))
    assert normalised["mCE"] is not None and normalised["mCE_ci"][0] < normalised["mCE"] < normalised["mCE_ci"][1]
    table = corruption_table(store, [baseline, run], baseline=baseline)
    assert "(CE)" not in table and f"relative to run {baseline.id}" in table


def test_corrupt_writes_the_released_layouts(tmp_path, imagenet_photos, cifar_test_dir):
    """ImageNet-C-bar: JPEG q85 under the generator's severity value (sparkles/1.00 … /6.00);
    CIFAR-10-C-bar: 8-bit PNG. The files hold what corrupt() gives in memory."""
    folder = tmp_path / "val" / "n01440764"
    folder.mkdir(parents=True)
    for i, photo in enumerate(imagenet_photos[:2]):
        Image.fromarray((photo * 255).round().byte().permute(1, 2, 0).numpy()).save(folder / f"{i}.png")
    result = run_cli_in_process("corrupt", "--data", str(tmp_path / "val"), "--out", str(tmp_path / "inc"),
                                "--protocol", "imagenet-c-bar", "--corruptions", "sparkles,checkerboard_cutout",
                                "--severities", "1,5", "--device", "cpu", "--quiet")
    assert result.returncode == 0, result.stderr
    written = sorted(str(p.relative_to(tmp_path / "inc")) for p in (tmp_path / "inc").rglob("*") if p.is_file())
    assert written == [f"{name}/{value}/n01440764/{i}.JPEG" for name, values in
                       (("checkerboard_cutout", ("2.00", "6.00")), ("sparkles", ("1.00", "6.00")))
                       for value in values for i in (0, 1)]
    read = eval_transform(224)  # what the export reads: resize 256, centre crop 224
    clean = torch.stack([read(Image.open(folder / f"{i}.png").convert("RGB")) for i in (0, 1)]).float() / 255
    expected = corrupt(clean, "sparkles", 5, protocol="imagenet-c-bar", generator=image_streams(0, [0, 1],
                                                                                                "sparkles", 5))
    stored = torch.from_numpy(np.array(Image.open(tmp_path / "inc/sparkles/6.00/n01440764/1.JPEG"))).permute(2, 0, 1)
    assert torch.equal(stored.float() / 255, expected[1])

    cifar = tmp_path / "cifar" / "ship"
    cifar.mkdir(parents=True)
    source = sorted((Path(cifar_test_dir) / "ship").glob("*.jpg"))[0]
    (cifar / source.name).write_bytes(source.read_bytes())
    result = run_cli_in_process("corrupt", "--data", str(tmp_path / "cifar"), "--out", str(tmp_path / "cc"),
                                "--protocol", "cifar10-c-bar", "--corruptions", "lines", "--severities", "3",
                                "--device", "cpu", "--quiet")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "cc" / "lines" / "1.50" / "ship" / f"{source.stem}.png").is_file()
