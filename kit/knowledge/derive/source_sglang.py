"""Facts of one SGLang release, read from its sdist's source with `ast` (the sdist's root is the repo's python/)."""

from __future__ import annotations

import ast

from kit.knowledge.derive import pysource as py
from kit.knowledge.derive.sdist import SdistTree
from kit.knowledge.derive.source_vllm import quant_min_capability

SERVER_ARGS = "sglang/srt/server_args.py"
SAMPLING = ("sglang/srt/sampling/sampling_params.py", "sglang/srt/sampling_params.py")
ENVIRON = "sglang/srt/environ.py"
MODELS = "sglang/srt/models/"
QUANT = "sglang/srt/layers/quantization/"
ENGINE = ("sglang/srt/entrypoints/engine.py", "sglang/srt/server.py")
STRUCTURED_FIELDS = ("json_schema", "regex", "ebnf", "structural_tag", "response_format")


def facts(src: SdistTree) -> tuple[dict, dict]:
    """(facts, sources): the release's facts and, per fact, the file(s) it was read from."""
    f: dict = {}
    s: dict = {}
    args_tree = py.parse(src.read(SERVER_ARGS))
    server_args = py.classes(args_tree).get("ServerArgs")
    f["engine_args.fields"] = py.fields(server_args) if server_args else []
    f["structured_output.backends"] = py.cli_choices(args_tree, "--grammar-backend") or []
    f["attention.backends"] = py.cli_choices(args_tree, "--attention-backend") or []
    f["attention.cli_flag"] = f["attention.backend_arg"] = "attention_backend" in f["engine_args.fields"]
    for key in ("engine_args.fields", "structured_output.backends", "attention.backends", "attention.backend_arg", "attention.cli_flag"):
        s[key] = SERVER_ARGS

    path = next((p for p in SAMPLING if p in src.files), SAMPLING[0])
    sampling = py.classes(py.parse(src.read(path))).get("SamplingParams")
    f["sampling_params.fields"] = py.fields(sampling) if sampling else []
    s["sampling_params.fields"] = path
    path, request = _chat_request(src)
    f["request.fields"] = py.fields(request) if request else []
    s["request.fields"] = path
    f["structured_output.request_fields"] = sorted(set(STRUCTURED_FIELDS) & set(f["request.fields"] + f["sampling_params.fields"]))

    envs = py.classes(py.parse(src.read(ENVIRON))).get("Envs")
    declared = [t.id for n in envs.body if isinstance(n, ast.Assign) for t in n.targets if isinstance(t, ast.Name)] if envs else []
    f["env_vars.declared"] = sorted(n for n in declared if py.ENV_NAME.match(n))
    f["env_vars.read"] = sorted(_env_reads(src))
    s["env_vars.declared"], s["env_vars.read"] = ENVIRON, "sglang/**/*.py"

    archs: dict[str, list[str]] = {}
    for path in src.under(MODELS):
        if b"EntryClass" not in src.files[path]:
            continue
        value = py.assigned(py.parse(src.read(path)), "EntryClass")
        elts = value.elts if isinstance(value, ast.List | ast.Tuple) else [value] if value is not None else []
        for e in elts:
            name = e.id if isinstance(e, ast.Name) else e.attr if isinstance(e, ast.Attribute) else None
            if name:
                archs[name] = []
    f["architectures"] = dict(sorted(archs.items()))
    s["architectures"] = MODELS + "*.py EntryClass"

    engine = next((p for p in ENGINE if "Engine" in py.classes(py.parse(src.read(p)))), None)
    f["engine.async_class"] = "Engine" if engine else None
    s["engine.async_class"] = engine or ENGINE[0]
    f["quant.own_module"] = bool(src.under(QUANT))
    f["quant_min_capability"], where = quant_min_capability(src, QUANT)
    s.update({f"quant_min_capability.{k}": v for k, v in where.items()})
    return f, s


def _chat_request(src: SdistTree) -> tuple[str, ast.ClassDef | None]:
    paths = [p for p in src.under("sglang/srt/") if p.endswith("protocol.py") and "openai" in p]
    for path in sorted(paths, key=lambda p: ("entrypoints" not in p, p)):
        found = py.classes(py.parse(src.read(path))).get("ChatCompletionRequest")
        if found is not None:
            return path, found
    return "sglang/srt/**/openai*/protocol.py", None


def _env_reads(src: SdistTree) -> set[str]:
    out: set[str] = set()
    for path, data in src.files.items():
        if b"environ" in data or b"getenv" in data or b"_env_var" in data:
            out |= py.env_reads(py.parse(data.decode("utf-8", "replace")))
    return out
