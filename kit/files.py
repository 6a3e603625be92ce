"""The user's files: read only regular files, replace them atomically.

A named pipe given as a profile blocks a plain `open()` forever; a directory, a symlink loop or a NUL in
the path raise errors no caller explains. Everything kit reads from the user goes through
`read_text`, everything it rewrites in place through `write_atomic`.
"""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path

from kit.errors import KitError, ProfileError

_KINDS = {stat.S_IFDIR: "a directory", stat.S_IFIFO: "a named pipe", stat.S_IFSOCK: "a socket", stat.S_IFCHR: "a character device", stat.S_IFBLK: "a block device"}


def kind(mode: int) -> str:
    """What a non-regular file is, in words."""
    return _KINDS.get(stat.S_IFMT(mode), "not a regular file")


def read_bytes(path: Path, *, display: str | None = None, error: type[KitError] = ProfileError) -> bytes:
    """The bytes of a regular file; anything else (pipe, directory, device, loop, NUL in the name) is `error`."""
    shown = display or str(path)
    if "\0" in str(path):
        raise error("the path contains a NUL character", file=shown.replace("\0", "\\0"), fix="name the file without control characters")
    try:
        # O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer, forever.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise error("file not found", file=shown, fix="check the path") from None
    except IsADirectoryError:
        raise error("is a directory, not a file", file=shown, fix="name a file") from None
    except OSError as exc:
        raise error(f"cannot open: {exc.strerror or exc}", file=shown, fix="check the path and its permissions (a symlink loop shows as too many levels of links)") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise error(f"is {kind(st.st_mode)}, not a regular file", file=shown, fix="name a regular file")
        with os.fdopen(fd, "rb", closefd=False) as fh:
            return fh.read()
    except OSError as exc:
        raise error(f"cannot read: {exc.strerror or exc}", file=shown, fix="check the file") from None
    finally:
        os.close(fd)


def read_text(path: Path, *, display: str | None = None, error: type[KitError] = ProfileError) -> str:
    """The UTF-8 text of a regular file (see `read_bytes`)."""
    data = read_bytes(path, display=display, error=error)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise error(f"not UTF-8 text ({exc.reason} at byte {exc.start})", file=display or str(path), fix="save the file as UTF-8") from None


def write_atomic(path: Path, text: str, *, mode: int | None = 0o644) -> None:
    """Write beside the target, fsync, rename over it: readers see the old file or the new one, never half.

    `mode=None` keeps the permissions of the file being replaced.
    """
    if mode is None:
        try:
            mode = stat.S_IMODE(os.stat(path).st_mode)
        except FileNotFoundError:
            mode = 0o644
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
