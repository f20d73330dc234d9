"""`gcp-robust`: the command line. It parses arguments into typed values and calls the library.

Only the chosen command's modules are imported, so ``gcp-robust --help`` and ``--version``
answer without loading torch. A user error (``robustbench_gcp.errors.Error``, or an OS error on a
path the user gave) is one line on stderr and exit status 2; anything else is a bug and keeps
its traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from .errors import Error, UsageError, a_kind
from .version import __version__

DEFAULT_DB = str(Path("runs") / "results.sqlite")
DEFAULT_WORKERS = min(4, os.cpu_count() or 1)
TABLE_FORMATS = ("github", "latex", "plain", "csv", "json")


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (exit status 2), like the library's errors, and negative
    fractions and exponents (``--eps -1/255``) taken as values, to be refused with a reason."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._negative_number_matcher = re.compile(r"^-(\d+(/\d+)?|\d*\.\d+|\d+\.?)([eE][-+]?\d+)?$")

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


class _Formatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows each option's default, except where there is none to show."""

    def _get_help_string(self, action: argparse.Action) -> str:
        if action.default is None or action.default is False or action.default == [] or \
                action.default is argparse.SUPPRESS:
            return action.help or ""
        return super()._get_help_string(action)


# --------------------------------------------------------------------------- typed values

def _typed(parse: Callable[[str], object]) -> Callable[[str], object]:
    """An argparse type from a library parser: its Error becomes argparse's one-line message."""
    def convert(text: str) -> object:
        try:
            return parse(text)
        except Error as error:
            raise argparse.ArgumentTypeError(str(error)) from None

    convert.__name__ = parse.__name__
    return convert


def _int_list(text: str) -> list[int]:
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def _corruption_list(text: str) -> list[str]:
    """'a,b' or a subset name ('common', 'all', 'extra', 'noise', ...)."""
    from .corruptions import CorruptionError, names
    from .corruptions.api import check_name

    try:
        return names(text)
    except CorruptionError:
        chosen = [part.strip() for part in text.split(",") if part.strip()]
        for name in chosen:
            check_name(name)
        return chosen


def _perturbation_list(text: str) -> str | list[str]:
    """A subset name ('test', 'validation', 'all': resolved for the protocol later) or 'a,b'."""
    from .perturbations.api import SUBSETS, check_name

    if text in SUBSETS:
        return text
    chosen = [part.strip() for part in text.split(",") if part.strip()]
    for name in chosen:
        check_name(name)
    return chosen


def _attack_list(text: str) -> list[str]:
    from .attacks import check_attack

    chosen = [part.strip() for part in text.split(",") if part.strip()]
    for name in chosen:
        check_attack(name)
    return chosen


def _trend(text: str):
    """SHIFT=SLOPE,INTERCEPT: a given trend of effective robustness."""
    from .data.shifts import shift_keys
    from .effective_robustness import parse_trend

    return parse_trend(text, shift_keys())


def _trends(args: argparse.Namespace) -> dict:
    """The given trends by shift; one shift given twice is refused."""
    found: dict = {}
    for shift, trend in args.trend or []:
        if shift in found:
            raise UsageError(f"--trend {shift} is given twice; give one trend per shift")
        found[shift] = trend
    return found


def _epsilons(text: str):
    from .attacks import parse_epsilons

    return parse_epsilons(text, norm="l2")  # the loosest bound: eval-attack checks its attacks' norms


def _precision(args: argparse.Namespace, deprecated: str, meaning: str) -> str:
    """--precision, or the old spelling of one of its values, with a note."""
    if getattr(args, deprecated, False):
        flag = "--" + deprecated.replace("_", "-")
        print(f"gcp-robust {args.command}: note: {flag} is deprecated; use --precision {meaning}", file=sys.stderr)
        return meaning
    return args.precision


def _path(text: str | None) -> Path | None:
    return Path(text) if text else None


def _default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


# --------------------------------------------------------------------------- commands

def _cmd_models(args: argparse.Namespace) -> None:
    from .models.catalog import catalog
    from .report import catalog_table

    entries = catalog(args.pattern)
    if not entries and args.format != "json":
        raise UsageError(f"no model or checkpoint matches --pattern {args.pattern!r}")
    print(catalog_table(entries, args.format))


def _stored_number(value: object) -> float | None:
    """A number stored in a checkpoint (a float, or a one-element tensor in older files)."""
    try:
        return round(float(value), 4)
    except (TypeError, ValueError, RuntimeError):
        return None


def _cmd_checkpoint(args: argparse.Namespace) -> None:
    """Identify a checkpoint file and, with --model, prove that it loads into that model."""
    from .models import create_model, guess_architecture, read_checkpoint
    from .models.catalog import parameter_count
    from .models.zoo import file_sha256, identify_record

    if args.num_classes is not None and args.num_classes < 1:
        raise UsageError(f"--num-classes {args.num_classes}: pass a positive number of classes")
    state, payload = read_checkpoint(args.path)
    guess, share = guess_architecture(state)
    sha256 = file_sha256(args.path)
    best = payload.get("best_acc1", payload.get("best_prec1"))
    summary = {
        "path": str(args.path),
        "sha256": sha256,
        "tensors": len(state),
        "arch_in_file": payload.get("arch") if isinstance(payload.get("arch"), str) else None,
        "epoch": payload.get("epoch") if isinstance(payload.get("epoch"), int) else None,
        "best_acc1_in_file": _stored_number(best),
        "likely_architecture": guess,
        "layout_match": round(share, 4),
        **identify_record(Path(args.path).name, sha256),
    }
    if args.model:
        model = create_model(args.model, num_classes=args.num_classes, checkpoint=args.path)
        summary["loaded_into"] = model.architecture.name
        summary["params"] = parameter_count(model.architecture.name) if args.num_classes is None else sum(
            p.numel() for p in model.parameters()
        )
    print(json.dumps(summary, indent=2))


def _cmd_corrupt(args: argparse.Namespace) -> None:
    from .export import ExportConfig, export_corrupted_folder

    config = ExportConfig(
        data=Path(args.data), out=Path(args.out), protocol=args.protocol, corruptions=args.corruptions,
        severities=args.severities, backend=args.backend, device=args.device or _default_device(),
        batch_size=args.batch_size, workers=args.workers, seed=args.seed, size=args.size,
        chunk_size=args.chunk_size, decode=args.decode,
    )
    summary = export_corrupted_folder(config, progress=not args.quiet)
    print(f"wrote {summary.written} images, skipped {summary.skipped} already present, into {config.out}")


