"""One root for every error a user can cause, so the command line can tell them from bugs.

``gcp-robust`` prints an ``Error`` as one line and exits with status 2; anything else is an
internal bug and keeps its traceback. Each part of the package raises its own subclass, with
the file or argument at fault and the fix in the message.
"""

from __future__ import annotations


class Error(Exception):
    """A bad input, file or setting, reported to the user in one line."""


class UsageError(Error, ValueError):
    """A command-line argument or combination of arguments that cannot work."""
