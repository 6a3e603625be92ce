"""Record which structured-output and attention symbols each vLLM release defines, read from its source.

Writes tests/data/vllm_symbols.json, which tests/test_render_symbols.py uses to check that the app kit
renders for a vLLM pin only names what that release defines (classes, SamplingParams fields,
EngineArgs fields, LLM methods, OpenAI request fields) and selects the attention backend the way that
release reads it (the VLLM_ATTENTION_BACKEND variable of vllm/envs.py, or EngineArgs.attention_backend
and its --attention-backend flag). It also writes kit/data/attention_backends.json: the attention
backend names (AttentionBackendEnum / _Backend members) of each recorded release, which `kit check`
compares engine.attention_backend against.

    python scripts/record_vllm_symbols.py                      # sdists from the package index
    python scripts/record_vllm_symbols.py --mirror vllm.git    # a git mirror of vllm-project/vllm (tags vX.Y.Z)
    python scripts/record_vllm_symbols.py 0.9.2 0.11.0         # only these releases (merged into the file)

Releases recorded by default: every vLLM pin in profiles/, and the first and last index release inside
each vLLM `[[api]]` and `[[attention]]` row of kit/data/rules (the boundaries those tables draw).
Sources are read with `ast`, never imported: nothing of vLLM is executed. From the index, only the
release's sdist is downloaded (about 9-50 MB each; the URL and sha256 come from the PEP 503 simple
page of the index pip uses) and only the files named here are read out of it. A release published without an sdist (0.15.0,
0.15.1) is read from its x86_64 wheel instead (about 500 MB, checked against the index's sha256 the
same way); the wheel holds the same vllm/*.py files.
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import io
import json
import re
import subprocess
import sys
import tarfile
import tempfile
import tomllib
import urllib.request
import zipfile
from pathlib import Path

from packaging.specifiers import SpecifierSet
from packaging.version import Version

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "tests" / "data" / "vllm_symbols.json"
BACKENDS_OUT = ROOT / "kit" / "data" / "attention_backends.json"  # what `kit check` reads
TABLES = ("api", "attention")  # data tables of kit/data/rules whose version boundaries are recorded


def _index_base() -> str:
    """The simple index pip uses: PIP_INDEX_URL, else pip's own default (named by pip, not here)."""
    import os

    base = os.environ.get("PIP_INDEX_URL")
    if not base:
        from pip._internal.models.index import PyPI  # pip's default index

        base = PyPI.simple_url
    return base.rstrip("/") + "/"


INDEX = _index_base() + "vllm/"
FILES = {
    "sampling_params": "vllm/sampling_params.py",
    "arg_utils": "vllm/engine/arg_utils.py",
    "llm": "vllm/entrypoints/llm.py",
}
OPENAI_DIR = "vllm/entrypoints/openai/"
WATCHED_CLASSES = ("GuidedDecodingParams", "StructuredOutputsParams")
# Attention backend selection: the environment variable (declared in vllm/envs.py's
# environment_variables table), the engine argument and its CLI flag, and the enum of backend names.
ENVS_FILE = "vllm/envs.py"
ATTENTION_ENV = "VLLM_ATTENTION_BACKEND"
ATTENTION_ARG = "attention_backend"
ATTENTION_FLAG = "--attention-backend"
# Where the backend-name enum lives, newest first: v1/attention/backends/registry.py (0.14+),
# attention/backends/registry.py (0.11.2-0.13.0), platforms/interface.py (_Backend, up to 0.11.0).
ENUM_FILES = ("vllm/v1/attention/backends/registry.py", "vllm/attention/backends/registry.py", "vllm/platforms/interface.py")
ENUM_CLASSES = ("AttentionBackendEnum", "_Backend")
# Class mode's async engine: the names vllm/__init__.py exports, the V0 class (or the alias of V1's) and V1's AsyncLLM,
# where the structured-output config class is importable from, and which config dicts EngineArgs converts itself.
ASYNC_EXPORTS = ("AsyncLLMEngine", "AsyncEngineArgs")
ASYNC_FILES = {"v0": ("vllm/engine/async_llm_engine.py", "AsyncLLMEngine"), "v1": ("vllm/v1/engine/async_llm.py", "AsyncLLM")}
CONFIG_FILES = ("vllm/config/__init__.py", "vllm/config.py")


