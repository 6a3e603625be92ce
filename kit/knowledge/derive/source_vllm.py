"""Facts of one vLLM release, read from its sdist's source with `ast`.

Each fact is a value, a sorted list (a set) or a dict; `SOURCES` says which file each comes from.
"""

from __future__ import annotations

import ast
import re

from kit.knowledge.derive import pysource as py
from kit.knowledge.derive.sdist import SdistTree

SAMPLING = "vllm/sampling_params.py"
ARGS = "vllm/engine/arg_utils.py"
LLM = "vllm/entrypoints/llm.py"
ENVS = "vllm/envs.py"
OPENAI = "vllm/entrypoints/openai/"
STRUCTURED_CLASSES = ("GuidedDecodingParams", "StructuredOutputsParams")
ATTENTION_ENV = "VLLM_ATTENTION_BACKEND"
ATTENTION_ENUMS = ("AttentionBackendEnum", "_Backend")  # newest name first
ATTENTION_DIRS = ("vllm/attention/", "vllm/v1/attention/", "vllm/platforms/", "vllm/config/", ARGS)
UNKNOWN_BACKEND = re.compile(r"(?i)(invalid|unknown) attention backend:? '")
REQUEST_BACKEND = re.compile(r"(?i)request-level structured output backend")
BACKEND_ALIAS = re.compile(r"^(Guided|StructuredOutput).*Backend(V\d)?$")
VALID_BACKENDS = re.compile(r"(?i)valid.*backends$")  # 0.8.x: DecodingConfig.__post_init__'s v0/v1_valid_guided_backends
DECODING_CONFIGS = ("DecodingConfig", "StructuredOutputsConfig")
REGISTRY_FILES = ("vllm/model_executor/models/registry.py", "vllm/model_executor/models/__init__.py", "vllm/model_executor/model_loader.py")
REGISTRY_TABLE = re.compile(r"^_([A-Z_]*MODELS|MODEL_REGISTRY)$")
NOT_SERVED = re.compile(r"ROCM|PREVIOUSLY|UNSUPPORTED|^_VLLM_MODELS$")
QUANT = "vllm/model_executor/layers/quantization/"


def facts(src: SdistTree) -> tuple[dict, dict]:
    """(facts, sources): the release's facts and, per fact, the file(s) it was read from."""
    f: dict = {}
    s: dict = {}
    sampling = py.parse(src.read(SAMPLING))
    cls = py.classes(sampling)
    names = py.module_names(sampling)
    f["structured_output.classes"] = sorted(c for c in STRUCTURED_CLASSES if c in names)
    f["sampling_params.fields"] = py.fields(cls["SamplingParams"]) if "SamplingParams" in cls else []
    for c in STRUCTURED_CLASSES:
        if c in cls:
            f[f"structured_output.{c}.fields"] = py.fields(cls[c])
    s["structured_output.classes"] = s["sampling_params.fields"] = SAMPLING

    args_tree = py.parse(src.read(ARGS))
    engine_args = py.classes(args_tree).get("EngineArgs")
    f["engine_args.fields"] = py.fields(engine_args) if engine_args else []
    s["engine_args.fields"] = ARGS

    path, request = _request_class(src, "ChatCompletionRequest")
    f["request.fields"] = py.fields(request) if request else []
    s["request.fields"] = path
    path, request = _request_class(src, "CompletionRequest")
    f["request.completion_fields"] = py.fields(request) if request else []
    s["request.completion_fields"] = path

    f["structured_output.backends"], s["structured_output.backends"] = _backends(src, args_tree)
    check = _request_backend_check(src)
    f["structured_output.request_backend_check"] = check
    # None where the engine does not take "auto" at all (0.8.1's V1 took only xgrammar): the question does not arise
    accepts_auto = "auto" in f["structured_output.backends"]
    f["structured_output.request_backend_rejected_with_auto"] = (check["rejected_with_auto"] if accepts_auto else None) if check else False
    s["structured_output.request_backend_check"] = check["path"] if check else "vllm/**/*.py"

    declared = py.dict_keys(py.assigned(py.parse(src.read(ENVS)), "environment_variables"))
    f["env_vars.declared"] = sorted(set(declared))
    f["env_vars.read"] = sorted(_env_reads(src))
    s["env_vars.declared"], s["env_vars.read"] = ENVS, "vllm/**/*.py"

    f.update(_attention(src, f, args_tree))
    if f["attention.enum"]:
        s["attention.backends"] = f["attention.enum"].split(":")[0]
    s["attention.backend_arg"] = s["attention.cli_flag"] = ARGS

    f["architectures"], s["architectures"] = _architectures(src)
    f.update(_engines(src))
    s["engine.has_v0"] = "vllm/engine/llm_engine.py"
    s["engine.has_v1"] = "vllm/v1/engine/"
    s["engine.async_class"] = "vllm/engine/async_llm_engine.py"
    f.update(_llm(src))
    s["llm.methods"] = LLM
    f["quant_min_capability"], quant_sources = quant_min_capability(src, QUANT)
    s.update({f"quant_min_capability.{k}": v for k, v in quant_sources.items()})
    return f, s


