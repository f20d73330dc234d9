"""Our own numbers must not move by accident: the pretrained CIFAR ResNet-20 on a fixed subset of
the real CIFAR-10 test images, every benchmark corruption at severities 1, 3, 5 (cifar10-c) and
native L-inf PGD at two budgets, against the committed baseline, cell by cell: counts and a digest
of the per-image outcomes. Runs are deterministic, so any difference is a change in what we
compute: review it, and if it is deliberate, record the new baseline with

    python tests/test_regression_gate.py        # rewrites tests/baselines/cifar10_resnet20.json

and say in the change which numbers moved, by how much and why.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import sys
from pathlib import Path

import pytest

BASELINE = Path(__file__).resolve().parent / "baselines" / "cifar10_resnet20.json"
IMAGES, SEVERITIES, EPS, STEPS = 300, (1, 3, 5), "1/255,2/255", 10


def measure(workdir: Path, data: Path, checkpoint: Path, corruptions: list[str] | None = None,
            severities: tuple[int, ...] = SEVERITIES, attack: bool = True) -> dict[str, list]:
    """Every cell of the gate: {kind:name/level: [n, top-1 errors, top-5 errors, outcomes digest]}."""
    from robustbench_gcp.attacks import parse_epsilons
    from robustbench_gcp.corruptions import names
    from robustbench_gcp.evaluate.attack import AttackEvalConfig, evaluate_attacks
    from robustbench_gcp.evaluate.corruption import CorruptionEvalConfig, evaluate_corruptions

    common = dict(model="CIFAR10_ResNet20_GAP", checkpoint=checkpoint, data=data, limit=IMAGES, seed=0, workers=0,
                  batch_size=IMAGES)
    evaluate_corruptions(CorruptionEvalConfig(**common, protocol="cifar10-c", severities=list(severities),
                                              corruptions=corruptions or names("common"), db=workdir / "c.sqlite"),
                         progress=False)
    databases = {"corruption": workdir / "c.sqlite"}
    if attack:
        evaluate_attacks(AttackEvalConfig(**common, attacks=["linf-pgd"], eps=parse_epsilons(EPS), steps=STEPS,
                                          db=workdir / "a.sqlite"), progress=False)
        databases["attack"] = workdir / "a.sqlite"
    cells = {}
    for kind, db in databases.items():
        with sqlite3.connect(db) as connection:
            for name, level, n, top1, top5, mask in connection.execute(
                    "SELECT name, level, n, top1_errors, top5_errors, mask FROM cells ORDER BY name, level"):
                cells[f"{kind}:{name}/{level}"] = [n, top1, top5, hashlib.sha256(mask).hexdigest()[:16]]
    return cells


def _baseline() -> dict[str, list]:
    if not BASELINE.is_file():
        pytest.fail(f"{BASELINE} is missing; record it with `python tests/test_regression_gate.py`")
    return json.loads(BASELINE.read_text())["cells"]


def test_our_numbers_have_not_moved(tmp_path, cifar_test_dir, resnet20_file):
    expected, found = _baseline(), measure(tmp_path, cifar_test_dir, resnet20_file)
    moved = {key: (expected.get(key), found.get(key)) for key in sorted(set(expected) | set(found))
             if expected.get(key) != found.get(key)}
    assert not moved, "cells moved (baseline → now): " + "; ".join(f"{k}: {a} → {b}" for k, a, b in
                                                                   ((k, *v) for k, v in list(moved.items())[:10]))


def test_the_gate_sees_a_nudged_corruption_parameter(tmp_path, monkeypatch, cifar_test_dir, resnet20_file):
    from robustbench_gcp.corruptions.params import PARAMETERS

    contrast = list(PARAMETERS["cifar10-c"]["contrast"])
    contrast[2] += 0.02  # severity 3: 0.40 → 0.42
    monkeypatch.setitem(PARAMETERS["cifar10-c"], "contrast", tuple(contrast))
    found = measure(tmp_path, cifar_test_dir, resnet20_file, corruptions=["contrast"], severities=(3,), attack=False)
    assert found["corruption:contrast/3"] != _baseline()["corruption:contrast/3"]
    assert found["corruption:clean/0"] == _baseline()["corruption:clean/0"]  # the rest did not move


if __name__ == "__main__":
    import tempfile

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from conftest import DATA_ROOT

    with tempfile.TemporaryDirectory() as folder:
        cells = measure(Path(folder), DATA_ROOT / "cifar10_test_jpg" / "test",
                        DATA_ROOT / "cifar10_resnet_akamaster" / "resnet20-12fca82f.th")
    BASELINE.parent.mkdir(exist_ok=True)
    what = (f"CIFAR10_ResNet20_GAP, {IMAGES} CIFAR-10 test images (seed 0), 15 corruptions x severities "
            f"{SEVERITIES} (cifar10-c), native linf-pgd {STEPS} steps at {EPS}; [n, top-1 errors, top-5 errors, "
            "sha256 of the per-image outcomes]")
    lines = ",\n".join(f"  {json.dumps(key)}: {json.dumps(value)}" for key, value in sorted(cells.items()))
    BASELINE.write_text(f'{{"what": {json.dumps(what)},\n "cells": {{\n{lines}\n}}}}\n')  # a line per cell
    print(f"wrote {BASELINE} ({len(cells)} cells)")
