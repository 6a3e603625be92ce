"""A git ref's profiles, read with `git ls-tree` / `git cat-file`.

No checkout: the working tree is never touched. `Snapshot.files` returns the profiles folder plus any
file outside it that an `extends` or schema path names, by repository path; kit.tree writes them into
a temporary directory where `extends` and schema paths resolve exactly as they did at the ref.
"""

from __future__ import annotations

import subprocess
import tomllib
from pathlib import Path, PurePosixPath

from kit.errors import OperationError, UsageError

_PATH_KEYS = (("structured_output", "schema"), ("smoke", "schema"))


def _git(root: Path, *args: str, input: bytes | None = None) -> bytes:
    try:
        proc = subprocess.run(["git", "-C", str(root), *args], input=input, capture_output=True, check=False)
    except FileNotFoundError:
        raise OperationError("git is not installed", fix="install git, or compare two files with `kit diff OLD NEW`") from None
    if proc.returncode != 0:
        raise OperationError(f"`git {' '.join(args)}` failed: {proc.stderr.decode(errors='replace').strip()}")
    return proc.stdout


def repo_root(start: Path) -> Path:
    """The top of the git work tree holding `start`."""
    try:
        out = _git(start, "rev-parse", "--show-toplevel")
    except OperationError:
        raise UsageError(f"{start} is not inside a git repository", fix="run `kit diff --git` from your repository, or compare two files with `kit diff OLD NEW`") from None
    return Path(out.decode().strip()).resolve()


def resolve(root: Path, ref: str) -> str:
    """The commit `ref` names, or a UsageError saying it names none."""
    if ref.startswith("-"):
        raise UsageError(f"{ref!r} is not a git ref", fix="name a branch, tag or commit, e.g. origin/main")
    try:
        return _git(root, "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}").decode().strip()
    except OperationError:
        raise UsageError(
            f"git ref {ref!r} names no commit in {root}",
            fix="fetch it first (in CI: actions/checkout with fetch-depth: 0, or `git fetch origin main`)",
        ) from None


class Snapshot:
    """The files of one commit, read on demand."""

    def __init__(self, root: Path, commit: str):
        self.root = root
        self.commit = commit
        listing = _git(root, "ls-tree", "-r", "-z", "--name-only", commit).decode()
        self.paths = {p for p in listing.split("\0") if p}

    def read(self, paths: list[str]) -> dict[str, bytes]:
        """Blob contents of `paths` (those that exist at the commit), in one `git cat-file --batch`."""
        wanted = [p for p in paths if p in self.paths]
        if not wanted:
            return {}
        raw = _git(self.root, "cat-file", "--batch", input="".join(f"{self.commit}:{p}\n" for p in wanted).encode())
        out: dict[str, bytes] = {}
        pos = 0
        for path in wanted:
            header_end = raw.index(b"\n", pos)
            header = raw[pos:header_end].split()
            size = int(header[2])
            out[path] = raw[header_end + 1 : header_end + 1 + size]
            pos = header_end + 1 + size + 1
        return out

    def profiles(self, folder: str = "profiles") -> list[str]:
        return sorted(p for p in self.paths if PurePosixPath(p).parent == PurePosixPath(folder) and p.endswith(".toml"))

    def files(self, folder: str = "profiles") -> dict[str, bytes]:
        """`folder`'s files and every file its profiles refer to (`extends`, schemas), by repository path."""
        prefix = folder.rstrip("/") + "/"
        todo = [p for p in self.paths if p.startswith(prefix)]
        out: dict[str, bytes] = {}
        done: set[str] = set()
        while todo:
            blobs = self.read(todo)
            out.update(blobs)
            done.update(todo)
            todo = []
            for rel, data in blobs.items():
                if rel.endswith(".toml"):
                    todo += [r for r in _references(rel, data) if r not in done and r not in todo]
        return out


def _references(rel: str, data: bytes) -> list[str]:
    """Repository paths that a profile's `extends` and schema keys name."""
    try:
        doc = tomllib.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError):
        return []  # kit.load reports it, with the position
    here = PurePosixPath(rel).parent
    names = [doc.get("extends")]
    names += [doc.get(section, {}).get(key) for section, key in _PATH_KEYS if isinstance(doc.get(section), dict)]
    out = []
    for name in names:
        if isinstance(name, str):
            parts: list[str] = []
            for part in (here / name).parts:
                if part == "..":
                    if parts:
                        parts.pop()
                elif part != ".":
                    parts.append(part)
            out.append("/".join(parts))
    return out
