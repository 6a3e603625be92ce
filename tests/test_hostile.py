"""Regression tests for issue 13 (a red-team pass): one test, or one parametrized family, per item.

Exit codes and tracebacks are asserted on the real CLI in a subprocess (`run_kit`). Items 2, 6, 9, 10
and 12 (deploy lock, history rows, SIGTERM) live in history and deploy code and are tested there.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
from pathlib import Path

import pytest

from kit.errors import ProfileError
from kit.load import load
from kit.profile import MODAL_MAX_INPUTS, MODAL_MAX_SCALEDOWN_S, MODAL_MAX_TIMEOUT_S

from .conftest import BASE_PROFILE, REPO, run_kit
from .deployfakes import drop_file_override

SMOKE = '\n[smoke]\nprompt = "hi"\n'


def clean(result) -> str:
    text = result.out + result.err
    assert "Traceback" not in text, text
    return text


# -- 1: kit fmt writes atomically ------------------------------------------------------------------


def test_fmt_that_cannot_write_leaves_the_profile_whole(tree):
    """A file-size limit stops the write half way (the red team saw a truncated profile): now nothing changes."""
    root = tree({"profiles/p.toml": BASE_PROFILE.replace("count = 1", "count    =   1") + "\n\n\n"})
    path = root / "profiles/p.toml"
    before = path.read_bytes()
    env = {k: v for k, v in os.environ.items() if not k.startswith("KIT_")}

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (100, 100))  # far smaller than the profile

    proc = subprocess.run([sys.executable, "-m", "kit", "fmt", str(path)], cwd=root, env=env, capture_output=True, text=True, preexec_fn=limit, timeout=60)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr and "cannot write the formatted profile" in proc.stderr
    assert path.read_bytes() == before
    assert sorted(p.name for p in path.parent.iterdir()) == ["p.toml"]  # no temporary file left behind


def test_fmt_writes_a_key_with_a_newline_as_a_one_line_key(tree):
    """Found by tests/test_properties.py: a multi-line string is no TOML key; fmt wrote one, then crashed."""
    root = tree({"p.toml": 'name = { "a\\nb" = 0 }\n'})
    result = run_kit("fmt", "p.toml", cwd=root)
    assert result.code == 0, clean(result)
    assert (root / "p.toml").read_text() == 'name = { "a\\nb" = 0 }\n'


# -- 3: control characters, anchored patterns ----------------------------------------------------

INJECTIONS = {
    "image.base": ("base = \"nvidia/cuda:12.4.1-devel-ubuntu22.04\"", 'base = "nvidia/cuda:12.4.1-devel-ubuntu22.04\\nRUN touch /pwned"'),
    "image.env value": ('python = "3.11"', "python = \"3.11\"\nenv = { X = \"a\\nRUN touch /pwned #\" }"),
    "image.env key": ('python = "3.11"', 'python = "3.11"\nenv = { "X\\n" = "1" }'),
    "image.apt_packages": ('python = "3.11"', 'python = "3.11"\napt_packages = ["git\\rRUN id"]'),
    "image.index_url": ('python = "3.11"', 'python = "3.11"\nindex_url = "https://x/simple\\u0000"'),
    "image.extra_index_urls": ('python = "3.11"', 'python = "3.11"\nextra_index_urls = ["https://x/simple\\nRUN id"]'),
    "engine.attention_backend": ('name = "vllm"', 'name = "vllm"\nattention_backend = "FLASHINFER\\n"'),
    "app.name trailing newline": ('name = "test-app"', 'name = "test-app\\n"'),
    "model.revision trailing newline": ('dtype = "bfloat16"', 'revision = "c03e6d358207e414f1eca0bb1891e29f1db0e242\\n"'),
    "image.python trailing newline": ('python = "3.11"', 'python = "3.11\\n"'),
    "image.env key trailing newline": ('python = "3.11"', 'python = "3.11"\nenv = { "HF_HOME\\n" = "/x" }'),
    "profile name with escape": ('name = "base"', 'name = "base\\u001b[2J"'),
}


def test_control_characters_are_refused_in_every_field_the_image_or_a_lock_sees(tree):
    files = {}
    for i, (old, new) in enumerate(INJECTIONS.values()):
        assert old in BASE_PROFILE
        files[f"profiles/p{i}.toml"] = BASE_PROFILE.replace(old, new, 1)
    root = tree(files)
    result = run_kit("check", *sorted(files), cwd=root)
    text = clean(result)
    assert result.code == 2
    assert text.count("INVALID") == len(INJECTIONS), text
    assert "RUN touch /pwned\n" not in text  # shown escaped, never as a line of its own
    for field in ("image.base", "image.env", "image.apt_packages", "image.index_url", "image.extra_index_urls", "engine.attention_backend", "app.name", "model.revision", "image.python", "name"):
        assert f": {field}: " in text, field


def test_free_text_keeps_its_newlines(tree):
    root = tree({"profiles/p.toml": BASE_PROFILE.replace('description = "test profile"', 'description = "two\\nlines"') + '\n[smoke]\nprompt = "line one\\n\\tline two"\n'})
    assert load(root / "profiles/p.toml").profile.smoke.prompt == "line one\n\tline two"


# -- 4: a profile name cannot lead render out of build/ -------------------------------------------


@pytest.mark.parametrize("name", ["/tmp/kit-x", "../../x", "", ".", "..", "a/b"])
def test_profile_name_cannot_point_render_outside_build(tree, name):
    root = tree({"profiles/p.toml": BASE_PROFILE.replace('name = "base"', f"name = {json.dumps(name)}")})
    result = run_kit("render", "profiles/p.toml", cwd=root)
    assert result.code == 2 and ": name: " in clean(result)
    assert not (root / "build").exists() and not Path("/tmp/kit-x").exists()


# -- 5: tracebacks that are now exit codes -------------------------------------------------------

DEEP_SCHEMA = "[" * 500 + "]" * 500
NESTED_ARGS = "x = " + "[" * 40 + "1" + "]" * 40


def _case(files: dict[str, str | bytes], *args: str, env: dict[str, str] | None = None):
    return files, args, env


TRACEBACK_CASES = {
    "schema not UTF-8": _case({"profiles/p.toml": BASE_PROFILE + '\n[structured_output]\nschema = "s.json"\n', "profiles/s.json": b"{\"a\": \"\xff\"}"}, "check", "profiles/p.toml"),
    "schema nested too deeply": _case({"profiles/p.toml": BASE_PROFILE + '\n[structured_output]\nschema = "s.json"\n', "profiles/s.json": DEEP_SCHEMA}, "check", "profiles/p.toml"),
    "engine.args nested too deeply": _case({"profiles/p.toml": BASE_PROFILE + "\n[engine.args]\n" + NESTED_ARGS + "\n"}, "check", "profiles/p.toml"),
    "extends empty": _case({"profiles/p.toml": 'extends = ""\n' + BASE_PROFILE}, "check", "profiles/p.toml"),
    "extends a directory": _case({"profiles/p.toml": 'extends = "."\n' + BASE_PROFILE}, "check", "profiles/p.toml"),
    "NUL in extends": _case({"profiles/p.toml": 'extends = "a\\u0000b.toml"\n' + BASE_PROFILE}, "check", "profiles/p.toml"),
    "NUL in a schema path": _case({"profiles/p.toml": BASE_PROFILE + '\n[structured_output]\nschema = "a\\u0000.json"\n'}, "check", "profiles/p.toml"),
    "fmt on a file that is not UTF-8": _case({"profiles/p.toml": b'name = "\xff"\n'}, "fmt", "profiles/p.toml"),
    "fmt on a directory": _case({"profiles/p.toml": BASE_PROFILE}, "fmt", "profiles"),
    "render -o onto a file": _case({"profiles/p.toml": BASE_PROFILE, "out.txt": "x"}, "render", "profiles/p.toml", "-o", "out.txt"),
    "rollback --to huge": _case({}, "rollback", "app", "--to", "99999999999999999999"),
    "rollback --to a unicode digit": _case({}, "rollback", "app", "--to", "r\u00b2"),
    "bench APP@r huge": _case({}, "bench", "app@r99999999999999999999"),
    "bench an invalid URL": _case({}, "bench", "http://[::1"),
    "bench -o into a missing folder": _case({}, "bench", "app@r1", "-o", "missing/report.json"),
    "invalid KIT_ setting": _case({}, "history", env={"KIT_MODAL_TIMEOUT_S": "soon"}),
    "invalid KIT_ setting for deploy": _case({"profiles/p.toml": BASE_PROFILE}, "deploy", "profiles/p.toml", "--dry-run", env={"KIT_DEPLOY_TIMEOUT_S": "-5"}),
}


@pytest.mark.parametrize("case", list(TRACEBACK_CASES))
def test_bad_input_that_raised_a_traceback_exits_2(tree, case):
    files, args, env = TRACEBACK_CASES[case]
    root = tree({k: v for k, v in files.items() if isinstance(v, str)})
    for rel, data in files.items():
        if isinstance(data, bytes):
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            (root / rel).write_bytes(data)
    result = run_kit(*args, cwd=root, env=env)
    text = clean(result)
    assert result.code == 2, text
    assert "error: " in text or "INVALID" in text, text


def test_fmt_on_a_symlink_loop_exits_2(tree):
    root = tree({})
    (root / "a.toml").symlink_to(root / "b.toml")
    (root / "b.toml").symlink_to(root / "a.toml")
    result = run_kit("fmt", "a.toml", cwd=root)
    assert result.code == 2 and "symbolic links" in clean(result)


def test_a_datetime_in_engine_args_is_a_profile_error_and_diff_exits_1(tree):
    """kit diff crashed serialising it; it is refused where it is written (no engine argument is a date)."""
    root = tree({"profiles/a.toml": BASE_PROFILE, "profiles/b.toml": BASE_PROFILE + "\n[engine.args]\nwhen = 1979-05-27T07:32:00Z\n"})
    result = run_kit("diff", "profiles/a.toml", "profiles/b.toml", cwd=root)
    assert result.code == 1 and "engine.args: 1979-05-27T07:32:00+00:00 is a TOML date/time" in clean(result)


def test_render_into_a_read_only_folder_exits_1_without_a_traceback(tree):
    from .deployfakes import kit

    root = tree({"profiles/p.toml": BASE_PROFILE})
    (root / "ro").mkdir()
    (root / "ro").chmod(0o555)
    code, out, err = kit("render", "profiles/p.toml", "-o", "ro/bundle", env={}, cwd=root, read_only_as_root=True)
    assert code == 1 and "Traceback" not in err and "cannot write the bundle" in err, err
    assert not (root / "ro" / "bundle").exists()


def test_bench_output_into_a_read_only_folder_is_refused_before_the_sweep(tree):
    from .deployfakes import kit

    root = tree({})
    (root / "ro").mkdir()
    (root / "ro").chmod(0o555)
    # 127.0.0.1:9 refuses at once: had the -o check come after the sweep, the error would be about requests.
    code, out, err = kit("bench", "http://127.0.0.1:9", "-o", "ro/r.json", "--no-warmup", env={}, cwd=root, read_only_as_root=True)
    assert code == 2 and "Traceback" not in err and "cannot be written" in err, err


# -- 7: secrets ----------------------------------------------------------------------------------

SECRET = "hf_" + "Zq4" * 10


def test_a_secret_in_image_env_warns_at_check_and_is_masked_by_diff(tree):
    a = BASE_PROFILE.replace('python = "3.11"', 'python = "3.11"\nenv = { TOKENIZERS_PARALLELISM = "false", HF_TOKEN = "hf_old' + "x" * 20 + '" }')
    b = a.replace("hf_old" + "x" * 20, SECRET) + '\n[engine.args]\napi_key = "letmein-please"\n'
    root = tree({"profiles/a.toml": a, "profiles/b.toml": b})
    check = run_kit("check", "profiles/b.toml", "--format", "json", cwd=root)
    found = {(f["rule"], tuple(f["keys"])) for f in json.loads(check.out)["profiles"][0]["findings"]}
    assert ("secret-in-profile", ("image.env.HF_TOKEN",)) in found
    assert ("secret-in-profile", ("engine.args.api_key",)) in found
    assert not any("TOKENIZERS" in k[0] for _, k in found)  # a name that merely contains TOKEN
    assert SECRET not in check.out + check.err
    for fmt in ("text", "markdown", "json"):
        result = run_kit("diff", "profiles/a.toml", "profiles/b.toml", "--rendered", "--format", fmt, "--detailed-exitcode", cwd=root)
        text = clean(result)
        assert result.code == 2 and "image.env.HF_TOKEN" in text, text
        assert SECRET not in text and "letmein-please" not in text and "hf_old" not in text
        assert "********" in text


def test_a_secret_set_by_a_kit_override_is_warned_about_too(tree):
    root = tree({"profiles/p.toml": BASE_PROFILE})
    result = run_kit("check", "profiles/p.toml", cwd=root, env={"KIT_IMAGE__ENV__OPENAI_API_KEY": "sk-" + "a" * 30})
    # (pydantic-settings lowercases the variable's name: image.env.openai_api_key)
    assert "secret-in-profile" in clean(result) and "image.env.openai_api_key" in result.out.lower()
    assert "a" * 30 not in result.out


def test_the_library_profiles_have_no_secret_findings():
    result = run_kit("check", "--format", "json", cwd=REPO)
    assert "secret-in-profile" not in result.out


# -- 8: GitHub annotations -----------------------------------------------------------------------


def test_github_annotations_escape_the_file_name_and_name_the_file_of_a_validation_error(tree):
    evil = "a,title=x::echo pwned.toml"
    root = tree({f"profiles/{evil}": BASE_PROFILE.replace("count = 1", 'count = "1"'), "profiles/ok.toml": BASE_PROFILE})
    result = run_kit("check", "--format", "github", cwd=root)
    lines = clean(result).splitlines()
    bad = [ln for ln in lines if ln.startswith("::error ")]
    assert bad and all("file=," not in ln and "file=::" not in ln for ln in bad)
    assert any("file=profiles/a%2Ctitle=x%3A%3Aecho pwned.toml," in ln for ln in bad), bad
    assert not any(ln.startswith("::") and "::echo pwned" in ln.split("::", 2)[1] for ln in lines)


# -- 11: bounds ----------------------------------------------------------------------------------

BOUNDS = {
    "serving.timeout": ("[serving]\ntimeout = {}\n", MODAL_MAX_TIMEOUT_S),
    "serving.startup_timeout": ("[serving]\nstartup_timeout = {}\n", MODAL_MAX_TIMEOUT_S),
    "serving.max_inputs": ("[serving]\nmax_inputs = {}\n", MODAL_MAX_INPUTS),
    "serving.scaledown_window": ("[serving]\nscaledown_window = {}\n", MODAL_MAX_SCALEDOWN_S),
    "smoke.max_tokens": ('[smoke]\nprompt = "x"\nmax_tokens = {}\n', 32768),  # BASE_PROFILE's max_model_len
    "smoke.latency_budget_s": ('[smoke]\nprompt = "x"\nlatency_budget_s = {}.0\n', MODAL_MAX_TIMEOUT_S),
}


@pytest.mark.parametrize("key", list(BOUNDS))
def test_values_are_bounded_by_what_modal_and_the_engine_accept(tree, key):
    table, limit = BOUNDS[key]
    root = tree({"profiles/ok.toml": BASE_PROFILE + "\n" + table.format(limit), "profiles/over.toml": BASE_PROFILE + "\n" + table.format(limit + 1)})
    load(root / "profiles/ok.toml")
    with pytest.raises(ProfileError, match=key.split(".")[1]):
        load(root / "profiles/over.toml")


@pytest.mark.parametrize("value", ["inf", "nan", "-inf"])
def test_budgets_must_be_finite(tree, value):
    root = tree({"profiles/p.toml": BASE_PROFILE + f'\n[smoke]\nprompt = "x"\ncold_start_budget_s = {value}\n'})
    with pytest.raises(ProfileError, match="finite"):
        load(root / "profiles/p.toml")


def test_modal_itself_refuses_the_scaledown_window_kit_refuses():
    """The bound is modal's own check (modal/_functions.py), run here against the installed client."""
    import modal
    from modal.exception import InvalidError

    app = modal.App("bounds")
    app.function(scaledown_window=MODAL_MAX_SCALEDOWN_S, serialized=True)(lambda: None)
    with pytest.raises(InvalidError, match="3600"):
        app.function(scaledown_window=MODAL_MAX_SCALEDOWN_S + 1, serialized=True, name="over")(lambda: None)


