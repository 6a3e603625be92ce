"""Facts about releases that check's computed rules read: from the knowledge store (kit/knowledge)
when it records the release, else from the hand-kept rows in kit/data, else None ("kit does not know").

Each answer carries its provenance, so a finding can cite the artifact the fact came from. Nothing
here imports the store at module load: `kit check` pays for a lookup only when a rule asks.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from packaging.requirements import InvalidRequirement, Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from kit import catalog


@dataclass(frozen=True)
class Fact:
    value: Any
    source: str


def _engine_facts(engine: str, version: str) -> Any:
    from kit.knowledge.engines import engine_facts  # on first use: check pays only when a rule asks

    return engine_facts(engine, version)


def _query() -> Any:
    from kit.knowledge import query

    return query


def _cc(value: int | str) -> Version:
    """80 -> 8.0, "8.9" -> 8.9."""
    if isinstance(value, int):
        return Version(f"{value // 10}.{value % 10}")
    return Version(str(value))


def fp8_min_capability(engine: str, version: Version) -> Fact | None:
    """The least compute capability at which `engine` `version` accepts FP8 weights."""
    facts = _engine_facts(engine, str(version))
    if facts is not None and "fp8" in (facts.quant_min_capability or {}):
        return Fact(_cc(facts.quant_min_capability["fp8"]), facts.source_of("quant_min_capability"))
    for row in catalog.data_file("capabilities.toml").get("fp8_min_capability", []):
        if row["engine"] == engine and SpecifierSet(row["versions"]).contains(version, prereleases=True):
            return Fact(_cc(row["min_compute_capability"]), row["source"])
    return None


def requires_dist(package: str, version: str) -> Fact | None:
    """The Requires-Dist of a release, from the knowledge store; None when kit has not recorded it."""
    rel = _query().release(package, version)
    if rel is not None and rel.requires_dist is not None:
        return Fact(rel.requires_dist, rel.metadata_source or f"{package}=={version} (knowledge store)")
    return None


def releases(package: str) -> tuple[str, ...]:
    return _query().releases(package)


_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


def marker_env(python: str) -> dict[str, str]:
    """PEP 508 marker values of the image: Linux x86_64 CPython `python`."""
    from packaging.markers import default_environment

    env = dict(default_environment())
    env.update(
        python_version=python,
        python_full_version=f"{python}.0",
        sys_platform="linux",
        platform_system="Linux",
        platform_machine="x86_64",
        os_name="posix",
        implementation_name="cpython",
        platform_python_implementation="CPython",
    )
    return env


def requirements(package: str, version: str, env: dict[str, str], extras: tuple[str, ...] = ()) -> list[Requirement] | None:
    """Every requirement of `package` `version` that applies (markers in env, with `extras` requested)."""
    fact = requires_dist(package, version)
    if fact is None:
        return None
    out = []
    for raw in fact.value:
        try:
            req = Requirement(raw)
        except InvalidRequirement:
            continue
        if req.marker is None or any(req.marker.evaluate({**env, "extra": e}) for e in ("", *extras)):
            out.append(req)
    return out


def requirements_on(package: str, version: str, other: str, env: dict[str, str], extras: tuple[str, ...] = ()) -> list[Requirement] | None:
    """What `package` `version` requires of `other`, None when kit does not know its metadata."""
    reqs = requirements(package, version, env, extras)
    if reqs is None:
        return None
    want = canonicalize_name(other)
    return [r for r in reqs if canonicalize_name(r.name) == want]


def requires_python(package: str, version: str) -> str | None:
    rel = _query().release(package, version)
    return rel.requires_python if rel is not None else None


def exact_version(req: Requirement) -> str | None:
    """The version an `==` requirement names, else None."""
    specs = list(req.specifier)
    if len(specs) == 1 and specs[0].operator in ("==", "===") and "*" not in specs[0].version:
        return specs[0].version
    return None


def newest_release(package: str, accepts: Any) -> str | None:
    """The newest non-prerelease recorded release of package for which accepts(version) holds."""
    best = None
    for raw in releases(package):
        try:
            v = Version(raw)
        except InvalidVersion:
            continue
        if v.is_prerelease or v.is_devrelease or (best is not None and v <= best):
            continue
        if accepts(raw):
            best = v
    return str(best) if best is not None else None


def torch_archs(version: str) -> Fact | None:
    q = _query()
    archs = q.torch_archs(version)
    if archs is None:
        return None
    return Fact(archs, f"torch=={version} CUDA {q.torch_cuda(version)} (kit/knowledge/store/archs/torch.json)")


def needed_libs(package: str, version: str) -> Fact | None:
    q = _query()
    libs = q.needed_libs(package, version)
    if libs is None:
        return None
    src = q.needed_libs_source(package, version) or {}
    return Fact(libs, f"{package}=={version} {src.get('file', '')} sha256:{src.get('sha256', '')} (DT_NEEDED)")


def attention_names(engine: str, version: Version) -> dict[str, Any] | None:
    """The attention backend names a release defines, from its source at the tag (knowledge store)."""
    facts = _engine_facts(engine, str(version))
    if facts is None or not facts.attention_backends:
        return None
    return {"names": sorted(facts.attention_backends), "class": "attention backend enum", "file": facts.source_of("attention.backends")}


def unknown_attention_raises(engine: str, version: Version) -> bool | None:
    """Whether the release refuses an attention backend name it does not know (None: the store does not say)."""
    facts = _engine_facts(engine, str(version))
    return None if facts is None else facts.unknown_attention_backend_raises


def env_vars_read(engine: str, version: Version) -> Fact | None:
    """The environment variables a release declares or reads, from its source at the tag."""
    facts = _engine_facts(engine, str(version))
    if facts is None or not facts.env_vars:
        return None
    return Fact(facts.env_vars, facts.source_of("env_vars.read"))
