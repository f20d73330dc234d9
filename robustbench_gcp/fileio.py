"""Atomic file writes: a file is either absent or complete, so interrupted runs resume safely.

A write that fails (a full disk, no permission) raises ``WriteError`` naming the file it was
writing and leaves nothing behind, not even the temporary file: an OS error without a file name
("No space left on device") would otherwise not say which output failed.
"""

from __future__ import annotations

import errno
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from .errors import Error


class OutputPathError(Error, ValueError):
    """An output path that cannot be written, found before any work is done."""


class WriteError(Error):
    """An output file the operating system refused to write: full disk, quota, permissions."""


def check_output_file(path: str | Path, option: str) -> Path:
    """Refuse, before a long run, an output path that is a directory or sits under a file."""
    path = Path(path)
    if path.is_dir():
        raise OutputPathError(f"{option} {path} is a directory; pass a file path, e.g. {path / 'out'}")
    parent = next((p for p in path.parents if p.exists()), None)
    if parent is not None and not parent.is_dir():
        raise OutputPathError(f"{option} {path}: {parent} is a file, not a folder")
    if parent is not None:
        try:  # a real probe: permissions, read-only mounts and pseudo file systems alike
            tempfile.TemporaryFile(dir=parent).close()
        except OSError as error:
            raise OutputPathError(f"{option} {path}: cannot write into {parent} ({error.strerror or error}); "
                                  "pass a writable path") from None
    return path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _fix(error: OSError) -> str:
    if error.errno in (errno.ENOSPC, errno.EDQUOT):
        return "free space on its disk or choose another output folder"
    if error.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return "make its folder writable or choose another output folder"
    return "choose another output folder"


class AtomicFile:
    """A binary file written under a temporary name beside ``path`` and renamed to ``path`` when
    the ``with`` block ends without an error (or by ``commit``).

    The file gets the permissions a plain ``open`` would give it (0666 less the umask), not the
    0600 of the temporary file. An OS error of any of its operations discards the temporary file
    and raises ``WriteError`` naming ``path``; leaving the block with any other error discards it
    too. ``write`` makes it a file object for ``shutil.copyfileobj``.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._temporary: Path | None = None
        with self._reported():
            self.path.parent.mkdir(parents=True, exist_ok=True)
            handle, temporary = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.", suffix=".tmp")
            self._stream = os.fdopen(handle, "wb")
            self._temporary = Path(temporary)

    @contextmanager
    def _reported(self) -> Iterator[None]:
        try:
            yield
        except OSError as error:
            self.discard()
            raise WriteError(f"{self.path}: {error.strerror or error}; {_fix(error)}") from None

    def write(self, data: bytes | memoryview) -> int:
        with self._reported():
            return self._stream.write(data)

    def seek(self, offset: int) -> int:
        with self._reported():
            return self._stream.seek(offset)

    def reserve(self, size: int) -> None:
        """Claim ``size`` bytes of disk now, where the OS can: a full disk then stops a long run
        before its work, and a file filled out of order cannot run out of space half-way."""
        if not hasattr(os, "posix_fallocate"):
            return
        with self._reported():
            try:
                os.posix_fallocate(self._stream.fileno(), 0, size)
            except OSError as error:
                if error.errno not in (errno.EINVAL, errno.EOPNOTSUPP):  # a file system without it
                    raise

    def commit(self) -> None:
        """Close the file and rename it into place."""
        with self._reported():
            self._stream.close()
            os.chmod(self._temporary, 0o666 & ~_umask())
            os.replace(self._temporary, self.path)
        self._temporary = None

    def discard(self) -> None:
        """Close and remove the temporary file; ``path`` stays as it was."""
        if self._temporary is None:
            return
        with suppress(OSError):  # the close's flush fails on the full disk that brought us here
            self._stream.close()
        self._temporary.unlink(missing_ok=True)
        self._temporary = None

    def __enter__(self) -> AtomicFile:
        return self

    def __exit__(self, kind, error, traceback) -> None:
        if kind is None:
            self.commit()
        else:
            self.discard()


def atomic_write_bytes(path: str | Path, data: bytes | memoryview) -> None:
    """Write ``data`` to a temporary file beside ``path``, then rename it into place."""
    with AtomicFile(path) as file:
        file.write(data)


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())
