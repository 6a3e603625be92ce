"""Profile (+ Lock) -> Bundle: the Modal app, the requirements it installs and a manifest.

Rendering is deterministic: the same profile, lock, kit and templates give byte-identical files, so
the bundle hash identifies what was deployed. The bundle hash cannot sit inside a file it hashes, so
it is computed over every file with the manifest's own `bundle_hash` field left out (see
`bundle_hash`); the app reads it back from manifest.json, which it ships next to itself.

Every user-written value reaches the rendered Python through the `py` filter (`literal`), which
emits a Python literal, never raw text. Which structured-output API the app calls is read from the
`[[api]]` table in kit/data/rules (data with sources), not decided in the templates; how the engine is
told engine.attention_backend (an environment variable or an engine argument / server flag) is read
from the `[[attention]]` table the same way.

jinja2 is imported inside functions only: `kit check` must not pay for it.
"""

from __future__ import annotations

import hashlib
import json
import math
import shlex
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from packaging.specifiers import SpecifierSet

from kit import __version__
from kit.errors import DataError, OperationError, UsageError
from kit.load import LoadedProfile

APP_FILE = "app.py"  # Modal imports a single-file app by its stem: it must be a Python identifier
REQUIREMENTS_FILE = "requirements.txt"
MANIFEST_FILE = "manifest.json"
SCHEMA_FILE = "schema.json"
CLASS_NAME = "Inference"  # class mode: modal.Cls.from_name(app, CLASS_NAME)
# Class mode serves HTTP through one @modal.asgi_app() method, so that POST /generate and GET /health
# share one base URL (Modal gives every web method its own URL, with its route at /).
WEB_METHOD = "web"
ROUTES = {"http_generate": "POST /generate", "health": "GET /health"}  # serving.endpoints -> route of WEB_METHOD
SERVER_FUNCTION = "serve"  # openai mode: the @modal.web_server function
SERVER_PORT = 8000
# uv_pip_install copies ghcr.io/astral-sh/uv:latest unless told otherwise; pinning it keeps a
# re-render (and the image cache) stable. Bump deliberately.
UV_VERSION = "0.13.9"
ENGINE_PACKAGE = {"vllm": "vllm", "sglang": "sglang"}
# Caches kept on Modal volumes so that a cold start neither downloads weights nor recompiles.
HF_CACHE = ("huggingface-cache", "/root/.cache/huggingface")
ENGINE_CACHES = {"vllm": [("vllm-cache", "/root/.cache/vllm")], "sglang": []}
FLASHINFER_CACHE = ("flashinfer-cache", "/root/.cache/flashinfer")  # its JIT kernels (flashinfer-python is JIT-only in 0.2.x)


@dataclass(frozen=True)
class Bundle:
    """What kit deploys: file name -> text (including manifest.json), the manifest, and its hash."""

    files: dict[str, str]
    manifest: dict[str, Any]
    hash: str


class RenderError(OperationError):
    """A profile that validates but that kit cannot render an app for (exit 1)."""


# -- the literal filter --------------------------------------------------------------------------


def literal(value: Any) -> str:
    """A Python literal that evaluates to `value` (str, int, float, bool, None, list, tuple, dict).

    `repr` of these types is a literal that `ast.literal_eval` reads back exactly; containers are
    rebuilt here so that nothing but these types (no object with its own __repr__) can reach the file.
    """
    if value is None or isinstance(value, bool):
        return repr(value)
    if isinstance(value, int):
        return repr(int(value))
    if isinstance(value, float):
        if not math.isfinite(value):
            raise TypeError(f"{value!r} has no Python literal")
        return repr(float(value))
    if isinstance(value, str):
        return repr(str(value))
    if isinstance(value, list | tuple):
        inner = ", ".join(literal(v) for v in value)
        return f"[{inner}]" if isinstance(value, list) else f"({inner}{',' if len(value) == 1 else ''})"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{literal(k)}: {literal(v)}" for k, v in value.items()) + "}"
    raise TypeError(f"{type(value).__name__} values cannot be rendered as Python literals")


def identifier(value: str) -> str:
    """A name from kit's own data (class, keyword): refuse anything that is not a plain identifier."""
    if not isinstance(value, str) or not value.isidentifier():
        raise DataError(f"{value!r} is not a Python identifier", fix="this is a bug in kit's data (kit/data/rules [[api]])")
    return value


