"""Facts about hardware and models, read from kit/data (each fact carries its source there)."""

from __future__ import annotations

import hashlib
import json
import os
import tomllib
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from packaging.version import Version

from kit.errors import DataError

GIB = 1024**3


def cache_root() -> Path:
    """kit's cache of parsed and decoded data: KIT_CACHE_DIR, else $XDG_CACHE_HOME/kit or ~/.cache/kit."""
    return Path(os.environ.get("KIT_CACHE_DIR") or os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "kit"))


def write_cache(path: Path, text: str) -> None:
    """Write a cache entry atomically; an unwritable cache only costs the work next time."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    except OSError:
        pass


def _cache_dir() -> Path:
    return cache_root() / "data"


_parsed: dict[str, dict[str, Any]] = {}


def data_file(name: str) -> dict[str, Any]:
    """Parse one TOML file from kit/data, once per process (see _data_file); callers must not modify it."""
    if name not in _parsed:
        _parsed[name] = _data_file(name)
    return _parsed[name]


def _data_file(name: str) -> dict[str, Any]:
    """Parse one TOML file from kit/data (e.g. "gpus.toml", "rules/versions.toml").

    tomllib is pure Python and `kit check` reads about 150 KB of data on every run, so the parsed
    document is cached as JSON under ~/.cache/kit (KIT_CACHE_DIR), keyed by the file's sha256: an
    edited or upgraded data file is parsed again, and an unwritable cache only costs the parse.
    """
    try:
        raw = resources.files("kit").joinpath("data", name).read_bytes()
    except FileNotFoundError as exc:
        raise DataError(f"kit's data file data/{name} is missing: {exc}", fix="reinstall kit; this is a bug in kit") from None
    key = hashlib.sha256(raw).hexdigest()[:32]
    cached = _cache_dir() / f"{key}.json"
    try:
        return json.loads(cached.read_bytes())
    except (OSError, ValueError):
        pass
    try:
        doc = tomllib.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise DataError(f"kit's data file data/{name} is broken: {exc}", fix="reinstall kit; this is a bug in kit") from None
    write_cache(cached, json.dumps(doc))  # a read-only home: parse every time
    return doc


def data_files(folder: str) -> list[str]:
    """Names ("rules/x.toml") of the TOML files in a kit/data folder, sorted."""
    entries = resources.files("kit").joinpath("data", folder).iterdir()
    return sorted(f"{folder}/{e.name}" for e in entries if e.name.endswith(".toml"))


@dataclass(frozen=True)
class GpuSpec:
    name: str
    modal_name: str
    aliases: tuple[str, ...]
    memory_gb: float
    memory_bytes: int
    compute_capability: Version
    architecture: str
    max_count: int
    price_per_hour_usd: float
    sources: dict[str, str] = field(default_factory=dict, compare=False)

    @property
    def memory_gib(self) -> float:
        return self.memory_bytes / GIB


@dataclass(frozen=True)
class GpuCatalog:
    entries: tuple[GpuSpec, ...]

    def find(self, name: str) -> GpuSpec | None:
        wanted = name.strip().upper()
        for gpu in self.entries:
            if wanted == gpu.name.upper() or wanted == gpu.modal_name.upper() or wanted in (a.upper() for a in gpu.aliases):
                return gpu
        return None

    def canonical_names(self) -> list[str]:
        return [g.name for g in self.entries]

    def all_names(self) -> list[str]:
        names = []
        for g in self.entries:
            names += [g.name, g.modal_name, *g.aliases]
        return list(dict.fromkeys(names))


@dataclass(frozen=True)
class ModelSpec:
    id: str
    architecture: str
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    head_dim: int
    max_position_embeddings: int
    weight_bytes: int
    torch_dtype: str = "bfloat16"
    quantization: str = ""
    parameters: int = 0
    min_vllm: str = ""
    fp8_block: bool = False  # block-wise FP8 (weight_block_size): needs Marlin block support off native FP8
    sources: dict[str, str] = field(default_factory=dict, compare=False)

    def kv_bytes_per_token(self, kv_dtype_bytes: int = 2) -> int:
        """Bytes of KV cache one token takes: K and V, every layer, every KV head."""
        return 2 * self.num_hidden_layers * self.num_key_value_heads * self.head_dim * kv_dtype_bytes


@cache
def gpus() -> GpuCatalog:
    rows = data_file("gpus.toml").get("gpu", [])
    entries = []
    for row in rows:
        try:
            entries.append(
                GpuSpec(
                    name=row["name"],
                    modal_name=row.get("modal_name", row["name"]),
                    aliases=tuple(row.get("aliases", ())),
                    memory_gb=float(row["memory_gb"]),
                    memory_bytes=int(row["memory_bytes"]),
                    compute_capability=Version(str(row["compute_capability"])),
                    architecture=row.get("architecture", ""),
                    max_count=int(row.get("max_count", 8)),
                    price_per_hour_usd=float(row["price_per_hour_usd"]),
                    sources=dict(row.get("sources", {})),
                )
            )
        except (KeyError, ValueError) as exc:
            raise DataError(f"data/gpus.toml: entry {row.get('name', '?')} is incomplete: {exc}", fix="this is a bug in kit") from None
    return GpuCatalog(tuple(entries))


@cache
def models() -> dict[str, ModelSpec]:
    out: dict[str, ModelSpec] = {}
    for row in data_file("models.toml").get("model", []):
        fields = {k: row[k] for k in ModelSpec.__dataclass_fields__ if k in row and k != "sources"}
        out[row["id"].lower()] = ModelSpec(**fields, sources=dict(row.get("sources", {})))
    return out


def find_model(model_id: str) -> ModelSpec | None:
    return models().get(model_id.lower())


@cache
def capabilities() -> dict[str, dict[str, Any]]:
    data = data_file("capabilities.toml")
    caps = {row["id"]: row for row in data.get("capability", [])}
    caps["memory"] = data.get("memory", {})
    return caps
