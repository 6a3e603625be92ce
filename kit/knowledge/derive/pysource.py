"""What Python source defines, read with `ast` (never imported): classes, fields, literals, env reads, raises."""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator

ENV_NAME = re.compile(r"^[A-Z][A-Z0-9_]*$")
# Calls whose first argument is the name of an environment variable that is read.
ENV_READERS = {"getenv", "get_bool_env_var", "get_int_env_var", "get_float_env_var", "get_str_env_var", "is_set"}


def parse(text: str | None) -> ast.Module:
    """The module's tree; an empty one for a missing file or one this Python cannot parse (old syntax)."""
    if not text:
        return ast.Module(body=[], type_ignores=[])
    try:
        return ast.parse(text)
    except (SyntaxError, ValueError):
        return ast.Module(body=[], type_ignores=[])


def classes(tree: ast.Module) -> dict[str, ast.ClassDef]:
    return {n.name: n for n in tree.body if isinstance(n, ast.ClassDef)}


def module_names(tree: ast.Module) -> set[str]:
    """Names bound at module level (classes, functions, assignments, imports)."""
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names |= {t.id for t in node.targets if isinstance(t, ast.Name)}
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
        elif isinstance(node, ast.ImportFrom | ast.Import):
            names |= {(a.asname or a.name).split(".")[0] for a in node.names}
    return names


def assigned(tree: ast.Module, name: str) -> ast.expr | None:
    """The value last bound to a module-level `name` (plain or annotated assignment)."""
    value = None
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == name for t in node.targets):
            value = node.value
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.target.id == name and node.value is not None:
            value = node.value
    return value


def fields(cls: ast.ClassDef) -> list[str]:
    """Annotated class-level names (dataclass, msgspec Struct, pydantic fields); else the __init__ parameters."""
    out = {
        n.target.id
        for n in cls.body
        if isinstance(n, ast.AnnAssign) and isinstance(n.target, ast.Name) and not ast.unparse(n.annotation).split("[")[0].endswith("ClassVar")
    }
    return sorted(out) if out else params(cls, "__init__")


def methods(cls: ast.ClassDef) -> list[str]:
    return sorted({n.name for n in cls.body if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef) and not n.name.startswith("_")})


def method(cls: ast.ClassDef, name: str) -> ast.FunctionDef | ast.AsyncFunctionDef | None:
    return next((n for n in cls.body if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef) and n.name == name), None)


def params(cls: ast.ClassDef, name: str) -> list[str]:
    fn = method(cls, name)
    if fn is None:
        return []
    a = fn.args
    return [x.arg for x in [*a.posonlyargs, *a.args, *a.kwonlyargs] if x.arg not in ("self", "cls")]


def annotation(cls: ast.ClassDef, name: str, param: str) -> str | None:
    fn = method(cls, name)
    for x in [*fn.args.posonlyargs, *fn.args.args, *fn.args.kwonlyargs] if fn else []:
        if x.arg == param:
            return ast.unparse(x.annotation) if x.annotation is not None else None
    return None


def dict_keys(node: ast.expr | None) -> list[str]:
    """String keys of a dict literal (`**other` entries are not keys)."""
    if not isinstance(node, ast.Dict):
        return []
    return [k.value for k in node.keys if isinstance(k, ast.Constant) and isinstance(k.value, str)]


def strings(node: ast.expr | None, tree: ast.Module | None = None) -> list[str]:
    """The string values of a list/tuple/set literal, a Literal[...] subscript, or a module-level name bound to one."""
    if isinstance(node, ast.Name) and tree is not None:
        value = assigned(tree, node.id)
        return strings(value, tree) if value is not node else []
    if isinstance(node, ast.Subscript) and ast.unparse(node.value).split(".")[-1] == "Literal":
        node = node.slice
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [node.value]
    if isinstance(node, ast.List | ast.Tuple | ast.Set):
        return [s for e in node.elts for s in strings(e, tree)]
    if isinstance(node, ast.Subscript):  # Optional[Literal[...]], Union[...]
        return strings(node.slice, tree)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr | ast.Add):  # Literal[..] | None, [..] + [..]
        return strings(node.left, tree) + strings(node.right, tree)
    return []


def enum_members(cls: ast.ClassDef) -> list[str]:
    """Names assigned in an Enum class body (aliases included: Enum[name] accepts them)."""
    out: list[str] = []
    for n in cls.body:
        targets = n.targets if isinstance(n, ast.Assign) else [n.target] if isinstance(n, ast.AnnAssign) and n.value is not None else []
        out += [t.id for t in targets if isinstance(t, ast.Name) and not t.id.startswith("_")]
    return out


def is_enum(cls: ast.ClassDef) -> bool:
    return any(ast.unparse(b).split(".")[-1] == "Enum" for b in cls.bases)


