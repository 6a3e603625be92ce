"""Property-based: generated hostile values in every profile field and every command's arguments.

For every example: exit 0, 1 or 2 (kit's documented codes), no traceback, no file written outside
its place, and in a rendered app.py nothing of the value outside a string literal. A hang shows as
hypothesis' deadline. The commands run in-process (typer's runner) so that a few hundred examples
fit in well under a minute on a small machine; `tests/test_hostile.py` covers the same ground through
a real subprocess. The default run is bounded (EXAMPLES below); HYPOTHESIS_PROFILE=thorough runs 10x.
"""

from __future__ import annotations

import contextlib
import io
import os
import tempfile
import tokenize
import tomllib
import typing
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import tomlkit
from hypothesis import HealthCheck, Phase, event, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel
from typer.testing import CliRunner

from kit.cli import app
from kit.profile import SECTIONS, Profile

from .conftest import BASE_PROFILE

EXAMPLES = {"fields": 120, "commands": 150}
_QUIET = [HealthCheck.too_slow, HealthCheck.function_scoped_fixture]
# No shrinking by default: an example takes ~0.1-0.5 s and shrinking one can take minutes; the failing
# example is printed as generated. The thorough profile shrinks.
settings.register_profile("kit-default", deadline=timedelta(seconds=10), suppress_health_check=_QUIET, phases=[Phase.explicit, Phase.reuse, Phase.generate])
settings.register_profile("thorough", deadline=timedelta(seconds=10), suppress_health_check=_QUIET, max_examples=10 * max(EXAMPLES.values()))
PROFILE = os.environ.get("HYPOTHESIS_PROFILE", "kit-default")
settings.load_profile(PROFILE)


def examples(kind: str) -> int:
    return settings.default.max_examples if PROFILE == "thorough" else EXAMPLES[kind]


MARK = "QZXJ"  # in every generated string: where it shows up in app.py, the value went
SPECIALS = ["\n", "\r", "\x00", "\x1b[2J", "\x07", "\u2028", "\t", "'", '"', "\\", "'''", '"""', "{{", "}}", "{%", "%}", "#", "$(id)", "`id`",
            ";", "&&", "..", "/", "../../", "/tmp/", " ", "é", "\U0001f642", "%", ":", ",", "::", "=", "-", "--", "[", "]", "{", "}", "\\n", "\\x00", "~"]
