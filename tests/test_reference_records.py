"""The records of tests/baselines/references/: complete, and reproduced by a live reference run.

The live runs are the ``reference`` tests (``tox -e reference``, not run by CI): they take most
of an hour on two cores. The native code is compared with the records in the test files of each
attack and corruption.
"""

from __future__ import annotations

import json
import math

import pytest
from references import CASES, make_record, record_path


def test_every_case_has_a_record_with_its_package_versions():
    for name, case in CASES.items():
        path = record_path(name)
        assert path.exists(), f"no record {path}; make it with: python tests/record_references.py --write {name}"
        record = json.loads(path.read_text())
        assert record["case"] == name and record["settings"] == json.loads(json.dumps(case.settings))
        assert set(record["packages"]) == {"torch", *case.packages}, record["packages"]
    assert sorted(path.stem for path in record_path("x").parent.glob("*.json")) == sorted(CASES)  # no stale record


def _same(live, recorded, where: str = "") -> list[str]:
    """Where a live outcome differs from the record: flags and text exactly, numbers to 1e-6."""
    if isinstance(recorded, dict):
        if set(live) != set(recorded):
            return [f"{where}: keys {sorted(live)} != {sorted(recorded)}"]
        return [d for key in recorded for d in _same(live[key], recorded[key], f"{where}/{key}")]
    if isinstance(recorded, list):
        if len(live) != len(recorded):
            return [f"{where}: {len(live)} values != {len(recorded)}"]
        return [d for k, (a, b) in enumerate(zip(live, recorded)) for d in _same(a, b, f"{where}[{k}]")]
    if isinstance(recorded, float):
        return [] if math.isclose(live, recorded, rel_tol=1e-6, abs_tol=1e-6) else [f"{where}: {live} != {recorded}"]
    return [] if live == recorded else [f"{where}: {live!r} != {recorded!r}"]


@pytest.mark.reference
@pytest.mark.parametrize("name", sorted(CASES))
def test_live_reference_reproduces_its_record(name):
    record = json.loads(record_path(name).read_text())
    live = make_record(name)
    assert live["inputs"] == record["inputs"], "the inputs changed"
    differences = _same(live["outcomes"], record["outcomes"])
    versions = "" if live["packages"] == record["packages"] else (
        f" (recorded with {record['packages']}, now {live['packages']}: if the new versions are right, rewrite with "
        f"python tests/record_references.py --write {name})")
    assert not differences, f"{name} no longer reproduces its record{versions}: " + "; ".join(differences[:10])
