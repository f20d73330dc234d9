"""Sweeps: planning the paper's table, merging many unit stores, and the overhead of one unit
on a local SLURM cluster.

- plan: the 40 released checkpoints × (ImageNet-C, ImageNet-P, AutoAttack on 5,000 images),
  without the files (target: under 2 s), in process and as the command;
- merge: synthetic stores holding 40 runs × 76 cells with 50,000-image masks, one cell in ten
  as two shards' parts, spread over 100, 200 and 400 stores (target: 400 in under 30 s);
- unit overhead (root only: it starts tools/local-slurm): from `sweep run --no-wait` to the
  unit's start and to its end, for a unit of 16 images.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from robustbench_gcp.corruptions import names  # noqa: E402
from robustbench_gcp.results import Cell, CellPart, ResultStore  # noqa: E402
from robustbench_gcp.summaries import pack_flags  # noqa: E402
from robustbench_gcp.sweep import merge_stores, plan, read_sweep  # noqa: E402

IMAGES = 50_000


def bench_plan(folder: Path) -> None:
    env = {"GCP_CHECKPOINTS": str(folder / "ckpt"), "IMAGENET_VAL": str(folder / "val"),
           "IMAGENET_C": str(folder / "c"), "IMAGENET_P": str(folder / "p")}
    os.environ.update(env)
    sweep_file = ROOT / "examples" / "paper-table.toml"
    start = time.perf_counter()
    units = plan(read_sweep(sweep_file))
    inside = time.perf_counter() - start
    start = time.perf_counter()
    shown = subprocess.run([sys.executable, "-m", "robustbench_gcp.cli", "sweep", "plan", str(sweep_file)],
                           capture_output=True, text=True, env={**os.environ, **env}, check=True).stdout
    command = time.perf_counter() - start
    total = next(line for line in shown.splitlines() if "GPU-hours" in line)
    print(f"plan of the paper's table: {len(units)} units in {inside:.3f} s in process, {command:.2f} s as the "
          f"command (with its imports); {total}")


def _stores(folder: Path, count: int, rng: np.random.Generator) -> list[Path]:
    """``count`` stores with 40 runs × 76 cells between them, one cell in ten as two parts."""
    cells = ["clean"] + [f"{n}/{s}" for n in names("common") for s in range(1, 6)]
    paths = [folder / f"store{k}.sqlite" for k in range(count)]
    stores = [ResultStore(p) for p in paths]
    half = np.zeros(IMAGES, dtype=bool)
    half[: IMAGES // 2] = True
    slot = 0
    for r in range(40):
        config = {"model": f"model{r}", "dataset_size": IMAGES, "limit": None, "seed": 0}
        for c, cell in enumerate(cells):
            name, _, level = cell.partition("/")
            correct = rng.random(IMAGES) < 0.6
            mask = pack_flags(correct)
            if (r * 76 + c) % 10 == 0:
                for covered in (half, ~half):
                    store = stores[slot % count]
                    slot += 1
                    store.add_part(store.run("corruption", f"model{r}", config), CellPart(
                        name, level or "0", int(covered.sum()), int((covered & ~correct).sum()), 0, 0,
                        pack_flags(covered & correct), pack_flags(covered)))
            else:
                store = stores[slot % count]
                slot += 1
                store.add_cell(store.run("corruption", f"model{r}", config),
                               Cell(name, level or "0", IMAGES, int((~correct).sum()), 0, 0, mask))
    return paths


def bench_merge(folder: Path) -> None:
    rng = np.random.default_rng(0)
    for count in (100, 200, 400):
        sub = folder / f"merge{count}"
        sub.mkdir()
        paths = _stores(sub, count, rng)
        target = sub / "merged.sqlite"
        start = time.perf_counter()
        report = merge_stores(paths, target)
        seconds = time.perf_counter() - start
        start = time.perf_counter()
        merge_stores(paths, target)
        again = time.perf_counter() - start
        print(f"merge of {count} stores: {seconds:.1f} s ({report.cells_added} cells, {report.cells_from_parts} "
              f"joined from parts, {target.stat().st_size / 2**20:.0f} MiB); again (nothing new): {again:.1f} s")


def bench_unit_overhead(folder: Path) -> None:
    from slurm_cluster import cluster_unavailable_reason, start_local_slurm

    reason = cluster_unavailable_reason()
    if reason:
        print(f"unit overhead on SLURM: not measured ({reason})")
        return
    data = Path(os.environ.get("ROBUSTBENCH_GCP_TEST_DATA", ROOT.parent / "shared" / "data"))
    sweep_file = folder / "one.toml"
    sweep_file.write_text(
        f'checkpoint_dir = "{data / "cifar10_resnet_akamaster"}"\nworkers = 0\nprecision = "fp32"\n\n'
        f'[[model]]\nrecord = "CIFAR10_ResNet20_GAP"\n\n[[evaluation]]\nkind = "corruption"\n'
        f'data = "{data / "cifar10_test_jpg" / "test"}"\ncorruptions = ["fog"]\nseverities = [1]\nlimit = 16\n')
    with start_local_slurm(folder / "slurm") as cluster:
        env = cluster.environ()
        out = folder / "sweep"
        start = time.time()
        subprocess.run([sys.executable, "-m", "robustbench_gcp.cli", "sweep", "run", str(sweep_file), "--out",
                        str(out), "--no-wait", "--gpus-per-unit", "0", "--cpus-per-unit", "1"], env=env, check=True,
                       capture_output=True)
        submitted = time.time()
        states = out / "units"
        while True:
            found = [json.loads(p.read_text()) for p in states.glob("*/state.json")] if states.exists() else []
            if found and found[0]["state"] in ("done", "failed"):
                break
            time.sleep(0.2)
        state = found[0]
        print(f"unit overhead on the local SLURM: `sweep run` (checks, plan, sbatch) {submitted - start:.1f} s; "
              f"submission to the unit's start {state['started'] - submitted:.1f} s; to its end (16 images, "
              f"model loaded) {state['time'] - submitted:.1f} s; {state['state']}")


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        bench_plan(folder)
        bench_merge(folder)
        bench_unit_overhead(folder)
    with sqlite3.connect(":memory:") as db:
        print(f"(SQLite {db.execute('select sqlite_version()').fetchone()[0]})")


if __name__ == "__main__":
    main()
