"""The first try: version, help, completion, examples, exit codes and JSON of every command."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from kit import __version__
from tests.conftest import BASE_PROFILE, PROFILES, run_kit

COMMANDS = ["check", "lock", "schema", "rules", "render", "diff", "fmt", "init", "deploy", "history", "status", "rollback", "bench"]


def test_version_and_short_help():
    for flag in ("--version", "-V"):
        r = run_kit(flag)
        assert r.code == 0 and r.out == f"kit {__version__}\n"
    short, long = run_kit("-h"), run_kit("--help")
    assert short.code == 0 and short.out == long.out and "Commands:" in short.out


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_examples_and_no_python_types(command: str):
    r = run_kit(command, "-h")
    assert r.code == 0, r.err
    assert "Examples:" in r.out
    example_lines = r.out.split("Examples:", 1)[1].strip().splitlines()
    assert example_lines and all("kit " in line or line.strip().startswith("#") for line in example_lines if line.strip())
    # typer prints a parameter's Python type in help unless kit hides it: <list[Path]>, <int range>, <str>, <float>.
    assert not re.search(r"<(list\[|int|float|str|path|Path|bool)[^>]*>", r.out), r.out


def test_shell_completion_script():
    r = run_kit("--show-completion", "bash", env={"_TYPER_COMPLETE_TEST_DISABLE_SHELL_DETECTION": "1"})
    assert r.code == 0 and "complete" in r.out and "kit" in r.out


def test_rules_refuses_github_format():
    r = run_kit("rules", "--format", "github")
    assert r.code == 2 and "github" in r.err and "Traceback" not in r.err
    doc = json.loads(run_kit("rules", "--format", "json").out)
    assert doc and all({"id", "severity"} <= set(rule) for rule in doc)


@pytest.fixture
def stale(tmp_path: Path) -> Path:
    """A copy of a library profile whose lockfile no longer matches it."""
    (tmp_path / ".git").mkdir()
    prof = tmp_path / "profiles"
    prof.mkdir()
    shutil.copytree(PROFILES / "schemas", prof / "schemas")
    shutil.copy(PROFILES / "qwen25-a10g.lock", prof)
    text = (PROFILES / "qwen25-a10g.toml").read_text()
    (prof / "qwen25-a10g.toml").write_text(text.replace('transformers = "4.53.0"', 'transformers = "4.53.1"'))
    return tmp_path


def test_stale_lock_is_exit_1_in_every_command_that_uses_it(stale: Path):
    p = "profiles/qwen25-a10g.toml"
    for args in (["lock", "--check"], ["render", p, "-o", str(stale / "out")], ["deploy", "--dry-run", p]):
        r = run_kit(*args, cwd=stale)
        assert r.code == 1, (args, r.out, r.err)
        assert "stale" in (r.out + r.err) and "kit lock" in (r.out + r.err) and "Traceback" not in r.err
    # check still checks the pins, and says the closure was not checked.
    c = run_kit("check", p, cwd=stale)
    assert c.code == 0 and "stale" in c.out


def test_lock_check_fmt_check_and_render_speak_json(stale: Path, tmp_path: Path):
    r = run_kit("lock", "--check", "--format", "json", cwd=stale)
    doc = json.loads(r.out)
    assert r.code == 1 and doc["not_fresh"] == 1 and doc["lockfiles"][0]["state"] == "stale"
    assert doc["lockfiles"][0]["fix"] == "kit lock profiles/qwen25-a10g.toml"
    f = run_kit("fmt", "--check", "--format", "json", cwd=stale)
    assert f.code == 0 and json.loads(f.out) == {"version": 1, "would_reformat": [], "canonical": 1, "invalid": []}
    out = tmp_path / "bundle"
    rr = run_kit("render", str(PROFILES / "qwen25-a10g.toml"), "-o", str(out), "--format", "json")
    doc = json.loads(rr.out)
    assert rr.code == 0 and doc["locked"] is True and sorted(doc["files"]) == sorted(p.name for p in out.iterdir())
    assert re.fullmatch(r"[0-9a-f]{64}", doc["bundle_hash"])
    assert run_kit("lock", "--format", "json", cwd=stale).code == 2  # json is for --check


def test_unformatted_file_in_fmt_json(tree):
    root = tree({"profiles/p.toml": BASE_PROFILE.replace('name = "base"', 'name   =   "base"')})
    r = run_kit("fmt", "--check", "--format", "json", cwd=root)
    assert r.code == 1 and json.loads(r.out)["would_reformat"] == ["profiles/p.toml"]


def test_invalid_profile_json_file_is_a_path(tree):
    root = tree({"profiles/bad.toml": 'name = "x"\n[gpu\n'})
    r = run_kit("check", "profiles/bad.toml", "--format", "json", cwd=root)
    [bad] = json.loads(r.out)["invalid"]
    assert r.code == 2 and bad["file"] == "profiles/bad.toml" and (bad["line"], bad["column"]) == (2, 5)
    assert bad["message"].startswith("profiles/bad.toml:2:5: invalid TOML")
    gh = run_kit("check", "profiles/bad.toml", "--format", "github", cwd=root)
    assert "::error file=profiles/bad.toml,line=2,col=5," in gh.out


def test_init_lists_and_creates_a_profile_that_passes_check(tmp_path: Path):
    (tmp_path / ".git").mkdir()
    listed = run_kit("init", "--list", cwd=tmp_path)
    assert listed.code == 0 and "qwen25-h200-vllm020" in listed.out
    r = run_kit("init", "profiles/mine.toml", "--gpu", "l40s", "--model", "Qwen/Qwen2.5-Coder-7B-Instruct", cwd=tmp_path)
    assert r.code == 0, r.out + r.err
    text = (tmp_path / "profiles" / "mine.toml").read_text()
    assert 'name = "mine"' in text and 'type = "L40S"' in text and text.startswith("# Made by `kit init`")
    assert (tmp_path / "profiles" / "schemas" / "ir-v1.json").is_file()
    check = run_kit("check", "profiles/mine.toml", "--format", "json", cwd=tmp_path)
    assert check.code == 0 and json.loads(check.out)["summary"]["error"] == 0
    # Not over an existing file without --force.
    again = run_kit("init", "profiles/mine.toml", cwd=tmp_path)
    assert again.code == 2 and "exists" in again.err


def test_init_another_model_drops_the_examples_revision(tmp_path: Path):
    (tmp_path / ".git").mkdir()
    r = run_kit("init", "profiles/m.toml", "--model", "Qwen/Qwen2.5-Coder-1.5B-Instruct", cwd=tmp_path)
    text = (tmp_path / "profiles" / "m.toml").read_text()
    assert r.code == 0, r.err
    assert "Qwen2.5-Coder-1.5B-Instruct" in text and "revision" not in text


def test_init_refuses_a_combination_with_errors_and_leaves_nothing(tmp_path: Path):
    (tmp_path / ".git").mkdir()
    r = run_kit("init", "profiles/t4.toml", "--gpu", "T4", cwd=tmp_path)
    assert r.code == 1 and "gpu-bf16-unsupported" in r.out and "not written" in r.err
    assert not (tmp_path / "profiles" / "t4.toml").exists()
    bad = run_kit("init", "profiles/x.toml", "--gpu", "Z100", cwd=tmp_path)
    assert bad.code == 2 and "--gpu" in bad.err and "Traceback" not in bad.err


def test_no_profiles_points_at_init(tmp_path: Path):
    (tmp_path / ".git").mkdir()
    r = run_kit("check", cwd=tmp_path)
    assert r.code == 2 and "kit init" in r.err


def test_wheel_ships_examples_and_templates(tmp_path: Path):
    """The built wheel carries the example profiles (kit init) and the templates (kit render)."""
    import subprocess
    import sys
    import zipfile

    from tests.conftest import REPO

    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w", str(tmp_path), str(REPO)], capture_output=True, text=True)
    assert build.returncode == 0, build.stderr
    [wheel] = tmp_path.glob("kit_inference-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "kit/examples/qwen25-h200-vllm020.toml" in names and "kit/examples/schemas/ir-v1.json" in names
    assert "kit/templates/app.py.j2" in names


def test_schema_validates_children_as_partial_profiles(tmp_path: Path):
    """`kit schema` through a real validator (jsonschema, what check-jsonschema runs), on real files."""
    import tomllib

    import jsonschema

    r = run_kit("schema")
    schema = json.loads(r.out)
    jsonschema.Draft202012Validator.check_schema(schema)
    v = jsonschema.Draft202012Validator(schema)
    children = 0
    for path in sorted(PROFILES.glob("*.toml")):
        data = tomllib.loads(path.read_text())
        children += "extends" in data
        assert not list(v.iter_errors(data)), path
    assert children >= 1  # the library has profiles that extend another
    # A child names only what it changes; a file that stands alone needs every required key.
    assert not list(v.iter_errors({"extends": "base.toml", "model": {"max_model_len": 4096}}))
    missing = {e.message for e in v.iter_errors({"name": "x", "model": {"max_model_len": 4096}})}
    assert "'gpu' is a required property" in missing and "'id' is a required property" in missing
    # GPU types are enumerated, versions patterned, unknown keys refused, in children too.
    bad = [e.message for e in v.iter_errors({"extends": "b.toml", "gpu": {"type": "Z100"}, "packages": {"vllm": ">=0.9"}, "bogus": 1})]
    assert any("'Z100' is not one of" in m for m in bad) and any("does not match" in m for m in bad) and any("bogus" in m for m in bad)


def _on_a_terminal(args: list[str], tmp_path: Path, cwd: Path | None = None, **env_extra: str) -> tuple[int, str]:
    """Run kit with a real pseudo-terminal as stdin, stdout and stderr: (exit code, what the terminal got)."""
    import os
    import pty
    import subprocess
    import sys

    master, slave = pty.openpty()
    env = {k: v for k, v in os.environ.items() if not k.startswith("KIT_") and k != "NO_COLOR"}
    env.update({"KIT_STATE_DIR": str(tmp_path / "state"), "COLUMNS": "200", "TERM": "xterm-256color", **env_extra})
    proc = subprocess.Popen([sys.executable, "-m", "kit", *args], cwd=cwd, stdin=slave, stdout=slave, stderr=slave, env=env)
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:  # EIO: every writer closed its end
            break
        if not data:
            break
        chunks.append(data)
    os.close(master)
    return proc.wait(timeout=300), b"".join(chunks).decode(errors="replace")


def test_no_color_removes_all_styling_on_a_terminal(tmp_path: Path):
    """Under a real pseudo-terminal kit styles its output; NO_COLOR removes every escape sequence."""
    args = ["check", str(PROFILES / "qwen25-a10g.toml")]
    code, styled = _on_a_terminal(args, tmp_path)
    assert code == 0 and "\x1b[" in styled
    code, plain = _on_a_terminal(args, tmp_path, NO_COLOR="1")
    assert code == 0 and "\x1b[" not in plain and "qwen25-a10g" in plain


def test_docs_module_help_writes_nothing(tmp_path: Path):
    import subprocess
    import sys

    from tests.conftest import REPO

    before = {p: p.read_bytes() for p in (REPO / "docs").glob("*.md")}
    r = subprocess.run([sys.executable, "-m", "kit.docs", "--help"], capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 0 and "usage" in r.stdout
    assert {p: p.read_bytes() for p in (REPO / "docs").glob("*.md")} == before
    assert subprocess.run([sys.executable, "-m", "kit.docs", "--check"], capture_output=True, cwd=REPO).returncode == 0


def test_history_truncates_long_cells_instead_of_wrapping(monkeypatch, capsys):
    from kit import deploy_view
    from tests.test_history import revision

    monkeypatch.setenv("COLUMNS", "160")
    monkeypatch.setenv("NO_COLOR", "1")
    long_error = "modal deploy failed: " + "x" * 400
    revs = [revision(number=1, status="failed", error=long_error, created_by="someone-with-a-very-long-name@" + "y" * 80), revision(number=2, status="deployed")]
    deploy_view.print_history(revs, "text")
    lines = [ln for ln in capsys.readouterr().out.splitlines() if ln.strip()]
    rows = [ln for ln in lines if ln.startswith(("r1 ", "r2 "))]
    assert len(rows) == 2  # one line per revision: nothing wrapped onto a second line
    assert all(len(ln) <= 160 for ln in lines)
    assert "…" in rows[0] and "x" * 200 not in rows[0] and "failed" in rows[0] and "deployed" in rows[1]


def _variant(tree, **pins: str) -> tuple[Path, str]:
    text = BASE_PROFILE
    for old, new in pins.items():
        text = text.replace(old, new)
    return tree({"profiles/p.toml": text}), "profiles/p.toml"


def test_short_version_is_read_as_exact_with_a_warning(tree):
    root, p = _variant(tree, **{'vllm = "0.9.2"': 'vllm = "0.9"'})
    doc = json.loads(run_kit("check", p, "--format", "json", cwd=root).out)
    [f] = [f for f in doc["profiles"][0]["findings"] if f["rule"] == "pin-version-abbreviated"]
    assert f["severity"] == "warning" and "0.9.0 exactly" in f["summary"] and "0.9.2" in f["summary"]
    # The metadata is looked up by the normalised version: vllm 0.9.0's pins are compared (no "not recorded").
    assert not any(x["rule"] == "metadata-not-recorded" for x in doc["profiles"][0]["findings"])


def test_a_version_never_released_and_a_misspelt_name(tree):
    root, p = _variant(tree, **{'xgrammar = "0.1.19"': 'xgrammar = "0.1.77"', 'transformers = "4.53.0"': 'transformers = "4.53.0"\ntokenizer = "0.21.1"'})
    doc = json.loads(run_kit("check", p, "--format", "json", cwd=root).out)
    rules = {f["rule"]: f for f in doc["profiles"][0]["findings"]}
    assert rules["pin-no-such-release"]["severity"] == "error" and "xgrammar 0.1.77" in rules["pin-no-such-release"]["summary"]
    assert "did you mean tokenizers?" in rules["package-name-unknown"]["summary"]
    # A real release far past kit's store is not judged (it may be newer than the last refresh).
    root2, p2 = _variant(tree, **{'xgrammar = "0.1.19"': 'xgrammar = "99.0.0"'})
    doc2 = json.loads(run_kit("check", p2, "--format", "json", cwd=root2).out)
    assert not any(f["rule"] == "pin-no-such-release" for f in doc2["profiles"][0]["findings"])


def test_lowercase_gpu_accepted_with_a_note(tree):
    root, p = _variant(tree, **{'type = "A10G"': 'type = "a10g"'})
    r = run_kit("check", p, cwd=root)
    assert r.code == 0 and "gpu.type 'a10g' is read as A10G" in r.out


@pytest.mark.network
def test_lock_on_a_terminal_shows_uv_and_still_explains_a_failure(tmp_path: Path):
    """On a terminal uv's stderr goes through a pseudo-terminal (its progress shows); kit still reads it."""
    (tmp_path / ".git").mkdir()
    prof = tmp_path / "profiles"
    prof.mkdir()
    shutil.copytree(PROFILES / "schemas", prof / "schemas")
    (prof / "p.toml").write_text((PROFILES / "qwen25-a10g.toml").read_text().replace('xgrammar = "0.1.19"', 'xgrammar = "0.1.25"'))
    code, screen = _on_a_terminal(["lock", "profiles/p.toml"], tmp_path, cwd=tmp_path, NO_COLOR="1")
    assert code == 1
    assert "No solution found" in screen  # uv's own words reached the terminal
    assert "these pins cannot all be installed together" in screen and "xgrammar==0.1.25" in screen  # and kit explained them
    assert not (prof / "p.lock").exists()
