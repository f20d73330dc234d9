"""`gcp-robust eval-perturbation` and `perturb` end to end on real CIFAR-10 photos with the real
pretrained ResNets, the released layouts written and read back, resume, baselines, reports, and
bad input."""

from __future__ import annotations

import csv
import io
import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import copy_per_class, run_cli_in_process, shared_path
from PIL import Image

import robustbench_gcp.evaluate.parts as parts_module
import robustbench_gcp.evaluate.perturbation as perturbation_module
from robustbench_gcp.data.videos import write_video
from robustbench_gcp.evaluate.perturbation import PerturbationEvalConfig, evaluate_perturbations, find_baseline
from robustbench_gcp.perturbations import names
from robustbench_gcp.results import ResultStore


def cells(db: Path) -> dict:
    """Counts and per-video counts of every stored cell."""
    with sqlite3.connect(db) as connection:
        rows = connection.execute("SELECT name, level, n, top1_errors, top5_errors, mask FROM cells").fetchall()
    return {(name, level): (n, flips, distance, bytes(mask)) for name, level, n, flips, distance, mask in rows}


@pytest.fixture(scope="module")
def photos(tmp_path_factory, cifar_test_dir) -> Path:
    """20 real CIFAR-10 test photos, 2 per class."""
    return copy_per_class(cifar_test_dir, tmp_path_factory.mktemp("photos") / "data", 2)


@pytest.fixture
def base(resnet20_file) -> list[str]:
    """The default difficulties: 1 alone."""
    return ["--model", "CIFAR10_ResNet20_GAP", "--checkpoint", str(resnet20_file), "--workers", "0", "--quiet"]


def test_cli_flip_probabilities_and_the_exported_arrays_agree(photos, base, tmp_path):
    db = str(tmp_path / "r.sqlite")
    generated = run_cli_in_process("eval-perturbation", *base, "--data", str(photos), "--db", db, "--json",
                                   str(tmp_path / "generated.json"))
    assert generated.returncode == 0, generated.stderr
    assert "| gaussian_noise FP d=1 (%)" in generated.stdout and "pass --baseline-run" in generated.stdout
    assert "FP d=2" not in generated.stdout and "run at difficulty 1;" in generated.stdout
    summary = json.loads((tmp_path / "generated.json").read_text())
    # the default is the reference evaluators' difficulty 1
    assert summary["videos"] == 20 and summary["protocol"] == "cifar10-p" and summary["difficulties"] == [1]
    assert list(summary["flip_probability"]) == names("test", "cifar10-p")  # CIFAR-10-P's ten: spatter, no snow
    assert list(summary["top5_distance"]) == names("test", "cifar10-p")
    for name, by_difficulty in summary["flip_probability"].items():
        assert list(by_difficulty) == ["1"] and 0 < by_difficulty["1"] < 0.5, (name, by_difficulty)
        assert list(summary["top5_distance"][name]) == ["1"] and 0 < summary["top5_distance"][name]["1"] < 10, name
        assert summary["flip_probability_summed"][name] == by_difficulty["1"]  # a sum of one
        assert summary["top5_distance_summed"][name] == summary["top5_distance"][name]["1"]
    tested = [by["1"] for by in summary["flip_probability"].values()]
    assert summary["mean_flip_probability"] == {"1": pytest.approx(np.mean(tested), abs=1e-6)}
    assert summary["mFR"] is None and summary["baseline"] is None and summary["rates_over_difficulties"] is None
    # the released CIFAR-10-P layout, written by `perturb` (default: difficulty 1) and read back: the same
    # numbers, exactly
    out = tmp_path / "CIFAR-10-P"
    export = run_cli_in_process("perturb", "--data", str(photos), "--out", str(out), "--protocol", "cifar10-p",
                                "--quiet", "--device", "cpu")
    assert export.returncode == 0, export.stderr
    arrays = np.load(out / "rotate.npy", mmap_mode="r")
    assert arrays.shape == (20, 31, 32, 32, 3) and arrays.dtype == np.uint8
    assert np.load(out / "translate.npy", mmap_mode="r").shape[1] == 16
    assert (out / "gaussian_noise.npy").is_file() and not (out / "gaussian_noise_2.npy").exists()
    stronger = run_cli_in_process("eval-perturbation", *base, "--data", str(out), "--source", "cifar10-p",
                                  "--difficulties", "2", "--db", db)
    assert stronger.returncode == 2 and "gaussian_noise_2.npy is missing" in stronger.stderr
    assert "perturb --difficulties 2 writes it" in stronger.stderr
    released = run_cli_in_process("eval-perturbation", *base, "--data", str(out), "--source", "cifar10-p", "--db",
                                  db, "--json", str(tmp_path / "released.json"))
    assert released.returncode == 0, released.stderr
    again = json.loads((tmp_path / "released.json").read_text())
    assert again["flip_probability"] == summary["flip_probability"]
    assert again["top5_distance"] == summary["top5_distance"]
    # reports: the tables, the paper's layout, a plot, and a comparison (unpaired: other files)
    with pytest.warns(UserWarning, match="baseline run 1 evaluated other data, protocol or --limit than run 2;"):
        table = run_cli_in_process("table", "--db", db, "--baseline-run", "1")  # generated vs released files
    assert table.returncode == 0, table.stderr
    assert "| mFR" in table.stdout and "| model" in table.stdout
    assert "relative mCE" not in table.stdout  # no corruption run: no empty columns
    assert "100.00" in table.stdout
    plot = run_cli_in_process("plot", "--db", db, "--kind", "perturbation", "--out", str(tmp_path / "fp.png"))
    assert plot.returncode == 0 and (tmp_path / "fp.png").stat().st_size > 1000
    compared = run_cli_in_process("compare", "--db", db, "--run", "1", "--run", "2")
    assert compared.returncode == 0, compared.stdout + compared.stderr
    assert "FP rotate/1" in compared.stdout and "saw different videos" in compared.stdout


