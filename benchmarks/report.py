"""The HTML report of a paper-sized store: 40 corruption runs × 76 cells (the 20 GAP/GCP twin pairs
of the released checkpoints, ImageNet-C on an n-image subset) and 40 AutoAttack runs (4 stages ×
2 ε), written from a synthetic store on the CPU.

Target: under 5 s for the page (`report_data` and the rendering, figures included; not the
imports) and under 5 MB. The time is given next to that of `table --format json` on the same
runs, which computes the same record without the page.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from robustbench_gcp.corruptions import names
from robustbench_gcp.models import list_checkpoints
from robustbench_gcp.report.document import KINDS, report_data
from robustbench_gcp.report.html import write_report
from robustbench_gcp.report.runs import select_runs
from robustbench_gcp.results import Cell, ResultStore
from robustbench_gcp.summaries import pack_flags


def _cell(name: str, level: str, correct: np.ndarray) -> Cell:
    return Cell(name, level, len(correct), int((~correct).sum()), int((~correct).sum()) // 3, 0, pack_flags(correct))


def build(path: Path, images: int, rng: np.random.Generator) -> ResultStore:
    """The 40 seed checkpoints with a corruption and an attack run each."""
    store = ResultStore(path)
    models = [r.name for r in list_checkpoints() if r.dataset == "imagenet"]
    base = {"dataset": "/data/imagenet/val", "dataset_size": 50_000, "limit": images, "seed": 0, "input_size": 224,
            "model_classes": 1000, "class_index_sha256": None}
    for model in models:
        error = 0.25 + 0.1 * rng.random()
        config = {**base, "model": model, "checkpoint_sha256": f"{model:0<64}"[:64]}
        run = store.run("corruption", model, {**config, "protocol": "imagenet-c", "source": "generated"})
        store.add_cell(run, _cell("clean", "0", rng.random(images) > error))
        for name in names("common"):
            for severity in range(1, 6):
                store.add_cell(run, _cell(name, str(severity), rng.random(images) > error + 0.1 * severity))
        run = store.run("attack", model, {**config, "norm": "linf", "steps": None, "queries": 5000, "restarts": 1})
        store.add_cell(run, _cell("clean", "0", rng.random(images) > error))
        for eps in ("1/255", "4/255"):
            robust = rng.random(images) > 0.6
            for stage in ("apgd-ce", "apgd-t", "fab-t", "square"):
                robust &= rng.random(images) > 0.05
                store.add_cell(run, _cell(f"autoattack/{stage}", eps, robust))
    return store


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=5000, help="images per run (RobustBench's ImageNet subset)")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as folder:
        store = build(Path(folder) / "store.sqlite", args.images, rng)
        chosen = {kind: select_runs(store, kind) for kind in KINDS}
        start = time.perf_counter()
        data = report_data(store, chosen)
        record = time.perf_counter() - start
        start = time.perf_counter()
        out = write_report(data, store, chosen, Path(folder) / "report.html")
        page = time.perf_counter() - start
        size = out.stat().st_size
    runs = sum(len(runs) for runs in chosen.values())
    print(f"report of {runs} runs ({len(data['pairs'])} GAP/GCP pairs, {args.images} images each): the record "
          f"(= table --format json) {record:.2f} s, the page {page:.2f} s, {record + page:.2f} s in all "
          f"(target: under 5 s); {size / 1e6:.2f} MB (target: under 5 MB)")


if __name__ == "__main__":
    main()
