"""`gcp-robust`: the command line. It parses arguments and calls the library, nothing more."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence

from . import __version__
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
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    run: Callable[[argparse.Namespace], None] = args.run
    try:
        run(args)
    except (UsageError, CheckpointError, UnknownModelError) as error:
        print(f"gcp-robust {args.command}: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
