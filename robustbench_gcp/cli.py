"""`gcp-robust`: the command line. It parses arguments and calls the library, nothing more."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence

from pathlib import Path

from . import __version__
from .corruptions import BACKENDS, PROTOCOLS, CorruptionError, names
from .corruptions.api import check_name
from .corruptions.export import ExportConfig, export_corrupted_folder
from .models import CheckpointError, UnknownModelError, create_model, guess_architecture, read_checkpoint
from .models.catalog import catalog, parameter_count
from .models.zoo import file_sha256
from .report import catalog_table


class UsageError(Exception):
    """A user mistake the CLI reports in one line (exit status 2)."""


def _cmd_models(args: argparse.Namespace) -> None:
    entries = catalog(args.pattern)
    if not entries and args.format != "json":
        raise UsageError(f"no model or checkpoint matches --pattern {args.pattern!r}")
    print(catalog_table(entries, args.format))


def _cmd_checkpoint(args: argparse.Namespace) -> None:
    """Identify a checkpoint file and, with --model, prove that it loads into that model."""
    state, payload = read_checkpoint(args.path)
    guess, share = guess_architecture(state)
    summary = {
        "path": str(args.path),
        "sha256": file_sha256(args.path),
        "tensors": len(state),
        "arch_in_file": payload.get("arch") if isinstance(payload.get("arch"), str) else None,
        "epoch": payload.get("epoch") if isinstance(payload.get("epoch"), int) else None,
        "likely_architecture": guess,
        "layout_match": round(share, 4),
    }
    if args.model:
        model = create_model(args.model, num_classes=args.num_classes, checkpoint=args.path)
        summary["loaded_into"] = model.architecture.name
        summary["params"] = parameter_count(model.architecture.name) if args.num_classes is None else sum(
            p.numel() for p in model.parameters()
        )
    print(json.dumps(summary, indent=2))


def _corruption_list(text: str) -> list[str]:
    """'a,b' or a subset name ('common', 'all', 'extra', 'noise', ...)."""
    try:
        return names(text)
    except CorruptionError:
        chosen = [part.strip() for part in text.split(",") if part.strip()]
        for name in chosen:
            check_name(name)
        return chosen


def _int_list(text: str) -> list[int]:
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def _default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _cmd_corrupt(args: argparse.Namespace) -> None:
    config = ExportConfig(
        data=Path(args.data), out=Path(args.out), protocol=args.protocol,
        corruptions=_corruption_list(args.corruptions), severities=args.severities, backend=args.backend,
        device=args.device or _default_device(), batch_size=args.batch_size, workers=args.workers,
        seed=args.seed, size=args.size,
    )
    summary = export_corrupted_folder(config, progress=not args.quiet)
    print(f"wrote {summary.written} images, skipped {summary.skipped} already present, into {config.out}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gcp-robust", description="Robustness benchmarking of GAP and GCP (iSQRT-COV) classifiers."
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    models = commands.add_parser("models", help="list architectures and released checkpoints")
    models.add_argument("--pattern", help="glob on the name, e.g. 'resnet50*' or '*GCP*'")
    models.add_argument("--format", choices=("table", "json"), default="table")
    models.set_defaults(run=_cmd_models)

    checkpoint = commands.add_parser("checkpoint", help="identify a checkpoint file and check that it loads")
    checkpoint.add_argument("path", help="a .pth.tar/.th file (original release format or a bare state_dict)")
    checkpoint.add_argument("--model", help="architecture or checkpoint record to load it into")
    checkpoint.add_argument("--num-classes", type=int, help="classifier size (default: the architecture's)")
    checkpoint.set_defaults(run=_cmd_checkpoint)

    corrupt = commands.add_parser(
        "corrupt", help="write a corrupted copy of an ImageFolder (<corruption>/<severity>/<class>/<file>)"
    )
    corrupt.add_argument("--data", required=True, help="ImageFolder root: <class>/<image>")
    corrupt.add_argument("--out", required=True, help="output root; existing files are kept (resume)")
    corrupt.add_argument("--protocol", choices=PROTOCOLS, default="imagenet-c")
    corrupt.add_argument("--corruptions", default="common",
                         help="comma-separated names, or common|extra|all|noise|blur|weather|digital")
    corrupt.add_argument("--severities", type=_int_list, default=[1, 2, 3, 4, 5], help="e.g. 1,3,5")
    corrupt.add_argument("--backend", choices=BACKENDS, default="native")
    corrupt.add_argument("--device", help="cpu or cuda (default: cuda when present)")
    corrupt.add_argument("--batch-size", type=int, default=64)
    corrupt.add_argument("--workers", type=int, default=0, help="DataLoader decode workers")
    corrupt.add_argument("--seed", type=int, default=0)
    corrupt.add_argument("--size", type=int, help="resize+center-crop side (default 224; 32 for cifar10-c)")
    corrupt.add_argument("--quiet", action="store_true", help="no progress bar")
    corrupt.set_defaults(run=_cmd_corrupt)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    run: Callable[[argparse.Namespace], None] = args.run
    try:
        run(args)
    except (UsageError, CheckpointError, UnknownModelError, CorruptionError, FileNotFoundError, ValueError) as error:
        print(f"gcp-robust {args.command}: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