def _cmd_perturb(args: argparse.Namespace) -> None:
    from .export_videos import VideoExportConfig, export_perturbation_videos

    config = VideoExportConfig(
        data=Path(args.data), out=Path(args.out), protocol=args.protocol, perturbations=args.perturbations,
        difficulties=args.difficulties, device=args.device or _default_device(), batch_size=args.batch_size,
        workers=args.workers, seed=args.seed, chunk_size=args.chunk_size,
    )
    summary = export_perturbation_videos(config, progress=not args.quiet)
    print(f"wrote {summary.written} videos, skipped {summary.skipped} already present, into {config.out}")


def _print_own_run(summary: dict, db: Path, table: Callable) -> None:
    """The table of the run an evaluation made (rank 0; other ranks get no summary)."""
    if not summary:
        return
    from .results import AskedCells, ResultStore

    store = AskedCells(ResultStore(db), summary["run_id"], summary["asked"])
    print(table(store, [store.get(summary["run_id"])]))
    if summary["skipped_unreadable"]:
        print(f"skipped {summary['skipped_unreadable']} unreadable images (use --strict to fail instead)")


def _cmd_eval_corruption(args: argparse.Namespace) -> None:
    from .evaluate.corruption import CorruptionEvalConfig, evaluate_corruptions
    from .report import corruption_table

    config = CorruptionEvalConfig(
        model=args.model, data=Path(args.data), checkpoint=_path(args.checkpoint), num_classes=args.num_classes,
        source=args.source, protocol=args.protocol, backend=args.backend, corruptions=args.corruptions,
        severities=args.severities, limit=args.limit, seed=args.seed, batch_size=args.batch_size,
        workers=args.workers, device=args.device, precision=_precision(args, "no_autocast", "fp32"),
        strict=args.strict, clean_data=_path(args.clean_data), class_index=_path(args.class_index),
        labels=_path(args.labels),
        db=Path(args.db), json=_path(args.json), name=args.name, chunk_size=args.chunk_size, decode=args.decode,
        compile=args.compile, baseline_run=args.baseline_run,
    )
    summary = evaluate_corruptions(config, progress=not args.quiet)
    named = summary.get("baseline")  # a C-bar run's baseline: its mCE is shown relative to it

    def table(store, runs):
        return corruption_table(store, runs, baseline=store.get(named["run_id"]) if named else None)

    _print_own_run(summary, config.db, table)


def _cmd_eval_perturbation(args: argparse.Namespace) -> None:
    from .evaluate.perturbation import PerturbationEvalConfig, evaluate_perturbations
    from .report import perturbation_table
    from .results import AskedCells, ResultStore

    config = PerturbationEvalConfig(
        model=args.model, data=Path(args.data), checkpoint=_path(args.checkpoint), num_classes=args.num_classes,
        source=args.source, protocol=args.protocol, perturbations=args.perturbations,
        difficulties=args.difficulties, limit=args.limit, seed=args.seed, batch_size=args.batch_size,
        workers=args.workers, device=args.device, precision=args.precision, class_index=_path(args.class_index),
        db=Path(args.db), json=_path(args.json), name=args.name, baseline_run=args.baseline_run,
        chunk_size=args.chunk_size,
    )
    summary = evaluate_perturbations(config, progress=not args.quiet)
    if summary:
        store = AskedCells(ResultStore(config.db), summary["run_id"], summary["asked"])
        baseline = store.get(summary["baseline"]["run_id"]) if summary["baseline"] else None
        print(perturbation_table(store, [store.get(summary["run_id"])], baseline=baseline,
                                 difficulties=summary["difficulties"]))


def _cmd_eval_attack(args: argparse.Namespace) -> None:
    from .evaluate.attack import AttackEvalConfig, evaluate_attacks
    from .report import attack_tables

    config = AttackEvalConfig(
        model=args.model, data=Path(args.data), attacks=args.attacks, eps=args.eps,
        checkpoint=_path(args.checkpoint), num_classes=args.num_classes, steps=args.steps, restarts=args.restarts,
        rel_stepsize=args.rel_stepsize, backend=args.backend, norm=args.norm, queries=args.queries,
        precision=_precision(args, "bf16", "bf16"), limit=args.limit, seed=args.seed, batch_size=args.batch_size,
        workers=args.workers, device=args.device,
        strict=args.strict, class_index=_path(args.class_index), labels=_path(args.labels), db=Path(args.db),
        json=_path(args.json),
        name=args.name,
    )
    _print_own_run(evaluate_attacks(config, progress=not args.quiet), config.db, attack_tables)


def _cmd_eval_shift(args: argparse.Namespace) -> None:
    from .evaluate.shift import ShiftEvalConfig, evaluate_shift
    from .report.shifts import shift_tables

    config = ShiftEvalConfig(
        model=args.model, source=args.source, data=Path(args.data), variant=args.variant,
        checkpoint=_path(args.checkpoint), num_classes=args.num_classes, clean_data=_path(args.clean_data),
        labels=_path(args.labels), limit=args.limit, seed=args.seed, batch_size=args.batch_size, workers=args.workers,
        device=args.device, precision=args.precision, strict=args.strict, decode=args.decode,
        chunk_size=args.chunk_size, db=Path(args.db), json=_path(args.json), name=args.name, trends=_trends(args),
    )
    _print_own_run(evaluate_shift(config, progress=not args.quiet), config.db,
                   lambda store, runs: shift_tables(store, runs, trends=config.trends))