def _request_class(src: SdistTree, name: str) -> tuple[str, ast.ClassDef | None]:
    paths = src.under(OPENAI)
    paths.sort(key=lambda p: (not p.endswith("protocol.py"), p))
    for path in paths:
        text = src.read(path) or ""
        if f"class {name}(" in text:
            found = py.classes(py.parse(text)).get(name)
            if found is not None:
                return path, found
    return OPENAI, None


def _backends(src: SdistTree, args_tree: ast.Module) -> tuple[list[str], str]:
    """Structured-output backend names: Literal aliases in the config modules, and --guided-decoding-backend choices."""
    found: set[str] = set()
    paths: set[str] = set()
    choices = py.cli_choices(args_tree, "--guided-decoding-backend")
    if choices:
        found |= set(choices)
        paths.add(ARGS)
    for path in ["vllm/config.py", *src.under("vllm/config/"), ARGS]:
        text = src.read(path) or ""
        if "Backend" not in text:
            continue
        tree = py.parse(text)
        for node in tree.body:
            target = node.targets[0] if isinstance(node, ast.Assign) and len(node.targets) == 1 else getattr(node, "target", None)
            if isinstance(target, ast.Name) and BACKEND_ALIAS.match(target.id) and node.value is not None:
                values = py.strings(node.value, tree)
                if values:
                    found |= set(values)
                    paths.add(path)
        for name, cls in py.classes(tree).items():
            if name not in DECODING_CONFIGS:
                continue
            for node in ast.walk(cls):
                if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and VALID_BACKENDS.search(t.id) for t in node.targets):
                    values = py.strings(node.value, tree)
                    if values:
                        found |= set(values)
                        paths.add(f"{path}:{name}")
    return sorted(found), ", ".join(sorted(paths))


def _request_backend_check(src: SdistTree) -> dict | None:
    """The raise that rejects a request naming its own structured-output backend, and whether it fires when the engine's is "auto"."""
    for path in sorted(src.files):
        if not path.startswith("vllm/") or b"Request-level" not in src.files[path]:
            continue
        for qualname, fn in py.functions(py.parse(src.read(path))):
            for _, message, ifs in py.raises(fn):
                if REQUEST_BACKEND.search(message):
                    verdicts = [_auto_scenario(i.test) for i in ifs]
                    rejected = None if None in verdicts else all(verdicts)
                    return {
                        "path": path,
                        "function": qualname,
                        "conditions": [ast.unparse(i.test) for i in ifs],
                        "message": message,
                        "rejected_with_auto": rejected,
                    }
    return None


def _auto_scenario(test: ast.expr) -> bool | None:
    """Evaluate a guard for: engine backend "auto", the request explicitly names another backend (not set by auto)."""
    if isinstance(test, ast.BoolOp):
        vals = [_auto_scenario(v) for v in test.values]
        if isinstance(test.op, ast.And):
            return False if False in vals else None if None in vals else True
        return True if True in vals else None if None in vals else False
    if isinstance(test, ast.UnaryOp) and isinstance(test.op, ast.Not):
        v = _auto_scenario(test.operand)
        return None if v is None else not v
    if isinstance(test, ast.NamedExpr):
        return _auto_scenario(test.value)
    if isinstance(test, ast.Compare) and len(test.ops) == 1:
        left, op, right = test.left, test.ops[0], test.comparators[0]
        consts = [x.value for x in (left, right) if isinstance(x, ast.Constant)]
        if consts == ["auto"] and isinstance(op, ast.Eq | ast.NotEq):
            return isinstance(op, ast.Eq)  # the engine's backend is "auto"
        if consts == ["_auto"] and isinstance(op, ast.In | ast.NotIn):
            return isinstance(op, ast.NotIn)  # the request's backend was not filled in by auto
        if not consts and isinstance(op, ast.Eq | ast.NotEq):
            return isinstance(op, ast.NotEq)  # the request's backend differs from the engine's
        return None
    text = ast.unparse(test)
    if text.endswith("backend_was_auto"):
        return False
    if isinstance(test, ast.Name | ast.Attribute) and "backend" in text:
        return True  # the request names a backend
    return None