# -- 13, 14, 15, 16, 17 ----------------------------------------------------------------------------

FIFO_COMMANDS = [
    ("check", "PATH"),
    ("fmt", "PATH"),
    ("fmt", "--check", "PATH"),
    ("render", "PATH"),
    ("lock", "--check", "PATH"),
    ("lock", "PATH"),
    ("diff", "PATH", "PATH"),
    ("deploy", "--dry-run", "PATH"),
    ("bench", "http://127.0.0.1:9", "--profile", "PATH"),
    ("bench", "http://127.0.0.1:9", "--schema", "PATH"),
]


@pytest.mark.parametrize("args", FIFO_COMMANDS, ids=[" ".join(a) for a in FIFO_COMMANDS])
def test_a_named_pipe_as_a_profile_is_refused_not_waited_on(tree, args):
    root = tree({})
    os.mkfifo(root / "p.toml")
    result = run_kit(*[a.replace("PATH", "p.toml") for a in args], cwd=root)  # run_kit's timeout fails a hang
    assert result.code in (1, 2) and "named pipe" in clean(result), result


def test_terminal_escapes_in_a_file_name_are_printed_escaped(tree):
    name = "\x1b[31mred\x1b]0;title\x07.toml"
    root = tree({f"profiles/{name}": BASE_PROFILE.replace('name = "base"', 'name = "x\\u001b[2J"')})
    result = run_kit("check", "--format", "text", cwd=root)
    assert result.code == 2 and "\x1b" not in result.out + result.err and "\x07" not in result.out
    assert "\\x1b[31mred" in result.out


