"""``sweep run``: check everything, plan, submit what is neither finished nor running, wait,
merge. Run it again after a failure, a cancellation or a change of the sweep file: the units
already done are found by their ids and only the rest is submitted."""

from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..choices import EXECUTORS
from ..errors import Error
from ..models import create_model
from .executors import SlurmOptions, run_local, submit_slurm
from .merge import MergeReport, merge_stores
from .plan import plan
from .spec import Sweep, SweepError, missing_paths, read_sweep
from .status import UnitStatus, sweep_status
from .unit import STORE, unit_folder, write_plan

MERGED = "merged.sqlite"


@dataclass
class RunOptions:
    executor: str = "slurm"
    max_unit_minutes: float = 60.0
    device_kind: str = "h200"
    slurm: SlurmOptions = field(default_factory=SlurmOptions)
    processes: int = 1  # local units at once on the CPU
    gpus: int = 0  # local: one unit per GPU (0: on the CPU)
    wait: bool = True
    poll_s: float = 10.0

    def check(self) -> None:
        """Counts and times that would misbehave later (a NaN poll, no process at all): refused now."""
        if self.executor not in EXECUTORS:
            raise SweepError(f"--executor {self.executor!r}: choose one of {', '.join(EXECUTORS)}")
        if not (math.isfinite(self.poll_s) and self.poll_s > 0):
            raise SweepError(f"--poll {self.poll_s:g}: pass a positive number of seconds")
        counts = {"--processes": (self.processes, 1), "--gpus": (self.gpus, 0),
                  "--gpus-per-unit": (self.slurm.gpus_per_unit, 0), "--time": (self.slurm.time_minutes, 1),
                  "--array-parallelism": (self.slurm.array_parallelism, 1),
                  "--cpus-per-unit": (self.slurm.cpus_per_unit or 1, 1)}
        for option, (value, least) in counts.items():
            if value < least:
                raise SweepError(f"{option} {value}: pass {least} or more")


@dataclass
class SweepOutcome:
    submitted: list[str]
    status: list[UnitStatus]
    merged: MergeReport | None = None


def check_checkpoints(sweep: Sweep) -> None:
    """Each checkpoint loads into its model: refused before anything is submitted."""
    for model in sweep.models:
        if model.checkpoint is None:
            continue
        try:
            create_model(model.model, num_classes=model.num_classes, checkpoint=model.checkpoint)
        except Error as error:
            raise SweepError(f"{sweep.path}: {model.model}: {error}") from None


def run_sweep(sweep_file: Path, out: Path, options: RunOptions) -> SweepOutcome:
    options.check()
    sweep = read_sweep(sweep_file)
    missing = missing_paths(sweep)
    if missing:
        more = f" (and {len(missing) - 1} more; `gcp-robust sweep plan` lists them)" if len(missing) > 1 else ""
        raise SweepError(f"{sweep_file}: missing {missing[0]}{more}")
    check_checkpoints(sweep)
    units = plan(sweep, options.max_unit_minutes, options.device_kind)
    out = Path(out)
    write_plan(out, sweep_file, units)
    todo = [s.unit.id for s in sweep_status(out) if s.state != "done" and not s.queued and s.state != "running"]
    if todo and options.executor == "slurm":
        submit_slurm(out, todo, options.slurm)
    elif todo:
        run_local(out, todo, options.processes, options.gpus)
    status = wait_for(out, options.poll_s) if options.wait else sweep_status(out)
    merged = None
    if all(s.state == "done" for s in status):
        merged = merge_stores([unit_folder(out, s.unit.id) / STORE for s in status], out / MERGED)
    return SweepOutcome(todo, status, merged)


def wait_for(out: Path, poll_s: float) -> list[UnitStatus]:
    """Poll until no unit is pending in the queue or running; a line on stderr when it changes."""
    last = ""
    while True:
        status = sweep_status(out)
        counts = {state: sum(s.state == state for s in status) for state in ("done", "running", "pending", "failed")}
        line = ", ".join(f"{n} {state}" for state, n in counts.items() if n)
        if line != last:
            print(f"gcp-robust sweep: {line}", file=sys.stderr, flush=True)
            last = line
        if not any(s.queued or s.state == "running" for s in status):
            return status
        time.sleep(poll_s)