def _cmd_train(args: argparse.Namespace) -> None:
    from .fileio import check_output_file
    from .report import plot_learning_curves, plot_path
    from .train import TrainConfig, train

    plot = plot_path(check_output_file(args.plot, "--plot")) if args.plot else None
    config = TrainConfig(
        model=args.model, data=args.data, lr_mode=args.lr_mode, epochs=args.epochs, batch_size=args.batch_size,
        lr=args.lr, weight_decay=args.weight_decay, num_classes=args.num_classes, out=Path(args.out),
        resume=_path(args.resume), device=args.device, workers=args.workers, seed=args.seed,
        precision=_precision(args, "no_autocast", "fp32"),
    )
    history = train(config, progress=not args.quiet)
    if history:
        last = history[-1]
        print(f"epoch {last['epoch'] + 1}: loss {last['loss']:.4f}, val top-1 {last['val_top1']:.2f} %; "
              f"checkpoints and log.jsonl in {config.out}")
    if plot:
        print(f"wrote {plot_learning_curves([Path(config.out) / 'log.jsonl', *args.compare], plot)}")


def _cmd_demo(args: argparse.Namespace) -> None:
    from dataclasses import replace

    from .demo import FULL, QUICK, DemoConfig, run_demo

    size = replace(QUICK if args.quick else FULL, **({"epochs": args.epochs} if args.epochs is not None else {}))
    run_demo(DemoConfig(out=Path(args.out), data=_path(args.data), size=size, device=args.device,
                        workers=args.workers, progress=not args.quiet))


def _open_db(path: str):
    from .results import ResultStore

    if not Path(path).exists():
        raise UsageError(f"results database {path} does not exist; run an evaluation first or pass --db")
    return ResultStore(path)


def _selected(store, kind: str, args: argparse.Namespace) -> list:
    from .report import select_runs

    return select_runs(store, kind, models=args.model, selectors=args.run, latest=args.latest)


def _baselines(store, selector: str | None, chosen: dict) -> tuple:
    """(the perturbation run of mFR and mT5D, the corruption run of C-bar mCE) that ``--baseline-run``
    names for the ``chosen`` runs; (None, None) without one."""
    if not selector:
        return None, None
    from .evaluate.corruption import c_bar_baseline_of
    from .evaluate.perturbation import find_baseline

    c_bar_baseline = c_bar_baseline_of(store, selector, chosen["corruption"])
    baseline = find_baseline(store, selector, chosen["perturbation"]) if chosen["perturbation"] or \
        c_bar_baseline is None else None
    return baseline, c_bar_baseline


def _check_confidence(ci: float) -> None:
    if not 0 <= ci < 100:
        raise UsageError(f"--ci {ci:g}: pass a confidence level in percent, e.g. 95, or 0 for none")


def _cmd_table(args: argparse.Namespace) -> None:
    from .comparison import check_alpha
    from .report import attack_tables, corruption_table, perturbation_table, robustness_table, tidy_csv

    _check_confidence(args.ci)
    check_alpha(args.alpha)
    store = _open_db(args.db)
    trends = _trends(args)
    chosen = {kind: _selected(store, kind, args) for kind in ("corruption", "attack", "perturbation", "shift")}
    if not any(chosen.values()):
        raise UsageError(f"no runs in {args.db} match the selection; `gcp-robust runs --db {args.db}` lists them")
    baseline, c_bar_baseline = _baselines(store, args.baseline_run, chosen)
    if args.format == "json":  # what `report` renders: every number with its interval, pairs, provenance
        from .report.document import report_data

        data = report_data(store, chosen, confidence=args.ci / 100 or None, alpha=args.alpha, baseline=baseline,
                           c_bar_baseline=c_bar_baseline, trends=trends)
        print(json.dumps(data, indent=2))
        return
    if args.format == "csv":
        print(tidy_csv(store, chosen["corruption"] + chosen["attack"] + chosen["perturbation"] + chosen["shift"],
                       trends), end="")
        return
    confidence = args.ci / 100 or None
    tables = []
    if chosen["corruption"]:
        tables.append(corruption_table(store, chosen["corruption"], args.format, confidence, args.pairs, args.alpha,
                                       c_bar_baseline))
    if chosen["attack"]:
        tables.append(attack_tables(store, chosen["attack"], args.format, confidence, args.pairs, args.alpha))
    if chosen["perturbation"]:
        tables.append(perturbation_table(store, chosen["perturbation"], args.format, baseline))
    if chosen["shift"]:
        from .report.shifts import shift_tables

        tables.append(shift_tables(store, chosen["shift"], args.format, confidence, args.pairs, args.alpha, trends))
    if args.published or chosen["perturbation"] or sum(bool(runs) for runs in chosen.values()) > 1:  # the paper's
        tables.append(robustness_table(store, chosen["corruption"], chosen["perturbation"], args.format, baseline,
                                       chosen["attack"], chosen["shift"], trends, args.published))
    tables = [table for table in tables if table]
    print("\n\n".join(tables))


def _cmd_report(args: argparse.Namespace) -> None:
    from .comparison import check_alpha
    from .report.document import KINDS, report_data
    from .report.html import report_path, write_report

    out = report_path(args.out)  # refused before the database is read
    _check_confidence(args.ci)
    check_alpha(args.alpha)
    store = _open_db(args.db)
    chosen = {kind: _selected(store, kind, args) for kind in KINDS}
    baseline, c_bar_baseline = _baselines(store, args.baseline_run, chosen)
    data = report_data(store, chosen, confidence=args.ci / 100 or None, alpha=args.alpha, baseline=baseline,
                       c_bar_baseline=c_bar_baseline, trends=_trends(args))
    print(f"wrote {write_report(data, store, chosen, out)} ({len(data['runs'])} runs)")


def _cmd_export(args: argparse.Namespace) -> None:
    from .report.robustbench import export_robustbench

    store = _open_db(args.db)
    runs = [run for kind in ("corruption", "attack") for run in _selected(store, kind, args)]
    if not runs:
        raise UsageError(f"no corruption or attack runs in {args.db} match the selection; `gcp-robust runs --db "
                         f"{args.db}` lists them")
    result = export_robustbench(store, runs, args.out)
    for path in result.written:
        print(f"wrote {path}")
    for reason in result.skipped:
        print(f"skipped {reason}")
    if not result.written:
        raise UsageError(f"nothing to export in RobustBench's format: {'; '.join(result.skipped)}")


def _cmd_plot(args: argparse.Namespace) -> None:
    from .report import plot_attacks, plot_corruptions, plot_path, plot_perturbations

    plot_path(args.out)  # refused before the database is read
    draw = {"attack": plot_attacks, "corruption": plot_corruptions, "perturbation": plot_perturbations}[args.kind]
    store = _open_db(args.db)
    print(f"wrote {draw(store, _selected(store, args.kind, args), args.out)}")