def test_a_profile_symlinked_to_a_file_outside_the_repository_is_refused(tree, tmp_path_factory):
    outside = tmp_path_factory.mktemp("outside") / "secret.toml"
    outside.write_text('name = ["root:x:0:0"]\n')
    root = tree({})
    (root / "profiles").mkdir()
    (root / "profiles/p.toml").symlink_to(outside)
    result = run_kit("check", "profiles/p.toml", cwd=root)
    text = clean(result)
    assert result.code == 2 and "outside the repository root" in text
    assert "root:x:0:0" not in text


def test_an_invalid_key_set_in_a_child_names_the_child(tree):
    root = tree({"profiles/base.toml": BASE_PROFILE, "profiles/child.toml": 'extends = "base.toml"\n[packages]\nvllm = "not.a.version!"\n'})
    result = run_kit("check", "--format", "github", "profiles/child.toml", cwd=root)
    text = clean(result)
    assert "profiles/child.toml: packages.vllm: 'not.a.version!' is not a version" in text
    assert "profiles/base.toml: packages" not in text
    assert "::error file=profiles/child.toml," in text


def test_an_unreachable_extra_index_is_named(tree):
    """uv really runs, against closed local ports: the extra index is asked first and fails."""
    profile = BASE_PROFILE.replace('python = "3.11"', 'python = "3.11"\nextra_index_urls = ["http://127.0.0.1:8/extra/simple"]')
    root = tree({"profiles/p.toml": profile})
    result = run_kit("lock", "profiles/p.toml", cwd=root, env={"UV_DEFAULT_INDEX": "http://127.0.0.1:9/simple", "UV_HTTP_RETRIES": "0"})
    text = clean(result)
    assert result.code == 2
    assert "http://127.0.0.1:8/extra/simple (image.extra_index_urls[0]) could not be reached" in text
    assert "default index" not in text


