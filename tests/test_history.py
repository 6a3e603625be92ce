"""The deploy history: real SQLite files in temporary directories, and a real PostgreSQL server.

Tests that take `state` run on both backends (tests/statefixtures.py); the rest are about the SQLite
file itself (its journal, a corrupt or read-only file).
"""

from __future__ import annotations

import os

import pytest

from kit import deploylock
from kit import history_db as kh
from kit.errors import OperationError
from kit.history import BenchRun, History, HistoryError, Revision, now
from kit.history_db import MIGRATIONS


def revision(app: str = "app", bundle: str = "a" * 64, **kw) -> Revision:
    fields = dict(
        app=app, number=0, status="pending", kind="deploy", profile_name="p", profile_path="profiles/p.toml", profile={"app": {"name": app}},
        profile_texts={"profiles/p.toml": "name = 'p'\n"}, profile_hash="h" * 64, bundle_files={"app.py": "import modal\n"}, bundle_hash=bundle,
        manifest={"bundle_hash": bundle}, kit_version="0.1.0", created_by="tester", host="host", pid=os.getpid(), created_at=now(), modal_tag="kit-r{number}-" + bundle[:12],
    )
    fields.update(kw)
    return Revision(**fields)


def deployed(h: History, bundle: str, app: str = "app") -> Revision:
    rev = h.record_pending(revision(app, bundle))
    h.mark_deployed(app, rev.number)
    return h.get(app, rev.number)


def test_migrations_are_a_ledger_applied_once(state):
    h = state.open()
    assert h.applied_migrations() == [name for name, _ in MIGRATIONS]
    if state.backend == "sqlite":
        assert h.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    h.close()
    again = state.open()
    assert again.migrate() == []  # nothing to do the second time

    def m099(db):
        db.execute("ALTER TABLE revisions ADD COLUMN reviewer TEXT")

    assert again.migrate([*MIGRATIONS, ("099_reviewer", m099)]) == ["099_reviewer"]
    assert "reviewer" in again.db.columns("revisions")
    again.close()
    with pytest.raises(HistoryError, match="written by a newer kit"):
        state.open()  # this kit does not know 099_reviewer


def test_a_failed_migration_changes_nothing(state):
    h = state.open()

    def broken(db):
        db.execute("CREATE TABLE half (x INTEGER)")
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        h.migrate([*MIGRATIONS, ("099_broken", broken)])
    assert h.applied_migrations() == [name for name, _ in MIGRATIONS]
    assert not h.db.has_table("half")


def test_revision_round_trip_and_statuses(state):
    h = state.open()
    r1 = h.record_pending(revision(bundle="1" * 64, lock_text="a==1\n", git_commit="abc", git_dirty=True))
    assert (r1.number, r1.status, r1.modal_tag) == (1, "pending", "kit-r1-111111111111")
    h.update("app", 1, modal_version="v1", urls={"Inference.health": "https://h"}, smoke={"ok": True, "checks": []})
    h.mark_deployed("app", 1)
    r2 = h.record_pending(revision(bundle="2" * 64))
    replaced = h.mark_deployed("app", 2)
    assert replaced is not None and replaced.number == 1
    got = h.get("app", 1)
    assert (got.status, got.modal_version, got.git_dirty, got.lock_text, got.urls) == ("superseded", "v1", True, "a==1\n", {"Inference.health": "https://h"})
    assert got.bundle_files == {"app.py": "import modal\n"} and got.profile_texts == {"profiles/p.toml": "name = 'p'\n"}
    assert h.current("app").number == r2.number
    assert [e.status for e in h.events("app", 1)] == ["pending", "deployed", "superseded"]


def test_at_most_one_deployed_revision_per_app(state):
    h = state.open()
    deployed(h, "1" * 64)
    h.record_pending(revision(bundle="2" * 64))
    with pytest.raises(state.integrity_error):
        h.db.execute("UPDATE revisions SET status = 'deployed' WHERE number = 2")


