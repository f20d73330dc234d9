"""A throwaway single-node SLURM cluster for the tests of the SLURM paths (tools/local-slurm).

The tests that submit to SLURM need a real slurmctld and slurmd, not a mock, since what they check
is how job arrays, requeues and submitit behave on one. ``tools/local-slurm`` installs SLURM and
munge from apt and starts a cluster on localhost with all of its state under one folder; this
module calls it, so that a test gets the cluster's environment and stops it again:

    reason = cluster_unavailable_reason()
    if reason is None:
        with start_local_slurm(tmp_path / "slurm") as cluster:
            subprocess.run(["sbatch", "--wrap", "true"], env=cluster.environ(), check=True)

No torch here: the helper runs before and beside the torch tests, and must stay cheap to import.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "tools" / "local-slurm"
SLURM_BINARIES = ("sbatch", "slurmctld", "slurmd", "munged")
INSTALL_TIMEOUT_S = 900  # apt-get, with an apt-get update when the lists are stale
START_TIMEOUT_S = 180  # the script itself waits at most 60 s for the node; munged and the daemons add a little


@dataclass
class LocalSlurm:
    """A running cluster: its folder and the variables that point SLURM's clients at it.

    ``env`` holds SLURM_CONF: every client command needs it (without it sbatch reads the system's
    /etc/slurm/slurm.conf).
    """

    dir: Path
    env: dict[str, str] = field(default_factory=dict)

    def environ(self) -> dict[str, str]:
        """os.environ with ``env`` over it: for subprocess calls of sbatch, squeue, scontrol..."""
        return {**os.environ, **self.env}

    def stop(self) -> None:
        """Cancel this cluster's jobs and stop its daemons (and munged, if its start began it).

        Idempotent, so a test's teardown may call it after a test already did."""
        _run_script("stop", str(self.dir), timeout=120)

    def __enter__(self) -> LocalSlurm:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def cluster_unavailable_reason() -> str | None:
    """Why no local cluster can start on this machine, or None when it can.

    Tests skip with this reason, except under CI=true, where the cluster is part of what CI
    must have and a missing one fails the test instead of hiding it."""
    if not sys.platform.startswith("linux"):
        return f"SLURM's daemons run on Linux only, not {sys.platform}"
    if os.geteuid() != 0:
        return "not root: tools/local-slurm starts munged, slurmctld and slurmd, and their jobs run, as root"
    if shutil.which("bash") is None:
        return "no bash to run tools/local-slurm"
    missing = [name for name in SLURM_BINARIES if shutil.which(name) is None]
    if missing and shutil.which("apt-get") is None:
        return f"{', '.join(missing)} not found and no apt-get to install slurmctld, slurmd, slurm-client and munge"
    return None


def start_local_slurm(directory: Path, install: bool = True) -> LocalSlurm:
    """Start a cluster whose slurm.conf, state, spool and logs all lie under ``directory``.

    ``install`` first runs ``tools/local-slurm install`` (apt-get, only when a binary is missing).
    Raises RuntimeError with the script's output (which ends with the daemons' logs) when the node
    does not come up; the script has then stopped what it started."""
    reason = cluster_unavailable_reason()
    if reason is not None:
        raise RuntimeError(f"no local SLURM cluster here: {reason}")
    if install:
        _run_script("install", timeout=INSTALL_TIMEOUT_S)
    directory = Path(directory).resolve()
    out = _run_script("start", str(directory), timeout=START_TIMEOUT_S)
    conf = directory / "slurm.conf"
    if f"export SLURM_CONF={conf}" not in out.splitlines():
        raise RuntimeError(f"tools/local-slurm start printed no SLURM_CONF for {conf}:\n{out}")
    return LocalSlurm(dir=directory, env={"SLURM_CONF": str(conf)})


def _run_script(*args: str, timeout: float) -> str:
    """Run tools/local-slurm; its stdout, or a RuntimeError that carries both streams."""
    try:
        done = subprocess.run(
            ["bash", str(SCRIPT), *args], capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL
        )
    except subprocess.TimeoutExpired as e:
        stderr = e.stderr.decode(errors="replace") if isinstance(e.stderr, bytes) else e.stderr or ""
        raise RuntimeError(f"tools/local-slurm {' '.join(args)} ran past {timeout} s:\n{stderr}") from e
    if done.returncode != 0:
        raise RuntimeError(f"tools/local-slurm {' '.join(args)} exited {done.returncode}:\n{done.stderr}{done.stdout}")
    return done.stdout
