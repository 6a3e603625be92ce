"""The profile: a whole known-good serving stack as one validated document.

The models are the single source of truth for the profile format: `kit schema` prints their JSON
Schema and `docs/profile.md` is generated from them. Every model forbids unknown keys.
"""

from __future__ import annotations

import math
import re
import unicodedata
from datetime import date, datetime, time
from typing import Annotated, Any, ClassVar, Literal

from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, PrivateAttr, ValidationInfo, field_validator, model_validator

# Every pattern is matched with fullmatch: `$` would let a trailing newline through.
_APP_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_HF_REVISION = re.compile(r"[0-9a-f]{40}")
# A branch or tag name (`kit lock` resolves it to a commit): git ref characters, no "..", no leading or trailing "/".
_HF_REF = re.compile(r"(?!.*\.\.)(?!/)[A-Za-z0-9._/-]{1,200}(?<!/)")
_PROFILE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
# Limits Modal states or enforces (modal 1.6.4); tests/test_hostile.py cites each one too.
MODAL_MAX_TIMEOUT_S = 86_400  # https://modal.com/docs/guide/timeouts: "between 1 second and 24 hours"
MODAL_MAX_SCALEDOWN_S = 3_600  # modal/_functions.py: "`scaledown_window` must be between 2 and 3600 (inclusive)"
MODAL_MAX_INPUTS = 1_000  # https://github.com/modal-labs/modal-client/pull/2902: the server's 1000 concurrent inputs per container
MODAL_MAX_CONTAINERS = 2**32 - 1  # api.proto AutoscalerSettings.min/max_containers are uint32
MAX_NESTING = 32  # tables and arrays inside engine.args: deeper is a mistake, and breaks recursion elsewhere


def control_characters(value: str, *, multiline: bool = False) -> str | None:
    """The first control or line-separator character in `value`, escaped (None when there is none).

    A newline, CR or NUL in a value that reaches a Dockerfile line, a path, a lock name or a terminal
    becomes an instruction there. Free text (`multiline`) may hold newlines and tabs, nothing else.
    """
    for ch in value:
        if multiline and ch in "\n\t":
            continue
        if unicodedata.category(ch) in ("Cc", "Zl", "Zp"):
            return repr(ch)[1:-1]
    return None


def _check_strings(value: Any, *, multiline: bool, depth: int = 0, where: str = "") -> None:
    """Reject control characters in every string inside `value`; keys of tables are never multi-line."""
    if depth > MAX_NESTING:
        raise ValueError(f"nested more than {MAX_NESTING} levels deep")
    if isinstance(value, str):
        bad = control_characters(value, multiline=multiline)
        if bad:
            what = "values here must be plain text" + ("" if multiline else " on one line")
            raise ValueError(f"{where + ': ' if where else ''}contains the control character {bad}; {what}")
    elif isinstance(value, dict):
        for k, v in value.items():
            name = control_characters(str(k)) and repr(k) or str(k)
            _check_strings(k, multiline=False, depth=depth + 1, where=f"key {name}")
            _check_strings(v, multiline=multiline, depth=depth + 1, where=name)
    elif isinstance(value, list | tuple):
        for i, v in enumerate(value):
            _check_strings(v, multiline=multiline, depth=depth + 1, where=f"item {i + 1}")


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, validate_default=True, allow_inf_nan=False)

    # Fields of free text, where newlines and tabs belong (a prompt, a reason); every other string is one line.
    _multiline: ClassVar[frozenset[str]] = frozenset()

    @field_validator("*", mode="after")
    @classmethod
    def _plain_text(cls, v: Any, info: ValidationInfo) -> Any:
        _check_strings(v, multiline=info.field_name in cls._multiline)
        return v


class App(Section):
    """The Modal app this profile deploys."""

    name: str = Field(description="Modal app name: letters, digits, `-`, `_`, `.`; at most 64 characters.")
    environment: str | None = Field(None, description="Modal environment to deploy into (default: the workspace default).")

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not _APP_NAME.fullmatch(v):
            raise ValueError("must be 1-64 characters of letters, digits, '-', '_' or '.', starting with a letter or digit")
        return v


