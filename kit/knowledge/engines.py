"""What each vLLM / SGLang release's own source says: the query side of kit/knowledge/store/engines/.

    facts = engine_facts("vllm", "0.10.2")
    facts.structured_output.classes          # frozenset({'GuidedDecodingParams'})
    facts.provenance["structured_output.classes"]   # 'vllm==0.10.2 vllm-0.10.2.tar.gz sha256:…:vllm/sampling_params.py'
    first_release_with("vllm", lambda f: not f.has_v0)   # the first release without the V0 engine

The store is written by `python -m kit.knowledge.derive.source`; this module only reads it (json, lazily, once).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

from packaging.version import InvalidVersion, Version

from kit.knowledge.delta import decode

STORE = Path(__file__).resolve().parent / "store" / "engines"
STRUCTURED_ARG_WORDS = ("guided", "structured_output", "grammar")


@dataclass(frozen=True)
class StructuredOutput:
    classes: frozenset[str]  # GuidedDecodingParams / StructuredOutputsParams defined by vllm/sampling_params.py
    request_fields: frozenset[str]  # ChatCompletionRequest fields of the OpenAI server
    engine_args: frozenset[str]  # EngineArgs / ServerArgs fields about structured output
    backends: frozenset[str]  # backend names the engine accepts (Literal values, --*-backend choices)
    request_backend_rejected_with_auto: bool | None  # a request naming a backend fails when the engine's is "auto"
    sampling_params_fields: frozenset[str]
    request_backend_check: Mapping | None = None  # the code that rejects it: path, function, conditions, message


@dataclass(frozen=True)
class EngineFacts:
    engine: str
    version: str
    sdist: str
    sha256: str
    structured_output: StructuredOutput
    env_vars: frozenset[str]  # declared (vllm/envs.py, sglang Envs) or read (os.environ, getenv, *_env_var) anywhere
    attention_backends: frozenset[str]  # vllm: the backend enum's members; sglang: --attention-backend choices
    attention_env_var_read: bool | None  # VLLM_ATTENTION_BACKEND (None for sglang: it has no such variable)
    unknown_attention_backend_raises: bool | None  # None: kit did not derive it (sglang)
    attention_backend_arg: bool  # the attention_backend engine argument exists
    architectures: frozenset[str]
    architecture_kinds: Mapping[str, tuple[str, ...]]  # vllm registry tables serving each architecture
    has_v0: bool | None  # None for sglang
    has_v1: bool | None
    async_engine_class: str | None  # what vllm.AsyncLLMEngine is (AsyncLLMEngine, or V1's AsyncLLM); sglang: Engine
    has_llm_chat: bool | None
    quant_min_capability: Mapping[str, int]  # method (get_name) -> least compute capability, e.g. {'fp8': 75}
    engine_args: frozenset[str]
    facts: Mapping = field(repr=False)  # every recorded fact, by its store name
    sources: Mapping[str, str] = field(repr=False)  # fact -> file(s) inside the sdist

    @property
    def provenance(self) -> Mapping[str, str]:
        """Fact -> `engine==version sdist sha256:…:path`, for every fact that names its file."""
        head = f"{self.engine}=={self.version} {self.sdist} sha256:{self.sha256}"
        return {k: f"{head}:{v}" for k, v in self.sources.items()}

    def source_of(self, fact: str) -> str:
        """The provenance of one fact (falls back to the sdist itself)."""
        return self.provenance.get(fact, f"{self.engine}=={self.version} {self.sdist} sha256:{self.sha256}")


def engine_facts(engine: str, version: str) -> EngineFacts | None:
    """The facts of one release, or None when kit has none (an unreleased or dev build, a release without an sdist).

    A local version (0.10.1+cu126) is a build of the public release's source: its facts are the public release's.
    """
    try:
        v = Version(version)
    except InvalidVersion:
        return None
    if v.is_devrelease or v.is_prerelease:
        return None
    public = Version(v.public)
    cached = _cached_row(engine, public)
    if cached is not None:  # a release asked for before: its row alone, not the whole store decoded
        return _facts(engine, cached) if cached else None
    facts = _by_version(engine).get(public)
    _remember_row(engine, public, _rows(engine).get(public) or {})
    return facts


def _row_cache(engine: str, version: Version) -> Path | None:
    """Where one release's decoded row is cached: under kit's cache dir, keyed by the store file's sha256."""
    import hashlib

    from kit.catalog import cache_root

    try:
        key = hashlib.sha256((STORE / f"{engine}.json").read_bytes()).hexdigest()[:24]
    except OSError:
        return None
    return cache_root() / "engines" / f"{engine}-{key}-{version}.json"


def _cached_row(engine: str, version: Version) -> dict | None:
    path = _row_cache(engine, version)
    try:
        return json.loads(path.read_bytes()) if path is not None else None
    except (OSError, ValueError):
        return None


