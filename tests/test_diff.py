"""kit diff: real git repositories with real commits, snapshots of text and markdown, parsed markdown.

Snapshots live in tests/snapshots/diff/; rewrite them with KIT_UPDATE_SNAPSHOTS=1 after checking the
new output by eye. The repositories hold copies of the library's own profiles.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from markdown_it import MarkdownIt

from kit.diff import PackageChange, diff, diff_files, diff_ref
from kit.diff_format import as_markdown, as_text
from kit.load import load

from .conftest import PROFILES, run_kit

SNAPSHOTS = Path(__file__).parent / "snapshots" / "diff"
# Read at import: the autouse fixture in conftest clears KIT_* variables before each test runs.
UPDATE = os.environ.get("KIT_UPDATE_SNAPSHOTS") == "1"
_GIT_ENV = {
    "GIT_AUTHOR_NAME": "kit tests",
    "GIT_AUTHOR_EMAIL": "tests@example.invalid",
    "GIT_COMMITTER_NAME": "kit tests",
    "GIT_COMMITTER_EMAIL": "tests@example.invalid",
    "GIT_CONFIG_GLOBAL": os.devnull,
    "GIT_CONFIG_NOSYSTEM": "1",
}


def git(root: Path, *args: str) -> str:
    env = {**os.environ, **_GIT_ENV}
    return subprocess.run(["git", "-C", str(root), *args], check=True, capture_output=True, text=True, env=env).stdout


def make_repo(root: Path, names: list[str]) -> Path:
    """A git repository holding copies of library profiles (and their schemas), committed once."""
    (root / "profiles").mkdir(parents=True)
    shutil.copytree(PROFILES / "schemas", root / "profiles" / "schemas")
    for name in names:
        shutil.copy(PROFILES / name, root / "profiles" / name)
    git(root, "init", "-q", "-b", "main")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "library")
    return root


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new, 1))


def snapshot(name: str, text: str) -> None:
    path = SNAPSHOTS / name
    if UPDATE or not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        if not UPDATE:
            pytest.fail(f"snapshot {name} did not exist; written now, check it and run again")
    assert text == path.read_text(encoding="utf-8"), f"{name} differs; KIT_UPDATE_SNAPSHOTS=1 rewrites it"


def both_snapshots(name: str, diffs, title: str = "main -> working tree") -> None:
    snapshot(f"{name}.txt", as_text(diffs, title))
    snapshot(f"{name}.md", as_markdown(diffs, title))


BASE = "qwen25-a10g.toml"


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return make_repo(tmp_path / "repo", [BASE])


# -- the four realistic changes, as snapshots -----------------------------------------------------


def test_vllm_upgrade(repo: Path):
    edit(repo / "profiles" / BASE, 'vllm = "0.9.2"', 'vllm = "0.10.0"')
    diffs = diff_ref(repo, "main")
    assert [d.path for d in diffs] == ["profiles/qwen25-a10g.toml"]
    assert diffs[0].packages == [PackageChange("vllm", "0.9.2", "0.10.0")]
    assert (diffs[0].packages[0].kind, diffs[0].packages[0].level) == ("upgrade", "minor")
    both_snapshots("vllm-upgrade", diffs)


def test_gpu_change_a10g_to_a100(repo: Path):
    edit(repo / "profiles" / BASE, 'type = "A10G"', 'type = "A100-40GB"')
    [d] = diff_ref(repo, "main")
    assert (d.cost_before.gpu, d.cost_after.gpu) == ("A10G", "A100-40GB")
    assert d.cost_before.price_per_hour < d.cost_after.price_per_hour
    # 15 s per request (smoke.latency_budget_s): $/h x 15 / 3600 x 1000.
    assert d.cost_before.latency_source == "assumed: smoke.latency_budget_s"
    assert d.cost_after.per_1k_requests == pytest.approx(d.cost_after.price_per_hour * 15 / 3.6)
    assert d.headroom_after > d.headroom_before
    both_snapshots("gpu-a10g-to-a100", diffs := [d])
    assert "A10G → A100-40GB" in as_markdown(diffs, "t")


def test_transformers_bump_into_a_broken_window(repo: Path):
    edit(repo / "profiles" / BASE, 'transformers = "4.53.0"', 'transformers = "4.54.0"')
    [d] = diff_ref(repo, "main")
    assert "vllm-transformers-aimv2" in [f.rule for f in d.introduced]
    assert {f.severity for f in d.introduced if f.rule == "vllm-transformers-aimv2"} == {"error"}
    assert d.fixed == []
    both_snapshots("transformers-broken-window", [d])


def test_parent_change_reaches_every_child(tmp_path: Path):
    repo = make_repo(tmp_path / "repo", [BASE, "qwen25-a10g-flashinfer.toml", "qwen3-coder-30b-fp8-a100.toml", "qwen25-l40s-vllm033.toml"])
    edit(repo / "profiles" / BASE, "gpu_memory_utilization = 0.90", "gpu_memory_utilization = 0.85")
    # git itself sees one changed file; kit diff shows the parent and both children, not the unrelated profile.
    assert git(repo, "diff", "--name-only", "main").split() == ["profiles/qwen25-a10g.toml"]
    diffs = diff_ref(repo, "main")
    assert [d.path for d in diffs] == ["profiles/qwen25-a10g-flashinfer.toml", "profiles/qwen25-a10g.toml", "profiles/qwen3-coder-30b-fp8-a100.toml"]
    for d in diffs:
        via = None if d.path == "profiles/qwen25-a10g.toml" else "profiles/qwen25-a10g.toml"
        assert [(c.key, c.old, c.new, c.via) for c in d.settings] == [("engine.gpu_memory_utilization", 0.9, 0.85, via)]
        assert d.headroom_after < d.headroom_before
    both_snapshots("parent-change", diffs)


# -- markdown renders as a table -------------------------------------------------------------------


def _tables(markdown: str) -> list[list[list[str]]]:
    """Every table in the document as rows of cell texts (header row first), as markdown-it parses it."""
    tokens = MarkdownIt("commonmark").enable("table").parse(markdown)
    tables, rows, row = [], None, None
    for tok in tokens:
        if tok.type == "table_open":
            rows = []
        elif tok.type == "tr_open":
            row = []
        elif tok.type == "inline" and row is not None:
            row.append(tok.content)
        elif tok.type == "tr_close":
            rows.append(row)
            row = None
        elif tok.type == "table_close":
            tables.append(rows)
    return tables


def test_markdown_summary_is_a_table_with_the_right_cells(repo: Path):
    edit(repo / "profiles" / BASE, 'type = "A10G"', 'type = "A100-40GB"')
    edit(repo / "profiles" / BASE, 'vllm = "0.9.2"', 'vllm = "0.10.0"')
    md = as_markdown(diff_ref(repo, "main"), "main -> working tree")
    tables = _tables(md)
    summary = tables[0]
    assert summary[0] == ["Profile", "Packages", "GPU", "Cost / 1k requests", "Memory headroom", "Findings"]
    row = summary[1]
    assert row[0] == "`profiles/qwen25-a10g.toml`"
    assert row[1] == "vllm 0.9.2 → 0.10.0 (minor ↑)"
    assert row[2] == "A10G → A100-40GB"
    assert row[3] == "$4.58 → $8.75"
    # The summary comes first; the details are folded.
    assert md.index("| Profile |") < md.index("<details>")
    assert md.count("<details>") == md.count("</details>") == 1
    # Inside <details>, the package table still parses as a table (blank lines around it).
    assert ["`vllm`", "0.9.2", "0.10.0", "upgrade (minor)"] in tables[1]


def test_markdown_escapes_pipes_in_cells(repo: Path):
    edit(repo / "profiles" / BASE, 'description = "', 'description = "a | b ')
    md = as_markdown(diff_ref(repo, "main"), "t")
    settings = next(t for t in _tables(md) if t[0] == ["Key", "Before", "After"])
    assert len(settings[1]) == 3 and "a | b" in settings[1][2]


# -- lockfiles: transitive changes -----------------------------------------------------------------


def _lock(loaded, lines: list[str]) -> str:
    return "\n".join([f"# kit-lock: profile-hash = {loaded.content_hash()}", *lines]) + "\n"


def test_transitive_lockfile_changes(repo: Path):
    path = repo / "profiles" / BASE
    lock = path.with_suffix(".lock")
    lock.write_text(_lock(load(path), ["vllm==0.9.2", "torch==2.7.0", "    # via vllm", "numpy==2.2.6", "triton==3.3.0"]))
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "lock")
    lock.write_text(_lock(load(path), ["vllm==0.9.2", "torch==2.7.1", "    # via vllm", "numpy==1.26.4", "regex==2024.11.6"]))
    [d] = diff_ref(repo, "main")
    assert [(p.name, p.kind, p.level) for p in d.locked] == [
        ("numpy", "downgrade", "major"),
        ("regex", "added", None),
        ("torch", "upgrade", "patch"),
        ("triton", "removed", None),
    ]
    assert d.packages == []  # vllm is pinned and did not move: not repeated as transitive
    assert "locked (transitive" in as_text([d], "t")


# -- the command: exit codes, no checkout, formats -------------------------------------------------


def test_cli_exit_codes_and_untouched_working_tree(repo: Path):
    head = git(repo, "rev-parse", "HEAD")
    assert run_kit("diff", "--git", "main", cwd=repo).code == 0
    edit(repo / "profiles" / BASE, 'vllm = "0.9.2"', 'vllm = "0.10.0"')
    # A change is success by default; --detailed-exitcode (alias --exit-code) makes it 2, as terraform plan does.
    plain = run_kit("diff", "--git", "main", cwd=repo)
    assert plain.code == 0, plain.err
    result = run_kit("diff", "--git", "main", "--detailed-exitcode", cwd=repo)
    assert result.code == 2, result.err
    assert run_kit("diff", "--git", "main", "--exit-code", cwd=repo).code == 2
    assert result.out == plain.out
    assert "vllm" in result.out and "0.9.2 -> 0.10.0" in result.out
    # The old side was read from git objects: nothing checked out, the edit is still there.
    assert git(repo, "rev-parse", "HEAD") == head
    assert git(repo, "status", "--porcelain").strip() == "M profiles/qwen25-a10g.toml"
    # Errors, bad input included, exit 1 (not kit's usual 2).
    bad = run_kit("diff", "--git", "no-such-ref", cwd=repo)
    assert bad.code == 1 and "no-such-ref" in bad.err and "Traceback" not in bad.err
    assert run_kit("diff", "--format", "xml", "a", "b", cwd=repo).code == 1
    assert run_kit("diff", cwd=repo).code == 1
    edit(repo / "profiles" / BASE, "[gpu]", "[gpu\n")
    broken = run_kit("diff", "--git", "main", cwd=repo)
    assert broken.code == 1 and "invalid TOML" in broken.err


def test_cli_two_files_and_json(tmp_path: Path):
    old = PROFILES / BASE
    new = tmp_path / "profiles" / BASE
    new.parent.mkdir()
    shutil.copytree(PROFILES / "schemas", new.parent / "schemas")
    new.write_text(old.read_text().replace('type = "A10G"', 'type = "L40S"'))
    (tmp_path / ".git").mkdir()
    result = run_kit("diff", str(old), str(new), "--format", "json", "--detailed-exitcode")
    assert result.code == 2, result.err
    doc = json.loads(result.out)
    assert doc["version"] == 1 and doc["changed"] == 1
    [p] = doc["profiles"]
    assert {"key": "gpu.type", "old": "A10G", "new": "L40S", "via": None} in p["settings"]
    assert p["cost"]["after"]["gpu"] == "L40S" and p["cost"]["after"]["latency_source"] == "assumed: smoke.latency_budget_s"
    same = run_kit("diff", str(old), str(old))
    assert same.code == 0 and "no profile changes" in same.out


def test_latency_override_and_default(tmp_path: Path):
    old = load(PROFILES / BASE)
    [d] = diff_files(PROFILES / BASE, PROFILES / "qwen25-l40s-vllm033.toml", latency_s=3.49)
    assert d.cost_before.latency_source == "--latency" and d.cost_after.latency_s == 3.49
    assert d.cost_before.per_1k_requests == pytest.approx(1.10 * 3.49 / 3.6)
    assert diff(old, old).status == "unchanged"


def test_added_and_removed_profiles(repo: Path):
    shutil.copy(PROFILES / "qwen25-l40s-vllm033.toml", repo / "profiles" / "new.toml")
    (repo / "profiles" / BASE).unlink()
    diffs = {d.path: d for d in diff_ref(repo, "main")}
    assert diffs["profiles/new.toml"].status == "added"
    assert diffs["profiles/qwen25-a10g.toml"].status == "removed"
    text = as_text(list(diffs.values()), "t")
    assert "+ profiles/new.toml" in text and "- profiles/qwen25-a10g.toml" in text


def test_rendered(repo: Path):
    edit(repo / "profiles" / BASE, 'vllm = "0.9.2"', 'vllm = "0.10.0"')
    try:
        import kit.render  # noqa: F401
    except ImportError:
        result = run_kit("diff", "--git", "main", "--rendered", cwd=repo)
        assert result.code == 1 and "--rendered needs kit's renderer" in result.err
        return
    [d] = diff_ref(repo, "main", rendered=True)
    assert "--- a/requirements.txt" in d.rendered
    assert "-vllm==0.9.2\n" in d.rendered and "+vllm==0.10.0\n" in d.rendered
    assert "```diff" in as_markdown([d], "t")


def _library_copy(root: Path) -> Path:
    (root / ".git").mkdir(parents=True)
    shutil.copytree(PROFILES, root / "profiles")
    return root / "profiles"


def test_stale_lock_does_not_fix_findings(tmp_path: Path):
    """A side checked on its pins only (stale lock) must not turn the other side's closure findings into 'fixed'."""
    old, new = _library_copy(tmp_path / "a"), _library_copy(tmp_path / "b")
    edit(new / "qwen25-a10g.toml", 'transformers = "4.53.0"', 'transformers = "4.53.1"')  # the child's lock goes stale
    [d] = [x for x in diff_files(old / "qwen25-a10g-flashinfer.toml", new / "qwen25-a10g-flashinfer.toml") if x.changed]
    assert d.fixed == [] and d.introduced == []
    assert any("pinned packages only" in n for n in d.notes)
    # With both locks fresh the closure's findings are compared as before (lock-builds-from-source is closure-only).
    same = diff_files(old / "qwen25-a10g-flashinfer.toml", old / "qwen25-a10g-flashinfer.toml")
    assert not any("pinned packages only" in n for x in same for n in x.notes)


def test_fleet_floor_and_ceiling_priced(tmp_path: Path):
    old, new = _library_copy(tmp_path / "a"), _library_copy(tmp_path / "b")
    edit(new / "qwen25-h200-vllm020.toml", "max_containers = 2", "min_containers = 1\nmax_containers = 4")
    [d] = [x for x in diff_files(old / "qwen25-h200-vllm020.toml", new / "qwen25-h200-vllm020.toml") if x.changed]
    b, a = d.cost_before, d.cost_after
    assert (b.min_containers, b.max_containers, a.min_containers, a.max_containers) == (0, 2, 1, 4)
    assert a.floor_per_hour == a.price_per_hour and a.ceiling_per_hour == 4 * a.price_per_hour
    text = as_text([d], "t")
    assert "min_containers=1" in text and f"${a.floor_per_hour * 730:,.2f}/month" in text
    cost = d.as_dict()["cost"]["after"]
    assert cost["idle_floor_per_month_usd"] == round(a.price_per_hour * 730, 2) and cost["max_containers"] == 4