# -- templates -----------------------------------------------------------------------------------


def templates_dir() -> Path:
    """kit/templates inside an installed wheel; the repository's templates/ in an editable install."""
    packaged = resources.files("kit").joinpath("templates")
    if packaged.is_dir():
        return Path(str(packaged))
    repo = Path(__file__).resolve().parent.parent / "templates"
    if repo.is_dir():
        return repo
    raise DataError("kit's templates are missing", fix="reinstall kit")


@cache
def _environment(path: str):
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(path),
        undefined=jinja2.StrictUndefined,
        autoescape=False,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["py"] = literal
    env.filters["ident"] = identifier
    return env


def template_version() -> str:
    """sha256 over the template sources: changes whenever a template does."""
    base = templates_dir()
    h = hashlib.sha256()
    for path in sorted(p for p in base.rglob("*") if p.is_file()):
        h.update(path.relative_to(base).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()[:16]


# -- the structured-output API -------------------------------------------------------------------


def api_for(loaded: LoadedProfile) -> dict[str, Any]:
    """The structured-output API for the profile's engine and pinned version: derived from the release's
    source where the knowledge store has it (kit.engine_api), else the `[[api]]` row (non-deprecated first)."""
    from kit.rules import api_table

    p = loaded.profile
    engine = p.engine.name
    package = ENGINE_PACKAGE[engine]
    version = p.version(package)
    if version is None:
        raise RenderError(
            f"packages.{package} is not pinned, so kit cannot tell which {engine} API to render",
            file=loaded.file_of("packages"),
            key=f"packages.{package}",
            fix=f'pin it, e.g. {package} = "<version>" (kit check reports engine-not-pinned)',
        )
    from kit.engine_api import derived_api_row

    derived = derived_api_row(engine, str(version))
    rows = [derived] if derived is not None else [r for r in api_table() if r.get("engine") == engine and SpecifierSet(r["versions"]).contains(version, prereleases=True)]
    current = [r for r in rows if not r.get("deprecated", False)] or rows
    if not current:
        covered = ", ".join(r["versions"] for r in api_table() if r.get("engine") == engine) or "none"
        raise RenderError(
            f"kit has no structured-output API data for {package} {version} (covered: {covered}); it will not guess which calls exist",
            file=loaded.file_of(f"packages.{package}"),
            key=f"packages.{package}",
            fix=f"pin {package} to a covered version, or verify that release's API and add an [[api]] row to kit/data/rules/structured_output.toml",
        )
    if len(current) > 1:
        raise DataError(f"two [[api]] rows cover {package} {version}", fix="this is a bug in kit's data (kit/data/rules/structured_output.toml)")
    row = dict(current[0])
    for key in ("sampling_kwarg", "engine_backend_arg"):
        identifier(row[key])
    if row.get("params_class"):
        identifier(row["params_class"])
    if row.get("engine_backend_form") not in ("string", "config"):
        raise DataError(f"[[api]] row for {package} {row['versions']}: engine_backend_form must be 'string' or 'config'", fix="this is a bug in kit's data")
    return row


# -- the attention backend ------------------------------------------------------------------------


def attention_for(loaded: LoadedProfile) -> dict[str, Any] | None:
    """The `[[attention]]` row for the profile's engine and pinned version; None when engine.attention_backend is unset.

    vLLM up to 0.12 reads the backend only from VLLM_ATTENTION_BACKEND; 0.13 added the engine argument
    attention_backend (--attention-backend) and 0.15 dropped the variable, which later releases then
    ignore without a word. So a release without a row is refused rather than guessed.
    """
    from kit.rules import attention_row, attention_table

    p = loaded.profile
    if not p.engine.attention_backend:
        return None
    engine = p.engine.name
    package = ENGINE_PACKAGE[engine]
    version = p.version(package)
    row = attention_row(engine, version) if version is not None else None
    if row is None:
        covered = ", ".join(r["versions"] for r in attention_table() if r["engine"] == engine) or "none"
        raise RenderError(
            f"kit has no attention-backend data for {package} {version} (covered: {covered}); it will not guess whether "
            "engine.attention_backend is read from an environment variable or an engine argument",
            file=loaded.file_of("engine.attention_backend"),
            key="engine.attention_backend",
            fix=f"pin {package} to a covered version, remove engine.attention_backend, or verify that release's source and add an "
            "[[attention]] row to kit/data/rules/attention.toml (kit check reports attention-backend-unverified)",
        )
    row = dict(row)
    if row["via"] == "engine_arg":
        identifier(row["engine_arg"])
        if row["cli_flag"] != "--" + row["engine_arg"].replace("_", "-"):
            raise DataError(f"[[attention]] row {engine} {row['versions']}: cli_flag is not the flag of {row['engine_arg']}", fix="this is a bug in kit's data")
    return row


# -- class mode's async engine and the structured-output backend ---------------------------------------


def async_engine_for(loaded: LoadedProfile) -> dict[str, Any]:
    """The `[[async_engine]]` row (kit/data/async_engine.toml) for the profile's engine and pinned version."""
    from kit.catalog import data_file

    p = loaded.profile
    package = ENGINE_PACKAGE[p.engine.name]
    version = p.version(package)
    rows = [r for r in data_file("async_engine.toml").get("async_engine", []) if r["engine"] == p.engine.name and version is not None and SpecifierSet(r["versions"]).contains(version, prereleases=True)]
    if not rows:
        covered = ", ".join(r["versions"] for r in data_file("async_engine.toml").get("async_engine", []) if r["engine"] == p.engine.name) or "none"
        raise RenderError(
            f"kit has no async-engine data for {package} {version} (covered: {covered}); class mode drives the engine's async API and will not guess it",
            file=loaded.file_of(f"packages.{package}"),
            key=f"packages.{package}",
            fix=f"pin {package} to a covered version, use serving.mode = \"openai\", or verify that release's async engine and add a row to kit/data/async_engine.toml",
        )
    if len(rows) > 1:
        raise DataError(f"two [[async_engine]] rows cover {package} {version}", fix="this is a bug in kit's data (kit/data/async_engine.toml)")
    row = dict(rows[0])
    for key in ("engine_class", "args_class", "config_class", "method"):
        if row.get(key):
            identifier(row[key])
    if row.get("config_module") and not all(part.isidentifier() for part in row["config_module"].split(".")):
        raise DataError(f"[[async_engine]] {package} {row['versions']}: config_module is not a module path", fix="this is a bug in kit's data")
    return row


def structured_output_choice(loaded: LoadedProfile):
    """The backend and settings the app runs with (kit.structured_output: measured default per release)."""
    from kit.structured_output import choice

    p = loaded.profile
    return choice(p.engine.name, p.version(ENGINE_PACKAGE[p.engine.name]), p.structured_output.backend)


# -- requirements ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Requirements:
    text: str  # requirements.txt of the image
    lock_hash: str | None  # sha256 of the lockfile; None: not locked (installed from the pins)
    only_binary: bool  # every package of the lock is a wheel (no sdist to build)


def requirements(loaded: LoadedProfile) -> Requirements:
    """What the image installs: the lockfile's hashed closure when there is one, else the profile's pins.

    A stale lockfile is an error (kit.lockfile). Without a lockfile the pins are installed and the
    resolver completes the closure while the image builds: not reproducible, and `kit render` says so.
    """
    from kit import lockfile

    text = lockfile.requirements_for_image(loaded)
    if text is not None:
        st = lockfile.status(loaded)
        lock_text = st.lock.text if st.lock else text
        return Requirements(text, hashlib.sha256(lock_text.encode()).hexdigest(), not (st.lock and st.lock.build_from_source))
    lines = [
        "# Rendered by kit from the profile's pins (no lockfile): the rest of the closure is resolved",
        "# when the image is built. Run `kit lock` for a hashed, reproducible install.",
        *lockfile.resolution_inputs(loaded).requirements,
    ]
    return Requirements("\n".join(lines) + "\n", None, False)


# -- the context the templates see ---------------------------------------------------------------


def model_revision(loaded: LoadedProfile) -> str | None:
    """The commit `kit lock` resolved model.revision to (a branch or tag can move), else model.revision."""
    from kit import lockfile

    return lockfile.model_commit(loaded) or loaded.profile.model.revision


def _engine_kwargs(loaded: LoadedProfile, api: dict[str, Any], attention: dict[str, Any] | None) -> dict[str, Any]:
    """Keyword arguments of the engine constructor: vllm.LLM(**kw) or sglang.Engine(**kw).

    The server command (openai mode) is built from the same keywords, so an engine argument here is
    also its --flag there.
    """
    p = loaded.profile
    m, e = p.model, p.engine
    so = structured_output_choice(loaded)
    backend = so.backend
    revision = model_revision(loaded)
    if p.engine.name == "vllm":
        kw: dict[str, Any] = {"model": m.id}
        if revision:
            kw["revision"] = revision
            kw["tokenizer_revision"] = revision
        kw["dtype"] = m.dtype
        if m.max_model_len:
            kw["max_model_len"] = m.max_model_len
        if m.quantization:
            kw["quantization"] = m.quantization
        kw["gpu_memory_utilization"] = e.gpu_memory_utilization
        kw["enforce_eager"] = e.enforce_eager
        kw["tensor_parallel_size"] = p.tensor_parallel_size
        if e.kv_cache_dtype != "auto":
            kw["kv_cache_dtype"] = e.kv_cache_dtype
    else:
        kw = {"model_path": m.id}
        if revision:
            kw["revision"] = revision
        kw["dtype"] = m.dtype
        if m.max_model_len:
            kw["context_length"] = m.max_model_len
        if m.quantization:
            kw["quantization"] = m.quantization
        kw["mem_fraction_static"] = e.gpu_memory_utilization
        kw["tp_size"] = p.tensor_parallel_size
        if e.enforce_eager:
            kw["disable_cuda_graph"] = True
        if e.kv_cache_dtype != "auto":
            kw["kv_cache_dtype"] = e.kv_cache_dtype
    if attention is not None and attention["via"] == "engine_arg":
        kw[attention["engine_arg"]] = e.attention_backend
    if not (p.engine.name == "sglang" and backend == "auto"):  # sglang has no "auto": its default is xgrammar
        kw[api["engine_backend_arg"]] = backend if api["engine_backend_form"] == "string" else {"backend": backend, **so.options}
    kw.update(e.args)  # the profile's own engine arguments win
    return kw


def _cli_args(kwargs: dict[str, Any], skip: tuple[str, ...]) -> list[str]:
    """Engine keyword arguments as server flags: --name value; True -> --name; False/None -> omitted."""
    out: list[str] = []
    for key, value in kwargs.items():
        if key in skip or value is None or value is False:
            continue
        flag = "--" + str(key).replace("_", "-")
        if value is True:
            out.append(flag)
        elif isinstance(value, dict | list):
            out += [flag, json.dumps(value, sort_keys=True, separators=(",", ":"))]
        else:
            out += [flag, str(value)]
    return out


def _server_command(loaded: LoadedProfile, kwargs: dict[str, Any]) -> list[str]:
    p = loaded.profile
    if p.engine.name == "vllm":
        cmd = ["vllm", "serve", p.model.id, "--host", "0.0.0.0", "--port", str(SERVER_PORT), "--served-model-name", p.model.id]
        return cmd + _cli_args(kwargs, skip=("model",))
    cmd = ["python", "-m", "sglang.launch_server", "--model-path", p.model.id, "--host", "0.0.0.0", "--port", str(SERVER_PORT), "--served-model-name", p.model.id]
    return cmd + _cli_args(kwargs, skip=("model_path",))


def _volumes(loaded: LoadedProfile) -> list[tuple[str, str]]:
    p = loaded.profile
    vols = [HF_CACHE, *ENGINE_CACHES[p.engine.name]]
    if "flashinfer-python" in p.packages:
        vols.append(FLASHINFER_CACHE)
    return vols


def _gpu(loaded: LoadedProfile) -> str:
    from kit.catalog import gpus

    spec = gpus().find(loaded.profile.gpu.type)
    name = spec.modal_name if spec else loaded.profile.gpu.type
    count = loaded.profile.gpu.count
    return f"{name}:{count}" if count > 1 else name


def _image(loaded: LoadedProfile, reqs: Requirements, attention: dict[str, Any] | None) -> dict[str, Any]:
    img = loaded.profile.image
    options = []
    if reqs.lock_hash is not None:
        # The lock is the whole closure: install exactly it, verified against its hashes.
        options += ["--require-hashes", "--no-deps"]
        if reqs.only_binary:
            options += ["--only-binary", ":all:"]
    for url in img.extra_index_urls[1:]:
        options.append(f"--extra-index-url {shlex.quote(url)}")
    env = dict(img.env)
    if attention is not None and attention["via"] == "env":  # image.env, when it names the variable too, wins
        env.setdefault(attention["env"], loaded.profile.engine.attention_backend)
    from kit.image_facts import image_facts

    facts = image_facts(img.base, img.builder_version)
    return {
        "slim": img.base == "debian_slim",
        "base": img.base,
        "python": img.python,
        # The engine from the image: no add_python (its own Python runs), nothing installed when nothing is added.
        "from_image": loaded.profile.engine_from_image,
        "builder_version": img.builder_version,
        "link_python": loaded.profile.engine_from_image and facts.python_on_path is False,
        "clear_entrypoint": loaded.profile.engine_from_image and bool(facts.entrypoint),
        "install": any(line.strip() and not line.lstrip().startswith(("#", "-")) for line in reqs.text.splitlines()),
        "apt": list(img.apt_packages),
        "env": env,
        "index_url": img.index_url,
        "extra_index_url": img.extra_index_urls[0] if img.extra_index_urls else None,
        "extra_options": " ".join(options),
        "uv_version": UV_VERSION,
    }


def _max_len(loaded: LoadedProfile) -> int | None:
    """The context length the engine runs with: a request's max_tokens cannot exceed it."""
    from kit.memory import model_facts

    p = loaded.profile
    view, _ = model_facts(loaded)
    return p.model.max_model_len or (view.facts.max_position_embeddings if view else None)


def _context(loaded: LoadedProfile, api: dict[str, Any], attention: dict[str, Any] | None, reqs: Requirements, has_schema: bool) -> dict[str, Any]:
    p = loaded.profile
    kwargs = _engine_kwargs(loaded, api, attention)
    engine_pkg = ENGINE_PACKAGE[p.engine.name]
    return {
        "p": p,
        "api": api,
        "engine": p.engine.name,
        "mode": p.serving.mode,
        "class_name": CLASS_NAME,
        "server_function": SERVER_FUNCTION,
        "port": SERVER_PORT,
        "app_name": p.app.name,
        "profile_name": p.name,
        "model_id": p.model.id,
        "revision": model_revision(loaded),
        "hf_secret": p.model.hf_secret,
        "gpu": _gpu(loaded),
        "image": _image(loaded, reqs, attention),
        "volumes": _volumes(loaded),
        "engine_kwargs": kwargs,
        "server_command": _server_command(loaded, kwargs),
        "pinned": dict(sorted({**p.packages, engine_pkg: str(p.version(engine_pkg))}.items())) if p.engine_from_image else dict(sorted(p.packages.items())),
        "engine_package": engine_pkg,
        "max_tokens_limit": _max_len(loaded),
        "max_tokens_default": p.smoke.max_tokens if p.smoke else 512,
        "has_schema": has_schema,
        "endpoints": list(p.serving.endpoints),
        "web_method": WEB_METHOD,
        "routes": web_routes(p.serving.endpoints),
        "serving": p.serving,
        "async_engine": async_engine_for(loaded) if p.serving.mode == "class" else None,
    }


# -- render ---------------------------------------------------------------------------------------


def web_routes(endpoints: list[str]) -> list[str]:
    """The HTTP routes of class mode's one web method, in serving.endpoints order (empty: no web method)."""
    return [ROUTES[e] for e in endpoints if e in ROUTES]


def _canonical_json(doc: Any) -> str:
    return json.dumps(doc, indent=2, sort_keys=True, ensure_ascii=True) + "\n"


def bundle_hash(files: dict[str, str]) -> str:
    """sha256 over every file (name and text, sorted by name), with manifest.json's `bundle_hash` left out."""
    h = hashlib.sha256()
    for name in sorted(files):
        text = files[name]
        if name == MANIFEST_FILE:
            doc = json.loads(text)
            doc.pop("bundle_hash", None)
            text = _canonical_json(doc)
        h.update(name.encode() + b"\0" + text.encode() + b"\0")
    return h.hexdigest()


def render(loaded: LoadedProfile) -> Bundle:
    """Render the profile's Modal app, requirements, schema and manifest."""
    p = loaded.profile
    api = api_for(loaded)
    attention = attention_for(loaded)
    reqs = requirements(loaded)
    files: dict[str, str] = {REQUIREMENTS_FILE: reqs.text}
    schema_path = loaded.schema_path("structured_output")
    if schema_path is not None:
        text = loaded.texts.get(loaded.rel(schema_path))
        if text is None:
            text = schema_path.read_text(encoding="utf-8")
        files[SCHEMA_FILE] = _canonical_json(json.loads(text))
    env = _environment(str(templates_dir()))
    try:
        app_text = env.get_template("app.py.j2").render(**_context(loaded, api, attention, reqs, SCHEMA_FILE in files))
    except TypeError as exc:  # a value the literal filter refuses (e.g. a TOML datetime in engine.args)
        raise UsageError(f"cannot render a value of the profile: {exc}", file=loaded.display, fix="use strings, numbers, booleans, arrays or tables") from None
    files[APP_FILE] = app_text
    manifest: dict[str, Any] = {
        "kit_version": __version__,
        "template_version": template_version(),
        "profile": p.name,
        "profile_hash": loaded.content_hash(),
        "lock_hash": reqs.lock_hash,
        "app_name": p.app.name,
        "engine": {"name": p.engine.name, "package": ENGINE_PACKAGE[p.engine.name], "version": str(p.version(ENGINE_PACKAGE[p.engine.name]))},
        "structured_output_api": {k: api[k] for k in ("versions", "params_class", "sampling_kwarg", "engine_backend_arg", "engine_backend_form", "openai_field")},
        "serving_mode": p.serving.mode,
        "entrypoints": (
            {
                "class": CLASS_NAME,
                "methods": [e for e in p.serving.endpoints if e == "generate"],
                "web": [WEB_METHOD] if web_routes(p.serving.endpoints) else [],
                "routes": web_routes(p.serving.endpoints),
            }
            if p.serving.mode == "class"
            else {"function": SERVER_FUNCTION, "web": [SERVER_FUNCTION], "port": SERVER_PORT}
        ),
        "files": sorted([*files, MANIFEST_FILE]),
    }
    so = structured_output_choice(loaded)
    manifest["structured_output"] = {"backend": so.backend, "options": so.options, "source": so.source}
    if attention is not None:  # how the engine is told engine.attention_backend ([[attention]] row)
        setting = {"env": attention["env"]} if attention["via"] == "env" else {"engine_arg": attention["engine_arg"], "cli_flag": attention["cli_flag"]}
        manifest["attention_backend"] = {"name": p.engine.attention_backend, "via": attention["via"], "versions": attention["versions"], **setting}
    files[MANIFEST_FILE] = _canonical_json(manifest)
    digest = bundle_hash(files)
    manifest["bundle_hash"] = digest
    files[MANIFEST_FILE] = _canonical_json(manifest)
    return Bundle(files=dict(sorted(files.items())), manifest=manifest, hash=digest)


def write(bundle: Bundle, out_dir: str | Path) -> list[Path]:
    """Write the bundle's files into `out_dir` (created if needed); other files there are left alone.

    Each file is written beside itself and renamed into place: a failure leaves no half-written file.
    """
    from kit.files import write_atomic

    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise UsageError(f"{out} exists and is not a directory", key="--out", fix="name a directory to render into (it is created if missing)")
    written = []
    try:
        out.mkdir(parents=True, exist_ok=True)
        for name, text in bundle.files.items():
            path = out / name
            path.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(path, text)  # newline="\n": no translation, byte-identical everywhere
            written.append(path)
    except OSError as exc:
        raise OperationError(
            f"cannot write the bundle into {out}: {exc.strerror or exc}" + (f" ({len(written)} of {len(bundle.files)} files written)" if written else ""),
            fix="choose a writable directory with --out, or free space",
        ) from None
    return written


def default_out_dir(loaded: LoadedProfile) -> Path:
    """build/<profile name>, refused when the name would lead anywhere else."""
    out = Path("build") / loaded.profile.name
    build = Path("build").resolve()
    if out.resolve().parent != build:  # the profile validator already refuses such names; this is the last guard
        raise UsageError(f"profile name {loaded.profile.name!r} does not name a folder inside build/", file=loaded.display, key="name", fix="use letters, digits, '-', '_' and '.'")
    return out
