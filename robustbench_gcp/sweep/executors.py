"""Where units run: a SLURM job array through submitit, or local processes.

SLURM: one array task per unit, submitted by submitit with its timeout signal (USR2 before the
time limit or on preemption): the task then requeues itself and resumes from its store, losing
at most the chunk in flight. Local: the units as processes on this machine, one per GPU (each
sees one through CUDA_VISIBLE_DEVICES) or N at a time on the CPU, each with its share of cores.
Either way a unit writes only its own store, and which job runs which unit is recorded in
``jobs.json`` (job id, log file) for ``sweep status``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from ..fileio import atomic_write_text
from .spec import SweepError
from .unit import LOG, run_unit, unit_folder

JOBS = "jobs.json"


@dataclass
class SlurmOptions:
    """What sbatch is told for each unit (``extra``: further sbatch options, name → value)."""

    partition: str | None = None
    gpus_per_unit: int = 1
    cpus_per_unit: int | None = None
    time_minutes: int = 240
    mem: str | None = None
    array_parallelism: int = 64
    extra: dict[str, str] = field(default_factory=dict)


def read_jobs(out: Path) -> dict[str, dict]:
    path = Path(out) / JOBS
    return json.loads(path.read_text()) if path.is_file() else {}


def _record_jobs(out: Path, jobs: dict[str, dict]) -> None:
    atomic_write_text(Path(out) / JOBS, json.dumps({**read_jobs(out), **jobs}, indent=1, sort_keys=True) + "\n")


class UnitTask:
    """The callable each array task runs; submitit requeues it (same arguments) on timeout or
    preemption, and the unit resumes from its store."""

    def __call__(self, out: str, unit_id: str) -> str:
        return run_unit(Path(out), unit_id)

    def checkpoint(self, out: str, unit_id: str):
        import submitit

        return submitit.helpers.DelayedSubmission(self, out, unit_id)


def submit_slurm(out: Path, unit_ids: list[str], options: SlurmOptions) -> dict[str, str]:
    """Submit the units as one job array; unit id → SLURM job id."""
    try:
        import submitit
    except ImportError:
        raise SweepError("--executor slurm needs submitit: pip install 'robustbench-gcp[cluster]'") from None
    executor = submitit.SlurmExecutor(folder=Path(out) / "slurm" / "%j", max_num_timeout=20)
    parameters = dict(job_name="gcp-robust-sweep", time=options.time_minutes,
                      array_parallelism=options.array_parallelism, additional_parameters=dict(options.extra))
    if options.partition:
        parameters["partition"] = options.partition
    if options.gpus_per_unit:
        parameters["gpus_per_node"] = options.gpus_per_unit
    if options.cpus_per_unit:
        parameters["cpus_per_task"] = options.cpus_per_unit
    if options.mem:
        parameters["mem"] = options.mem
    executor.update_parameters(**parameters)
    try:
        jobs = executor.map_array(UnitTask(), [str(out)] * len(unit_ids), unit_ids)
    except (subprocess.CalledProcessError, FileNotFoundError, submitit.core.utils.FailedJobError) as error:
        raise SweepError(f"sbatch refused the array: {str(error).strip().splitlines()[-1]}") from None
    submitted = {unit: {"executor": "slurm", "job": job.job_id, "log": str(job.paths.stderr)}
                 for unit, job in zip(unit_ids, jobs)}
    _record_jobs(out, submitted)
    return {unit: job["job"] for unit, job in submitted.items()}


def run_local(out: Path, unit_ids: list[str], processes: int, gpus: int) -> dict[str, int]:
    """Run the units as processes on this machine, ``gpus`` at a time one per GPU, else
    ``processes`` at a time on the CPU; unit id → exit code."""
    slots = list(range(gpus)) if gpus else list(range(processes))
    cores = max(1, (os.cpu_count() or 1) // len(slots))
    free = list(slots)

    def run(unit_id: str) -> int:
        slot = free.pop()
        env = {**os.environ, "OMP_NUM_THREADS": str(cores)}
        if gpus:
            env["CUDA_VISIBLE_DEVICES"] = str(slot)
        log = unit_folder(out, unit_id) / LOG
        log.parent.mkdir(parents=True, exist_ok=True)
        try:
            with open(log, "ab") as stream:
                return subprocess.run([sys.executable, "-m", "robustbench_gcp.sweep.unit", str(out), unit_id],
                                      env=env, stdout=stream, stderr=subprocess.STDOUT, check=False).returncode
        finally:
            free.append(slot)

    _record_jobs(out, {u: {"executor": "local", "job": None, "log": str(unit_folder(out, u) / LOG)}
                       for u in unit_ids})
    with ThreadPoolExecutor(len(slots)) as pool:
        return dict(zip(unit_ids, pool.map(run, unit_ids)))