def test_killed_run_resumes_to_the_same_counts(photos, resnet20_file, tmp_path, monkeypatch):
    settings = dict(model="CIFAR10_ResNet20_GAP", checkpoint=resnet20_file, data=photos, workers=0,
                    perturbations=["gaussian_noise", "rotate", "snow"], difficulties=(1, 2), batch_size=64)
    evaluate_perturbations(PerturbationEvalConfig(**settings, db=tmp_path / "whole.sqlite"), progress=False)
    real_run, calls = perturbation_module._SequenceRunner.run, []

    def killed_after_four_parts(self, *args, **kwargs):
        calls.append(1)
        if len(calls) > 4:
            raise KeyboardInterrupt
        return real_run(self, *args, **kwargs)

    monkeypatch.setattr(perturbation_module._SequenceRunner, "run", killed_after_four_parts)
    db = tmp_path / "killed.sqlite"
    with pytest.raises(KeyboardInterrupt):
        evaluate_perturbations(PerturbationEvalConfig(**settings, db=db, chunk_size=7), progress=False)
    monkeypatch.setattr(perturbation_module._SequenceRunner, "run", real_run)
    assert len(cells(db)) < 6
    resumed = PerturbationEvalConfig(**{**settings, "batch_size": 40}, db=db, chunk_size=5)  # other chunks, batches
    evaluate_perturbations(resumed, progress=False)
    assert cells(db) == cells(tmp_path / "whole.sqlite") and len(cells(db)) == 6
    with sqlite3.connect(db) as connection:
        assert connection.execute("SELECT COUNT(*) FROM parts").fetchone()[0] == 0
    # killed between a cell's last part and the cell itself: the rerun merges the parts
    real_finish = parts_module.finish_cell

    def killed_before_the_cell(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(parts_module, "finish_cell", killed_before_the_cell)
    stopped = tmp_path / "stopped.sqlite"
    with pytest.raises(KeyboardInterrupt):
        evaluate_perturbations(PerturbationEvalConfig(**settings, db=stopped), progress=False)
    monkeypatch.setattr(parts_module, "finish_cell", real_finish)
    assert not cells(stopped)
    evaluate_perturbations(PerturbationEvalConfig(**settings, db=stopped), progress=False)
    assert cells(stopped) == cells(tmp_path / "whole.sqlite")


def test_a_baseline_run_normalises_fr_and_mfr(photos, resnet20_file, tmp_path):
    resnet44 = shared_path("cifar10_resnet_akamaster/resnet44-014dd654.th")
    db = tmp_path / "r.sqlite"
    common = dict(data=photos, workers=0, limit=6, db=db)  # the default difficulty 1: test.py's FR and mFR
    base = evaluate_perturbations(PerturbationEvalConfig(model="CIFAR10_ResNet20_GAP", checkpoint=resnet20_file,
                                                         **common), progress=False)
    other = evaluate_perturbations(PerturbationEvalConfig(model="CIFAR10_ResNet44_GAP", checkpoint=resnet44,
                                                          baseline_run="CIFAR10_ResNet20_GAP", **common),
                                   progress=False)
    assert other["baseline"]["run_id"] == base["run_id"] and other["rates_over_difficulties"] == [1]
    for name, rate in other["flip_rate"].items():
        assert rate == pytest.approx(100 * other["flip_probability"][name]["1"] / base["flip_probability"][name]["1"],
                                     rel=1e-4)
        assert other["top5_rate"][name] == pytest.approx(
            100 * other["top5_distance"][name]["1"] / base["top5_distance"][name]["1"], rel=1e-4)
    assert other["mFR"] == pytest.approx(np.mean(list(other["flip_rate"].values())), abs=1e-3)
    assert other["mT5D"] == pytest.approx(np.mean(list(other["top5_rate"].values())), abs=1e-3)
    compared = run_cli_in_process("compare", "--db", str(db), "--run", str(base["run_id"]), "--run",
                                  str(other["run_id"]), "--format", "json")
    assert "paired over the same 6 videos" in compared.stdout
    rows = {row["metric"]: row for row in json.loads(compared.stdout)["differences"]}
    assert rows["FP rotate/1"]["interval"] is not None and rows["mean FP/1"]["interval"] is not None
    assert rows["FP rotate/1"]["current"] == pytest.approx(100 * other["flip_probability"]["rotate"]["1"])


def test_fp_stays_a_probability_per_difficulty_and_sums_say_so(photos, resnet20_file, resnet44_file, tmp_path):
    """Each difficulty's FP is a probability; their sum (not one) is ``flip_probability_summed``,
    and FR / mFR over several difficulties divide those sums, which the summary and table say."""
    db = tmp_path / "r.sqlite"
    assert PerturbationEvalConfig(model="m", data=photos).difficulties == (1,)
    common = dict(data=photos, workers=0, limit=8, db=db, perturbations=["gaussian_noise", "rotate", "translate"])
    every = (1, 2, 3)
    base = evaluate_perturbations(PerturbationEvalConfig(model="CIFAR10_ResNet44_GAP", checkpoint=resnet44_file,
                                                         difficulties=every, **common), progress=False)
    ours = dict(model="CIFAR10_ResNet20_GAP", checkpoint=resnet20_file, baseline_run="CIFAR10_ResNet44_GAP", **common)
    first = evaluate_perturbations(PerturbationEvalConfig(**ours), progress=False)  # difficulty 1, the default
    summary = evaluate_perturbations(PerturbationEvalConfig(**ours, difficulties=every), progress=False)  # resumes
    assert first["difficulties"] == [1] and first["rates_over_difficulties"] == [1]
    assert summary["run_id"] == first["run_id"] and summary["difficulties"] == [1, 2, 3]
    assert summary["rates_over_difficulties"] == [1, 2, 3]
    for name, by_difficulty in summary["flip_probability"].items():
        assert list(by_difficulty) == ["1", "2", "3"] and all(0 <= v <= 1 for v in by_difficulty.values()), name
        assert by_difficulty["1"] == first["flip_probability"][name]["1"]  # difficulty 1 alone: the same
        assert summary["flip_probability_summed"][name] == pytest.approx(sum(by_difficulty.values()), abs=3e-6)
        distances = summary["top5_distance"][name]
        assert summary["top5_distance_summed"][name] == pytest.approx(sum(distances.values()), abs=3e-6)
        base_sum = base["flip_probability_summed"][name]
        assert summary["flip_rate"][name] == pytest.approx(100 * summary["flip_probability_summed"][name] / base_sum,
                                                           rel=1e-4)
        assert first["flip_rate"][name] == pytest.approx(
            100 * by_difficulty["1"] / base["flip_probability"][name]["1"], rel=1e-4)
    assert summary["flip_probability_summed"]["gaussian_noise"] > 1  # why a sum is not called a probability
    for difficulty in ("1", "2", "3"):
        tested = [summary["flip_probability"][n][difficulty] for n in ("gaussian_noise", "rotate", "translate")]
        assert summary["mean_flip_probability"][difficulty] == pytest.approx(np.mean(tested), abs=1e-6)
    table = run_cli_in_process("table", "--db", str(db), "--baseline-run", str(base["run_id"]))
    assert table.returncode == 0, table.stderr
    for row in ("| gaussian_noise FP d=1 (%)", "| gaussian_noise FP d=3 (%)", "| rotate T5D d=2",
                "| mean FP, test set, d=3 (%)", "| gaussian_noise FR"):
        assert row in table.stdout, row
    assert "from FP and T5D summed over difficulties 1/2/3" in table.stdout
    # three perturbations give no mFR or mT5D (those need the whole test set): no paper's layout of empty columns
    assert "mFR and mT5D from" not in table.stdout and "| model" not in table.stdout
    tidy = run_cli_in_process("table", "--db", str(db), "--format", "csv")
    values = {(row["run"], row["metric"], row["level"]): row["value"]
              for row in csv.DictReader(io.StringIO(tidy.stdout))}
    assert float(values[str(summary["run_id"]), "flip_probability", "gaussian_noise/2"]) == \
        summary["flip_probability"]["gaussian_noise"]["2"]


def test_table_and_eval_choose_the_baseline_alike(photos, resnet20_file, resnet44_file, tmp_path):
    """One selector: of several runs matching --baseline-run, the latest on the same data,
    protocol and --limit as the runs it normalises, else the latest with a warning."""
    db = tmp_path / "r.sqlite"
    common = dict(data=photos, workers=0, perturbations=["rotate"], db=db)
    same = evaluate_perturbations(PerturbationEvalConfig(model="CIFAR10_ResNet44_GAP", checkpoint=resnet44_file,
                                                         limit=4, **common), progress=False)
    later = evaluate_perturbations(PerturbationEvalConfig(model="CIFAR10_ResNet44_GAP", checkpoint=resnet44_file,
                                                          limit=3, **common), progress=False)  # other videos
    ours = evaluate_perturbations(PerturbationEvalConfig(model="CIFAR10_ResNet20_GAP", checkpoint=resnet20_file,
                                                         limit=4, baseline_run="CIFAR10_ResNet44_GAP", **common),
                                  progress=False)
    assert ours["baseline"]["run_id"] == same["run_id"] != later["run_id"]
    table = run_cli_in_process("table", "--db", str(db), "--model", "CIFAR10_ResNet20_GAP", "--baseline-run",
                               "CIFAR10_ResNet44_GAP")
    assert table.returncode == 0, table.stderr
    assert f"relative to run {same['run_id']} " in table.stdout  # not the latest, run {later}
    store = ResultStore(db)
    runs = [store.get(ours["run_id"]), store.get(later["run_id"])]
    with pytest.warns(UserWarning, match=f"baseline run {later['run_id']} evaluated other data, protocol or --limit "
                      f"than run {ours['run_id']};"):
        assert find_baseline(store, "CIFAR10_ResNet44_GAP", runs).id == later["run_id"]
    with pytest.warns(UserWarning, match="than this run"):
        other = evaluate_perturbations(PerturbationEvalConfig(model="CIFAR10_ResNet20_GAP", checkpoint=resnet20_file,
                                                              limit=2, baseline_run=str(same["run_id"]), **common),
                                       progress=False)
    assert other["baseline"]["run_id"] == same["run_id"]
    for argv in (["table", "--db", str(db), "--baseline-run", "alexnet"],
                 ["eval-perturbation", "--model", "CIFAR10_ResNet20_GAP", "--checkpoint", str(resnet20_file),
                  "--data", str(photos), "--workers", "0", "--quiet", "--db", str(db), "--baseline-run", "alexnet"]):
        missing = run_cli_in_process(*argv)
        assert missing.returncode == 2 and "--baseline-run 'alexnet'" in missing.stderr, argv
        assert "perturbation run with that id, name or model" in missing.stderr and "Traceback" not in missing.stderr


def test_torchvision_classifiers_load_a_users_weight_file(tmp_path):
    torchvision = pytest.importorskip("torchvision")
    from robustbench_gcp.models import Normalize, create_model

    reference = torchvision.models.alexnet().eval()
    path = tmp_path / "alexnet-owt-7be5be79.pth"
    torch.save(reference.state_dict(), path)
    model = create_model("torchvision:alexnet", checkpoint=path)
    images = torch.rand(2, 3, 224, 224)
    with torch.no_grad():
        torch.testing.assert_close(model(images), reference(Normalize()(images)))
    assert model.architecture.input_size == 224 and set(model.state_dict()) == set(reference.state_dict())
    wrong = run_cli_in_process("eval-perturbation", "--model", "torchvision:alexnett", "--data", str(tmp_path))
    assert wrong.returncode == 2 and "did you mean torchvision:alexnet" in wrong.stderr


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> Path:
    """An ImageNet-P-shaped tree for 224-px models: <perturbation>/<wnid>/<video>.mp4."""
    root = tmp_path_factory.mktemp("imagenet-p")
    ramp = np.linspace(0, 255, 224, dtype=np.uint8)
    frames = np.broadcast_to(ramp[None, None, :, None], (31, 224, 224, 3))
    for name in ("rotate", "scale"):
        for index in range(2):
            write_video(root / name / "n01440764" / f"ILSVRC2012_val_{index:08d}.mp4", frames, noise=False)
    return root


def test_bad_input_gets_one_clear_error(photos, base, tree, tmp_path):
    db = ["--db", str(tmp_path / "r.sqlite")]
    unknown = run_cli_in_process("eval-perturbation", *base, "--data", str(photos), "--perturbations", "fog")
    assert unknown.returncode == 2 and "unknown perturbation 'fog'" in unknown.stderr
    missing = run_cli_in_process("eval-perturbation", *base, "--data", str(photos), "--baseline-run", "alexnet", *db)
    assert missing.returncode == 2 and "--baseline-run alexnet" in missing.stderr  # the --db does not exist
    assert "Traceback" not in missing.stderr
    short = tmp_path / "short"
    short.mkdir()
    np.save(short / "rotate.npy", np.zeros((4, 10, 32, 32, 3), dtype=np.uint8))
    few = run_cli_in_process("eval-perturbation", *base, "--data", str(short), "--source", "cifar10-p",
                             "--perturbations", "rotate", *db)
    assert few.returncode == 2 and "10 frames per video where rotate has 31" in few.stderr
    mismatch = run_cli_in_process("eval-perturbation", "--model", "torchvision:alexnet", "--data", str(short),
                                  "--source", "cifar10-p", *db)
    assert mismatch.returncode == 2 and "takes 224-px images but cifar10-p frames are 32 px" in mismatch.stderr
    both = run_cli_in_process("eval-perturbation", *base, "--data", str(short), "--source", "cifar10-p",
                              "--protocol", "imagenet-p", *db)
    assert both.returncode == 2 and "leave out --protocol imagenet-p" in both.stderr
    large = tmp_path / "large" / "cat"
    large.mkdir(parents=True)
    Image.new("RGB", (64, 64)).save(large / "big.png")
    sizes = run_cli_in_process("eval-perturbation", *base, "--data", str(large.parent), *db)
    assert sizes.returncode == 2 and "big.png" in sizes.stderr and "Traceback" not in sizes.stderr
    alexnet = ["--model", "torchvision:alexnet", "--workers", "0", "--quiet", "--difficulties", "1", "--source",
               "imagenet-p", *db]
    absent = run_cli_in_process("eval-perturbation", *alexnet, "--data", str(tree), "--perturbations", "snow")
    assert absent.returncode == 2 and "snow is missing from the ImageNet-P tree" in absent.stderr
    broken = tmp_path / "broken"
    for name in ("rotate", "scale"):
        (broken / name / "n01440764").mkdir(parents=True)
        for video in (tree / name / "n01440764").iterdir():
            (broken / name / "n01440764" / video.name).write_bytes(video.read_bytes())
    (broken / "scale" / "n01440764" / "ILSVRC2012_val_00000001.mp4").write_bytes(b"not a video")
    write_video(broken / "rotate" / "n01440764" / "ILSVRC2012_val_00000001.mp4",
                np.zeros((12, 224, 224, 3), dtype=np.uint8), noise=False)
    for name, message in (("rotate", "has 12 frames where this sequence has 31"),
                          ("scale", "not a readable video")):
        result = run_cli_in_process("eval-perturbation", *alexnet, "--data", str(broken), "--perturbations", name)
        assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr, name
        assert "ILSVRC2012_val_00000001.mp4" in result.stderr


@pytest.mark.slow
def test_released_mp4s_give_the_on_the_fly_numbers_within_the_codec_loss(tmp_path, imagenet_224_cifar_model):
    """ImageNet-P MP4s written by `perturb` (H.264 4:4:4, CRF 20, or the grain tuning at CRF 23 for
    noise) and read back give each FP within 0.05 of the run that classifies the frames before
    encoding: the codec moves pixels by about 1.4 levels on average (4.4 for noise), which
    flips a few frames whose top two classes are close."""
    photos = tmp_path / "photos"
    for index, path in enumerate(sorted(shared_path("imagenet_val_acuity/data").glob("*.JPEG"))[:12]):
        (photos / f"class{index % 2}").mkdir(parents=True, exist_ok=True)
        (photos / f"class{index % 2}" / path.name).write_bytes(path.read_bytes())
    chosen = "gaussian_noise,rotate,translate,scale,motion_blur,brightness"
    export = run_cli_in_process("perturb", "--data", str(photos), "--out", str(tmp_path / "ImageNet-P"),
                                "--perturbations", chosen, "--difficulties", "1", "--quiet", "--device", "cpu")
    assert export.returncode == 0, export.stderr
    assert len(list((tmp_path / "ImageNet-P" / "rotate").glob("*/*.mp4"))) == 12
    summaries = {}
    for source, data in (("generated", photos), ("imagenet-p", tmp_path / "ImageNet-P")):
        result = run_cli_in_process("eval-perturbation", "--model", imagenet_224_cifar_model, "--data", str(data),
                                    "--source", source, "--perturbations", chosen, "--difficulties", "1",
                                    "--workers", "0", "--quiet", "--db", str(tmp_path / "r.sqlite"), "--json",
                                    str(tmp_path / f"{source}.json"))
        assert result.returncode == 0, result.stderr
        summaries[source] = json.loads((tmp_path / f"{source}.json").read_text())["flip_probability"]
    for name, by_difficulty in summaries["generated"].items():
        value, released = by_difficulty["1"], summaries["imagenet-p"][name]["1"]
        assert abs(released - value) <= 0.05, (name, value, released)
    assert any(by_difficulty["1"] > 0 for by_difficulty in summaries["generated"].values())


@pytest.fixture
def imagenet_224_cifar_model(resnet20_file) -> str:
    """The pretrained CIFAR ResNet-20 looking at 224-px frames through a 32-px resize: a real,
    image-sensitive classifier for the 224-px ImageNet-P path (there are no ImageNet weights here)."""
    from torch import nn

    from robustbench_gcp.models import create_model
    from robustbench_gcp.models.registry import _ARCHITECTURES, register_model

    name = "test_cifar_resnet20_at_224"

    class Downsized(nn.Module):
        def __init__(self, reduction_dim=None, num_classes=10) -> None:
            super().__init__()
            self.net = create_model("CIFAR10_ResNet20_GAP", checkpoint=resnet20_file)

        def forward(self, images: torch.Tensor) -> torch.Tensor:
            small = torch.nn.functional.interpolate(images, size=32, mode="bilinear", antialias=True)
            return self.net(small)

    if name not in _ARCHITECTURES:
        register_model(name, family="test", head="gap", num_classes=10, input_size=224)(Downsized)
    return name


@pytest.mark.slow
def test_two_gloo_processes_count_like_one(photos, base, tmp_path):
    args = ["eval-perturbation", *base, "--data", str(photos), "--perturbations", "shot_noise,tilt,spatter",
            "--difficulties", "1,3", "--device", "cpu", "--chunk-size", "7"]
    single = run_cli_in_process(*args, "--db", str(tmp_path / "one.sqlite"))
    assert single.returncode == 0, single.stderr
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    launcher = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29541",
                "-m", "robustbench_gcp.cli", *args, "--db", str(tmp_path / "two.sqlite")]
    double = subprocess.run(launcher, capture_output=True, text=True, timeout=900, env=env)
    assert double.returncode == 0, double.stderr[-3000:]
    assert cells(tmp_path / "two.sqlite") == cells(tmp_path / "one.sqlite")
