"""The sweep file: which models, which data, which evaluations (TOML).

Everything a sweep will do is read and checked here, before anything is planned or submitted:
an unknown key, an unknown model, a duplicate entry or an option an evaluation would refuse is
one line naming the file and the key. Paths may use ``${VARIABLE}`` (from the environment), so
one file serves a laptop and a cluster. Whether the files exist is asked separately
(``missing_paths``): planning works without them, running does not.
"""

from __future__ import annotations

import fnmatch
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import Error
from ..models.registry import TORCHVISION_PREFIX, architecture_info
from ..models.zoo import CHECKPOINTS, checkpoint_record

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

KINDS = ("corruption", "attack", "perturbation")
_SETTINGS = {"seed": int, "precision": str, "batch_size": int, "workers": int}
_TOP_KEYS = {"checkpoint_dir", "data", "model", "evaluation", *_SETTINGS}
_MODEL_KEYS = {"record", "records", "architecture", "torchvision", "checkpoint", "num_classes", "name"}
_OPTIONS = {  # the options of each evaluation, as the matching eval-* command takes them
    "corruption": {"source", "protocol", "corruptions", "severities", "limit", "backend", "clean_data",
                   "class_index", "labels", "chunk_size", "shards"},
    "attack": {"attacks", "eps", "norm", "steps", "restarts", "rel_stepsize", "backend", "queries", "limit",
               "class_index", "labels"},
    "perturbation": {"source", "protocol", "perturbations", "difficulties", "limit", "class_index", "chunk_size",
                     "shards"},
}
PATH_OPTIONS = {"clean_data", "class_index", "labels"}
_REQUIRED = {"corruption": set(), "attack": {"attacks", "eps"}, "perturbation": set()}
_VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


class SweepError(Error, ValueError):
    """A sweep file that cannot be run, with the key and the fix in the message."""


@dataclass(frozen=True)
class ModelSpec:
    """One model of a sweep: what ``--model``, ``--checkpoint`` and ``--num-classes`` would say."""

    model: str  # an architecture, a checkpoint record or torchvision:NAME
    checkpoint: Path | None = None
    num_classes: int | None = None

    @property
    def architecture(self) -> str:
        record = checkpoint_record(self.model)
        return record.architecture if record else self.model


@dataclass(frozen=True)
class EvaluationSpec:
    """One evaluation of a sweep: its kind, its data and its options (keys as in the eval-* configs)."""

    kind: str
    data: Path
    options: dict = field(default_factory=dict)
    settings: dict = field(default_factory=dict)  # seed, precision, batch_size, workers


@dataclass(frozen=True)
class Sweep:
    path: Path
    models: list[ModelSpec]
    evaluations: list[EvaluationSpec]