# -- reading one release -----------------------------------------------------------------------


class Source:
    """The files of one release, from a git mirror or an sdist."""

    def __init__(self, version: str, mirror: Path | None, cache: Path):
        self.version = version
        self.mirror = mirror
        self.tar: tarfile.TarFile | None = None
        self.zip: zipfile.ZipFile | None = None
        self.origin = ""
        if mirror is not None:
            self.origin = f"git {mirror.name} tag v{version}"
        elif (cache / f"vllm-{version}.tar.gz").exists() or _has_sdist(version):
            self.tar, self.origin = _open_sdist(version, cache)
        else:
            self.zip, self.origin = _open_wheel(version, cache)

    def read(self, path: str) -> str | None:
        if self.mirror is not None:
            proc = subprocess.run(["git", "--git-dir", str(self.mirror), "show", f"v{self.version}:{path}"], capture_output=True)
            return proc.stdout.decode() if proc.returncode == 0 else None
        if self.zip is not None:
            try:
                return self.zip.read(path).decode()
            except KeyError:
                return None
        assert self.tar is not None
        try:
            member = self.tar.extractfile(f"vllm-{self.version}/{path}")
        except KeyError:
            return None
        return member.read().decode() if member else None

    def list(self, prefix: str) -> list[str]:
        if self.mirror is not None:
            out = subprocess.run(["git", "--git-dir", str(self.mirror), "ls-tree", "-r", "--name-only", f"v{self.version}", prefix], capture_output=True, text=True)
            return sorted(p for p in out.stdout.split() if p.endswith(".py"))
        if self.zip is not None:
            return sorted(n for n in self.zip.namelist() if n.startswith(prefix) and n.endswith(".py"))
        assert self.tar is not None
        head = f"vllm-{self.version}/"
        return sorted(m.name[len(head):] for m in self.tar.getmembers() if m.name.startswith(head + prefix) and m.name.endswith(".py"))


def _index_page() -> str:
    with urllib.request.urlopen(INDEX, timeout=60) as resp:
        return resp.read().decode()


_PAGE: str | None = None


def _page() -> str:
    global _PAGE
    _PAGE = _PAGE or _index_page()
    return _PAGE


def _link(name_pattern: str) -> tuple[str, str, str] | None:
    """(file name, URL, sha256) of the first index file whose name matches the regex."""
    m = re.search(r'href="(https://[^"#]+/(' + name_pattern + r'))#sha256=([0-9a-f]{64})"', _page())
    return (m.group(2), m.group(1), m.group(3)) if m else None


def _download(name: str, url: str, sha: str, path: Path) -> None:
    print(f"downloading {name}", file=sys.stderr)
    with urllib.request.urlopen(url, timeout=600) as resp:
        data = resp.read()
    if hashlib.sha256(data).hexdigest() != sha:
        raise SystemExit(f"{name}: sha256 does not match the index")
    path.write_bytes(data)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _has_sdist(version: str) -> bool:
    return _link(re.escape(f"vllm-{version}.tar.gz")) is not None


def _open_sdist(version: str, cache: Path) -> tuple[tarfile.TarFile, str]:
    name = f"vllm-{version}.tar.gz"
    path = cache / name
    if not path.exists():
        link = _link(re.escape(name))
        if not link:
            raise SystemExit(f"{name}: no sdist on {INDEX}")
        _download(*link, path)
    return tarfile.open(path, "r:gz"), f"sdist {name} sha256:{_sha256(path)}"


def _open_wheel(version: str, cache: Path) -> tuple[zipfile.ZipFile, str]:
    """The release's x86_64 wheel, for a release published without an sdist."""
    link = _link(re.escape(f"vllm-{version}-") + r"[^\"#/]*x86_64\.whl")
    if not link:
        raise SystemExit(f"vllm {version}: neither an sdist nor an x86_64 wheel on {INDEX}")
    name, url, sha = link
    path = cache / name
    if not path.exists():
        _download(name, url, sha, path)
    got = _sha256(path)
    if got != sha:
        raise SystemExit(f"{name}: cached file does not match the index's sha256")
    return zipfile.ZipFile(path), f"wheel {name} sha256:{got}"


