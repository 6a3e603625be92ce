"""The lockfile: the whole dependency closure of a profile, as uv resolved it.

Format: a pip/uv requirements file with hashes (so the image installs it with --require-hashes),
preceded by a header of `# kit-lock: key = value` lines. uv's `# via` comments are kept: they say
which pinned package brought each transitive one in.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from kit.errors import ProfileError
from kit.load import LoadedProfile

HEADER = "# kit-lock: "
_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?==([^\s;\\]+)")


@dataclass
class Lock:
    path: Path
    header: dict[str, str]
    packages: dict[str, Version]
    via: dict[str, list[str]] = field(default_factory=dict)
    text: str = ""


def lock_path(loaded: LoadedProfile) -> Path:
    return loaded.path.with_suffix(".lock")


def parse(path: Path) -> Lock:
    text = path.read_text(encoding="utf-8")
    header: dict[str, str] = {}
    packages: dict[str, Version] = {}
    via: dict[str, list[str]] = {}
    current: str | None = None
    for n, line in enumerate(text.splitlines(), 1):
        if line.startswith(HEADER):
            key, _, value = line[len(HEADER) :].partition(" = ")
            header[key.strip()] = value.strip()
            continue
        m = _PIN.match(line)
        if m:
            current = canonicalize_name(m.group(1))
            try:
                packages[current] = Version(m.group(2))
            except InvalidVersion:
                raise ProfileError(f"line {n}: {m.group(2)!r} is not a version", file=str(path), fix="regenerate it with `kit lock`") from None
            continue
        stripped = line.strip()
        if current and stripped.startswith("# via"):
            rest = stripped[len("# via") :].strip()
            if rest:
                via.setdefault(current, []).append(rest)
        elif current and stripped.startswith("#   "):
            via.setdefault(current, []).append(stripped[1:].strip())
    if "profile-hash" not in header:
        raise ProfileError("not a kit lockfile (no `# kit-lock: profile-hash` header)", file=str(path), fix="regenerate it with `kit lock`")
    return Lock(path=path, header=header, packages=packages, via=via, text=text)


def closure_for(loaded: LoadedProfile):
    """The lock's closure for kit check, when a lockfile exists and is fresh; None otherwise."""
    from kit.check import Closure

    path = lock_path(loaded)
    if not path.exists():
        return None
    lock = parse(path)
    if lock.header.get("profile-hash") != loaded.content_hash():
        return None
    via: dict[str, str] = {}
    for name, parents in lock.via.items():
        names = [canonicalize_name(p.split()[0]) for p in parents if p and not p.startswith("-r")]
        described = [f"{p} {lock.packages[p]}" for p in names if p in lock.packages]
        if described:
            via[name] = ", ".join(described)
    return Closure(packages=dict(lock.packages), via=via)
