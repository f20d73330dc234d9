"""`gcp-robust eval-shift` on small trees in the released layouts of ImageNet-A, -R, -Sketch and
V2, built from real ImageNet validation photos: A and R scored over their 200 classes, V2's
folders read as class indices, mismatched layouts refused in one line, GAP and GCP paired,
and a killed run resumed to the same counts."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import time
from types import SimpleNamespace

import pytest
import torch
from conftest import run_cli_in_process, stored_cells
from shift_trees import build_tree, build_val, photos_of
from torch import nn
from torchvision.datasets import ImageFolder

from robustbench_gcp.data.folders import eval_transform
from robustbench_gcp.data.shifts import scored_outputs, wnids
from robustbench_gcp.data.sources import ImageFiles
from robustbench_gcp.evaluate import shift as shift_eval
from robustbench_gcp.results import ResultStore


def image_key(images: torch.Tensor) -> torch.Tensor:
    """A per-image number the oracle recognises a photo by (its pixel sum, exact in float64)."""
    return (images * 255).round().double().sum(dim=(1, 2, 3)).long()


class Oracle(nn.Module):
    """Knows every photo's true class and ranks the classes as ``rank(label)`` says: a stand-in
    model whose decisions are known in advance."""

    def __init__(self, labels: dict[int, int], rank) -> None:
        super().__init__()
        self.labels, self.rank = labels, rank
        self.architecture = SimpleNamespace(input_size=224)
        self.classifier = nn.Linear(1, 1000)  # what the evaluation reads the class count from

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return torch.stack([self.rank(self.labels[int(key)]) for key in image_key(images)])


def oracle_for(photos, rank) -> Oracle:
    files = ImageFiles([(str(path), label) for path, label in photos], eval_transform(224), 224)
    keys = image_key(torch.stack([files[i][0] for i in range(len(files))]).float() / 255)
    assert len(set(keys.tolist())) == len(photos)
    return Oracle(dict(zip(keys.tolist(), (label for _, label in photos))), rank)


def eval_shift(tmp_path, *args: str, db: str = "r.sqlite"):
    return run_cli_in_process("eval-shift", "--model", "resnet50_gap", "--workers", "0", "--quiet",
                              "--batch-size", "8", "--db", str(tmp_path / db), *args)


def cells_of_run(db, run_id: int) -> dict:
    store = ResultStore(db)
    cells = store.cells(store.get(run_id))
    return {key: (c.n, c.top1_errors, c.top5_errors, c.skipped, c.mask) for key, c in cells.items()}


@pytest.mark.parametrize("source", ["imagenet-a", "imagenet-r"])
def test_a_and_r_are_scored_over_their_200_classes(source, tmp_path, monkeypatch):
    shifted, clean = photos_of(source, 16), photos_of(source, 12, skip=40)
    tree, val = build_tree(tmp_path / source, source, shifted), build_val(tmp_path / "val", clean)
    inside = set(scored_outputs(source))
    build_val(val, [p for p in photos_of("imagenet-sketch", 100) if p[1] not in inside][:6])  # not in the clean set
    outside = [c for c in range(1000) if c not in inside]

    def third_of_the_200(label: int) -> torch.Tensor:
        """The five highest logits are classes outside the 200; within them the truth is third."""
        logits = torch.zeros(1000)
        logits[outside[:5]] = torch.tensor([105.0, 104, 103, 102, 101])
        others = [c for c in sorted(inside) if c != label][:2]
        logits[others] = torch.tensor([60.0, 55])
        logits[label] = 50
        return logits

    def first_of_the_200(label: int) -> torch.Tensor:
        logits = third_of_the_200(label)
        logits[label] = 70
        return logits

    for name, rank, top1, top5 in (("third", third_of_the_200, 100.0, 0.0), ("first", first_of_the_200, 0.0, 0.0)):
        monkeypatch.setattr(shift_eval, "load_eval_model", lambda *a, rank=rank: oracle_for(shifted + clean, rank))
        result = eval_shift(tmp_path, "--source", source, "--data", str(tree), "--clean-data", str(val),
                            "--json", str(tmp_path / f"{name}.json"), db=f"{name}.sqlite")
        assert result.returncode == 0, result.stderr
        summary = json.loads((tmp_path / f"{name}.json").read_text())
        assert (summary["n"], summary["clean_n"], summary["classes"]) == (16, 12, 200)
        # over all 1,000 outputs every photo would be wrong, even in the top 5
        assert (summary["top1_error"], summary["top5_error"]) == (top1, top5), name
        assert (summary["clean_error"], summary["clean_top5_error"]) == (top1, top5), name


def test_sketch_and_v2_map_their_folders_to_the_right_outputs(tmp_path, monkeypatch):
    photos = photos_of("imagenetv2", 20)

    def truth_first(label: int) -> torch.Tensor:
        logits = torch.arange(1000, dtype=torch.float32) / 1000
        logits[label] = 10
        return logits

    monkeypatch.setattr(shift_eval, "load_eval_model", lambda *a: oracle_for(photos, truth_first))
    v2 = build_tree(tmp_path / "imagenetv2-threshold0.7-format-val", "imagenetv2", photos)
    folder = str(photos[0][1])  # an ImageFolder would give folder "472" the label of its place in string order
    assert ImageFolder(str(v2), allow_empty=True).class_to_idx[folder] != int(folder)
    for source, tree, extra in (("imagenetv2", v2, ["--variant", "threshold0.7"]),
                                ("imagenet-sketch", build_tree(tmp_path / "sketch", "imagenet-sketch", photos), [])):
        result = eval_shift(tmp_path, "--source", source, "--data", str(tree), *extra,
                            "--json", str(tmp_path / f"{source}.json"))
        assert result.returncode == 0, result.stderr
        summary = json.loads((tmp_path / f"{source}.json").read_text())
        assert (summary["n"], summary["classes"], summary["top1_error"]) == (20, 1000, 0.0), source
    assert json.loads((tmp_path / "imagenetv2.json").read_text())["shift"] == "imagenetv2-threshold0.7"


def refusal(tmp_path, *args: str) -> str:
    result = eval_shift(tmp_path, *args)
    assert result.returncode == 2, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert not (tmp_path / "r.sqlite").exists()  # refused before anything is stored
    return lines[0]


def test_mismatched_layouts_are_refused_in_one_line(tmp_path):
    photos = photos_of("imagenet-a", 4)
    a = build_tree(tmp_path / "imagenet-a", "imagenet-a", photos)
    v2 = build_tree(tmp_path / "v2", "imagenetv2", photos)
    r = build_tree(tmp_path / "imagenet-r", "imagenet-r", photos_of("imagenet-r", 4))
    sketch = build_tree(tmp_path / "ImageNet-Sketch" / "sketch", "imagenet-sketch", photos)
    assert "holds 1000 class folders named 0 to 999 (the ImageNetV2 layout)" in refusal(
        tmp_path, "--source", "imagenet-a", "--data", str(v2))
    assert "pass --source imagenet-r" in refusal(tmp_path, "--source", "imagenet-a", "--data", str(r))
    assert "pass --source imagenet-sketch" in refusal(tmp_path, "--source", "imagenetv2", "--data", str(sketch))
    assert f"did you mean --data {sketch}" in refusal(tmp_path, "--source", "imagenet-sketch", "--data",
                                                      str(sketch.parent))
    assert "--variant threshold0.7 is one of ImageNetV2's" in refusal(
        tmp_path, "--source", "imagenet-a", "--data", str(a), "--variant", "threshold0.7")
    (a / wnids("imagenet-a")[-1]).rename(a / "n99999999")  # an unknown WordNet id
    assert "class folders ['n99999999'] are not ImageNet-A classes" in refusal(
        tmp_path, "--source", "imagenet-a", "--data", str(a))
    (a / "n99999999").rmdir()  # one class missing
    assert f"has 199 class folders where ImageNet-A has 200 (named by WordNet ids); {wnids('imagenet-a')[-1]}" in \
        refusal(tmp_path, "--source", "imagenet-a", "--data", str(a))
    assert "outputs 10 classes" in run_cli_in_process(
        "eval-shift", "--model", "cifar_resnet20_gap", "--source", "imagenet-r", "--data", str(r), "--db",
        str(tmp_path / "r.sqlite"), "--quiet").stderr
    assert "does not exist" in refusal(tmp_path, "--source", "imagenet-r", "--data", str(r), "--clean-data",
                                       str(tmp_path / "no-val"))


@pytest.fixture
def paired_tree(tmp_path):
    tree = build_tree(tmp_path / "imagenet-a", "imagenet-a", photos_of("imagenet-a", 16))
    val = build_val(tmp_path / "val", photos_of("imagenet-a", 12, skip=60))
    return ["--source", "imagenet-a", "--data", str(tree), "--clean-data", str(val), "--model"]


def test_gap_and_gcp_pair_on_a_built_tree_and_a_killed_run_resumes_to_the_same_counts(paired_tree, tmp_path,
                                                                                       monkeypatch):
    for model in ("mobilenet_v2_gap", "mobilenet_v2_gcp"):
        result = eval_shift(tmp_path, *paired_tree, model, "--json", str(tmp_path / f"{model}.json"),
                            "--trend", "imagenet-a=1.0,-2.0")
        assert result.returncode == 0, result.stderr
    summary = json.loads((tmp_path / "mobilenet_v2_gcp.json").read_text())
    assert summary["trend"]["source"] == "given with --trend" and summary["effective_robustness"] is not None
    table = run_cli_in_process("table", "--db", str(tmp_path / "r.sqlite"), "--pairs", "--trend", "imagenet-a=1,-2")
    assert table.returncode == 0, table.stderr
    rows = [line for line in table.stdout.splitlines() if line.startswith("| ")]
    assert [row.split("|")[1].strip() for row in rows[1:]] == [
        "mobilenet_v2_gap · imagenet-a", "mobilenet_v2_gcp · imagenet-a", "Δ GCP − GAP"]
    assert all(cell.strip() for cell in rows[-1].split("|")[2:-1])  # a difference in every column
    compared = run_cli_in_process("compare", "--db", str(tmp_path / "r.sqlite"), "--run", "1", "--run", "2")
    assert "12 images (clean)" in compared.stdout and "16 images (imagenet-a)" in compared.stdout, compared.stdout

    written, real_add_part = [], ResultStore.add_part

    def add_part_then_die(self, run, part):
        real_add_part(self, run, part)
        written.append(part)
        if len(written) == 3:  # the clean set done, the shifted set half-way
            raise KeyboardInterrupt

    monkeypatch.setattr(ResultStore, "add_part", add_part_then_die)
    killed = [*paired_tree, "mobilenet_v2_gap", "--chunk-size", "8"]
    with pytest.raises(KeyboardInterrupt):
        eval_shift(tmp_path, *killed, db="killed.sqlite")
    monkeypatch.setattr(ResultStore, "add_part", real_add_part)
    assert len(stored_cells(tmp_path / "killed.sqlite")) == 1
    assert eval_shift(tmp_path, *killed[:-1], "16", db="killed.sqlite").returncode == 0  # another chunk size
    assert cells_of_run(tmp_path / "killed.sqlite", 1) == cells_of_run(tmp_path / "r.sqlite", 1)
    with sqlite3.connect(tmp_path / "killed.sqlite") as db:
        assert db.execute("SELECT COUNT(*) FROM parts").fetchone()[0] == 0


@pytest.mark.slow  # whole CLI processes killed for real: `tox -e slow` and CI
def test_a_killed_process_resumes_to_the_same_counts(paired_tree, tmp_path):
    def cli(db: str) -> list[str]:
        return [sys.executable, "-m", "robustbench_gcp.cli", "eval-shift", *paired_tree, "mobilenet_v2_gap",
                "--workers", "0", "--quiet", "--batch-size", "4", "--chunk-size", "4", "--db", str(tmp_path / db)]

    assert subprocess.run(cli("whole.sqlite"), capture_output=True, timeout=600).returncode == 0
    process = subprocess.Popen(cli("killed.sqlite"))
    deadline = time.time() + 300
    while time.time() < deadline and process.poll() is None:
        if (tmp_path / "killed.sqlite").exists() and len(stored_cells(tmp_path / "killed.sqlite")) >= 1:
            break
        time.sleep(0.05)
    process.kill()
    process.wait()
    assert len(stored_cells(tmp_path / "killed.sqlite")) < 2, "the kill should land mid-run"
    assert subprocess.run(cli("killed.sqlite"), capture_output=True, timeout=600).returncode == 0
    assert stored_cells(tmp_path / "killed.sqlite") == stored_cells(tmp_path / "whole.sqlite")
