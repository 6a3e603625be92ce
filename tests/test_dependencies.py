"""kit works at the floor of every direct dependency it declares, and without modal."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import PROFILES, REPO


def _uv() -> str:
    found = shutil.which("uv", path=str(Path(sys.executable).parent)) or shutil.which("uv")
    assert found, "uv is one of kit's dependencies"
    return found


@pytest.mark.network
def test_lowest_direct_versions_run_every_command(tmp_path: Path):
    """uv's lowest-direct resolution of pyproject's dependencies: the floors must work (typer 0.12 with click 8.5 did not)."""
    uv, venv = _uv(), tmp_path / "venv"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KIT_", "VIRTUAL_ENV", "UV_"))}
    subprocess.run([uv, "venv", "-q", "--python", sys.executable, str(venv)], check=True, env=env)
    env["VIRTUAL_ENV"] = str(venv)
    reqs = tmp_path / "lowest.txt"
    subprocess.run([uv, "pip", "compile", "-q", "--resolution", "lowest-direct", str(REPO / "pyproject.toml"), "-o", str(reqs)], check=True, env=env, capture_output=True)
    pins = reqs.read_text()
    subprocess.run([uv, "pip", "install", "-q", "-r", str(reqs)], check=True, env=env, capture_output=True)
    subprocess.run([uv, "pip", "install", "-q", "--no-deps", "-e", str(REPO)], check=True, env=env, capture_output=True)
    kit = venv / "bin" / "kit"
    run_env = {**env, "KIT_STATE_DIR": str(tmp_path / "state"), "NO_COLOR": "1"}

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([str(kit), *args], capture_output=True, text=True, env=run_env, cwd=REPO, timeout=120)

    for command in ("check", "lock", "render", "diff", "fmt", "init", "deploy", "history", "status", "rollback", "bench", "rules", "schema"):
        r = run(command, "--help")
        assert r.returncode == 0 and "Traceback" not in r.stderr, f"{command}:\n{r.stderr}\n{pins}"
    profile = str(PROFILES / "qwen25-a10g.toml")
    assert run("check", profile).returncode == 0
    assert run("fmt", "--check", profile).returncode == 0
    assert run("render", profile, "-o", str(tmp_path / "out")).returncode == 0
    assert run("diff", profile, profile).returncode == 0
    # modal is the deploy extra: not installed here, and the dry-run plan needs none of it.
    assert "modal==" not in pins
    dry = run("deploy", "--dry-run", profile)
    assert dry.returncode == 0, dry.stderr