def read_sweep(path: str | Path) -> Sweep:
    """The checked sweep file; SweepError (one line) for anything a run would refuse later."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as error:
        raise SweepError(f"{path}: cannot read it ({error.strerror})") from None
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise SweepError(f"{path}: not valid TOML ({error})") from None
    where = str(path)
    _known(raw, _TOP_KEYS, where)
    settings = {key: _typed(raw[key], kind, f"{where}: {key}") for key, kind in _SETTINGS.items() if key in raw}
    checkpoint_dir = _path(raw["checkpoint_dir"], f"{where}: checkpoint_dir", path) if "checkpoint_dir" in raw else None
    roots = _table(raw.get("data", {}), f"{where}: [data]")
    data = {name: _path(value, f"{where}: data.{name}", path) for name, value in roots.items()}
    models = [m for i, entry in enumerate(_entries(raw, "model", where))
              for m in _models(entry, f"{where}: model[{i}]", checkpoint_dir, path)]
    evaluations = [_evaluation(entry, f"{where}: evaluation[{i}]", data, settings, path)
                   for i, entry in enumerate(_entries(raw, "evaluation", where))]
    _no_duplicates([(m.model, m.checkpoint) for m in models], "model", where)
    _no_duplicates([(e.kind, e.data, repr(sorted(e.options.items())), repr(sorted(e.settings.items())))
                    for e in evaluations], "evaluation", where)
    return Sweep(path, models, evaluations)


def missing_paths(sweep: Sweep) -> list[str]:
    """The checkpoint files and data roots of the sweep that do not exist here, as 'what: path'."""
    missing = [f"checkpoint of {m.model}: {m.checkpoint}" for m in sweep.models
               if m.checkpoint is not None and not m.checkpoint.is_file()]
    for e in sweep.evaluations:
        paths = [("data", e.data)] + [(key, Path(e.options[key])) for key in PATH_OPTIONS if e.options.get(key)]
        missing += [f"{e.kind} {what}: {p}" for what, p in paths if not p.exists()]
    return list(dict.fromkeys(missing))


def _entries(raw: dict, key: str, where: str) -> list[dict]:
    entries = raw.get(key, [])
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise SweepError(f"{where}: {key} must be an array of tables ([[{key}]] sections)")
    if not entries:
        raise SweepError(f"{where}: no [[{key}]] section; add at least one")
    return entries


def _models(entry: dict, where: str, checkpoint_dir: Path | None, sweep_file: Path) -> list[ModelSpec]:
    """The models of one [[model]] section: a record, records matching a pattern, an
    architecture or a torchvision classifier, each with its checkpoint file."""
    _known(entry, _MODEL_KEYS, where)
    given = [key for key in ("record", "records", "architecture", "torchvision") if key in entry]
    if len(given) != 1:
        raise SweepError(f"{where}: give exactly one of record, records, architecture, torchvision "
                         f"(got {', '.join(given) or 'none'})")
    num_classes = _typed(entry["num_classes"], int, f"{where}: num_classes") if "num_classes" in entry else None
    checkpoint = _path(entry["checkpoint"], f"{where}: checkpoint", sweep_file) if "checkpoint" in entry else None
    if "record" in entry or "records" in entry:
        if "records" in entry:
            pattern = _typed(entry["records"], str, f"{where}: records")
            names = [n for n in sorted(CHECKPOINTS) if fnmatch.fnmatchcase(n.lower(), pattern.lower())]
            if not names:
                raise SweepError(f"{where}: records = {pattern!r} matches no checkpoint record; "
                                 "`gcp-robust models` lists them")
            if checkpoint is not None:
                raise SweepError(f"{where}: records names several files; leave out checkpoint and set checkpoint_dir")
        else:
            names = [_typed(entry["record"], str, f"{where}: record")]
            if checkpoint_record(names[0]) is None:
                raise SweepError(f"{where}: record = {names[0]!r} is not a checkpoint record; "
                                 "`gcp-robust models` lists them")
        if checkpoint is None and checkpoint_dir is None:
            raise SweepError(f"{where}: set checkpoint_dir (the folder of the released files) or checkpoint")
        return [ModelSpec(n, checkpoint or checkpoint_dir / CHECKPOINTS[n].filename, num_classes) for n in names]
    name = entry.get("architecture") or TORCHVISION_PREFIX + _typed(entry["torchvision"], str, f"{where}: torchvision")
    try:
        architecture_info(_typed(name, str, where))
    except Error as error:
        raise SweepError(f"{where}: {error}") from None
    return [ModelSpec(name, checkpoint, num_classes)]


def _evaluation(entry: dict, where: str, data: dict[str, Path], settings: dict, sweep_file: Path) -> EvaluationSpec:
    kind = entry.get("kind")
    if kind not in KINDS:
        raise SweepError(f"{where}: kind = {kind!r}; choose one of {', '.join(KINDS)}")
    _known(entry, {"kind", "data", *_OPTIONS[kind], *_SETTINGS}, where)
    missing = sorted(_REQUIRED[kind] - set(entry))
    if missing:
        raise SweepError(f"{where}: a {kind} evaluation needs {', '.join(missing)}")
    if "data" not in entry:
        raise SweepError(f"{where}: give data (a name from [data] or a path)")
    root = entry["data"]
    root = data[root] if isinstance(root, str) and root in data else _path(root, f"{where}: data", sweep_file)
    options = {key: value for key, value in entry.items() if key in _OPTIONS[kind]}
    for key in PATH_OPTIONS & set(options):
        options[key] = str(_path(options[key], f"{where}: {key}", sweep_file))
    own = {key: _typed(entry[key], kind_, f"{where}: {key}") for key, kind_ in _SETTINGS.items() if key in entry}
    return EvaluationSpec(kind, root, options, {**settings, **own})


def _known(table: dict, allowed: set[str], where: str) -> None:
    unknown = sorted(set(table) - allowed)
    if unknown:
        raise SweepError(f"{where}: unknown key {unknown[0]!r}; allowed: {', '.join(sorted(allowed))}")


def _table(value, where: str) -> dict:
    if not isinstance(value, dict):
        raise SweepError(f"{where} must be a table of name = path")
    return value


def _typed(value, kind: type, where: str):
    if not isinstance(value, kind) or isinstance(value, bool):
        raise SweepError(f"{where} = {value!r}: expected {'an integer' if kind is int else 'a string'}")
    return value


def _path(value, where: str, sweep_file: Path) -> Path:
    """A path with its ${VARIABLES} expanded; relative paths are relative to the sweep file."""
    text = _typed(value, str, where)
    for variable in _VARIABLE.findall(text):
        if variable not in os.environ:
            raise SweepError(f"{where} uses ${{{variable}}}, which is not set; export {variable}=... or write the path")
    path = Path(os.path.expanduser(_VARIABLE.sub(lambda m: os.environ[m.group(1)], text)))
    return path if path.is_absolute() else (sweep_file.parent / path).resolve()


def _no_duplicates(keys: list, what: str, where: str) -> None:
    seen = set()
    for key in keys:
        if key in seen:
            raise SweepError(f"{where}: the {what} {key[0]} ({key[1]}) is listed twice; remove one")
        seen.add(key)
