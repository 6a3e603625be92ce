"""Pins against the releases the knowledge store recorded: abbreviations, releases that do not exist, typos.

A pin is an exact version. `vllm = "0.9"` installs 0.9.0 (PEP 440 pads with zeros), which is rarely what
the author meant ("the newest 0.9"); a version the index never published fails the install; a package
name no recorded release mentions is most often a typo of one that does.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from kit.knowledge import query


@dataclass
class PinProblem:
    rule: str
    package: str
    values: dict[str, Any] = field(default_factory=dict)


def problems(packages: dict[str, str]) -> Iterator[PinProblem]:
    for name, written in sorted(packages.items()):
        recorded = query.releases(name)
        if not recorded:
            guess = _close_name(name)
            if guess is not None:
                yield PinProblem("package-name-unknown", name, {"package": name, "guess": guess})
            continue
        try:
            wanted = Version(written)
        except InvalidVersion:
            continue
        if wanted.local is not None:  # a local build (+cu126): published on another index, not PyPI's
            continue
        same = [r for r in recorded if _v(r) == wanted]
        if same:
            exact = same[0]
            if len(wanted.release) < len(_v(exact).release):
                series = [r for r in recorded if _v(r).release[: len(wanted.release)] == wanted.release and not _v(r).is_prerelease]
                newest = max(series, key=_v) if series else exact
                yield PinProblem("pin-version-abbreviated", name, {"package": name, "written": written, "exact": exact, "newest": newest})
            continue
        newest_recorded = max(recorded, key=_v)
        if wanted < _v(newest_recorded):
            near = sorted(recorded, key=lambda r: abs(_number(r) - _number(written)))[:3]
            yield PinProblem("pin-no-such-release", name, {"package": name, "version": written, "near": ", ".join(sorted(near, key=_v)), "newest": newest_recorded})


@cache
def _v(text: str) -> Version:
    return Version(text)


def _number(text: str) -> float:
    """A rough distance between versions for 'nearest releases' advice."""
    rel = Version(text).release + (0, 0, 0)
    return rel[0] * 1e6 + rel[1] * 1e3 + rel[2]


def _close_name(name: str) -> str | None:
    names = _known_names()
    canon = canonicalize_name(name)
    if canon in names:
        return None
    found = difflib.get_close_matches(canon, sorted(names), n=1, cutoff=0.85)
    return found[0] if found else None


@cache
def _known_names() -> frozenset[str]:
    """Every package the store records, and every package their newest releases require."""
    import re

    from kit.knowledge import STORE_DIR

    names = set()
    for path in (STORE_DIR / "index").glob("*.json"):
        names.add(path.stem)
        recorded = query.releases(path.stem)
        if not recorded:
            continue
        rel = query.release(path.stem, max(recorded, key=_v))
        for req in (rel.requires_dist or ()) if rel else ():
            head = re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", req)
            if head:
                names.add(canonicalize_name(head.group(0)))
    return frozenset(names)