def _env_reads(src: SdistTree) -> set[str]:
    out: set[str] = set()
    for path, data in src.files.items():
        if path.startswith("vllm/") and (b"environ" in data or b"getenv" in data or b"is_set" in data):
            out |= py.env_reads(py.parse(data.decode("utf-8", "replace")))
    return out


def _attention(src: SdistTree, f: dict, args_tree: ast.Module) -> dict:
    out: dict = {"attention.enum": None, "attention.backends": []}
    paths = [p for d in ATTENTION_DIRS for p in (src.under(d) if d.endswith("/") else [d])]
    enums = {}
    evidence = []
    for path in paths:
        data = src.files.get(path, b"")
        tree = None
        if any(f"class {e}(".encode() in data for e in ATTENTION_ENUMS):
            tree = py.parse(data.decode("utf-8", "replace"))
            for name, cls in py.classes(tree).items():
                if name in ATTENTION_ENUMS and py.is_enum(cls):
                    enums.setdefault(name, (path, py.enum_members(cls)))
        if b"attention backend" in data.lower() or b"backend_name_to_enum" in data:
            tree = tree or py.parse(data.decode("utf-8", "replace"))
            for qualname, fn in py.functions(tree):
                for _, message, _ in py.raises(fn):
                    if UNKNOWN_BACKEND.search(message):
                        evidence.append(f"{path}:{qualname} raises {message!r}")
                if _unguarded_lookup(fn, qualname):
                    evidence.append(f"{path}:{qualname} looks the name up as Enum[name], unguarded (KeyError)")
    envs_tree = py.parse(src.read(ENVS))
    for key, value in zip(*_env_table(envs_tree)):
        if key == ATTENTION_ENV and isinstance(value, ast.Call) and ast.unparse(value.func).endswith("env_with_choices"):
            evidence.append(f"{ENVS}:environment_variables[{ATTENTION_ENV!r}] is env_with_choices (raises on a value outside the choices)")
    for name in ATTENTION_ENUMS:
        if name in enums:
            out["attention.enum"] = f"{enums[name][0]}:{name}"
            out["attention.backends"] = sorted(set(enums[name][1]))
            break
    out["attention.env_var_declared"] = ATTENTION_ENV in f["env_vars.declared"]
    out["attention.env_var_read"] = ATTENTION_ENV in f["env_vars.declared"] or ATTENTION_ENV in f["env_vars.read"]
    out["attention.backend_arg"] = "attention_backend" in f["engine_args.fields"]
    out["attention.cli_flag"] = any(isinstance(n, ast.Constant) and n.value == "--attention-backend" for n in ast.walk(args_tree))
    out["attention.unknown_raises_evidence"] = sorted(set(evidence))
    out["attention.unknown_raises"] = bool(evidence) and (out["attention.env_var_read"] or out["attention.backend_arg"])
    return out


def _unguarded_lookup(fn: ast.AST, qualname: str) -> bool:
    """`return _Backend[name]` / `x = _Backend[name]` in the function that reads the variable (or converts its value),
    with no `name in _Backend.__members__` test anywhere in it: an unknown name raises KeyError."""
    if qualname.split(".")[-1] != "backend_name_to_enum" and ATTENTION_ENV not in ast.unparse(fn):
        return False
    if any(isinstance(n, ast.Attribute) and n.attr == "__members__" for n in ast.walk(fn)):
        return False
    return any(
        isinstance(n, ast.Return | ast.Assign)
        and isinstance(n.value, ast.Subscript)
        and ast.unparse(n.value.value).split(".")[-1] in ATTENTION_ENUMS
        for n in ast.walk(fn)
    )


def _env_table(tree: ast.Module) -> tuple[list[str], list[ast.expr]]:
    table = py.assigned(tree, "environment_variables")
    if not isinstance(table, ast.Dict):
        return [], []
    pairs = [(k.value, v) for k, v in zip(table.keys, table.values) if isinstance(k, ast.Constant)]
    return [k for k, _ in pairs], [v for _, v in pairs]