# -- what a file defines -------------------------------------------------------------------------


def _classes(tree: ast.Module) -> dict[str, ast.ClassDef]:
    return {node.name: node for node in tree.body if isinstance(node, ast.ClassDef)}


def _fields(cls: ast.ClassDef) -> list[str]:
    """Annotated class-level names: the fields of a dataclass, msgspec Struct or pydantic model."""
    return sorted({n.target.id for n in cls.body if isinstance(n, ast.AnnAssign) and isinstance(n.target, ast.Name)})


def _methods(cls: ast.ClassDef) -> list[str]:
    return sorted({n.name for n in cls.body if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef) and not n.name.startswith("_")})


def _params(cls: ast.ClassDef, method: str) -> list[str]:
    for n in cls.body:
        if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef) and n.name == method:
            a = n.args
            return [x.arg for x in [*a.posonlyargs, *a.args, *a.kwonlyargs] if x.arg != "self"]
    return []


def _annotation(cls: ast.ClassDef, method: str, param: str) -> str | None:
    for n in cls.body:
        if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef) and n.name == method:
            a = n.args
            for x in [*a.posonlyargs, *a.args, *a.kwonlyargs]:
                if x.arg == param:
                    return ast.unparse(x.annotation) if x.annotation is not None else None
    return None


def _chat(llm: ast.ClassDef) -> dict:
    """LLM.chat: its parameters, and whether it takes a batch (a list of conversations with a list of SamplingParams).

    Read from the annotations: messages `list[list[ChatCompletionMessageParam]]` (or `Sequence[list[...]]`), and
    sampling_params `list[SamplingParams]` (or `Sequence[SamplingParams]`). Recorded for reference: kit's
    class-mode Engine now drives the async engine (async_engine below), not LLM.chat.
    """
    messages = _annotation(llm, "chat", "messages") or ""
    sampling = _annotation(llm, "chat", "sampling_params") or ""
    return {
        "params": _params(llm, "chat"),
        "messages": messages,
        "sampling_params": sampling,
        "batch": bool(re.search(r"\b(list|Sequence)\[list\[ChatCompletionMessageParam\]\]", messages))
        and bool(re.search(r"\b(list|Sequence)\[SamplingParams\]", sampling)),
    }


def _module_names(tree: ast.Module) -> set[str]:
    """Names bound at module level (classes, functions, assignments, imports)."""
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.ClassDef | ast.FunctionDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names |= {t.id for t in node.targets if isinstance(t, ast.Name)}
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
        elif isinstance(node, ast.ImportFrom | ast.Import):
            names |= {(a.asname or a.name).split(".")[0] for a in node.names}
    return names


def _dict_keys(tree: ast.Module, name: str) -> set[str]:
    """String keys of the module-level dict literal bound to `name` (e.g. envs.environment_variables)."""
    for node in tree.body:
        target = node.targets[0] if isinstance(node, ast.Assign) and len(node.targets) == 1 else getattr(node, "target", None)
        if isinstance(node, ast.Assign | ast.AnnAssign) and isinstance(target, ast.Name) and target.id == name and isinstance(node.value, ast.Dict):
            return {k.value for k in node.value.keys if isinstance(k, ast.Constant) and isinstance(k.value, str)}
    return set()


def _has_string(tree: ast.AST, value: str) -> bool:
    return any(isinstance(n, ast.Constant) and n.value == value for n in ast.walk(tree))


def _enum_members(cls: ast.ClassDef) -> list[str]:
    """Names assigned in an Enum class body, in definition order (aliases included: Enum[name] accepts them)."""
    out: list[str] = []
    for n in cls.body:
        targets = n.targets if isinstance(n, ast.Assign) else [n.target] if isinstance(n, ast.AnnAssign) and n.value is not None else []
        out += [t.id for t in targets if isinstance(t, ast.Name) and not t.id.startswith("_")]
    return out


