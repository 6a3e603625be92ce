"""Shared fixtures: build profile trees on disk from dicts, run the real CLI in a subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.statefixtures import postgres_schema, state  # noqa: F401  (fixtures: the history store on each backend)

REPO = Path(__file__).resolve().parent.parent
PROFILES = REPO / "profiles"
# kit's state directory for tests that do not make their own: one that cannot exist, so no test reads
# (say, `kit diff` looking for bench results) or writes the deploy history of whoever runs the tests.
NO_STATE = str(Path(os.devnull) / "kit-state")

BASE_PROFILE = """\
name = "base"
description = "test profile"

[app]
name = "test-app"

[model]
id = "Qwen/Qwen2.5-Coder-7B-Instruct"
dtype = "bfloat16"
max_model_len = 32768

[gpu]
type = "A10G"
count = 1

[image]
base = "nvidia/cuda:12.4.1-devel-ubuntu22.04"
python = "3.11"

[packages]
vllm = "0.9.2"
transformers = "4.53.0"
xgrammar = "0.1.19"

[engine]
name = "vllm"
"""


def build_tree(root: Path, files: dict[str, str | dict]) -> Path:
    """Write {relative path: text (dedented) or JSON-able dict} under root; make root a repository."""
    (root / ".git").mkdir(parents=True, exist_ok=True)
    for rel, content in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        text = json.dumps(content) if isinstance(content, dict) else textwrap.dedent(content)
        path.write_text(text, encoding="utf-8")
    return root


@dataclass
class Result:
    code: int
    out: str
    err: str


def run_kit(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None) -> Result:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("KIT_")}
    full_env["NO_COLOR"] = "1"
    full_env["COLUMNS"] = "200"
    full_env["KIT_STATE_DIR"] = NO_STATE
    if env:
        full_env.update(env)
    proc = subprocess.run([sys.executable, "-m", "kit", *args], cwd=cwd or REPO, capture_output=True, text=True, env=full_env, timeout=120)
    return Result(proc.returncode, proc.stdout, proc.stderr)


@pytest.fixture
def tree(tmp_path: Path):
    def make(files: dict[str, str | dict]) -> Path:
        return build_tree(tmp_path, files)

    return make


@pytest.fixture(autouse=True)
def _no_kit_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(os.environ):
        if key.startswith("KIT_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("KIT_STATE_DIR", NO_STATE)
    # `kit lock` reads model facts from the Hub: tests never reach huggingface.co (tests/test_hub.py
    # runs a local Hub and sets these itself).
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(Path(os.devnull) / "kit-hf-home"))