def test_rollback_target(state):
    h = state.open()
    with pytest.raises(OperationError, match="no earlier good revision"):
        h.rollback_target("app")
    deployed(h, "1" * 64)
    with pytest.raises(OperationError, match="no earlier good revision.*current revision is r1"):
        h.rollback_target("app")
    deployed(h, "2" * 64)
    failed = h.record_pending(revision(bundle="3" * 64))
    h.mark_failed("app", failed.number, "smoke test failed")
    assert h.rollback_target("app").number == 1  # skips the failed r3
    with pytest.raises(OperationError, match="r3 of app is failed"):
        h.rollback_target("app", 3)
    with pytest.raises(OperationError, match="already the deployed revision"):
        h.rollback_target("app", 2)
    with pytest.raises(OperationError, match="has no revision r9"):
        h.rollback_target("app", 9)
    # r4 redeploys r1's bundle: the next rollback goes further back than r1's twin, never to the same bundle.
    deployed(h, "1" * 64)
    assert h.rollback_target("app").number == 2


def test_corrupt_file_is_reported_and_left_untouched(tmp_path):
    db = tmp_path / "history.db"
    db.write_bytes(b"this is not a database, but it is someone's data\n" * 100)
    before = db.read_bytes()
    for readonly in (False, True):
        with pytest.raises(HistoryError, match="not a readable SQLite database.*left it untouched") as exc:
            History.open(tmp_path, readonly=readonly)
        assert "never deletes it" in exc.value.render()
    assert db.read_bytes() == before


def test_readonly_open_does_not_create_or_write(state):
    h = state.open()
    deployed(h, "1" * 64)
    h.close()
    ro = state.open(readonly=True)
    assert ro.current("app").number == 1
    with pytest.raises(HistoryError):
        ro.record_pending(revision())


def test_deploy_lock_live_stale_and_broken(tmp_path):
    h = History.open(tmp_path)  # SQLite: the row is the lock (tests/test_state.py has PostgreSQL's)
    assert deploylock.acquire(h, "app", "kit deploy x") == []
    # A second holder in this host while the first process lives: refused, clearly.
    h.db.execute("UPDATE deploy_locks SET pid = ?", (os.getppid(),))
    with pytest.raises(deploylock.LockHeld, match="another kit process is deploying"):
        deploylock.acquire(h, "app", "kit deploy y")
    # The holder died and left r1 pending: stale, named, broken only on request.
    rev = h.record_pending(revision())
    dead = _dead_pid()
    h.db.execute("UPDATE deploy_locks SET pid = ?", (dead,))
    h.db.execute("UPDATE revisions SET pid = ?", (dead,))
    with pytest.raises(deploylock.StaleLock, match=f"pid {dead}.*no longer running; it left r1 pending") as exc:
        deploylock.acquire(h, "app", "kit deploy y")
    assert "--break-lock" in exc.value.render()
    assert h.get("app", rev.number).status == "pending"
    assert deploylock.acquire(h, "app", "kit deploy y", break_lock=True) == [1]
    got = h.get("app", 1)
    assert got.status == "failed" and "interrupted" in got.error
    assert deploylock.holder(h, "app").pid == os.getpid()
    deploylock.release(h, "app")
    assert deploylock.holder(h, "app") is None


def test_lock_held_on_another_host_is_not_judged(tmp_path):
    h = History.open(tmp_path)
    h.db.execute("INSERT INTO deploy_locks VALUES ('app', 1, 'elsewhere', '2026-01-01T00:00:00+00:00', 'kit deploy')")
    with pytest.raises(deploylock.StaleLock, match="cannot tell from here"):
        deploylock.acquire(h, "app", "kit deploy")


def _dead_pid() -> int:
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


# --- bench runs (migration 002) ----------------------------------------------------------------


