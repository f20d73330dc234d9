"""Run the reference packages live on the recorded cases.

    python tests/record_references.py --check [CASE ...]   # they must reproduce their records (the default)
    python tests/record_references.py --write [CASE ...]   # rewrite the records from a live run
    python tests/record_references.py --list

``tox -e reference`` runs ``--check``; ``tox -e reference -- --write`` rewrites. Rewrite a record
only when a reference package, torch or the inputs changed on purpose, and say so in the change:
the native code is compared with these records from then on.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402
from references import CASES, make_record, write_record  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    action = parser.add_mutually_exclusive_group()
    action.add_argument("--check", action="store_true", help="live runs must reproduce the records (default)")
    action.add_argument("--write", action="store_true", help="rewrite the records from live runs")
    action.add_argument("--list", action="store_true", help="list the cases")
    parser.add_argument("cases", nargs="*", metavar="CASE", help="cases to run (default: all)")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.cases) - set(CASES))
    if unknown:
        parser.error(f"unknown case(s) {', '.join(unknown)}; --list shows them")
    if args.list:
        print("\n".join(CASES))
        return 0
    if not args.write:
        import pytest

        selection = " or ".join(f"[{name}]" for name in args.cases)
        return pytest.main([str(Path(__file__).with_name("test_reference_records.py")), "-m", "reference",
                            "-p", "no:cacheprovider", *(["-k", selection] if args.cases else [])])
    torch.set_num_threads(min(2, torch.get_num_threads()))
    for name in args.cases or CASES:
        start = time.perf_counter()
        write_record(make_record(name))
        print(f"{name}: recorded in {time.perf_counter() - start:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