_chars = st.characters(exclude_categories=("Cs",))  # a lone surrogate cannot be written to a UTF-8 file at all
_piece = st.one_of(st.sampled_from(SPECIALS), st.text(_chars, max_size=4), st.sampled_from(["vllm", "H100", "A10G", "3.11", "debian_slim", "0.9.2"]))
_fragment = st.lists(_piece, max_size=4).map("".join)
marked = st.builds(lambda a, b: a + MARK + b, _fragment, _fragment)
# Without control characters (which validation refuses), so that values get through to render: quotes,
# backslashes, Jinja and Python syntax, paths, unicode.
_printable = st.characters(exclude_categories=("Cs", "Cc", "Zl", "Zp"))
_plain_piece = st.one_of(st.sampled_from([c for c in SPECIALS if c.isprintable()]), st.text(_printable, max_size=4))
_plain_fragment = st.lists(_plain_piece, max_size=4).map("".join)
marked_plain = st.builds(lambda a, b: a + MARK + b, _plain_fragment, _plain_fragment)
hostile = st.one_of(
    marked_plain,
    marked_plain,
    marked,
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([0, -1, 2**31, 2**63, 2**64]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.lists(st.one_of(marked_plain, marked), max_size=3),
    st.dictionaries(st.one_of(marked_plain, marked), st.one_of(marked_plain, marked, st.integers(), st.lists(marked_plain, max_size=2)), max_size=2),
)


def _fields() -> list[tuple[str, ...]]:
    """Every leaf field of the profile model, as a key path (aliases as a profile writes them)."""
    out: list[tuple[str, ...]] = []

    def walk(model: type[BaseModel], prefix: tuple[str, ...]) -> None:
        for name, info in model.model_fields.items():
            key = info.alias or name
            ann = info.annotation
            sub = next((a for a in (ann, *typing.get_args(ann)) if isinstance(a, type) and issubclass(a, BaseModel)), None)
            if sub is not None and sub not in (Profile,) and prefix:  # a nested table inside a section (model.architecture)
                walk(sub, (*prefix, key))
            elif not prefix and key in SECTIONS:
                continue  # sections are walked below
            else:
                out.append((*prefix, key))

    walk(Profile, ())
    for section, model in SECTIONS.items():
        walk(model, ("allow", "0") if section == "allow" else (section,))
    return out


FIELDS = _fields()
# Fields that take free text (a str, or a list or table of them): where a hostile value can pass
# validation and reach the rendered app. Half the examples go there.
TEXT_FIELDS = [f for f in FIELDS if f[-1] in {"description", "environment", "quantization", "hf_secret", "base", "index_url", "extra_index_urls", "env", "apt_packages", "attention_backend", "args", "prompt", "reason"}]
BASE = tomllib.loads(BASE_PROFILE + '\n[smoke]\nprompt = "hello"\n\n[[allow]]\nrule = "vllm-cuda12-driver"\nreason = "known"\n')


def _set(doc: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    node: Any = doc
    for part in path[:-1]:
        node = node[int(part)] if isinstance(node, list) else node.setdefault(part, {})
    if isinstance(node, list):
        node[int(path[-1])] = value
    else:
        node[path[-1]] = value


def _snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    return {p.relative_to(folder).as_posix(): (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*") if p.is_file() and ".git" not in p.parts}


def _invoke(args: list[str], cwd: Path) -> int:
    """One command in-process: its exit code; any exception but SystemExit fails the property."""
    with contextlib.chdir(cwd):
        result = CliRunner().invoke(app, args, catch_exceptions=True)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise AssertionError(f"kit {args!r} raised {type(result.exception).__name__}: {result.exception}\n{result.output}") from result.exception
    assert result.exit_code in (0, 1, 2), (args, result.exit_code, result.output)
    assert "Traceback" not in result.output
    return result.exit_code


def _code_outside_strings(source: str) -> list[str]:
    """Tokens of Python source that are not string literals and hold the marker."""
    bad = []
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type != tokenize.STRING and MARK in tok.string:
            bad.append(f"{tokenize.tok_name[tok.type]} {tok.string!r} at line {tok.start[0]}")
    return bad


@pytest.fixture(scope="module")
def workspace():
    with tempfile.TemporaryDirectory(prefix="kit-props-") as base:
        yield Path(base)


_env_key = st.builds(lambda a: MARK + a, st.from_regex(r"[A-Za-z0-9_]{0,6}", fullmatch=True))


def _text_value(path: tuple[str, ...]) -> st.SearchStrategy[Any]:
    """A value of the field's own shape, made of printable hostile text: it may well pass validation."""
    if path[-1] in ("extra_index_urls", "apt_packages"):
        return st.lists(marked_plain, min_size=1, max_size=3)
    if path[-1] == "env":
        return st.dictionaries(st.one_of(_env_key, marked_plain), marked_plain, min_size=1, max_size=3)
    if path[-1] == "args":
        return st.dictionaries(st.one_of(_env_key, marked_plain), st.one_of(marked_plain, st.lists(marked_plain, max_size=2), st.dictionaries(marked_plain, marked_plain, max_size=2)), min_size=1, max_size=3)
    return marked_plain


CASES = st.one_of(
    st.tuples(st.sampled_from(FIELDS), hostile),
    st.sampled_from(TEXT_FIELDS).flatmap(lambda f: st.tuples(st.just(f), _text_value(f))),
)


@settings(max_examples=examples("fields"))
@given(case=CASES)
def test_any_value_in_any_profile_field(workspace, case):
    path, value = case
    doc = {k: (dict(v) if isinstance(v, dict) else list(v) if isinstance(v, list) else v) for k, v in BASE.items()}
    doc["allow"] = [dict(a) for a in BASE["allow"]]
    for k in ("image", "engine", "model", "app", "gpu", "smoke", "packages"):
        doc[k] = dict(BASE[k])
    _set(doc, path, value)
    with tempfile.TemporaryDirectory(dir=workspace) as tmp:
        base = Path(tmp)
        root = base / "repo"
        (root / ".git").mkdir(parents=True)
        (root / "profiles").mkdir()
        profile = root / "profiles" / "p.toml"
        profile.write_text(tomlkit.dumps(doc), encoding="utf-8")
        before_base, before = sorted(os.listdir(base)), _snapshot(root)

        code = _invoke(["check", "profiles/p.toml"], root)
        event(f"check exit {code}")
        assert _snapshot(root) == before, "kit check wrote a file"
        if code != 2:
            name = tomllib.loads(profile.read_text(encoding="utf-8"))["name"]
            if _invoke(["render", "profiles/p.toml"], root) == 0:
                app_py = (root / "build" / name / "app.py").read_text(encoding="utf-8")
                event("rendered, the value in app.py" if MARK in app_py else "rendered")
                compile(app_py, "app.py", "exec")
                assert not _code_outside_strings(app_py), _code_outside_strings(app_py)
            assert all(k == "profiles/p.toml" or k.startswith(f"build/{name}/") for k in set(_snapshot(root)) - set(before))
        text = profile.read_bytes()
        if _invoke(["fmt", "profiles/p.toml"], root) == 0:
            assert tomllib.loads(profile.read_text(encoding="utf-8")) == tomllib.loads(text.decode("utf-8"))
        else:
            assert profile.read_bytes() == text, "a failed kit fmt changed the profile"
        assert sorted(os.listdir(base)) == before_base, "a file was written outside the repository"
        assert sorted(os.listdir(root / "profiles")) == ["p.toml"]


_arg = st.lists(st.one_of(st.sampled_from([s for s in SPECIALS if "\x00" not in s]), st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\x00"), max_size=4)), max_size=4).map("".join)
_number = st.one_of(_arg, st.integers(min_value=-(2**70), max_value=2**70).map(str), st.sampled_from(["r" + "9" * 30, "1e999", "nan", "-1", "0", "r\u00b2", "9" * 5000]))
# An explicit -o is the user's place to write: kept to one name inside the repository here.
_out = st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\x00/"), min_size=1, max_size=8).filter(lambda s: s not in (".", ".."))
COMMANDS = st.one_of(
    st.tuples(st.just("check"), _arg),
    st.tuples(st.just("check"), st.just("profiles/p.toml"), st.just("--format"), _arg),
    st.tuples(st.just("fmt"), st.just("--check"), _arg),
    st.tuples(st.just("render"), st.just("profiles/p.toml"), st.just("-o"), _out),
    st.tuples(st.just("render"), _arg),
    st.tuples(st.just("diff"), st.just("profiles/p.toml"), _arg),
    st.tuples(st.just("diff"), st.just("--git"), _arg),
    st.tuples(st.just("diff"), st.just("profiles/p.toml"), st.just("profiles/p.toml"), st.just("--latency"), _number),
    st.tuples(st.just("lock"), st.just("--check"), _arg),
    st.tuples(st.just("history"), _arg),
    st.tuples(st.just("status"), _arg),
    st.tuples(st.just("rollback"), _arg, st.just("--to"), _number),
    st.tuples(st.just("bench"), st.builds(lambda a, n: f"{a}@{n}", _arg, _number)),
    st.tuples(st.just("bench"), st.builds(lambda a: "http://" + a, _arg), st.just("--no-warmup"), st.just("-n"), st.just("1"), st.just("-c"), _number),
    st.tuples(st.just("bench"), st.just("http://127.0.0.1:9"), st.just("-o"), _out, st.just("--concurrency"), _number),
    st.tuples(st.just("deploy"), st.just("--dry-run"), _arg),
    st.tuples(st.just("deploy"), _arg, st.just("--yes")),
    st.tuples(st.just("rules"), st.just("-f"), _arg),
)


@settings(max_examples=examples("commands"))
@given(args=COMMANDS)
def test_any_argument_to_any_command(workspace, monkeypatch, args):
    # Every HTTP request goes to a closed local port (a proxy that refuses): no network, no wait.
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.setenv(var, "http://127.0.0.1:9")
    monkeypatch.delenv("MODAL_TOKEN_ID", raising=False)
    with tempfile.TemporaryDirectory(dir=workspace) as tmp:
        base = Path(tmp)
        root = base / "repo"
        (root / ".git").mkdir(parents=True)
        (root / "profiles").mkdir()
        (root / "profiles" / "p.toml").write_text(BASE_PROFILE, encoding="utf-8")
        before_base = sorted(os.listdir(base))
        before = _snapshot(root)
        _invoke(list(args), root)
        assert sorted(os.listdir(base)) == before_base, f"kit {args!r} wrote outside the repository"
        changed = set(_snapshot(root)) ^ set(before)
        out = args[args.index("-o") + 1] if "-o" in args else None
        if out is None:
            assert not changed, f"kit {args!r} wrote {changed}"
        else:  # only where -o said (a name without / here, so inside the repository)
            assert all(k == out or k.startswith(out + "/") for k in changed), f"kit {args!r} wrote {changed}"