def _cmd_runs(args: argparse.Namespace) -> None:
    from .report import runs_table

    store = _open_db(args.db)
    if args.delete:
        for selector in args.delete:
            for run_id, name, cells in store.delete(selector):
                label = f" ({' '.join(name.split())})" if name else ""
                print(f"deleted run {run_id}{label} and its {cells} cells")
        return
    runs = store.runs(models=args.model)
    if not runs:
        raise UsageError(f"no runs in {args.db}" + (f" for {', '.join(args.model)}" if args.model else ""))
    print(runs_table(store, runs))


def _read_summary(path: str) -> object:
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise UsageError(f"{path}: no such file; pass run summaries written with --json") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise UsageError(f"{path}: not a JSON run summary ({error})") from None


def _stored_run(store, selector: str):
    from .report import run_labels

    runs = store.find(selector)
    if len(runs) > 1:
        raise UsageError(f"--run {selector!r} names {len(runs)} runs ({', '.join(str(r.id) for r in runs)}); "
                         "pass one id")
    return runs[0], f"run {runs[0].id} ({run_labels(runs)[0]})"


def _cmd_compare(args: argparse.Namespace) -> int:
    from .comparison import check_gate, compare, compare_runs
    from .report import comparison_json, comparison_junit, comparison_table

    check_gate(args.max_increase, args.alpha)
    files = [f for f in (args.baseline, args.current) if f]
    if args.run:
        if files or len(args.run) != 2:
            raise UsageError("compare takes two --json summaries, or --run BASELINE --run CURRENT from --db")
        store = _open_db(args.db)
        (baseline, first), (current, second) = (_stored_run(store, s) for s in args.run)
        if baseline.kind != current.kind:
            raise UsageError(f"{first} is {a_kind(baseline.kind)} run but {second} is {a_kind(current.kind)} run")
        comparison = compare_runs(store, baseline, current, (first, second), args.alpha)
    elif len(files) == 2:
        first, second = files
        comparison = compare(_read_summary(first), _read_summary(second), labels=(first, second))
    else:
        raise UsageError("compare takes two --json summaries, or --run BASELINE --run CURRENT from --db")
    names = (first, second)
    if args.format == "json":
        print(comparison_json(comparison, args.max_increase, names, args.fail_on_regression))
    elif args.format == "junit":
        print(comparison_junit(comparison, args.max_increase, names, args.fail_on_regression))
    else:
        print(comparison_table(comparison, args.max_increase, names))
    worse = comparison.regressions(args.max_increase, significant_only=args.fail_on_regression)
    if worse and args.format == "markdown":
        kind = "significantly " if args.fail_on_regression else ""
        print(f"\n{len(worse)} metric(s) {kind}worse by more than {args.max_increase} points")
    return 1 if worse else 0


def _cmd_sweep(args: argparse.Namespace) -> int:
    from .sweep import MERGED, RunOptions, SlurmOptions, missing_paths, plan, read_sweep, run_sweep, sweep_status
    from .sweep.display import plan_table, status_table

    if args.action == "status":
        status = sweep_status(Path(args.path))
        print(status_table(status))
        return 1 if any(s.state == "failed" for s in status) else 0
    if args.action == "plan":
        sweep = read_sweep(args.path)
        print(plan_table(plan(sweep, args.max_unit_minutes, args.device_kind), args.device_kind,
                         missing_paths(sweep)))
        return 0
    if not args.out:
        raise UsageError("sweep run needs --out DIR: the folder of the plan, the units' stores and the merged store")
    extra = dict(_key_value(item, "--sbatch") for item in args.sbatch or [])
    slurm = SlurmOptions(partition=args.partition, gpus_per_unit=args.gpus_per_unit, cpus_per_unit=args.cpus_per_unit,
                         time_minutes=args.time, mem=args.mem, array_parallelism=args.array_parallelism, extra=extra)
    options = RunOptions(executor=args.executor, max_unit_minutes=args.max_unit_minutes,
                         device_kind=args.device_kind, slurm=slurm, processes=args.processes, gpus=args.gpus,
                         wait=not args.no_wait, poll_s=args.poll)
    outcome = run_sweep(Path(args.path), Path(args.out), options)
    print(status_table(outcome.status))
    if outcome.merged:
        print(f"merged: {outcome.merged.line(Path(args.out) / MERGED)}")
    return 1 if any(s.state == "failed" for s in outcome.status) else 0


def _key_value(text: str, option: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise UsageError(f"{option} {text!r}: pass NAME=VALUE, e.g. {option} account=vision")
    return key.lstrip("-"), value


def _cmd_merge(args: argparse.Namespace) -> None:
    from .sweep import merge_stores

    print(merge_stores([Path(p) for p in args.stores], Path(args.db)).line(Path(args.db)))


# --------------------------------------------------------------------------- arguments

def _model_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="architecture or checkpoint record (gcp-robust models)")
    parser.add_argument("--checkpoint", help="weights file (.pth.tar/.th); without it, random weights")
    parser.add_argument("--num-classes", type=int, help="classifier size (default: the architecture's)")


def _selection_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--db", default=DEFAULT_DB, help="results database")
    parser.add_argument("--model", action="append", help="only runs of these models (repeatable)")
    parser.add_argument("--run", action="append", help="only these runs: id or --name label (repeatable)")
    parser.add_argument("--latest", action="store_true", help="only the newest run of each model")


