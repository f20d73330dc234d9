"""Progress that stays readable: tqdm's bar on a terminal; otherwise (a log file, CI) one plain
line per stage instead of thousands of carriage-return fragments."""

from __future__ import annotations

import sys
from typing import TextIO

from tqdm import tqdm


class LineProgress:
    """The part of tqdm's interface the loops use, writing whole lines to a non-terminal stream."""

    def __init__(self, total: int, desc: str, stream: TextIO) -> None:
        self.total, self.desc, self.stream, self.done = total, desc, stream, 0

    def _line(self, text: str) -> None:
        share = f"{100 * self.done / self.total:.0f}%" if self.total else "-"
        print(f"{self.desc}: {text} ({share} of {self.total})", file=self.stream, flush=True)

    def update(self, count: int = 1) -> None:
        self.done += count

    def set_postfix_str(self, text: str) -> None:
        self._line(text)

    def set_postfix(self, **values: object) -> None:
        self.postfix = values  # per batch: shown in the closing line only

    def close(self) -> None:
        values = getattr(self, "postfix", {})
        self._line("done" + "".join(f", {k} {v}" for k, v in values.items()))


Progress = tqdm | LineProgress


def progress_bar(total: int, desc: str, enabled: bool, unit: str = "img") -> Progress:
    """A tqdm bar on a terminal, plain lines elsewhere, nothing when not ``enabled``."""
    if not enabled:
        return tqdm(total=total, disable=True)
    if sys.stderr.isatty():
        return tqdm(total=total, desc=desc, unit=unit, dynamic_ncols=True)
    return LineProgress(total, desc, sys.stderr)