class Architecture(Section):
    """A model's facts stated by hand, for a private model or one `kit lock` cannot read: the numbers of its config.json and safetensors index.

    Without this table, `kit lock` reads the model's config.json (the text config of a multimodal model),
    its safetensors index or file sizes, tokenizer_config.json and hf_quant_config.json through
    huggingface_hub (HF_ENDPOINT, HF_HUB_OFFLINE, HF_HOME and HF_TOKEN apply as they do for vLLM),
    resolves model.revision to a commit, and records the files' sha256 and what it derives from them
    in the lock's `# kit-model:` lines; `kit check` reads them from there, offline. With this table,
    `kit lock` does not read the model at all and `kit check` uses these numbers. Example, a private
    Llama-3.1-8B fine-tune: `num_hidden_layers = 32`, `num_attention_heads = 32`,
    `num_key_value_heads = 8`, `head_dim = 128`, `max_position_embeddings = 131072`,
    `weight_bytes = 16060522496`, `architecture = "LlamaForCausalLM"`.
    """

    num_hidden_layers: int = Field(gt=0, description="config.json `num_hidden_layers`.")
    num_attention_heads: int = Field(gt=0, description="config.json `num_attention_heads`.")
    num_key_value_heads: int = Field(gt=0, description="config.json `num_key_value_heads` (the attention heads when absent).")
    head_dim: int = Field(gt=0, description="config.json `head_dim`, or hidden_size / num_attention_heads.")
    max_position_embeddings: int = Field(gt=0, description="The longest context the model accepts (with its rope scaling).")
    weight_bytes: int = Field(gt=0, description="Total bytes of the checkpoint's weights (safetensors total_size).")
    architecture: str | None = Field(None, description="The config's `architectures[0]`, e.g. `LlamaForCausalLM`: checked against the engine's model registry.")
    torch_dtype: str = Field("bfloat16", description="The checkpoint's dtype (config `torch_dtype`).")
    quantization: str | None = Field(None, description="The checkpoint's `quantization_config.quant_method` (e.g. `fp8`, `awq`).")
    kv_lora_rank: int | None = Field(None, gt=0, description="MLA models (DeepSeek-V2/V3): the KV latent size; the KV cache holds kv_lora_rank + qk_rope_head_dim per token and layer.")
    qk_rope_head_dim: int | None = Field(None, gt=0, description="MLA models: the rope part of the key kept beside the latent.")
    attention_layers: int | None = Field(None, gt=0, description="Hybrid models: the layers with attention (the others are state-space or linear and keep no per-token KV).")
    sliding_window: int | None = Field(None, gt=0, description="Tokens a sliding-window layer keeps.")
    sliding_window_layers: int | None = Field(None, ge=0, description="How many of the attention layers use the sliding window.")


class Model(Section):
    """The model to serve."""

    id: str = Field(description="Hugging Face repository id, e.g. `Qwen/Qwen2.5-Coder-7B-Instruct`.")
    revision: str | None = Field(
        None,
        description="Hugging Face commit (40 hex characters), branch or tag; default `main`. `kit lock` resolves a branch or tag "
        "to its commit and records both; the rendered app pins the commit.",
    )
    dtype: Literal["auto", "bfloat16", "float16", "float32"] = Field("auto", description="Activation and weight dtype.")
    max_model_len: int | None = Field(None, gt=0, description="Maximum context length (prompt + output) in tokens; default: the model's own.")
    quantization: str | None = Field(None, description="Quantization method passed to the engine (e.g. `fp8`, `awq`); default: the checkpoint's own.")
    hf_secret: str | None = Field(None, description="Name of a Modal secret holding `HF_TOKEN`, for gated models.")
    architecture: Architecture | None = Field(
        None, description="The model's facts by hand, for a model `kit lock` cannot read from the Hub (see below); otherwise they come from its config.json."
    )

    @field_validator("id")
    @classmethod
    def _id(cls, v: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9][\w.-]*/[\w.-]+", v, re.ASCII):
            raise ValueError("must look like 'organisation/model-name'")
        return v

    @field_validator("revision")
    @classmethod
    def _revision(cls, v: str | None) -> str | None:
        if v is not None and not (_HF_REVISION.fullmatch(v) or _HF_REF.fullmatch(v)):
            raise ValueError("must be a 40-character commit hash, or a branch or tag name that `kit lock` resolves to one")
        return v