def test_the_deploy_plan_masks_a_secret_that_changed(tmp_path, monkeypatch):
    """The dry-run plan diffs the current revision's stored profile with the working copy (kit diff's code)."""
    from kit import deploy as kd
    from kit.history import History

    from .deployfakes import FakeModal, kit, make_target, profile_tree

    fake = FakeModal(tmp_path / "modal")
    for k, v in fake.env().items():
        monkeypatch.setenv(k, v)
    try:
        profile = profile_tree(tmp_path / "repo", extra='\n[engine.args]\napi_key = "old-secret-1234"\n')
        history = History.open(tmp_path / "state")
        try:
            ctx = kd.Context(history=history, target=make_target(), deploy_timeout=30.0, modal_timeout=10.0, echo=lambda line: None)
            assert kd.deploy(kd.prepare(load(profile)), ctx, atomic=False).ok
        finally:
            history.close()
        profile.write_text(profile.read_text().replace("old-secret-1234", "new-secret-5678"))
        for fmt in ("text", "json"):
            code, out, err = kit("deploy", "--dry-run", "--format", fmt, str(profile), env={**fake.env(), "KIT_STATE_DIR": str(tmp_path / "state")})
            assert code == 0 and "Traceback" not in err, err
            assert "engine.args.api_key" in out and "********" in out, out
            assert "secret-1234" not in out + err and "secret-5678" not in out + err
    finally:
        fake.close()
