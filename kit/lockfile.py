"""The lockfile: the whole dependency closure of a profile, as uv resolved it.

Format: a pip/uv requirements file with hashes (so the image installs it with --require-hashes),
preceded by a header of `# kit-lock: key = value` lines. uv's `# via` comments are kept: they say
which pinned package brought each transitive one in.

This module is on `kit check`'s path: it reads and judges lockfiles and never runs the resolver
(kit/resolve.py does that, for `kit lock`). Freshness is a hash over what affects resolution only
(see `resolution_inputs`), so `kit lock --check` and `kit check` answer without the network.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from kit.errors import LockStale, ProfileError
from kit.load import LoadedProfile

HEADER = "# kit-lock: "
# The model section: what `kit lock` read from the model's own files (kit/hub.py), `key = value` lines.
MODEL_HEADER = "# kit-model: "
# Bump when the lock's layout or kit's way of resolving changes: every lock becomes stale.
FORMAT = "1"
# Wheels first: an sdist is built while the image builds. resolve.py adds `--no-binary NAME` for a
# package with no wheel (kit/data/sdists.toml, or classified by kit.sdist; never with image.sdists = "none").
RESOLVER_OPTIONS = ("--only-binary", ":all:", "--index-strategy", "first-index")
# Platform assumed when kit does not know the base image's glibc (recorded in the header).
FALLBACK_GLIBC = "2.28"

PROVIDED = "# provided: "  # a package the base image holds (engine from the image): checked, not installed
_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?==([^\s;\\]+)")


@dataclass
class Lock:
    path: Path
    header: dict[str, str]
    packages: dict[str, Version]
    via: dict[str, list[str]] = field(default_factory=dict)
    text: str = ""
    provided: dict[str, Version] = field(default_factory=dict)  # engine from the image: what the image holds (not installed)
    model: dict[str, str] = field(default_factory=dict)  # the `# kit-model:` section (empty: none recorded)

    @property
    def body(self) -> str:
        """The requirements without kit's header: what pip/uv install with --require-hashes."""
        lines = self.text.splitlines(keepends=True)
        i = 0
        while i < len(lines) and (lines[i].startswith("#") or not lines[i].strip()):
            i += 1
        return "".join(lines[i:])

    @property
    def sdist_kinds(self) -> dict[str, str]:
        """`name==version` -> `pure-python` | `compiles(gcc,nvcc)`: how kit classified an sdist it read."""
        raw = self.header.get("sdist-kinds", "")
        return dict(item.rsplit(":", 1) for item in raw.split() if ":" in item)

    @property
    def build_from_source(self) -> list[str]:
        """`name==version` of the packages the image builds from an sdist (none by default)."""
        raw = self.header.get("build-from-source", "none")
        return [] if raw in ("", "none") else raw.split()


@dataclass(frozen=True)
class Inputs:
    """Everything that decides what the resolver picks, and nothing else (no schema files, no GPU)."""

    requirements: tuple[str, ...]  # sorted `name==version` / `sglang[srt]==...`
    engine: str
    python: str
    platform: str
    platform_assumed: bool  # the base image's glibc is unknown to kit: FALLBACK_GLIBC assumed
    index_url: str | None
    extra_index_urls: tuple[str, ...]
    sdist_allowed: tuple[str, ...]  # pinned packages kit may take as sdists (kit/data/sdists.toml)
    # Issue 12; each enters the hash only when set, so the locks of profiles that use none stay fresh.
    constraints: tuple[str, ...] = ()  # `name==version` the base image holds (engine from the image)
    from_image: str | None = None  # the base image the engine comes from
    engine_requirement: str | None = None  # `vllm==0.9.1`: resolved with the additions, installed by the image
    sdists: str = "when-no-wheel"  # image.sdists: which source distributions the resolver may take

    def hash(self) -> str:
        doc = {
            "format": FORMAT,
            "requirements": list(self.requirements),
            "engine": self.engine,
            "python": self.python,
            "platform": self.platform,
            "index_url": self.index_url,
            "extra_index_urls": list(self.extra_index_urls),
            "resolver": list(RESOLVER_OPTIONS),
            "sdist_allowed": list(self.sdist_allowed),
        }
        if self.from_image:
            doc.update(from_image=self.from_image, constraints=list(self.constraints), engine_requirement=self.engine_requirement)
        if self.sdists != "when-no-wheel":
            doc["sdists"] = self.sdists
        return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()


def lock_path(loaded: LoadedProfile) -> Path:
    return loaded.path.with_suffix(".lock")


