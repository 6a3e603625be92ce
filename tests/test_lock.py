"""kit lock: lockfile format, freshness, atomic writes, failures, and check over the closure.

Offline tests run on the committed lockfiles and on fixture locks written here. Tests marked
`network` resolve against the package index for real (CI reaches it): `pytest -m "not network"`
skips them.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from packaging.version import Version

from kit import lockfile, resolve
from kit.check import check
from kit.errors import OperationError
from kit.load import load

from .conftest import BASE_PROFILE, PROFILES, run_kit

V011 = BASE_PROFILE.replace('vllm = "0.9.2"\ntransformers = "4.53.0"\nxgrammar = "0.1.19"\n', 'vllm = "0.11.0"\n').replace(
    "cuda:12.4.1-devel-ubuntu22.04", "cuda:12.8.0-devel-ubuntu22.04"
)
UNREACHABLE = {"UV_DEFAULT_INDEX": "http://127.0.0.1:9/simple", "UV_HTTP_RETRIES": "0"}


def fixture_lock(loaded, packages: dict[str, tuple[str, list[str]]], *, sdists: list[str] | None = None) -> Path:
    """Write a small lockfile for `loaded` (fresh against its inputs): {name: (version, [via...])}."""
    inputs = lockfile.resolution_inputs(loaded)
    lines = []
    for name, (version, via) in sorted(packages.items()):
        lines.append(f"{name}=={version} \\\n    --hash=sha256:{'0' * 64}")
        if len(via) == 1:
            lines.append(f"    # via {via[0]}")
        elif via:
            lines.append("    # via")
            lines += [f"    #   {v}" for v in via]
    body = "\n".join(lines) + "\n"
    text = resolve.render(loaded, inputs, body, ["https://index.invalid/simple"], sdists or [])
    path = lockfile.lock_path(loaded)
    path.write_text(text, encoding="utf-8")
    return path


# -- the committed library ------------------------------------------------------------------------


def test_every_library_profile_has_a_fresh_lock():
    result = run_kit("lock", "--check")
    assert result.code == 0, result.out + result.err
    for profile in sorted(PROFILES.glob("*.toml")):
        assert f"profiles/{profile.stem}.lock: fresh" in result.out


@pytest.mark.parametrize("profile", sorted(p.name for p in PROFILES.glob("*.toml")))
def test_committed_lock_holds_the_pins_and_a_complete_header(profile):
    loaded = load(PROFILES / profile)
    lock = lockfile.parse(lockfile.lock_path(loaded))
    for name, version in loaded.profile.packages.items():
        assert lock.packages[name] == Version(version), name
    for key in ("format", "profile-hash", "python", "platform", "index-urls", "uv-version", "requirements", "build-from-source"):
        assert key in lock.header, key
    assert lock.header["python"] == lockfile.resolution_inputs(loaded).python  # the image's own with the engine from it
    assert lock.header["platform"].startswith("x86_64-manylinux_2_")
    body = lockfile.requirements_for_image(loaded)
    assert body is not None and not body.startswith("#") and "--hash=sha256:" in body
    assert "kit-lock" not in body and "--index-url" not in body
    # every package line carries hashes: the image installs with --require-hashes
    for line in body.splitlines():
        if line and not line.startswith((" ", "#")):  # `# provided:` lines name what the base image holds
            assert line.endswith("\\"), line


def test_sglang_lock_includes_the_srt_extra_and_flashinfer_builds_from_source():
    loaded = load(PROFILES / "qwen3-coder-30b-sglang.toml")
    lock = lockfile.parse(lockfile.lock_path(loaded))
    assert "sglang[srt]==0.4.10.post2" in lock.header["requirements"]
    assert {"torchao", "uvicorn", "sgl-kernel"} <= set(lock.packages)  # the srt extra's runtime
    assert lock.build_from_source == ["flashinfer-python==0.2.9rc2"]
    report = check(loaded, lockfile.closure_for(loaded))
    assert report.closure_checked
    assert "lock-builds-from-source" in {f.rule for f in report.findings}


def test_check_with_a_fresh_lock_needs_no_network_and_checks_the_closure():
    result = run_kit("check", "profiles/qwen25-a10g.toml", "--format", "json", env=UNREACHABLE)
    assert '"closure_checked": true' in result.out, result.out + result.err


# -- freshness ------------------------------------------------------------------------------------


def test_hash_covers_resolution_inputs_only(tree):
    root = tree({"profiles/p.toml": V011, "profiles/schemas/s.json": {"type": "object"}})
    base = lockfile.resolution_hash(load(root / "profiles/p.toml"))

    def hash_of(text: str) -> str:
        (root / "profiles/p.toml").write_text(text, encoding="utf-8")
        return lockfile.resolution_hash(load(root / "profiles/p.toml"))

    # Not resolution: description, GPU, engine settings, schema files, CUDA version with the same glibc.
    assert hash_of(V011.replace('description = "test profile"', 'description = "other"')) == base
    assert hash_of(V011.replace('type = "A10G"', 'type = "L40S"')) == base
    assert hash_of(V011 + '\n[structured_output]\nschema = "schemas/s.json"\n') == base
    assert hash_of(V011.replace("cuda:12.8.0-devel", "cuda:12.6.3-devel")) == base
    # Resolution: pins, Python, glibc, index, engine.
    assert hash_of(V011.replace('vllm = "0.11.0"', 'vllm = "0.11.0"\ntransformers = "4.57.6"')) != base
    assert hash_of(V011.replace('python = "3.11"', 'python = "3.12"')) != base
    assert hash_of(V011.replace("ubuntu22.04", "ubuntu24.04")) != base
    assert hash_of(V011.replace('python = "3.11"', 'python = "3.11"\nindex_url = "https://mirror.invalid/simple"')) != base


def test_platform_follows_the_base_image_glibc():
    assert lockfile.platform_for("nvidia/cuda:12.4.1-devel-ubuntu22.04") == ("x86_64-manylinux_2_35", False)
    assert lockfile.platform_for("debian_slim") == ("x86_64-manylinux_2_36", False)
    assert lockfile.platform_for("nvidia/cuda:13.0.0-devel-ubuntu24.04") == ("x86_64-manylinux_2_39", False)
    assert lockfile.platform_for("example/unknown:1") == (f"x86_64-manylinux_{lockfile.FALLBACK_GLIBC.replace('.', '_')}", True)


def test_engine_extras():
    assert lockfile.engine_extras("sglang", {"sglang": "0.4.10.post2"}) == {"sglang": "srt"}
    assert lockfile.engine_extras("sglang", {"sglang": "0.5.2"}) == {"sglang": "srt"}
    assert lockfile.engine_extras("sglang", {"sglang": "0.5.3"}) == {}
    assert lockfile.engine_extras("vllm", {"vllm": "0.9.2"}) == {}


def test_lock_check_missing_and_stale_exit_1_without_network(tree, monkeypatch):
    from typer.testing import CliRunner

    from kit.cli import app

    def no_subprocess(*a, **k):
        raise AssertionError("kit lock --check ran a subprocess")

    resolve.uv_version()  # cached: fixture_lock below writes it in the header
    monkeypatch.setattr(subprocess, "run", no_subprocess)
    root = tree({"profiles/p.toml": V011})
    runner = CliRunner()
    res = runner.invoke(app, ["lock", "--check", str(root / "profiles/p.toml")])
    assert res.exit_code == 1 and "missing" in res.output
    fixture_lock(load(root / "profiles/p.toml"), {"vllm": ("0.11.0", ["-r profile"])})
    res = runner.invoke(app, ["lock", "--check", str(root / "profiles/p.toml")])
    assert res.exit_code == 0 and "fresh" in res.output
    (root / "profiles/p.toml").write_text(V011.replace('python = "3.11"', 'python = "3.12"'), encoding="utf-8")
    res = runner.invoke(app, ["lock", "--check", str(root / "profiles/p.toml")])
    assert res.exit_code == 1 and "stale" in res.output


# -- check over the closure (fixture locks) --------------------------------------------------------


def test_check_reports_a_transitive_package_and_where_it_came_from(tree):
    root = tree({"profiles/p.toml": V011})
    loaded = load(root / "profiles/p.toml")
    without = check(loaded, lockfile.closure_for(loaded), lockfile.closure_note(loaded))
    assert not without.closure_checked and "no lockfile" in without.notes[0]
    fixture_lock(loaded, {"vllm": ("0.11.0", ["-r profile"]), "transformers": ("5.0.0", ["vllm"]), "idna": ("3.10", [])})
    report = check(loaded, lockfile.closure_for(loaded))
    assert report.closure_checked
    hit = [f for f in report.findings if f.rule == "vllm-transformers-v5-tokenizer"]
    assert hit, [f.rule for f in report.findings]
    assert "transformers 5.0.0 arrives through vllm 0.11.0" in hit[0].why


def test_check_says_a_stale_lock_was_not_used(tree):
    root = tree({"profiles/p.toml": V011})
    fixture_lock(load(root / "profiles/p.toml"), {"vllm": ("0.11.0", [])})
    (root / "profiles/p.toml").write_text(V011.replace('vllm = "0.11.0"', 'vllm = "0.11.0"\ntransformers = "4.57.6"'), encoding="utf-8")
    loaded = load(root / "profiles/p.toml")
    assert lockfile.closure_for(loaded) is None
    assert "stale" in lockfile.closure_note(loaded)
    with pytest.raises(Exception, match="stale"):
        lockfile.requirements_for_image(loaded)


def test_sdist_in_the_header_is_reported(tree):
    text = V011.replace('vllm = "0.11.0"', 'vllm = "0.9.2"\ntransformers = "4.53.0"\nflashinfer-python = "0.2.6.post1"')
    root = tree({"profiles/p.toml": text})
    loaded = load(root / "profiles/p.toml")
    fixture_lock(loaded, {"vllm": ("0.9.2", []), "transformers": ("4.53.0", []), "flashinfer-python": ("0.2.6.post1", [])}, sdists=["flashinfer-python==0.2.6.post1"])
    report = check(loaded, lockfile.closure_for(loaded))
    hit = [f for f in report.findings if f.rule == "lock-builds-from-source"]
    assert hit and hit[0].severity == "info" and "flashinfer-python 0.2.6.post1" in hit[0].summary


# -- writing and failing -------------------------------------------------------------------------


def test_write_atomic_leaves_the_old_file_on_failure(tmp_path, monkeypatch):
    target = tmp_path / "p.lock"
    target.write_text("old\n")

    def boom(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError):
        resolve.write_atomic(target, "new\n")
    assert target.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["p.lock"]  # no temp file left behind


UNSAT = """\
error: No solution found when resolving dependencies
  cause: Because vllm==0.11.0 depends on torch==2.8.0 and you require vllm==0.11.0, we can conclude that you require torch==2.8.0.
         And because you require torch==2.6.0, we can conclude that your requirements are unsatisfiable.
