"""Where a sweep stands: each unit pending, running, done or failed, with its cells.

A unit's own state record says done or failed (with the error's last line); while it says
running, or says nothing yet, the scheduler says whether its job is still queued or running
(``squeue``, not the accounting database). A unit that claims to run but whose job is gone
(cancelled, killed, out of time) counts as failed: ``sweep run`` submits it again.
"""

from __future__ import annotations

import getpass
import json
import os
import shutil
import socket
import sqlite3
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..attacks.autoattack import is_autoattack, stages
from ..evaluate.parts import shard_mask
from ..summaries import unpack_flags
from .executors import read_jobs
from .merge import run_size
from .plan import WorkUnit
from .spec import SweepError
from .unit import STORE, read_plan, read_state, unit_folder

STATES = ("pending", "running", "done", "failed")


@dataclass
class UnitStatus:
    unit: WorkUnit
    state: str
    cells_done: int
    cells_total: int
    error: str | None = None
    log: str | None = None
    running_s: float | None = None
    queued: bool = False  # its job is in the scheduler's queue (pending or running there)

    @property
    def minutes_left(self) -> float:
        """Estimated minutes of work left (the running ones from their pace)."""
        if self.state == "done":
            return 0.0
        if self.state == "running" and self.cells_done and self.running_s:
            return self.running_s / 60 * (self.cells_total - self.cells_done) / self.cells_done
        return self.unit.minutes * (1 - self.cells_done / max(self.cells_total, 1))


def queued_jobs() -> dict[str, str]:
    """SLURM job id → state (PENDING, RUNNING, ...) of this user's queued jobs, one per array
    task. Without an answer from squeue, running and vanished units cannot be told apart: an error."""
    if shutil.which("squeue") is None:
        raise SweepError("squeue is not on PATH: sweep status asks it which units are queued or running; run it "
                         "where the SLURM client commands are (a login node)")
    try:
        listed = subprocess.run(["squeue", "-h", "-r", "-u", getpass.getuser(), "-o", "%i %T"], capture_output=True,
                                text=True, timeout=120, check=True).stdout
    except subprocess.CalledProcessError as error:
        raise SweepError(f"squeue failed: {(error.stderr or '').strip() or error}") from None
    except subprocess.TimeoutExpired:
        raise SweepError("squeue did not answer within 120 s; try again") from None
    return dict(line.split(maxsplit=1) for line in listed.splitlines() if line.strip())


def _alive(state: dict) -> bool:
    """A local unit's process still running (on this host)."""
    if state.get("host") != socket.gethostname() or not state.get("pid"):
        return False
    try:
        os.kill(state["pid"], 0)
    except OSError:
        return False
    return True


def expected_cells(unit: WorkUnit) -> int:
    if unit.kind == "corruption":
        return 1 + len(unit.cells) * len(unit.options["severities"])
    if unit.kind == "perturbation":
        return len(unit.cells) * len(unit.options["difficulties"])
    eps = len(unit.options["eps"].split(","))
    restarts = unit.options.get("restarts", 1)
    return 1 + sum(len(stages(a, restarts)) if is_autoattack(a) else 1 for a in unit.cells) * eps


def cells_done(unit: WorkUnit, store: Path) -> int:
    """Cells of the unit finished in its store: whole cells, and for a shard, cells whose parts
    cover the shard's images."""
    if not store.is_file():
        return 0
    db = sqlite3.connect(f"{store.resolve().as_uri()}?mode=ro", uri=True)
    try:
        runs = db.execute("SELECT id, config FROM runs").fetchall()
        done = db.execute("SELECT COUNT(*) FROM cells").fetchone()[0]
        if unit.shard and runs:
            size = run_size(json.loads(runs[0][1]))
            need = shard_mask(size, tuple(unit.shard))
            covered: dict[tuple, np.ndarray] = {}
            for name, level, bits in db.execute("SELECT name, level, covered FROM parts"):
                covered[name, level] = covered.get((name, level), np.zeros(size, bool)) | unpack_flags(bits)[:size]
            done += sum(bool(bits[need].all()) for bits in covered.values())
    except sqlite3.DatabaseError:
        return 0
    finally:
        db.close()
    return done


def sweep_status(out: Path) -> list[UnitStatus]:
    units, jobs = read_plan(out), read_jobs(out)
    queue = queued_jobs() if any(job.get("executor") == "slurm" for job in jobs.values()) else {}
    found = []
    for unit in units:
        state, job = read_state(out, unit.id), jobs.get(unit.id, {})
        queued = queue.get(str(job.get("job"))) if job.get("executor") == "slurm" else None
        recorded = state.get("state")
        error = None
        if recorded == "done":
            status = "done"
        elif queued is not None:
            status = "running" if queued in ("RUNNING", "COMPLETING") else "pending"
        elif recorded == "running" and job.get("executor") == "local" and _alive(state):
            status = "running"
        elif recorded == "failed":
            status, error = "failed", state.get("error")
        elif recorded == "running":
            status, error = "failed", "the job ended without finishing (cancelled, killed or out of time)"
        else:
            status = "pending"
        running = time.time() - state["started"] if status == "running" and state.get("started") else None
        found.append(UnitStatus(unit, status, cells_done(unit, unit_folder(out, unit.id) / STORE),
                                expected_cells(unit), error, job.get("log"), running, queued is not None))
    return found