# -- what the resolver is asked ------------------------------------------------------------------


def engine_extras(engine: str, packages: dict[str, str]) -> dict[str, str]:
    """Extras kit adds to the engine requirement: package -> extra.

    SGLang up to 0.5.2 keeps its server runtime (sgl-kernel, torch, flashinfer, fastapi, uvicorn,
    torchao, outlines, ...) in the `srt` extra; the bare package cannot serve. Later releases moved
    it into the base requirements. vLLM needs no extra.
    """
    version = packages.get("sglang")
    if engine == "sglang" and version is not None and Version(version) <= Version("0.5.2"):
        return {"sglang": "srt"}
    return {}


@cache
def sdist_allowlist() -> dict[str, dict[str, str]]:
    """kit/data/sdists.toml: packages that may be installed from an sdist when pinned exactly."""
    from kit import catalog

    return {canonicalize_name(row["package"]): row for row in catalog.data_file("sdists.toml").get("sdist", [])}


def platform_for(base: str, builder_version: str | None = None) -> tuple[str, bool]:
    """uv's --python-platform for a base image: x86_64-manylinux_<glibc>; (platform, assumed)."""
    from kit.image_facts import image_facts

    glibc = image_facts(base, builder_version).glibc
    assumed = glibc is None
    text = FALLBACK_GLIBC if assumed else str(glibc)
    major, _, minor = text.partition(".")
    return f"x86_64-manylinux_{major}_{minor or 0}", assumed


def _requirement(name: str, version: str, extras: tuple[str, ...]) -> str:
    return f"{name}[{','.join(extras)}]=={version}" if extras else f"{name}=={version}"


def resolution_inputs(loaded: LoadedProfile) -> Inputs:
    from kit.image_facts import image_facts

    p = loaded.profile
    extras = {name: (e,) for name, e in engine_extras(p.engine.name, p.packages).items()}
    for name, named in p.extras.items():
        extras[name] = tuple(sorted(set(extras.get(name, ())) | set(named)))
    facts = image_facts(p.image.base, p.image.builder_version)
    engine_pkg = p.engine.name  # the engine's package has the engine's name (vllm, sglang)
    python = p.image.python
    constraints: tuple[str, ...] = ()
    engine_requirement = None
    packages = dict(p.packages)
    if p.engine_from_image:
        if facts.python and "python" not in p.image.model_fields_set:
            python = facts.python
        image_version = facts.packages.get(engine_pkg) or packages.get(engine_pkg)
        packages.pop(engine_pkg, None)  # the image installs the engine; the profile's pin only names its version
        if image_version:
            engine_extras_ = set(extras.get(engine_pkg, ())) | ({facts.engine_extra} if facts.engine_extra else set())
            engine_requirement = _requirement(engine_pkg, image_version, tuple(sorted(engine_extras_)))
        # The profile's own pins move a package the image holds; the rest of the image holds still.
        constraints = tuple(sorted(f"{n}=={v}" for n, v in facts.packages.items() if n not in packages and n != engine_pkg and n not in facts.no_deps))
    reqs = [_requirement(name, version, extras.get(name, ())) for name, version in packages.items()]
    platform, assumed = platform_for(p.image.base, p.image.builder_version)
    allowed = sdist_allowlist()
    return Inputs(
        requirements=tuple(sorted(reqs)),
        engine=p.engine.name,
        python=python,
        platform=platform,
        platform_assumed=assumed,
        index_url=p.image.index_url,
        extra_index_urls=tuple(p.image.extra_index_urls),
        sdist_allowed=tuple(sorted(n for n in p.packages if n in allowed)),
        constraints=constraints,
        from_image=p.image.base if p.engine_from_image else None,
        engine_requirement=engine_requirement,
        sdists=p.image.sdists,
    )


def resolution_hash(loaded: LoadedProfile) -> str:
    return resolution_inputs(loaded).hash()


# -- reading -------------------------------------------------------------------------------------


def parse(path: Path) -> Lock:
    return parse_text(path.read_text(encoding="utf-8"), path)


