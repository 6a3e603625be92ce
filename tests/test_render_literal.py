"""User-written values reach the rendered app only as Python literals, whatever they contain.

Property test: arbitrary strings (quotes, backslashes, newlines, NUL, triple quotes, non-ASCII)
in the model id, app name, profile name, environment values, engine arguments, Modal secret name,
apt packages and image fields; the rendered app.py must parse, and the literals read back from its
syntax tree must equal the input. The prompt travels through the shared request implementation to
the engine unchanged.
"""

from __future__ import annotations

import ast
import math

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kit.render import literal, render
from tests.test_render import variant

# Every code point but lone surrogates, which a profile cannot hold (TOML files are UTF-8).
text = st.text(st.characters(exclude_categories=("Cs",)), max_size=40)
json_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | text
json_values = st.recursive(json_scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(text, inner, max_size=4), max_leaves=12)


@given(json_values)
def test_literal_round_trips(value):
    assert ast.literal_eval(literal(value)) == value


def test_literal_refuses_what_has_no_literal():
    import datetime

    import pytest

    for bad in (math.nan, math.inf, datetime.date(2026, 1, 1), object()):
        with pytest.raises(TypeError):
            literal(bad)


def assignments(tree: ast.Module) -> dict[str, object]:
    out = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            try:
                out[node.targets[0].id] = ast.literal_eval(node.value)
            except ValueError:
                pass
    return out


def call_args(tree: ast.AST, method: str) -> list[ast.Call]:
    return [n for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute) and n.func.attr == method]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    model_id=text,
    app_name=text,
    name=text,
    secret=text,
    env=st.dictionaries(text, text, max_size=3),
    args=st.dictionaries(text, json_values, max_size=3),
    apt=st.lists(text, max_size=2),
    base=text,
    index=text,
    mode=st.sampled_from(["class", "openai"]),
    engine=st.sampled_from(["qwen25-a10g", "qwen3-coder-30b-sglang"]),
)
def test_any_string_round_trips_through_the_rendered_app(tmp_path, model_id, app_name, name, secret, env, args, apt, base, index, mode, engine):
    loaded = variant(
        tmp_path,
        engine,
        model={"id": model_id, "hf_secret": secret},
        app={"name": app_name},
        image={"env": env, "apt_packages": apt, "base": base, "index_url": index},
        engine={"args": args},
        serving={"mode": mode},
    )
    loaded.profile = loaded.profile.model_copy(update={"name": name})
    source = render(loaded).files["app.py"]
    tree = ast.parse(source)
    compile(tree, "app.py", "exec")
    values = assignments(tree)
    assert values["MODEL_ID"] == model_id
    assert values["APP_NAME"] == app_name
    assert values["PROFILE"] == name
    if mode == "class":
        kwargs = values["ENGINE_KWARGS"]
        assert {k: kwargs[k] for k in args} == args
        assert kwargs.get("model", kwargs.get("model_path")) == model_id or model_id in args.values() or {"model", "model_path"} & set(args)
    else:
        assert model_id in values["SERVER_COMMAND"]
    (secret_call,) = [c for c in call_args(tree, "from_name") if isinstance(c.func.value, ast.Attribute) and c.func.value.attr == "Secret"]
    assert ast.literal_eval(secret_call.args[0]) == secret
    if env:
        (env_call,) = call_args(tree, "env")
        assert ast.literal_eval(env_call.args[0]) == env
    if apt:
        (apt_call,) = call_args(tree, "apt_install")
        assert ast.literal_eval(apt_call.args[0]) == apt
    (registry,) = call_args(tree, "from_registry") or [None]
    if registry is not None:
        assert ast.literal_eval(registry.args[0]) == base
    (uv,) = call_args(tree, "uv_pip_install")
    assert {k.arg: ast.literal_eval(k.value) for k in uv.keywords if k.arg == "index_url"} == ({"index_url": index} if index else {})


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(prompt=text.filter(str.strip))
def test_any_prompt_reaches_the_engine_unchanged(tmp_path, prompt):
    import asyncio
    import json

    from kit.load import load
    from tests.conftest import PROFILES

    namespace: dict = {"__file__": str(tmp_path / "app.py")}
    bundle = render(load(PROFILES / "qwen25-a10g.toml"))
    for fname, content in bundle.files.items():
        (tmp_path / fname).write_text(content, encoding="utf-8")
    exec(compile(bundle.files["app.py"], str(tmp_path / "app.py"), "exec"), namespace)

    seen = []

    class Engine:
        async def complete(self, p, schema, max_tokens, temperature):
            seen.append(p)
            return {"text": json.dumps({"echo": p})}

    status, body = asyncio.run(namespace["respond"](Engine(), {"prompt": prompt}))
    assert status == 200 and seen == [prompt] and body["json"] == {"echo": prompt}