def _run_options(parser: argparse.ArgumentParser, strict: bool = True) -> None:
    parser.add_argument("--limit", type=int, help="a fixed, class-balanced, seeded subset of N images (default: all)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the subset and of every random draw")
    parser.add_argument("--batch-size", type=int, default=128, help="images per batch (does not change results)")
    parser.add_argument("--workers", type=int, default=DEFAULT_WORKERS, help="DataLoader decode processes")
    parser.add_argument("--device", help="cpu or cuda (default: cuda when present)")
    _add_threads(parser)
    if strict:
        parser.add_argument("--strict", action="store_true", help="fail on unreadable images instead of skipping them")
    parser.add_argument("--db", default=DEFAULT_DB, help="results database (SQLite); reruns resume from it")
    parser.add_argument("--json", help="write the run summary here")
    parser.add_argument("--name", help="a label for the run in tables, plots and --run (not part of its identity)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def _precision_option(parser: argparse.ArgumentParser, default: str, deprecated: str | None = None,
                      meaning: str = "") -> None:
    from .choices import PRECISIONS

    parser.add_argument("--precision", choices=PRECISIONS, default=default,
                        help="bf16 autocast runs on CUDA only; the CPU always computes in float32")
    if deprecated:
        parser.add_argument(f"--{deprecated}", action="store_true", help=f"deprecated: use --precision {meaning}")


def _corruption_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--corruptions", type=_typed(_corruption_list),
                        help="comma-separated names, or common|extra|all|noise|blur|weather|digital, or "
                        "imagenet-c-bar|cifar10-c-bar (default: common; the protocol's 10 for a C-bar protocol)")
    parser.add_argument("--severities", type=_int_list, default="1,2,3,4,5", help="e.g. 1,3,5")


def _models_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--pattern", help="glob on the name, e.g. 'resnet50*' or '*GCP*'")
    parser.add_argument("--format", choices=("table", "json"), default="table", help="output format")


def _checkpoint_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("path", help="a .pth.tar/.th file (original release format or a bare state_dict)")
    parser.add_argument("--model", help="architecture or checkpoint record to load it into")
    parser.add_argument("--num-classes", type=int, help="classifier size (default: the architecture's)")


def _corrupt_arguments(parser: argparse.ArgumentParser) -> None:
    from .choices import CORRUPTION_BACKENDS as BACKENDS
    from .choices import CORRUPTION_PROTOCOLS as PROTOCOLS

    parser.add_argument("--data", required=True, help="ImageFolder root: <class>/<image>")
    parser.add_argument("--out", required=True, help="output root; existing files are kept (resume)")
    parser.add_argument("--protocol", choices=PROTOCOLS, default="imagenet-c", help="corruption generator")
    _corruption_options(parser)
    parser.add_argument("--backend", choices=BACKENDS, default="native",
                        help="native (batched, any device) or reference (the imagecorruptions package)")
    parser.add_argument("--device", help="cpu or cuda (default: cuda when present)")
    parser.add_argument("--batch-size", type=int, default=64, help="images per batch (does not change results)")
    parser.add_argument("--workers", type=int, default=0, help="DataLoader decode processes")
    parser.add_argument("--seed", type=int, default=0, help="seed of every random draw")
    parser.add_argument("--size", type=int, help="resize+center-crop side (default 224; 32 for cifar10-c and "
                        "cifar10-c-bar, kept as is)")
    _add_threads(parser)
    parser.add_argument("--chunk-size", type=int, default=4096,
                        help="images decoded once and corrupted in every (corruption, severity) before the next")
    _decode_option(parser)
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def _eval_corruption_arguments(parser: argparse.ArgumentParser) -> None:
    from .choices import CORRUPTION_BACKENDS as BACKENDS
    from .choices import CORRUPTION_PROTOCOLS as PROTOCOLS
    from .choices import CORRUPTION_SOURCES as SOURCES

    _model_options(parser)
    parser.add_argument("--data", required=True,
                        help="clean ImageFolder (generated), ImageNet-C root, or CIFAR-10-C folder")
    parser.add_argument("--source", choices=SOURCES, default="generated",
                        help="corrupt clean images on the fly, or read released files")
    parser.add_argument("--clean-data", help="clean ImageFolder for the clean error with released sources")
    parser.add_argument("--class-index", help="imagenet_class_index.json or synset_words.txt for class subsets")
    parser.add_argument("--labels", help="labels of a flat image folder (the official ImageNet val layout): "
                        "'FILE LABEL' lines (caffe val.txt) or the devkit's LOC_val_solution.csv")
    parser.add_argument("--protocol", choices=PROTOCOLS,
                        help="corruption generator (default: imagenet-c for 224-px models, cifar10-c for 32-px; "
                        "imagenet-c-bar / cifar10-c-bar: the C-bar sets, generated on the fly)")
    parser.add_argument("--backend", choices=BACKENDS, default="native",
                        help="native (batched, any device) or reference (the imagecorruptions package)")
    _corruption_options(parser)
    parser.add_argument("--baseline-run", help="C-bar protocols: a stored run of the same protocol (id, --name or "
                        "model) that mCE and relative mCE are relative to (= 100)")
    _run_options(parser)
    _precision_option(parser, "bf16", "no-autocast", "fp32")
    parser.add_argument("--chunk-size", type=int,
                        help="clean images decoded once and kept on the device while every pending cell runs "
                        "(default: an eighth of the free GPU memory, or 1 GiB on the CPU; results "
                        "do not depend on it)")
    _decode_option(parser)
    parser.add_argument("--compile", action="store_true",
                        help="torch.compile the model (faster on GPUs after a compile of tens of seconds)")


def _decode_option(parser: argparse.ArgumentParser) -> None:
    from .choices import DECODERS

    parser.add_argument("--decode", choices=DECODERS, default="pil",
                        help="JPEG decoding: pil (in the loader workers; the reference pixels) or device (in "
                        "batches on the device, nvJPEG on CUDA: faster, but its pixels differ slightly from "
                        "PIL's, see docs/eval-corruption.md; PNGs and other formats still use PIL)")


def _perturbation_options(parser: argparse.ArgumentParser, difficulties_help: str) -> None:
    from .choices import PERTURBATION_PROTOCOLS as PROTOCOLS

    parser.add_argument("--perturbations", type=_typed(_perturbation_list), default="test",
                        help="comma-separated names, or the protocol's test set (the 10 of mFR) | validation (4) | all")
    parser.add_argument("--difficulties", type=_int_list, default="1", help=difficulties_help)
    parser.add_argument("--protocol", choices=PROTOCOLS,
                        help="sequence generator (default: imagenet-p for 224-px models, cifar10-p for 32-px)")