class Gpu(Section):
    """The GPU each container gets."""

    type: str = Field(description="Modal GPU type (e.g. `A10G`, `A100-40GB`, `H100`); see `kit/data/gpus.toml`.")
    count: int = Field(1, ge=1, le=8, description="GPUs per container.")


class Image(Section):
    """The container image.

    What kit knows of each base image (OS release, glibc, Python, CUDA and nvcc, libnuma, compilers, and
    for an official engine image the packages inside) is in `kit/data/images.toml`, each row with its
    source. The lock's platform tag follows the image's glibc. For an image no row matches, `kit check`
    reports once, at info severity (`image-unknown`), what it could not check; the lock then assumes glibc 2.28
    and says so in its header.

    **The engine from the image.** With `engine = "from-image"` and an official engine image as `base`
    (`lmsysorg/sglang:v0.5.5`, `vllm/vllm-openai:v0.9.1`), `[packages]` lists only what the profile adds on
    top; the engine needs no pin. `kit lock` resolves the additions together with the engine as the
    image holds it, with the image's recorded packages as constraints, and writes only the additions to
    the lock (the image's packages follow as `# provided:` lines, which `kit check` reads). The rendered
    app uses `modal.Image.from_registry(base)` with the image's own Python and installs the additions only.

    **Source distributions.** When a package has no wheel for the image's Python and platform, `kit lock`
    (with `sdists = "when-no-wheel"`, the default) reads its sdist from the index and locks it with its
    hash: one with no C, C++, CUDA, Cython, Rust or Fortran sources is pure Python and reported as info
    (`lock-sdist-pure-python`); one that compiles code needs compilers in the image, and `kit check` says
    which (`lock-sdist-needs-compiler`, `lock-sdist-compilers-unknown`). The packages of
    `kit/data/sdists.toml` keep the classification written there. `sdists = "none"` takes wheels only.
    """

    base: str = Field(description="A CUDA registry image (e.g. `nvidia/cuda:12.4.1-devel-ubuntu22.04`) or `debian_slim`.")
    python: str = Field("3.11", description="Python version of the image, `3.X`; with `engine = \"from-image\"`, unset means the image's own Python.")
    index_url: str | None = Field(None, description="Replacement for the default package index.")
    extra_index_urls: list[str] = Field(default_factory=list, description="Additional package indexes.")
    env: dict[str, str] = Field(default_factory=dict, description="Environment variables set in the image.")
    apt_packages: list[str] = Field(default_factory=list, description="Debian packages installed in the image.")
    # -- what the image holds (issue 12): the engine from the base image, Modal's builder version, sdists --
    engine: Literal["from-image"] | None = Field(
        None,
        description="`from-image`: the engine comes installed in `base` (an official `lmsysorg/sglang:vX` or `vllm/vllm-openai:vX` "
        "image, see `kit/data/images.toml`); kit locks and installs only what `[packages]` adds on top, with the image's "
        "packages as constraints, and never reinstalls the engine.",
    )
    builder_version: Literal["2023.12", "2024.04", "2024.10", "2025.06", "2026.10", "PREVIEW"] | None = Field(
        None,
        description="Modal image builder version of the workspace (Modal settings); it decides `debian_slim`'s Debian release "
        "and so its glibc (2023.12 bullseye, 2024.04-2025.06 bookworm, 2026.10 trixie). Unset: bookworm is assumed. "
        "When set, the rendered app sets `MODAL_IMAGE_BUILDER_VERSION` to it, so Modal builds with the version kit checked.",
    )
    sdists: Literal["when-no-wheel", "none"] = Field(
        "when-no-wheel",
        description="Source distributions (sdists): `when-no-wheel` (default) lets the lock take a package's sdist when the "
        "index has no wheel for it, locked with its hash; kit reads the sdist, and `kit check` reports a pure-Python one as "
        "info and says which compilers the image needs for one that compiles code. `none`: wheels only.",
    )

    @field_validator("python")
    @classmethod
    def _python(cls, v: str) -> str:
        if not re.fullmatch(r"3\.\d{1,2}", v, re.ASCII):
            raise ValueError("must be a Python minor version such as '3.11'")
        return v

    @field_validator("env")
    @classmethod
    def _env(cls, v: dict[str, str]) -> dict[str, str]:
        for name in v:
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
                raise ValueError(f"{name!r} is not a valid environment variable name")
        return v


