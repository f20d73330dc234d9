"""One root for every error a user can cause, so the command line can tell them from bugs.

``gcp-robust`` prints an ``Error`` as one line and exits with status 2; anything else is an
internal bug and keeps its traceback. Each part of the package raises its own subclass, with
the file or argument at fault and the fix in the message.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class Error(Exception):
    """A bad input, file or setting, reported to the user in one line."""


class UsageError(Error, ValueError):
    """A command-line argument or combination of arguments that cannot work."""


def did_you_mean(name: str, candidates: Iterable[str], limit: int = 3) -> str:
    """' (did you mean a, b?)' for the names closest to a mistyped ``name`` (case-insensitive;
    names that contain it, like cifar_resnet20_gap for resnet20, first), else ''."""
    by_lower = {c.lower(): c for c in candidates}
    key = name.lower()
    containing = [c for lower, c in by_lower.items() if key in lower and key != lower]
    close = [by_lower[c] for c in difflib.get_close_matches(key, list(by_lower), n=limit, cutoff=0.6)]
    found = list(dict.fromkeys(sorted(containing, key=len) + close))[:limit]
    return f" (did you mean {', '.join(found)}?)" if found else ""


def a_kind(word: str) -> str:
    """'an attack', 'a corruption': the article that fits a kind's name."""
    return f"{'an' if word[:1].lower() in 'aeiou' else 'a'} {word}"


def counted(count: int, noun: str) -> str:
    """'1 class', '3 classes'."""
    plural = noun + ("es" if noun.endswith(("s", "sh", "ch", "x")) else "s")
    return f"{count} {noun if count == 1 else plural}"