def _perturb_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", required=True, help="ImageFolder root: <class>/<image>")
    parser.add_argument("--out", required=True, help="output root; existing files are kept (resume)")
    _perturbation_options(parser, "some of 1,2,3: 2 and 3 add the noise perturbations' stronger _2/_3 sequences "
                          "(the other perturbations have one sequence for every difficulty); default 1, what "
                          "eval-perturbation reads by default")
    parser.set_defaults(protocol="imagenet-p")
    parser.add_argument("--device", help="cpu or cuda (default: cuda when present)")
    parser.add_argument("--batch-size", type=int, default=128, help="frames per batch (does not change results)")
    _add_threads(parser)
    parser.add_argument("--workers", type=int, default=0, help="DataLoader decode processes")
    parser.add_argument("--seed", type=int, default=0, help="seed of every random draw")
    parser.add_argument("--chunk-size", type=int, default=256, help="clean images decoded at once")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def _eval_perturbation_arguments(parser: argparse.ArgumentParser) -> None:
    from .choices import VIDEO_SOURCES

    _model_options(parser)
    parser.add_argument("--data", required=True,
                        help="clean ImageFolder (generated), ImageNet-P root, or CIFAR-10-P folder")
    parser.add_argument("--source", choices=VIDEO_SOURCES, default="generated",
                        help="generate the sequences on the fly, or read released files")
    parser.add_argument("--class-index", help="imagenet_class_index.json or synset_words.txt for class subsets")
    _perturbation_options(parser, "some of 1,2,3: frames compared d apart (noise: the stronger _2/_3 sequences); "
                          "FP and T5D are reported per difficulty, FR / mFR / mT5D from their sums over the "
                          "difficulties. Default 1: the reference evaluators' difficulty, that of published mFR / mT5D")
    parser.add_argument("--baseline-run", help="a stored perturbation run (id, --name or model) to normalise by: "
                        "FR, mFR and mT5D (e.g. torchvision:alexnet evaluated by this command)")
    _run_options(parser, strict=False)  # an unreadable image or video always stops it: a video cannot be left out
    parser.add_argument("--chunk-size", type=int, default=256,
                        help="videos per stored part (an interruption loses at most one)")
    _precision_option(parser, "fp32")  # a flip is a near-tie moving: bf16 logits flip other frames than fp32


def _trend_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--trend", action="append", type=_typed(_trend), metavar="SHIFT=SLOPE,INTERCEPT",
                        help="the trend of effective robustness for a shift, logit(shifted) = SLOPE·logit(clean) + "
                        "INTERCEPT (e.g. one a paper published), instead of the fit over the models in the store "
                        "(repeatable)")


def _eval_shift_arguments(parser: argparse.ArgumentParser) -> None:
    from .choices import SHIFT_SOURCES, V2_VARIANTS

    _model_options(parser)
    parser.add_argument("--source", required=True, choices=SHIFT_SOURCES,
                        help="the shifted set's released layout: imagenet-a and imagenet-r (200 <wnid> folders, "
                        "scored over those classes), imagenet-sketch (1000 <wnid> folders), imagenetv2 (folders "
                        "0..999)")
    parser.add_argument("--data", required=True, help="the released folder, e.g. imagenet-a/ or "
                        "imagenetv2-matched-frequency-format-val/")
    parser.add_argument("--variant", choices=V2_VARIANTS,
                        help="which ImageNetV2 --data holds (default: matched-frequency)")
    parser.add_argument("--clean-data", help="the ImageNet validation set (<wnid>/<image>, or flat with --labels): "
                        "the clean accuracy effective robustness is measured against (for imagenet-a/-r: the images "
                        "of their 200 classes)")
    parser.add_argument("--labels", help="labels of a flat --clean-data folder: 'FILE LABEL' lines (caffe val.txt) "
                        "or the devkit's LOC_val_solution.csv")
    _run_options(parser)
    _precision_option(parser, "bf16")
    parser.add_argument("--chunk-size", type=int, default=2048,
                        help="images per stored part: what an interruption can lose (results do not depend on it)")
    _decode_option(parser)
    _trend_option(parser)


def _eval_attack_arguments(parser: argparse.ArgumentParser) -> None:
    from .choices import ATTACK_BACKENDS, ATTACK_NAMES, NORMS, QUERIES

    _model_options(parser)
    parser.add_argument("--data", required=True, help="clean ImageFolder, or a flat folder with --labels")
    parser.add_argument("--class-index", help="imagenet_class_index.json or synset_words.txt for class subsets")
    parser.add_argument("--labels", help="labels of a flat image folder (the official ImageNet val layout): "
                        "'FILE LABEL' lines (caffe val.txt) or the devkit's LOC_val_solution.csv")
    parser.add_argument("--attacks", type=_typed(_attack_list), default="linf-pgd",
                        help=f"comma-separated: {', '.join(ATTACK_NAMES)} (autoattack: the standard version, a "
                        "cascade of apgd-ce, apgd-t, fab-t, square)")
    parser.add_argument("--eps", required=True, type=_typed(_epsilons),
                        help="comma-separated, fractions allowed: 0,1/255,2/255,4/255")
    parser.add_argument("--steps", type=int, help="iterations (default: the attack's foolbox default; AutoAttack's "
                        "APGD and FAB: 100)")
    parser.add_argument("--restarts", type=int, default=1, help="random restarts; the first success is kept (the "
                        "AutoAttack versions fix their own)")
    parser.add_argument("--norm", choices=NORMS, default="linf", help="threat model of the AutoAttack attacks")
    parser.add_argument("--queries", type=int, default=QUERIES, help="queries of the Square attack")
    parser.add_argument("--rel-stepsize", type=float,
                        help="step size relative to eps (default: 2.5 / --steps when --steps is given, so the "
                        "attack can cross the eps-ball; foolbox's otherwise)")
    parser.add_argument("--backend", choices=ATTACK_BACKENDS, default="native",
                        help="native: batched PGD for linf-pgd/l2-pgd and native AutoAttack, foolbox for the "
                        "others; foolbox: all but AutoAttack; reference: as native, with AutoAttack's attacks run "
                        "by the pyautoattack package")
    _run_options(parser)
    _precision_option(parser, "fp32", "bf16", "bf16")


