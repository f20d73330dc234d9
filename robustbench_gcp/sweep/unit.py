"""One work unit run in process, and the record of its state beside its own store.

A sweep's folder holds the plan and one folder per unit (``units/ID``) with the unit's SQLite
store and ``state.json``: running (with host, job and pid), done, or failed (with the error's
last line). The state is written by the unit itself, so ``sweep status`` does not depend on
the scheduler's accounting (sacct), which many clusters restrict. No store is written by two
jobs: each unit has its own, and a requeued unit resumes from its stored parts.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from pathlib import Path

from ..fileio import atomic_write_text
from .plan import WorkUnit, find_unit
from .spec import SweepError

PLAN = "plan.json"
STORE = "store.sqlite"
STATE = "state.json"
LOG = "unit.log"


def unit_folder(out: Path, unit_id: str) -> Path:
    return Path(out) / "units" / unit_id


def write_plan(out: Path, sweep_file: Path, units: list[WorkUnit]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    text = json.dumps({"sweep": str(Path(sweep_file).resolve()), "units": [u.as_dict() for u in units]}, indent=1)
    atomic_write_text(out / PLAN, text + "\n")


def read_plan(out: Path) -> list[WorkUnit]:
    path = Path(out) / PLAN
    if not path.is_file():
        raise SweepError(f"{out} holds no sweep ({PLAN} is missing); start one with `gcp-robust sweep run SWEEP.toml "
                         f"--out {out}`")
    return [WorkUnit(**unit) for unit in json.loads(path.read_text())["units"]]


def read_state(out: Path, unit_id: str) -> dict:
    path = unit_folder(out, unit_id) / STATE
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def write_state(out: Path, unit_id: str, state: str, **fields) -> None:
    """The unit's state, with the time, and how often SLURM restarted its job (requeues)."""
    folder = unit_folder(out, unit_id)
    folder.mkdir(parents=True, exist_ok=True)
    record = {"state": state, "time": time.time(), "restarts": int(os.environ.get("SLURM_RESTART_COUNT", "0")),
              **fields}
    atomic_write_text(folder / STATE, json.dumps(record, sort_keys=True) + "\n")


def _job_id() -> str | None:
    array, task = os.environ.get("SLURM_ARRAY_JOB_ID"), os.environ.get("SLURM_ARRAY_TASK_ID")
    return f"{array}_{task}" if array and task else os.environ.get("SLURM_JOB_ID")


def _threads() -> None:
    """As many torch threads as the job was given cores (SLURM_CPUS_PER_TASK), not the node's."""
    import torch

    cores = os.environ.get("SLURM_CPUS_PER_TASK") or os.environ.get("OMP_NUM_THREADS")
    if cores and cores.isdigit():
        torch.set_num_threads(int(cores))


def run_unit(out: Path, unit_id: str) -> str:
    """Run (or resume) one unit of the sweep in ``out``; its state says how it ended. An
    exception marks it failed; an interruption (a signal, a requeue) leaves it running, and
    ``sweep status`` asks the scheduler whether it still is."""
    out = Path(out)
    unit = find_unit(read_plan(out), unit_id)
    _threads()
    started = time.time()
    write_state(out, unit_id, "running", started=started, host=socket.gethostname(), job=_job_id(),
                pid=os.getpid())
    try:
        _evaluate(unit.config(unit_folder(out, unit_id) / STORE))
    except Exception as error:
        lines = [line for line in str(error).splitlines() if line.strip()] or [""]
        write_state(out, unit_id, "failed", started=started, error=f"{type(error).__name__}: {lines[-1]}",
                    host=socket.gethostname(), job=_job_id())
        raise
    write_state(out, unit_id, "done", started=started, finished=time.time(), host=socket.gethostname(),
                job=_job_id())
    return unit_id


def _evaluate(config) -> None:
    from ..evaluate.attack import AttackEvalConfig, evaluate_attacks
    from ..evaluate.corruption import CorruptionEvalConfig, evaluate_corruptions
    from ..evaluate.perturbation import evaluate_perturbations

    if isinstance(config, CorruptionEvalConfig):
        evaluate_corruptions(config, progress=False)
    elif isinstance(config, AttackEvalConfig):
        evaluate_attacks(config, progress=False)
    else:
        evaluate_perturbations(config, progress=False)


if __name__ == "__main__":  # the local executor's processes: python -m robustbench_gcp.sweep.unit OUT ID
    run_unit(Path(sys.argv[1]), sys.argv[2])