"""
NET = """\
error: Request failed after 3 retries in 4.5s
  cause: Failed to fetch: http://127.0.0.1:9/simple/vllm/
  cause: error sending request for url (http://127.0.0.1:9/simple/vllm/)
  cause: tcp connect error
  cause: Connection refused (os error 111)
"""


def test_unsatisfiable_explanation_names_the_conflicting_pins(tree):
    root = tree({"profiles/p.toml": V011.replace('vllm = "0.11.0"', 'vllm = "0.11.0"\ntorch = "2.6.0"')})
    loaded = load(root / "profiles/p.toml")
    err = resolve.explain_failure(UNSAT, loaded, lockfile.resolution_inputs(loaded))
    assert isinstance(err, OperationError) and err.exit_code == 1
    assert "vllm==0.11.0 requires torch==2.8.0, but the profile pins torch==2.6.0" in err.message
    assert "you require" not in err.message and "cause:" not in err.message
    net = resolve.explain_failure(NET, loaded, lockfile.resolution_inputs(loaded))
    assert isinstance(net, resolve.IndexUnreachable) and net.exit_code == 2
    assert "could not be reached" in net.message and "Connection refused" in net.message


def test_sdists_listed_packages_pinned_exactly_others_classified_unless_forbidden(tree, monkeypatch):
    from kit import sdist

    root = tree({"profiles/p.toml": V011.replace('vllm = "0.11.0"', 'vllm = "0.9.2"\nflashinfer-python = "0.2.6.post1"\nxformers = "0.0.1"')})
    loaded = load(root / "profiles/p.toml")
    inputs = lockfile.resolution_inputs(loaded)
    pins = dict(loaded.profile.packages)
    assert inputs.sdist_allowed == ("flashinfer-python",)
    # The index is replaced here by a classifier that reports what it was asked (the real one reads the sdist: test_sdist.py).
    asked = []
    monkeypatch.setattr(sdist, "classify", lambda n, v, i=None: asked.append((n, v)) or sdist.SdistKind(n, v, f"{n}-{v}.tar.gz", "0" * 64, ()))

    def stderr(name, version):
        return f"  cause: Because {name}=={version} has no usable wheels and you require {name}=={version}, we can conclude ..."

    kinds: dict[str, str] = {}
    assert resolve._sdists_to_allow(stderr("flashinfer-python", "0.2.6.post1"), inputs, pins, set(), kinds) == {"flashinfer-python"}
    assert resolve._sdists_to_allow(stderr("flashinfer-python", "0.2.5"), inputs, pins, set(), kinds) == set()  # listed: only as pinned
    assert resolve._sdists_to_allow(stderr("xformers", "0.0.1"), inputs, pins, set(), kinds) == {"xformers"}
    assert asked == [("xformers", "0.0.1")] and kinds == {"xformers": "pure-python"}
    err = resolve.explain_failure("error: No solution found when resolving dependencies\n" + stderr("flashinfer-python", "0.2.5"), loaded, inputs)
    assert 'pin flashinfer-python = "0.2.5"' in err.message

    forbid = tree({"profiles/q.toml": V011.replace('vllm = "0.11.0"', 'vllm = "0.9.2"\nxformers = "0.0.1"').replace("[image]", '[image]\nsdists = "none"')})
    loaded = load(forbid / "profiles/q.toml")
    inputs = lockfile.resolution_inputs(loaded)
    assert resolve._sdists_to_allow(stderr("xformers", "0.0.1"), inputs, dict(loaded.profile.packages), set(), {}) == set()
    err = resolve.explain_failure("error: No solution found when resolving dependencies\n" + stderr("xformers", "0.0.1"), loaded, inputs)
    assert "xformers==0.0.1 has no wheel for Python 3.11 on x86_64-manylinux_2_35" in err.message
    assert 'image.sdists = "none" forbids' in err.message and "remove image.sdists" in err.message


def test_failed_resolve_writes_nothing(tree, monkeypatch):
    from typer.testing import CliRunner

    from kit.cli import app

    root = tree({"profiles/p.toml": V011})
    loaded = load(root / "profiles/p.toml")
    path = fixture_lock(loaded, {"vllm": ("0.11.0", [])})
    before = path.read_bytes()
    real_run = subprocess.run

    def fake(args, **kw):
        if "compile" not in args:
            return real_run(args, **kw)
        out = Path(kw["cwd"]) / resolve.OUTPUT_NAME
        out.write_text("half-writ")  # uv failing midway must not reach the lockfile
        return subprocess.CompletedProcess(args, 1, "", UNSAT)

    monkeypatch.setattr(subprocess, "run", fake)
    res = CliRunner().invoke(app, ["lock", str(root / "profiles/p.toml")])
    assert res.exit_code == 1, res.output
    assert path.read_bytes() == before
    assert sorted(p.name for p in path.parent.iterdir()) == ["p.lock", "p.toml"]


def test_unreachable_index_exits_2_and_keeps_the_lock(tree):
    """uv really runs here, against a closed local port: no index is contacted."""
    root = tree({"profiles/p.toml": V011})
    path = fixture_lock(load(root / "profiles/p.toml"), {"vllm": ("0.11.0", [])})
    before = path.read_bytes()
    result = run_kit("lock", str(root / "profiles/p.toml"), env=UNREACHABLE)
    assert result.code == 2, result.out + result.err
    assert "could not be reached" in result.err
    assert path.read_bytes() == before


# -- resolving for real ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def locked_v011(tmp_path_factory):
    from .conftest import build_tree

    root = build_tree(tmp_path_factory.mktemp("v011"), {"profiles/p.toml": V011})
    result = run_kit("lock", str(root / "profiles/p.toml"))
    assert result.code == 0, result.out + result.err
    return root


@pytest.mark.network
def test_lock_resolves_transformers_5_and_check_finds_it(locked_v011):
    root = locked_v011
    lock = lockfile.parse(root / "profiles/p.lock")
    assert lock.packages["transformers"] >= Version("5")
    result = run_kit("check", str(root / "profiles/p.toml"), env=UNREACHABLE)
    assert result.code == 1
    assert "vllm-transformers-v5-tokenizer" in result.out
    assert "arrives through" in result.out and "vllm 0.11.0" in result.out


@pytest.mark.network
def test_lock_twice_gives_the_same_bytes(locked_v011):
    path = locked_v011 / "profiles/p.lock"
    before = path.read_bytes()
    result = run_kit("lock", str(locked_v011 / "profiles/p.toml"))
    assert result.code == 0 and "unchanged" in result.out, result.out + result.err
    assert path.read_bytes() == before
    assert run_kit("lock", "--check", str(locked_v011 / "profiles/p.toml")).code == 0


@pytest.mark.network
def test_upgrade_package_moves_one_package_and_fixes_hand_edits(locked_v011, tmp_path):
    import shutil

    root = tmp_path / "up"
    shutil.copytree(locked_v011, root)
    path = root / "profiles/p.lock"
    text = path.read_text()
    latest = lockfile.parse(path).packages
    # Move two leaves back by hand (their hash lines stay those of the newer release).
    text = text.replace(f"\ncertifi=={latest['certifi']} ", "\ncertifi==2024.2.2 ").replace(f"\ntqdm=={latest['tqdm']} ", "\ntqdm==4.66.1 ")
    path.write_text(text)
    result = run_kit("lock", "--upgrade-package", "certifi", str(root / "profiles/p.toml"))
    assert result.code == 0, result.out + result.err
    after = lockfile.parse(path)
    assert after.packages["certifi"] == latest["certifi"]
    assert after.packages["tqdm"] == Version("4.66.1")  # not asked to move: stays
    assert {n: v for n, v in after.packages.items() if n not in ("certifi", "tqdm")} == {n: v for n, v in latest.items() if n not in ("certifi", "tqdm")}
    # the hand-edited tqdm got tqdm 4.66.1's own hashes from the index, not the stale ones
    tqdm_block = after.text.split("\ntqdm==4.66.1 ")[1].split("# via")[0]
    latest_block = locked_v011.joinpath("profiles/p.lock").read_text().split(f"\ntqdm=={latest['tqdm']} ")[1].split("# via")[0]
    assert tqdm_block != latest_block


@pytest.mark.network
def test_unsatisfiable_profile_exits_1_without_a_lockfile(tree):
    root = tree({"profiles/p.toml": V011.replace('vllm = "0.11.0"', 'vllm = "0.11.0"\ntorch = "2.6.0"')})
    result = run_kit("lock", str(root / "profiles/p.toml"))
    assert result.code == 1, result.out + result.err
    assert "vllm==0.11.0 requires torch==2.8.0, but the profile pins torch==2.6.0" in result.err
    assert not (root / "profiles/p.lock").exists()
    assert sorted(p.name for p in (root / "profiles").iterdir()) == ["p.toml"]


@pytest.mark.network
def test_flashinfer_sdist_pin_is_locked_as_build_from_source(tree):
    fi = V011.replace('vllm = "0.11.0"', 'vllm = "0.9.2"\ntransformers = "4.53.0"\nflashinfer-python = "0.2.6.post1"').replace("12.8.0", "12.4.1")
    root = tree({"profiles/p.toml": fi})
    result = run_kit("lock", str(root / "profiles/p.toml"))
    assert result.code == 0, result.out + result.err
    lock = lockfile.parse(root / "profiles/p.lock")
    assert lock.build_from_source == ["flashinfer-python==0.2.6.post1"]
    block = lock.text.split("\nflashinfer-python==0.2.6.post1 ")[1].split("# via")[0]
    assert block.count("--hash=") == 1  # the sdist's hash only