def _train_arguments(parser: argparse.ArgumentParser) -> None:
    from .choices import LR_MODES

    parser.add_argument("--model", required=True, help="architecture (gcp-robust models)")
    parser.add_argument("--data", required=True, help="ImageFolder root with train/ and val/, or 'builtin'")
    parser.add_argument("--lr-mode", choices=LR_MODES, default="LRnorm", help="the paper's LR recipe")
    parser.add_argument("--epochs", type=int, help="default: the recipe's (the schedule stretches to it)")
    parser.add_argument("--batch-size", type=int, help="global batch size (default: the recipe's)")
    parser.add_argument("--lr", type=float, help="initial learning rate (default: the recipe's)")
    parser.add_argument("--weight-decay", type=float, help="default: the recipe's")
    parser.add_argument("--num-classes", type=int, help="default: the number of class folders")
    parser.add_argument("--out", default="runs/train", help="checkpoints, log.jsonl")
    parser.add_argument("--resume", help="a checkpoint.pth.tar written by a previous run")
    parser.add_argument("--device", help="cpu or cuda (default: cuda when present)")
    parser.add_argument("--workers", type=int, default=DEFAULT_WORKERS, help="DataLoader decode processes")
    parser.add_argument("--seed", type=int, default=0, help="seed of the weights and the data order")
    _add_threads(parser)
    _precision_option(parser, "bf16", "no-autocast", "fp32")
    parser.add_argument("--plot", help="write a learning-curve PNG here at the end")
    parser.add_argument("--compare", nargs="*", default=[], help="more log.jsonl files for the same plot")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def _demo_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default="runs/demo", help="where everything is written")
    parser.add_argument("--data", help="ImageFolder root with train/ and val/ instead of the built-in set")
    parser.add_argument("--epochs", type=int, help="training epochs per model (default: 5, or 1 with --quick)")
    parser.add_argument("--quick", action="store_true", help="a reduced setting (tiny data, 1 epoch)")
    _add_threads(parser)
    parser.add_argument("--device", help="cpu or cuda (default: cuda when present)")
    parser.add_argument("--workers", type=int, default=0, help="DataLoader decode processes")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def _table_arguments(parser: argparse.ArgumentParser) -> None:
    _selection_options(parser)
    parser.add_argument("--format", choices=TABLE_FORMATS, default="github",
                        help="table format; csv is one table with a row per number (run, metric, level, value); "
                        "json is the record `report` renders (summaries with intervals, pairs, provenance)")
    parser.add_argument("--published", action="store_true",
                        help="in the paper's layout, the seed release's published numbers beside each seed checkpoint")
    parser.add_argument("--ci", type=float, default=95.0,
                        help="show each value with the bounds [low, high] of this confidence interval (percent; "
                        "0: none)")
    parser.add_argument("--pairs", action="store_true",
                        help="after each GAP/GCP twin over the same images: their difference, * where significant")
    parser.add_argument("--alpha", type=float, default=0.05, help="significance level of --pairs")
    parser.add_argument("--baseline-run", help="perturbation run (id, --name or model) that FR, mFR and mT5D are "
                        "relative to, e.g. torchvision:alexnet's; its run of a C-bar protocol is the baseline of "
                        "that protocol's mCE")
    _trend_option(parser)


def _report_arguments(parser: argparse.ArgumentParser) -> None:
    _selection_options(parser)
    parser.add_argument("--out", default="report.html", help="the HTML file to write (one self-contained page)")
    parser.add_argument("--ci", type=float, default=95.0, help="confidence level of the intervals (percent; 0: none)")
    parser.add_argument("--alpha", type=float, default=0.05, help="significance level of the GAP/GCP pairs")
    parser.add_argument("--baseline-run", help="perturbation run (id, --name or model) that mFR and mT5D are "
                        "relative to, e.g. torchvision:alexnet's")
    _trend_option(parser)


def _export_arguments(parser: argparse.ArgumentParser) -> None:
    _selection_options(parser)
    parser.add_argument("--format", choices=("robustbench",), default="robustbench",
                        help="robustbench: one model_info JSON per model and threat model (Linf, L2, corruptions)")
    parser.add_argument("--out", default="model_info", help="directory: <out>/<dataset>/<threat>/<model>.json")


def _runs_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--db", default=DEFAULT_DB, help="results database")
    parser.add_argument("--model", action="append", help="only runs of these models (repeatable)")
    parser.add_argument("--delete", action="append", metavar="ID", help="remove this run and its cells (repeatable)")


def _plot_arguments(parser: argparse.ArgumentParser) -> None:
    _selection_options(parser)
    parser.add_argument("--out", required=True, help="image file (.png, .jpg, .pdf or .svg; .png is added when none)")
    parser.add_argument("--kind", choices=("corruption", "attack", "perturbation"), default="corruption",
                        help="error vs severity (corruption), robust accuracy vs eps (attack) or flip probability "
                        "per perturbation (perturbation)")


def _compare_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("baseline", nargs="?", help="a --json run summary")
    parser.add_argument("current", nargs="?", help="a --json run summary of the same kind")
    parser.add_argument("--run", action="append", metavar="ID",
                        help="compare stored runs instead: --run BASELINE --run CURRENT (id or --name)")
    parser.add_argument("--db", default=DEFAULT_DB, help="results database, with --run")
    parser.add_argument("--fail-on-regression", action="store_true",
                        help="exit 1 only for a metric worse by more than --max-increase AND significant at --alpha "
                        "(without it: any metric worse by more than --max-increase)")
    parser.add_argument("--alpha", type=float, default=0.05, help="significance level of the paired tests")
    parser.add_argument("--format", choices=("markdown", "json", "junit"), default="markdown",
                        help="markdown (a PR comment), json, or junit XML (one test case per metric)")
    parser.add_argument("--max-increase", type=float, default=1.0,
                        help="largest tolerated worsening in percentage points")


