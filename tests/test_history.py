"""The deploy history: real SQLite files in temporary directories."""

from __future__ import annotations

import os
import sqlite3

import pytest

from kit import deploylock
from kit.errors import OperationError
from kit.history import MIGRATIONS, History, HistoryError, Revision, now


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


def test_migrations_are_a_ledger_applied_once(tmp_path):
    h = History.open(tmp_path)
    assert h.applied_migrations() == [name for name, _ in MIGRATIONS]
    assert h.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    h.close()
    again = History.open(tmp_path)
    assert again.migrate() == []  # nothing to do the second time

    def m002(db):
        db.execute("ALTER TABLE revisions ADD COLUMN reviewer TEXT")

    assert again.migrate([*MIGRATIONS, ("002_reviewer", m002)]) == ["002_reviewer"]
    assert "reviewer" in [r[1] for r in again.db.execute("PRAGMA table_info(revisions)")]
    again.close()
    with pytest.raises(HistoryError, match="written by a newer kit"):
        History.open(tmp_path)  # this kit does not know 002_reviewer


def test_a_failed_migration_changes_nothing(tmp_path):
    h = History.open(tmp_path)

    def broken(db):
        db.execute("CREATE TABLE half (x)")
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        h.migrate([*MIGRATIONS, ("002_broken", broken)])
    assert h.applied_migrations() == ["001_revisions"]
    assert not h.db.execute("SELECT 1 FROM sqlite_master WHERE name = 'half'").fetchone()


def test_revision_round_trip_and_statuses(tmp_path):
    h = History.open(tmp_path)
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


def test_at_most_one_deployed_revision_per_app(tmp_path):
    h = History.open(tmp_path)
    deployed(h, "1" * 64)
    h.record_pending(revision(bundle="2" * 64))
    with pytest.raises(sqlite3.IntegrityError):
        h.db.execute("UPDATE revisions SET status = 'deployed' WHERE number = 2")


def test_rollback_target(tmp_path):
    h = History.open(tmp_path)
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


def test_readonly_open_does_not_create_or_write(tmp_path):
    h = History.open(tmp_path)
    deployed(h, "1" * 64)
    h.close()
    ro = History.open(tmp_path, readonly=True)
    assert ro.current("app").number == 1
    with pytest.raises(HistoryError):
        ro.record_pending(revision())


def test_deploy_lock_live_stale_and_broken(tmp_path):
    h = History.open(tmp_path)
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