def attention(src: Source, engine_args: list[str]) -> dict:
    """How this release selects the attention backend, and which backend names it knows."""
    envs = src.read(ENVS_FILE)
    args = src.read(FILES["arg_utils"]) or ""
    backends: dict = {}
    for path in ENUM_FILES:
        text = src.read(path)
        if text is None:
            continue
        classes = _classes(ast.parse(text))
        for name in ENUM_CLASSES:
            cls = classes.get(name)
            if cls is not None and any(ast.unparse(b).split(".")[-1] == "Enum" for b in cls.bases):
                backends = {"file": path, "class": name, "names": _enum_members(cls)}
                break
        if backends:
            break
    return {
        "env_var": {
            "name": ATTENTION_ENV,
            "file": ENVS_FILE,
            "defined": envs is not None and ATTENTION_ENV in _dict_keys(ast.parse(envs), "environment_variables"),
        },
        "engine_arg": {"name": ATTENTION_ARG, "file": FILES["arg_utils"], "defined": ATTENTION_ARG in engine_args},
        "cli_flag": {"name": ATTENTION_FLAG, "file": FILES["arg_utils"], "defined": _has_string(ast.parse(args), ATTENTION_FLAG)},
        "backends": backends,
    }


def async_engine(src: Source, arg_classes: dict[str, ast.ClassDef]) -> dict:
    """What class mode's async engine needs: `from vllm import AsyncEngineArgs, AsyncLLMEngine`,
    AsyncLLMEngine.from_engine_args(AsyncEngineArgs(**kw)) and generate(prompt, sampling_params, request_id)."""
    init = ast.parse(src.read("vllm/__init__.py") or "")
    classes: dict = {}
    alias = False
    for kind, (path, name) in ASYNC_FILES.items():
        text = src.read(path)
        if text is None:
            continue
        cls = _classes(ast.parse(text)).get(name)
        if cls is not None:
            classes[kind] = {"file": path, "class": name, "methods": _methods(cls), "generate": _params(cls, "generate")}
        if kind == "v0":
            alias = bool(re.search(r"^AsyncLLMEngine\s*=\s*AsyncLLM\b", text, re.M))
    config_file = None
    for path in CONFIG_FILES:
        text = src.read(path)
        if text is not None and "StructuredOutputsConfig" in _module_names(ast.parse(text)):
            config_file = path
            break
    args = arg_classes.get("AsyncEngineArgs")
    return {
        "exports": [n for n in ASYNC_EXPORTS if _has_string(init, n)],
        "AsyncLLMEngine_is_alias_of_v1": alias,
        "classes": classes,
        "AsyncEngineArgs": {"bases": [ast.unparse(b) for b in args.bases], "fields": _fields(args)} if args else None,
        "StructuredOutputsConfig_in": config_file,
        # EngineArgs.__post_init__ turns these dicts into their config classes (others stay raw dicts)
        "engine_args_converts_dict": sorted(set(re.findall(r"isinstance\(\s*self\.(\w+)\s*,\s*dict\s*\)", src.read(FILES["arg_utils"]) or ""))),
    }


def record(src: Source) -> dict:
    entry: dict = {"source": src.origin}
    text = src.read(FILES["sampling_params"])
    if text is None:
        raise SystemExit(f"{src.version}: {FILES['sampling_params']} not found")
    tree = ast.parse(text)
    classes = _classes(tree)
    names = _module_names(tree)
    sp = classes["SamplingParams"]
    entry["sampling_params"] = {
        "defines": {c: c in names for c in WATCHED_CLASSES},
        "classes": {c: {"fields": _fields(classes[c]), "bases": [ast.unparse(b) for b in classes[c].bases]} for c in WATCHED_CLASSES if c in classes},
        "SamplingParams": {
            "fields": _fields(sp),
            "guided_decoding": "guided_decoding" in _fields(sp),
            "structured_outputs": "structured_outputs" in _fields(sp),
        },
    }
    args = _classes(ast.parse(src.read(FILES["arg_utils"]) or ""))
    ea = _fields(args["EngineArgs"])
    entry["EngineArgs"] = {
        "fields": ea,
        "guided_decoding_backend": "guided_decoding_backend" in ea,
        "structured_outputs_config": "structured_outputs_config" in ea,
    }
    llm_text = src.read(FILES["llm"]) or ""
    llm = _classes(ast.parse(llm_text)).get("LLM")
    entry["LLM"] = {
        "methods": _methods(llm) if llm else [],
        "init_params": _params(llm, "__init__") if llm else [],
        # LLM.__init__ turns a dict into the config object for these (else EngineArgs gets the raw dict).
        "converts_dict": sorted(k for k in ("structured_outputs_config", "compilation_config") if re.search(rf"isinstance\(\s*{k}\s*,\s*dict\b|_make_config\(\s*{k}\b", llm_text)),
    }
    entry["LLM"]["chat"] = _chat(llm) if llm else {}
    chat: dict = {}
    for path in src.list(OPENAI_DIR):
        cls = _classes(ast.parse(src.read(path) or "")).get("ChatCompletionRequest")
        if cls is not None:
            fields = _fields(cls)
            chat = {"file": path, "response_format": "response_format" in fields, "guided_json": "guided_json" in fields, "structured_outputs": "structured_outputs" in fields}
            break
    entry["ChatCompletionRequest"] = chat
    entry["attention"] = attention(src, ea)
    entry["async_engine"] = async_engine(src, args)
    return entry