def _sweep_arguments(parser: argparse.ArgumentParser) -> None:
    from .choices import DEVICE_KINDS, EXECUTORS

    parser.add_argument("action", choices=("plan", "run", "status"),
                        help="plan: list the units with estimates (writes nothing); run: submit and merge; "
                        "status: where a running sweep stands (exit 1 while a unit has failed)")
    parser.add_argument("path", help="the sweep file (plan, run) or the sweep's --out folder (status)")
    parser.add_argument("--out", help="run: folder of the plan, the units' stores and merged.sqlite")
    parser.add_argument("--executor", choices=EXECUTORS, default="slurm",
                        help="slurm: a job array through submitit; local: processes on this machine")
    parser.add_argument("--max-unit-minutes", type=float, default=60.0,
                        help="split longer units by cells and image shards (estimated)")
    parser.add_argument("--device-kind", choices=DEVICE_KINDS, default="h200",
                        help="the device the estimate assumes")
    parser.add_argument("--partition", help="slurm partition")
    parser.add_argument("--gpus-per-unit", type=int, default=1, help="slurm: GPUs per unit (0: CPU jobs)")
    parser.add_argument("--cpus-per-unit", type=int, help="slurm: cores per unit (torch uses as many threads)")
    parser.add_argument("--time", type=int, default=240, help="slurm: minutes per job before it is requeued")
    parser.add_argument("--mem", help="slurm: memory per unit, e.g. 64G")
    parser.add_argument("--array-parallelism", type=int, default=64, help="slurm: units running at once")
    parser.add_argument("--sbatch", action="append", metavar="NAME=VALUE",
                        help="further sbatch option, e.g. --sbatch account=vision (repeatable)")
    parser.add_argument("--processes", type=int, default=1, help="local: units at once on the CPU")
    parser.add_argument("--gpus", type=int, default=0, help="local: one unit per GPU on this many GPUs")
    parser.add_argument("--no-wait", action="store_true", help="return after submitting (watch with sweep status)")
    parser.add_argument("--poll", type=float, default=10.0, help="seconds between looks at the queue while waiting")


def _merge_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("stores", nargs="+", help="results stores to merge (e.g. a sweep's units/*/store.sqlite)")
    parser.add_argument("--db", required=True, help="the merged store (created, or added to)")


@dataclass(frozen=True)
class _Command:
    name: str
    help: str
    arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int | None]


COMMANDS = (
    _Command("models", "list architectures and released checkpoints", _models_arguments, _cmd_models),
    _Command("checkpoint", "identify a checkpoint file and check that it loads", _checkpoint_arguments,
             _cmd_checkpoint),
    _Command("corrupt", "write a corrupted copy of an ImageFolder (<corruption>/<severity>/<class>/<file>)",
             _corrupt_arguments, _cmd_corrupt),
    _Command("eval-corruption", "clean error, CE, mCE and relative mCE of a model", _eval_corruption_arguments,
             _cmd_eval_corruption),
    _Command("eval-attack", "robust accuracy under adversarial attacks across epsilons", _eval_attack_arguments,
             _cmd_eval_attack),
    _Command("eval-shift", "top-1/top-5 error on ImageNet-A, -R, -Sketch or V2, and effective robustness",
             _eval_shift_arguments, _cmd_eval_shift),
    _Command("perturb", "write perturbation sequences of an ImageFolder (ImageNet-P MP4s or CIFAR-10-P arrays)",
             _perturb_arguments, _cmd_perturb),
    _Command("eval-perturbation", "flip probability and top-5 distance (FR, mFR, mT5D) of a model",
             _eval_perturbation_arguments, _cmd_eval_perturbation),
    _Command("train", "train a GAP or GCP model with the paper's LR recipes", _train_arguments, _cmd_train),
    _Command("demo", "train GAP and GCP on built-in photos, evaluate, compare (minutes)", _demo_arguments,
             _cmd_demo),
    _Command("table", "corruption (CE, mCE), attack (robust accuracy), perturbation and natural-shift (effective "
             "robustness) tables of stored runs", _table_arguments, _cmd_table),
    _Command("report", "one self-contained HTML page of stored runs: tables, pairs, figures, provenance",
             _report_arguments, _cmd_report),
    _Command("export", "stored runs in RobustBench's model_info format (AutoAttack and corruption accuracy)",
             _export_arguments, _cmd_export),
    _Command("plot", "error vs severity, or robust accuracy vs eps, one line per run", _plot_arguments, _cmd_plot),
    _Command("runs", "list the stored runs with their ids and identities, or --delete one", _runs_arguments,
             _cmd_runs),
    _Command("compare", "regression table of two --json summaries (exit 1 if worse)", _compare_arguments,
             _cmd_compare),
    _Command("sweep", "many models × evaluations on SLURM or local processes: plan, run, status",
             _sweep_arguments, _cmd_sweep),
    _Command("merge", "merge results stores (a sweep's units) into one", _merge_arguments, _cmd_merge),
)


def _add_threads(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--threads", type=int, help="CPU threads for torch's operations (default: the cores that "
                        "other processes leave idle, by the 1-minute load average, at least 1)")


def build_parser(only: str | None = "") -> argparse.ArgumentParser:
    """The parser; each command's options are added for ``only`` (None: every command; "": none,
    which is enough to find the command and answer --help/--version without heavy imports)."""
    parser = _Parser(prog="gcp-robust", description="Robustness benchmarking of GAP and GCP (iSQRT-COV) classifiers.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=_Parser)
    for command in COMMANDS:
        full = only is None or only == command.name
        sub = commands.add_parser(command.name, help=command.help, description=command.help, add_help=full,
                                  formatter_class=_Formatter)
        if full:
            command.arguments(sub)
        sub.set_defaults(command_function=command.run)
    return parser


def _one_line_warning(command: str) -> Callable[..., str]:
    """Warnings for the user as one line, like the errors: what happened, not where in the code."""
    def format_warning(message, category, filename, lineno, line=None) -> str:
        return f"gcp-robust {command}: warning: {str(message).replace(chr(10), ' ')}\n"

    return format_warning


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = build_parser().parse_known_args(argv)[0].command
    args = build_parser(command).parse_args(argv)
    warnings.formatwarning = _one_line_warning(command)
    try:
        if hasattr(args, "threads"):
            from .devices import set_threads

            set_threads(args.threads)
        status = args.command_function(args) or 0
        sys.stdout.flush()
        return status
    except BrokenPipeError:  # the reader stopped (`gcp-robust table | head`): not an error of ours
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except Error as error:
        message = str(error).replace("\n", " ")
    except OSError as error:
        if error.filename is None:
            raise
        message = f"{error.filename}: {error.strerror}"
    print(f"gcp-robust {args.command}: error: {message}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
