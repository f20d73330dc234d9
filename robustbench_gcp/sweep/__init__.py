"""Many runs: a sweep file → work units → jobs on an executor (SLURM through submitit, or local
processes) → one store per job → merge."""

from ..choices import DEVICE_KINDS, EXECUTORS
from .executors import SlurmOptions
from .merge import MergeReport, merge_stores
from .plan import WorkUnit, plan
from .run import MERGED, RunOptions, SweepOutcome, run_sweep
from .spec import Sweep, SweepError, missing_paths, read_sweep
from .status import STATES, UnitStatus, sweep_status

__all__ = ["DEVICE_KINDS", "EXECUTORS", "MERGED", "STATES", "MergeReport", "RunOptions", "SlurmOptions", "Sweep",
           "SweepError", "SweepOutcome", "UnitStatus", "WorkUnit", "merge_stores", "missing_paths", "plan",
           "read_sweep", "run_sweep", "sweep_status"]
