"""Record which structured-output symbols each vLLM release defines, read from that release's source.

Writes tests/data/vllm_symbols.json, which tests/test_render_symbols.py uses to check that the app kit
renders for a vLLM pin only names what that release defines (classes, SamplingParams fields,
EngineArgs fields, LLM methods, OpenAI request fields).

    python scripts/record_vllm_symbols.py                      # sdists from the package index
    python scripts/record_vllm_symbols.py --mirror vllm.git    # a git mirror of vllm-project/vllm (tags vX.Y.Z)
    python scripts/record_vllm_symbols.py 0.9.2 0.11.0         # only these releases (merged into the file)

Releases recorded by default: every vLLM pin in profiles/, and the first and last index release inside
each vLLM `[[api]]` row of kit/data/rules (the boundaries the api table draws). Sources are read with
`ast`, never imported: nothing of vLLM is executed. From the index, only the release's sdist is
downloaded (about 9-20 MB each; the URL and sha256 come from the PEP 503 simple page) and only the
files listed in FILES are read out of it.
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
from pathlib import Path

from packaging.specifiers import SpecifierSet
from packaging.version import Version

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "tests" / "data" / "vllm_symbols.json"


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


# -- reading one release -----------------------------------------------------------------------


class Source:
    """The files of one release, from a git mirror or an sdist."""

    def __init__(self, version: str, mirror: Path | None, cache: Path):
        self.version = version
        self.mirror = mirror
        self.tar: tarfile.TarFile | None = None
        self.origin = ""
        if mirror is not None:
            self.origin = f"git {mirror.name} tag v{version}"
        else:
            self.tar, self.origin = _open_sdist(version, cache)

    def read(self, path: str) -> str | None:
        if self.mirror is not None:
            proc = subprocess.run(["git", "--git-dir", str(self.mirror), "show", f"v{self.version}:{path}"], capture_output=True)
            return proc.stdout.decode() if proc.returncode == 0 else None
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
        assert self.tar is not None
        head = f"vllm-{self.version}/"
        return sorted(m.name[len(head):] for m in self.tar.getmembers() if m.name.startswith(head + prefix) and m.name.endswith(".py"))


def _index_page() -> str:
    with urllib.request.urlopen(INDEX, timeout=60) as resp:
        return resp.read().decode()


_PAGE: str | None = None


def _open_sdist(version: str, cache: Path) -> tuple[tarfile.TarFile, str]:
    global _PAGE
    name = f"vllm-{version}.tar.gz"
    path = cache / name
    if not path.exists():
        _PAGE = _PAGE or _index_page()
        m = re.search(r'href="(https://[^"#]+/' + re.escape(name) + r')#sha256=([0-9a-f]{64})"', _PAGE)
        if not m:
            raise SystemExit(f"{name}: no sdist on {INDEX}")
        url, sha = m.groups()
        print(f"downloading {name}", file=sys.stderr)
        with urllib.request.urlopen(url, timeout=300) as resp:
            data = resp.read()
        if hashlib.sha256(data).hexdigest() != sha:
            raise SystemExit(f"{name}: sha256 does not match the index")
        path.write_bytes(data)
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    return tarfile.open(path, "r:gz"), f"sdist {name} sha256:{sha}"


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
    chat: dict = {}
    for path in src.list(OPENAI_DIR):
        cls = _classes(ast.parse(src.read(path) or "")).get("ChatCompletionRequest")
        if cls is not None:
            fields = _fields(cls)
            chat = {"file": path, "response_format": "response_format" in fields, "guided_json": "guided_json" in fields, "structured_outputs": "structured_outputs" in fields}
            break
    entry["ChatCompletionRequest"] = chat
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
        for row in tomllib.loads(path.read_text()).get("api", []):
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
    OUT.parent.mkdir(parents=True, exist_ok=True)
    buf = io.StringIO()
    json.dump(out, buf, indent=1, sort_keys=False)
    OUT.write_text(buf.getvalue() + "\n")
    print(f"wrote {OUT.relative_to(ROOT)} ({len(releases)} releases)", file=sys.stderr)


if __name__ == "__main__":
    main()