def parse_text(text: str, path: Path) -> Lock:
    header: dict[str, str] = {}
    packages: dict[str, Version] = {}
    via: dict[str, list[str]] = {}
    provided: dict[str, Version] = {}
    model: dict[str, str] = {}
    current: str | None = None
    for n, line in enumerate(text.splitlines(), 1):
        if line.startswith("    --hash="):  # most of a lockfile's lines: nothing to read in them
            continue
        if line.startswith(PROVIDED):
            m = _PIN.match(line[len(PROVIDED) :])
            if m:
                provided[canonicalize_name(m.group(1))] = Version(m.group(2))
            current = None
            continue
        if line.startswith(MODEL_HEADER):
            key, _, value = line[len(MODEL_HEADER) :].partition(" = ")
            key = key.strip()
            model[key] = f"{model[key]}\n{value.strip()}" if key in model else value.strip()
            continue
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
    return Lock(path=path, header=header, packages=packages, via=via, text=text, provided=provided, model=model)


@dataclass
class Status:
    state: str  # "fresh" | "stale" | "missing"
    path: Path
    lock: Lock | None = None
    reason: str = ""


_memo: dict[tuple[Path, int, int, str], Status] = {}


def status(loaded: LoadedProfile) -> Status:
    """Whether the profile's lockfile exists and was resolved from exactly these inputs (offline)."""
    path = lock_path(loaded)
    try:
        st = path.stat()
    except FileNotFoundError:
        return Status("missing", path, reason="no lockfile")
    want = resolution_hash(loaded)
    key = (path, st.st_mtime_ns, st.st_size, want)
    if key in _memo:
        return _memo[key]
    try:
        lock = parse(path)
    except ProfileError as exc:
        result = Status("stale", path, reason=exc.message)
    else:
        if lock.header.get("profile-hash") != want:
            result = Status("stale", path, lock, reason="the profile's packages, engine, Python, platform or index changed since it was locked")
        else:
            result = Status("fresh", path, lock)
    _memo.clear()
    _memo[key] = result
    return result


def closure_for(loaded: LoadedProfile):
    """The lock's closure for kit check, when a lockfile exists and is fresh; None otherwise."""
    from kit.check import Closure

    st = status(loaded)
    if st.state != "fresh" or st.lock is None:
        return None
    lock = st.lock
    via: dict[str, str] = {}
    for name, parents in lock.via.items():
        names = [canonicalize_name(p.split()[0]) for p in parents if p and not p.startswith("-")]
        described = [f"{p} {lock.packages[p]}" for p in names if p in lock.packages]
        if described:
            via[name] = ", ".join(described)
    packages = {**lock.provided, **lock.packages}
    return Closure(packages=packages, via=via, build_from_source=lock.build_from_source, sdist_kinds=lock.sdist_kinds)


def closure_note(loaded: LoadedProfile) -> str | None:
    """Why the closure was not checked, for kit check's report (None when the lock is fresh)."""
    st = status(loaded)
    if st.state == "missing":
        return f"closure not checked: no lockfile ({loaded.rel(st.path)}), so only the pinned packages were checked (run `kit lock`)"
    if st.state == "stale":
        return f"closure not checked: {loaded.rel(st.path)} is stale ({st.reason}), so only the pinned packages were checked (run `kit lock`)"
    return None


def model_section(loaded: LoadedProfile) -> tuple[dict[str, str], str | None]:
    """The lock's model section when it was read for this profile's model.id and model.revision
    (whether or not the package closure is fresh: the two are independent), else ({}, why not)."""
    st = status(loaded)
    if st.lock is None or not st.lock.model:
        return {}, None if st.lock is None else f"{loaded.rel(st.path)} records no model facts (run `kit lock`)"
    section = st.lock.model
    m = loaded.profile.model
    asked = m.revision or "main"
    if section.get("id") != m.id or section.get("revision") != asked:
        was = f"{section.get('id')}@{section.get('revision')}"
        return {}, f"the model facts in {loaded.rel(st.path)} are for {was}, not {m.id}@{asked} (run `kit lock`)"
    return section, None


def model_commit(loaded: LoadedProfile) -> str | None:
    """The commit the lock resolved model.revision to, when the lock is for this model."""
    section, _ = model_section(loaded)
    return section.get("commit")


def requirements_for_image(loaded: LoadedProfile) -> str | None:
    """The hashed requirements the image installs (`pip install --require-hashes --no-deps -r`).

    None when the profile has no lockfile. A stale lockfile is an error: an image built from it would
    not be the stack the profile describes. Packages in `Lock.build_from_source` are sdists (the
    installer must be allowed to build them: no `--only-binary :all:` for those).
    """
    st = status(loaded)
    if st.state == "missing":
        return None
    if st.state == "stale" or st.lock is None:
        raise LockStale(f"{loaded.rel(st.path)} is stale: {st.reason}", file=loaded.display, fix=f"run `kit lock {loaded.display}`")
    return st.lock.body
