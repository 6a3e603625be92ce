"""Root-relative files -> a directory laid out like the repository they came from, and profiles loaded there.

Profiles read from somewhere other than the working tree (a git ref's blobs in kit.gitref, a deployed
revision's stored texts in kit.plan) are sets of root-relative paths. Written under one directory,
`extends` and schema paths resolve there exactly as they did where the files came from.
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType

from kit.errors import OperationError
from kit.load import LoadedProfile, load


def write_files(dest: Path, files: Mapping[str, str | bytes]) -> Path:
    """Write `files` (relative path -> text or bytes) under `dest`, refusing a path that leaves it; returns `dest`."""
    top = dest.resolve()
    for name, content in files.items():
        path = dest / name
        if not path.resolve().is_relative_to(top):
            raise OperationError(f"{name!r} would be written outside {dest}", fix="this is a bug in kit, or the stored files were edited by hand")
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")
    return dest


class Tree:
    """A temporary repository holding `files`; `with Tree(files) as tree: tree.load("profiles/x.toml")`."""

    def __init__(self, files: Mapping[str, str | bytes], prefix: str = "kit-tree-"):
        self.files = files
        self.prefix = prefix
        self.root = Path()
        self._tmp: tempfile.TemporaryDirectory[str] | None = None

    def __enter__(self) -> Tree:
        self._tmp = tempfile.TemporaryDirectory(prefix=self.prefix)
        try:
            self.root = write_files(Path(self._tmp.name).resolve(), self.files)
            (self.root / ".git").mkdir(exist_ok=True)  # marks the root for kit.load.find_root
        except BaseException:
            self._tmp.cleanup()
            raise
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if self._tmp is not None:
            self._tmp.cleanup()

    def load(self, rel: str) -> LoadedProfile:
        """The profile at `rel`, as `kit.load.load` reads it (no KIT_* environment overrides: files only)."""
        return load(self.root / rel, root=self.root, environ={})