class Engine(Section):
    """The inference engine and its settings."""

    name: Literal["vllm", "sglang"] = Field(description="Inference engine.")
    gpu_memory_utilization: float = Field(0.90, gt=0.0, le=1.0, description="Share of GPU memory the engine may take.")
    enforce_eager: bool = Field(False, description="Disable CUDA graphs: faster cold start, slower decoding.")
    attention_backend: str | None = Field(None, description="Attention backend (vLLM: `FLASHINFER`, `FLASH_ATTN`, ...).")
    tensor_parallel_size: int | None = Field(None, ge=1, description="Tensor parallel size; default: `gpu.count`.")
    kv_cache_dtype: Literal["auto", "fp8", "fp8_e4m3", "fp8_e5m2"] = Field("auto", description="KV cache dtype.")
    args: dict[str, Any] = Field(default_factory=dict, description="Extra engine arguments, passed as keyword arguments.")

    # A chat template or a JSON argument may span lines; no other control character reaches the engine.
    _multiline: ClassVar[frozenset[str]] = frozenset({"args"})

    @field_validator("args")
    @classmethod
    def _args(cls, v: dict[str, Any]) -> dict[str, Any]:
        _plain_values(v)
        return v


class StructuredOutput(Section):
    """JSON-schema-constrained generation."""

    backend: Literal["xgrammar", "guidance", "outlines", "auto"] | None = Field(
        None,
        description="Structured-output backend. Unset: the backend and settings measured best for the pinned engine release "
        "(kit/data/structured_output_defaults.toml), else `xgrammar`.",
    )
    schema_file: str | None = Field(None, alias="schema", description="Default JSON schema file, relative to the profile that sets it.")

    model_config = ConfigDict(extra="forbid", strict=True, populate_by_name=True, allow_inf_nan=False)


class Serving(Section):
    """How Modal serves the app."""

    # Measured on an H200 (benchmarks/gpu/results.md, 2026-12-02, one lease): both modes batch continuously,
    # at 32 concurrent class mode 16.0 req/s and the OpenAI server 11.9, against 0.81 one at a time.
    mode: Literal["class", "openai"] = Field(
        "openai",
        description="`openai` (default): the engine's OpenAI-compatible server behind `@modal.web_server`, with continuous "
        "batching; `class`: the engine in-process behind a `generate` method (Python `.remote()`), `POST /generate` "
        "and `GET /health`, on the engine's async API so that up to `max_inputs` concurrent requests join the running batch "
        "(benchmarks/gpu/results.md).",
    )
    timeout: int = Field(600, gt=0, le=MODAL_MAX_TIMEOUT_S, description="Seconds one input may run (Modal: at most 24 hours).")
    startup_timeout: int = Field(1200, gt=0, le=MODAL_MAX_TIMEOUT_S, description="Seconds the web server may take to start (openai mode; at most 24 hours).")
    scaledown_window: int = Field(300, ge=2, le=MODAL_MAX_SCALEDOWN_S, description="Seconds an idle container stays up (Modal: 2 to 3600).")
    min_containers: int = Field(0, ge=0, le=MODAL_MAX_CONTAINERS, description="Containers kept warm.")
    max_containers: int | None = Field(None, ge=1, le=MODAL_MAX_CONTAINERS, description="Upper bound on containers.")
    max_inputs: int = Field(1, ge=1, le=MODAL_MAX_INPUTS, description="Concurrent inputs per container (`@modal.concurrent`; Modal: at most 1000).")
    endpoints: list[Literal["generate", "http_generate", "health"]] = Field(
        default_factory=lambda: ["generate", "http_generate", "health"],
        description="Endpoints of class mode: `generate` (Python `.remote()`), `http_generate` (`POST /generate`), `health` (`GET /health`).",
    )

    @model_validator(mode="after")
    def _bounds(self) -> Serving:
        if self.max_containers is not None and self.max_containers < self.min_containers:
            raise ValueError("max_containers must be at least min_containers")
        return self