# -- which releases ------------------------------------------------------------------------------


def index_versions() -> list[Version]:
    out = subprocess.run([sys.executable, "-m", "pip", "index", "versions", "vllm"], capture_output=True, text=True, check=True).stdout
    m = re.search(r"Available versions: (.*)", out)
    return sorted(Version(v.strip()) for v in m.group(1).split(",")) if m else []


def default_versions() -> list[str]:
    wanted: set[Version] = set()
    for path in sorted((ROOT / "profiles").glob("*.toml")):
        doc = tomllib.loads(path.read_text())
        if "vllm" in doc.get("packages", {}):
            wanted.add(Version(doc["packages"]["vllm"]))
    released = [v for v in index_versions() if not v.is_prerelease]
    for path in sorted((ROOT / "kit" / "data" / "rules").glob("*.toml")):
        doc = tomllib.loads(path.read_text())
        for row in [r for table in TABLES for r in doc.get(table, [])]:
            if row.get("engine") != "vllm":
                continue
            inside = [v for v in released if SpecifierSet(row["versions"]).contains(v)]
            if inside:
                wanted |= {inside[0], inside[-1]}
    return [str(v) for v in sorted(wanted)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("versions", nargs="*", help="vLLM releases (default: profile pins and api-table boundaries)")
    ap.add_argument("--mirror", type=Path, help="bare git mirror of vllm-project/vllm (else sdists from the index)")
    ap.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "kit-vllm-sdists")
    ns = ap.parse_args()
    ns.cache.mkdir(parents=True, exist_ok=True)
    versions = ns.versions or default_versions()
    data = json.loads(OUT.read_text()) if OUT.exists() else {}
    releases = data.get("releases", {})
    for v in versions:
        print(f"vllm {v}", file=sys.stderr)
        releases[v] = record(Source(v, ns.mirror, ns.cache))
    out = {
        "comment": "Written by scripts/record_vllm_symbols.py from each release's own source (read with ast, not imported). Do not edit by hand.",
        "releases": dict(sorted(releases.items(), key=lambda kv: Version(kv[0]))),
    }
    _write(OUT, out)
    print(f"wrote {OUT.relative_to(ROOT)} ({len(releases)} releases)", file=sys.stderr)
    backends = {
        v: {"source": r["source"], **r["attention"]["backends"]} for v, r in out["releases"].items() if r.get("attention", {}).get("backends")
    }
    _write(
        BACKENDS_OUT,
        {
            "comment": "Written by scripts/record_vllm_symbols.py: the attention backend names each recorded vLLM release defines "
            "(its AttentionBackendEnum / _Backend members, read with ast from the file named). Do not edit by hand.",
            "vllm": backends,
        },
    )
    print(f"wrote {BACKENDS_OUT.relative_to(ROOT)} ({len(backends)} releases)", file=sys.stderr)


def _write(path: Path, doc: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    buf = io.StringIO()
    json.dump(doc, buf, indent=1, sort_keys=False)
    path.write_text(buf.getvalue() + "\n")


if __name__ == "__main__":
    main()