def _remember_row(engine: str, version: Version, row: dict) -> None:
    """Decoding the delta store walks every release before this one (~20 ms): keep the result."""
    from kit.catalog import write_cache

    path = _row_cache(engine, version)
    if path is not None:
        write_cache(path, json.dumps(row))


def release_status(engine: str, version: str) -> str | None:
    """'recorded', 'no-sdist' (on the index, but its source is not published there), or None (not on the index)."""
    try:
        v = Version(Version(version).public)
    except InvalidVersion:
        return None
    if v in _by_version(engine):
        return "recorded"
    return "no-sdist" if v in _without_sdist(engine) else None


def releases(engine: str) -> list[str]:
    """The recorded releases of an engine, oldest first."""
    return [f.version for f in _by_version(engine).values()]


def first_release_with(engine: str, predicate: Callable[[EngineFacts], bool], after: str | None = None) -> str | None:
    """The oldest recorded release (after `after`, if given) for which predicate(facts) holds."""
    floor = Version(after) if after else None
    for v, f in _by_version(engine).items():
        if (floor is None or v > floor) and predicate(f):
            return f.version
    return None


def last_release_with(engine: str, predicate: Callable[[EngineFacts], bool]) -> str | None:
    """The newest recorded release for which predicate(facts) holds."""
    hits = [f.version for f in _by_version(engine).values() if predicate(f)]
    return hits[-1] if hits else None


def changes(engine: str, predicate: Callable[[EngineFacts], object]) -> list[tuple[str, object]]:
    """(first release, value) at each release where predicate's value differs from the previous recorded release."""
    out: list[tuple[str, object]] = []
    for f in _by_version(engine).values():
        value = predicate(f)
        if not out or out[-1][1] != value:
            out.append((f.version, value))
    return out


# -- loading ---------------------------------------------------------------------------------------------


@cache
def _doc(engine: str) -> dict:
    path = STORE / f"{engine}.json"
    if not path.exists():
        return {"releases": []}
    doc = json.loads(path.read_text())
    return {**doc, "releases": decode(doc["releases"])}


@cache
def _rows(engine: str) -> dict[Version, dict]:
    return {Version(r["version"]): r for r in _doc(engine)["releases"] if r.get("sdist")}


@cache
def _facts_of(engine: str, version: Version) -> EngineFacts:
    return _facts(engine, _rows(engine)[version])


def _by_version(engine: str) -> _Releases:
    return _Releases(engine)


class _Releases(Mapping):
    """The recorded releases of one engine, oldest first; EngineFacts built only for those asked for."""

    def __init__(self, engine: str):
        self.engine = engine
        self.rows = _rows(engine)

    def __getitem__(self, version: Version) -> EngineFacts:
        if version not in self.rows:
            raise KeyError(version)
        return _facts_of(self.engine, version)

    def __iter__(self):
        return iter(self.rows)

    def __len__(self) -> int:
        return len(self.rows)


@cache
def _without_sdist(engine: str) -> frozenset[Version]:
    return frozenset(Version(r["version"]) for r in _doc(engine)["releases"] if not r.get("sdist"))


def _facts(engine: str, row: dict) -> EngineFacts:
    f = row["facts"]
    vllm = engine == "vllm"
    engine_args = frozenset(f.get("engine_args.fields", ()))
    archs = f.get("architectures", {})
    return EngineFacts(
        engine=engine,
        version=row["version"],
        sdist=row["sdist"],
        sha256=row["sha256"],
        structured_output=StructuredOutput(
            classes=frozenset(f.get("structured_output.classes", ())),
            request_fields=frozenset(f.get("request.fields", ())),
            engine_args=frozenset(a for a in engine_args if any(w in a for w in STRUCTURED_ARG_WORDS)),
            backends=frozenset(f.get("structured_output.backends", ())),
            request_backend_rejected_with_auto=f.get("structured_output.request_backend_rejected_with_auto") if vllm else None,
            sampling_params_fields=frozenset(f.get("sampling_params.fields", ())),
            request_backend_check=f.get("structured_output.request_backend_check"),
        ),
        env_vars=frozenset(f.get("env_vars.declared", ())) | frozenset(f.get("env_vars.read", ())),
        attention_backends=frozenset(f.get("attention.backends", ())),
        attention_env_var_read=f.get("attention.env_var_read") if vllm else None,
        unknown_attention_backend_raises=f.get("attention.unknown_raises") if vllm else None,
        attention_backend_arg=bool(f.get("attention.backend_arg")),
        architectures=frozenset(archs),
        architecture_kinds={k: tuple(v) for k, v in archs.items()},
        has_v0=f.get("engine.has_v0") if vllm else None,
        has_v1=f.get("engine.has_v1") if vllm else None,
        async_engine_class=f.get("engine.async_class"),
        has_llm_chat=("chat" in f.get("llm.methods", ())) if vllm else None,
        quant_min_capability=dict(f.get("quant_min_capability", {})),
        engine_args=engine_args,
        facts=f,
        sources=row.get("sources", {}),
    )