class Smoke(Section):
    """What a deploy must pass before it counts."""

    prompt: str = Field(description="Prompt for the smoke generation.")
    schema_file: str | None = Field(None, alias="schema", description="JSON schema the output must validate against, relative to the profile (default: structured_output.schema).")
    max_tokens: int = Field(512, ge=1, description="Output token limit for the smoke generation (at most model.max_model_len).")
    latency_budget_s: float = Field(30.0, gt=0, le=MODAL_MAX_TIMEOUT_S, description="Warm request latency budget, seconds (a request runs at most 24 hours on Modal).")
    cold_start_budget_s: float = Field(900.0, gt=0, le=2 * MODAL_MAX_TIMEOUT_S, description="Budget for the first request, which may start a container (startup and execution are each at most 24 hours).")

    model_config = ConfigDict(extra="forbid", strict=True, populate_by_name=True, allow_inf_nan=False)
    _multiline: ClassVar[frozenset[str]] = frozenset({"prompt"})


class Allow(Section):
    """A justified suppression of one finding."""

    rule: str = Field(description="Rule id to suppress.")
    reason: str = Field(min_length=1, description="Why this is safe here; shown in reports.")

    _multiline: ClassVar[frozenset[str]] = frozenset({"reason"})


def _plain_values(value: Any, depth: int = 0) -> None:
    """engine.args holds what TOML and JSON share: strings, finite numbers, booleans, arrays, tables."""
    if depth > MAX_NESTING:
        raise ValueError(f"nested more than {MAX_NESTING} levels deep")
    if isinstance(value, datetime | date | time):
        raise ValueError(f"{value.isoformat()} is a TOML date/time, which no engine argument takes: write it as a string")
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{value} is not a finite number")
    if isinstance(value, dict):
        for v in value.values():
            _plain_values(v, depth + 1)
    elif isinstance(value, list):
        for v in value:
            _plain_values(v, depth + 1)


def _version(v: str) -> str:
    try:
        Version(v)
    except InvalidVersion:
        raise ValueError(f'{v!r} is not a version: write an exact version such as "1.2.3"') from None
    return v


PackageName = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")]
# Checked per value, so an error names packages.<name> and with it the file that set that key.
PackageVersion = Annotated[str, AfterValidator(_version)]
# `[packages]` keys may name extras: `sglang[all]`, `fastapi[standard]` (issue 12).
PackageKey = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*(\[[A-Za-z0-9][A-Za-z0-9._-]*(,[A-Za-z0-9][A-Za-z0-9._-]*)*\])?$")]
_EXTRAS = re.compile(r"^([^\[]+)\[([^\]]*)\]$")