def bench_run(app: str = "app", number: int = 1, p50: float | None = 0.5, **kw) -> BenchRun:
    levels = [{"concurrency": 1, "requests": 8, "ok": 8, "errors": 0, "latency_p50_s": p50}, {"concurrency": 4, "requests": 8, "ok": 7, "errors": 1, "latency_p50_s": 0.9}]
    fields = dict(
        app=app, number=number, at=now(), created_by="tester", host="host", kit_version="0.1.0", target="http://127.0.0.1:9", mode="class",
        workload={"prompt": "p", "max_tokens": 64, "schema": True}, levels=levels, requests=16, errors=1, model="m", gpu="A10G",
        best_requests_per_s=4.2, latency_p50_s_c1=p50, output_tokens_per_s_c1=30.5, strict_json_share=0.9333,
    )
    fields.update(kw)
    return BenchRun(**fields)


def test_bench_runs_are_stored_with_their_revision(state):
    h = state.open()
    deployed(h, "1" * 64)
    deployed(h, "2" * 64)
    first = h.record_bench(bench_run(number=1, p50=0.4))
    h.record_bench(bench_run(number=2, p50=None, errors=8))  # every request at concurrency 1 failed: stored all the same
    newest = h.record_bench(bench_run(number=1, p50=0.3))
    assert (first.id, newest.id) == (1, 3)
    got = h.bench_runs("app")
    assert [(r.number, r.latency_p50_s_c1, r.errors) for r in got] == [(1, 0.4, 1), (2, None, 8), (1, 0.3, 1)]
    assert got[0].levels == first.levels and got[0].workload == first.workload and got[0].as_dict() == first.as_dict()
    assert h.bench_runs("app", 2)[0].errors == 8 and h.bench_runs("other") == []
    latest = h.latest_bench("app")
    assert {k: v.id for k, v in latest.items()} == {("app", 1): 3, ("app", 2): 2}
    assert "levels" not in latest[("app", 1)].summary()
    # measured latency: runs with a p50 at concurrency 1, on revisions that passed their smoke test, the current one's first
    assert [(run.id, rev.number) for run, rev in h.measured_runs("app")] == [(3, 1), (1, 1)]  # r2's only run measured nothing
    h.record_bench(bench_run(number=2, p50=0.7))
    assert [(run.id, rev.number) for run, rev in h.measured_runs("app")] == [(4, 2), (3, 1), (1, 1)]
    with pytest.raises(OperationError, match="no revision r9"):
        h.record_bench(bench_run(number=9))
    assert len(h.bench_runs()) == 4  # the refused run left nothing behind


def test_a_v1_history_is_upgraded_in_place(state, monkeypatch):
    # A database as the kit before bench runs wrote it: only migration 001 in the ledger.
    monkeypatch.setattr(kh, "MIGRATIONS", MIGRATIONS[:1])
    old = state.open()
    deployed(old, "1" * 64)
    old.update("app", 1, smoke={"ok": True, "checks": []}, urls={"Inference.health": "https://h"})
    before = old.get("app", 1)
    assert old.applied_migrations() == ["001_revisions"]
    old.close()
    monkeypatch.undo()

    # A read-only look (kit history, kit diff) reads it as it is: no upgrade, no bench runs.
    ro = state.open(readonly=True)
    assert ro.applied_migrations() == ["001_revisions"] and ro.get("app", 1) == before
    assert ro.bench_runs() == [] and ro.latest_bench() == {} and ro.measured_runs("app") == []
    ro.close()

    # The first open that may write applies 002 (and what came after); the revision is as it was, and runs can be stored.
    h = state.open()
    assert h.applied_migrations() == [name for name, _ in MIGRATIONS]
    assert h.get("app", 1) == before and h.events("app", 1)[0].status == "pending"
    assert h.db.has_table("bench_runs")
    h.record_bench(bench_run(number=1))
    assert [r.number for r in h.bench_runs("app")] == [1]
    h.close()