def _architectures(src: SdistTree) -> tuple[dict, str]:
    """Architecture name -> the registry tables (kinds) that serve it."""
    archs: dict[str, set[str]] = {}
    paths = []
    for path in REGISTRY_FILES:
        tree = py.parse(src.read(path))
        for node in tree.body:
            target = node.targets[0] if isinstance(node, ast.Assign) and len(node.targets) == 1 else getattr(node, "target", None)
            if not isinstance(target, ast.Name) or not REGISTRY_TABLE.match(target.id) or NOT_SERVED.search(target.id):
                continue
            keys = py.dict_keys(node.value)
            kind = target.id.strip("_").lower().removesuffix("_models") or "models"
            for k in keys:
                archs.setdefault(k, set()).add(kind)
            if keys and path not in paths:
                paths.append(path)
        if archs:
            break  # the first era's file that has tables is the registry
    return {k: sorted(v) for k, v in sorted(archs.items())}, ", ".join(paths)


def _engines(src: SdistTree) -> dict:
    v0 = py.classes(py.parse(src.read("vllm/engine/llm_engine.py")))
    async_tree = py.parse(src.read("vllm/engine/async_llm_engine.py"))
    async_class = None
    if "AsyncLLMEngine" in py.classes(async_tree):
        async_class = "AsyncLLMEngine"
    elif isinstance(value := py.assigned(async_tree, "AsyncLLMEngine"), ast.Name):
        async_class = value.id
    v1_async = "AsyncLLM" in py.classes(py.parse(src.read("vllm/v1/engine/async_llm.py")))
    return {
        "engine.has_v0": "LLMEngine" in v0,
        "engine.has_v1": bool(src.under("vllm/v1/engine/")),
        "engine.async_class": async_class,
        "engine.async_classes": sorted(({"AsyncLLMEngine"} if async_class == "AsyncLLMEngine" else set()) | ({"AsyncLLM"} if v1_async else set())),
    }


def _llm(src: SdistTree) -> dict:
    text = src.read(LLM) or ""
    llm = py.classes(py.parse(text)).get("LLM")
    if llm is None:
        return {"llm.methods": [], "llm.init_params": [], "llm.converts_dict": [], "llm.chat": None}
    chat = None
    if py.method(llm, "chat"):
        messages = py.annotation(llm, "chat", "messages") or ""
        sampling = py.annotation(llm, "chat", "sampling_params") or ""
        chat = {
            "params": py.params(llm, "chat"),
            "messages": messages,
            "sampling_params": sampling,
            "batch": bool(re.search(r"\b(list|Sequence)\[list\[ChatCompletionMessageParam\]\]", messages))
            and bool(re.search(r"\b(list|Sequence)\[SamplingParams\]", sampling)),
        }
    return {
        "llm.methods": py.methods(llm),
        "llm.init_params": py.params(llm, "__init__"),
        # LLM.__init__ turns a dict into the config object for these (else EngineArgs gets the raw dict)
        "llm.converts_dict": sorted(
            k for k in ("structured_outputs_config", "compilation_config") if re.search(rf"isinstance\(\s*{k}\s*,\s*dict\b|_make_config\(\s*{k}\b", text)
        ),
        "llm.chat": chat,
    }


def quant_min_capability(src: SdistTree, prefix: str) -> tuple[dict, dict]:
    """Quantization method (its get_name literal) -> the least capability its get_min_capability returns, and where."""
    caps: dict[str, int] = {}
    where: dict[str, str] = {}
    for path in src.under(prefix):
        data = src.files[path]
        if b"get_min_capability" not in data or b"get_name" not in data:
            continue
        for cls in py.classes(py.parse(data.decode("utf-8", "replace"))).values():
            fn = py.method(cls, "get_min_capability")
            for name, cap in _name_capabilities(py.method(cls, "get_name"), fn).items():
                caps[name] = cap
                where[name] = f"{path}:{cls.name}.get_min_capability"
    return dict(sorted(caps.items())), where


def _name_capabilities(get_name, get_min_capability) -> dict[str, int]:
    """{method: least capability}: `return "fp8"` / `return 80`, or the same condition choosing both
    (`"mxfp8" if self.use_mxfp8 else "fp8"` with `100 if self.use_mxfp8 else 80`)."""
    name, cap = py.sole_return(get_name), py.sole_return(get_min_capability)
    if isinstance(name, ast.IfExp) and isinstance(cap, ast.IfExp) and ast.unparse(name.test) == ast.unparse(cap.test):
        pairs = [(name.body, cap.body), (name.orelse, cap.orelse)]
        if all(isinstance(n, ast.Constant) and isinstance(n.value, str) and isinstance(c, ast.Constant) and type(c.value) is int for n, c in pairs):
            return {n.value: c.value for n, c in pairs}
        return {}
    label = py.str_return(get_name)
    values = py.int_returns(get_min_capability) if get_min_capability else None
    return {label: min(values)} if label and values else {}