class Profile(BaseModel):
    """A kit profile: a whole pinned serving stack."""

    model_config = ConfigDict(extra="forbid", strict=True, validate_default=True, populate_by_name=True, allow_inf_nan=False)

    name: str = Field(description="Profile name; by convention the file's stem.")
    description: str = Field("", description="What this stack is and why it exists (measured results belong here).")
    extends: str | None = Field(None, description="Parent profile, relative path; keys here override the parent's.")
    app: App
    model: Model
    gpu: Gpu
    image: Image
    packages: dict[PackageKey, PackageVersion] = Field(
        description="Exact versions, e.g. `vllm = \"0.9.2\"`; a key may name extras, e.g. `\"fastapi[standard]\" = \"0.115.0\"`."
    )
    engine: Engine
    structured_output: StructuredOutput = Field(default_factory=StructuredOutput)
    serving: Serving = Field(default_factory=Serving)
    smoke: Smoke | None = None
    allow: list[Allow] = Field(default_factory=list)

    @field_validator("name", "extends", "description", "packages")
    @classmethod
    def _plain_text(cls, v: Any, info: ValidationInfo) -> Any:
        _check_strings(v, multiline=info.field_name == "description")
        return v

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        # The name becomes build/<name>/: no separators, no `..`, nothing hidden.
        if not _PROFILE_NAME.fullmatch(v):
            raise ValueError("must be 1-128 characters of letters, digits, '-', '_' or '.', starting with a letter or digit (it names build/<name>/)")
        return v

    @field_validator("packages")
    @classmethod
    def _packages(cls, v: dict[str, str]) -> dict[str, str]:
        out: dict[str, str] = {}
        for name, version in v.items():
            canon = canonicalize_name(name)
            if canon in out:
                raise ValueError(f"{name!r} is listed twice (names compare case- and separator-insensitively)")
            out[canon] = version
        return out

    @model_validator(mode="after")
    def _smoke_fits_context(self) -> Profile:
        m, smoke = getattr(self, "model", None), getattr(self, "smoke", None)
        if m is not None and smoke is not None and m.max_model_len and smoke.max_tokens > m.max_model_len:
            raise ValueError(f"smoke.max_tokens ({smoke.max_tokens}) is larger than model.max_model_len ({m.max_model_len}): the engine rejects such a request")
        return self

    # -- extras and the engine from the image (issue 12) ---------------------------------------------
    _extras: dict[str, tuple[str, ...]] = PrivateAttr(default_factory=dict)

    @model_validator(mode="after")
    def _split_extras(self) -> Profile:
        """`sglang[all] = "0.5.5"` -> packages["sglang"] = "0.5.5" and extras["sglang"] = ("all",)."""
        plain: dict[str, str] = {}
        extras: dict[str, tuple[str, ...]] = {}
        for key, version in self.packages.items():
            m = _EXTRAS.match(key)
            name = canonicalize_name(m.group(1)) if m else key
            if name in plain:
                raise ValueError(f"packages: {name!r} is listed twice (once with extras); write it once, e.g. \"{name}[extra]\"")
            plain[name] = version
            if m:
                extras[name] = tuple(sorted({canonicalize_name(e) for e in m.group(2).split(",")}))
        self.packages = plain
        self._extras = extras
        return self

    @property
    def extras(self) -> dict[str, tuple[str, ...]]:
        """Extras named in `[packages]` keys: canonical package name -> extras."""
        return dict(self._extras)

    @property
    def engine_from_image(self) -> bool:
        return self.image.engine == "from-image"

    @property
    def tensor_parallel_size(self) -> int:
        return self.engine.tensor_parallel_size or self.gpu.count

    def version(self, package: str) -> Version | None:
        name = canonicalize_name(package)
        raw = self.packages.get(name)
        if raw is None and self.engine_from_image:  # the version the base image holds (kit/data/images.toml)
            from kit.image_facts import image_facts

            raw = image_facts(self.image.base, self.image.builder_version).packages.get(name)
        return Version(raw) if raw else None


SECTIONS: dict[str, type[BaseModel]] = {
    "app": App,
    "model": Model,
    "gpu": Gpu,
    "image": Image,
    "engine": Engine,
    "structured_output": StructuredOutput,
    "serving": Serving,
    "smoke": Smoke,
    "allow": Allow,
}