def cli_choices(tree: ast.Module, flag: str) -> list[str] | None:
    """The `choices=` of the add_argument call that declares `flag` (None when no call declares it)."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and ast.unparse(node.func).endswith("add_argument"):
            if any(isinstance(a, ast.Constant) and a.value == flag for a in node.args):
                for kw in node.keywords:
                    if kw.arg == "choices":
                        return strings(_local(tree, kw.value), tree)
                return []
    return None


def _local(tree: ast.Module, node: ast.expr) -> ast.expr | None:
    """A name bound inside a function (choices = [...] just above the add_argument call) resolved to its value."""
    if not isinstance(node, ast.Name) or assigned(tree, node.id) is not None:
        return node
    for n in ast.walk(tree):
        if isinstance(n, ast.Assign) and any(isinstance(t, ast.Name) and t.id == node.id for t in n.targets):
            return n.value
    return node


def text_of(node: ast.expr) -> str:
    """The constant text of a string or f-string (formatted parts become {})."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        return "".join(v.value if isinstance(v, ast.Constant) else "{}" for v in node.values)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add | ast.Mod):
        return text_of(node.left) + text_of(node.right)
    return ""


def functions(tree: ast.Module) -> Iterator[tuple[str, ast.FunctionDef | ast.AsyncFunctionDef]]:
    """Every function and method with its qualified name (Class.method)."""

    def walk(body: list[ast.stmt], prefix: str) -> Iterator[tuple[str, ast.FunctionDef | ast.AsyncFunctionDef]]:
        for n in body:
            if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef):
                yield prefix + n.name, n
                yield from walk(n.body, prefix + n.name + ".")
            elif isinstance(n, ast.ClassDef):
                yield from walk(n.body, prefix + n.name + ".")

    yield from walk(tree.body, "")


def raises(fn: ast.AST) -> Iterator[tuple[ast.Raise, str, list[ast.If]]]:
    """Each raise under `fn` with its message text and the `if` statements that enclose it, outermost first."""

    def walk(node: ast.AST, ifs: list[ast.If]) -> Iterator[tuple[ast.Raise, str, list[ast.If]]]:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.Raise):
                exc = child.exc
                msg = text_of(exc.args[0]) if isinstance(exc, ast.Call) and exc.args else ""
                yield child, msg, ifs
            inner = ifs + [child] if isinstance(child, ast.If) else ifs
            if isinstance(child, ast.If):  # a raise in the else branch is not guarded by the test
                for stmt in child.body:
                    yield from walk(ast.Module(body=[stmt], type_ignores=[]), inner)
                for stmt in child.orelse:
                    yield from walk(ast.Module(body=[stmt], type_ignores=[]), ifs)
            else:
                yield from walk(child, inner)

    yield from walk(fn, [])


def env_reads(tree: ast.Module) -> set[str]:
    """Names of environment variables read: os.environ.get/[...]/setdefault, `in os.environ`, os.getenv, *_env_var(...)."""
    names: set[str] = set()
    # VLLM_ATTENTION_BACKEND = "VLLM_ATTENTION_BACKEND"; os.getenv(VLLM_ATTENTION_BACKEND)  (vLLM 0.4.1)
    constants = {
        t.id: n.value.value
        for n in tree.body
        if isinstance(n, ast.Assign) and isinstance(n.value, ast.Constant) and isinstance(n.value.value, str)
        for t in n.targets
        if isinstance(t, ast.Name)
    }
    for node in ast.walk(tree):
        key: ast.expr | None = None
        if isinstance(node, ast.Call) and node.args:
            func = ast.unparse(node.func)
            if func.endswith("environ.get") or func.endswith("environ.setdefault") or func.split(".")[-1] in ENV_READERS:
                key = node.args[0]
        elif isinstance(node, ast.Subscript) and isinstance(node.ctx, ast.Load) and ast.unparse(node.value).endswith("environ"):
            key = node.slice
        elif isinstance(node, ast.Compare) and len(node.ops) == 1 and isinstance(node.ops[0], ast.In | ast.NotIn):
            if ast.unparse(node.comparators[0]).endswith("environ"):
                key = node.left
        value = key.value if isinstance(key, ast.Constant) else constants.get(key.id) if isinstance(key, ast.Name) else None
        if isinstance(value, str) and ENV_NAME.match(value):
            names.add(value)
    return names


def int_returns(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> list[int] | None:
    """The int literals a function returns (`return 80`, `return 100 if x else 80`); None if any return is not one."""
    out: list[int] = []
    for node in ast.walk(fn):
        if isinstance(node, ast.Return):
            vals = [node.value.body, node.value.orelse] if isinstance(node.value, ast.IfExp) else [node.value]
            for v in vals:
                if not (isinstance(v, ast.Constant) and type(v.value) is int):
                    return None
                out.append(v.value)
    return out or None


def str_return(fn: ast.FunctionDef | ast.AsyncFunctionDef | None) -> str | None:
    """The string literal a function returns, when it returns exactly one."""
    vals = [n.value for n in ast.walk(fn) if isinstance(n, ast.Return)] if fn else []
    if len(vals) == 1 and isinstance(vals[0], ast.Constant) and isinstance(vals[0].value, str):
        return vals[0].value
    return None


def sole_return(fn: ast.FunctionDef | ast.AsyncFunctionDef | None) -> ast.expr | None:
    vals = [n.value for n in ast.walk(fn) if isinstance(n, ast.Return)] if fn else []
    return vals[0] if len(vals) == 1 else None
