"""One deploy or rollback per app at a time, on either backend; a lock row names the holder.

The row in `deploy_locks` names the holder (pid, host, start time, command): `kit status` shows it.

SQLite (one machine): the row is the lock. A holder on this host whose process is gone (or whose pid
now belongs to a process started after the lock was taken: a reused pid) left a stale lock: kit says
so and breaks it only when asked (`--break-lock`), never silently, and never while the holder runs.

PostgreSQL (a team): the lock is a session advisory lock that the server holds for the holder's
connection, and releases the moment that connection ends, whatever killed the process. A row whose
advisory lock is free was left by a dead holder: the next deploy takes over without --break-lock. A
live holder's lock is never taken, --break-lock or not.

Taking over a lock resolves what the dead process left pending, so history never keeps a revision
that no process will finish.
"""

from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from kit.errors import OperationError
from kit.history import History, now


@dataclass
class LockHolder:
    app: str
    pid: int
    host: str
    acquired_at: str
    command: str
    # PostgreSQL: whether the holder's database session still holds the lock (the server knows); None on SQLite.
    session_alive: bool | None = None

    @property
    def alive(self) -> bool | None:
        """True or False where kit can tell (PostgreSQL; SQLite on this host); None otherwise."""
        if self.session_alive is not None:
            return self.session_alive
        if self.host != socket.gethostname():
            return None
        return pid_alive(self.pid) and not self.pid_reused

    @property
    def pid_reused(self) -> bool:
        """The pid runs, but as a process that started after this lock was taken: not the holder."""
        started = process_started(self.pid)
        try:
            taken = datetime.fromisoformat(self.acquired_at).timestamp()
        except ValueError:
            return False
        return started is not None and started > taken + 2  # acquired_at has whole seconds; ticks are coarse

    def describe(self) -> str:
        return f"pid {self.pid} on {self.host} since {self.acquired_at} ({self.command})"


class LockHeld(OperationError):
    """Another live process deploys or rolls back this app."""


class StaleLock(OperationError):
    """A process that no longer runs still holds the app's lock."""


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    except OverflowError:
        return False
    # A zombie (killed, not yet reaped by its parent) still answers kill(0); it runs no more code.
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
            state = fh.read().rpartition(")")[2].split()[0]
        return state not in ("Z", "X")
    except (OSError, IndexError):
        return True


def process_started(pid: int) -> float | None:
    """When process `pid` started (Unix time), from /proc; None where kit cannot tell."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
            ticks = int(fh.read().rpartition(")")[2].split()[19])
        with open("/proc/stat", encoding="ascii") as fh:
            boot = next(int(line.split()[1]) for line in fh if line.startswith("btime "))
        return boot + ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, StopIteration):
        return None


def _lock_name(app: str) -> str:
    return f"deploy:{app}"


def _is_postgres(history: History) -> bool:
    return history.db.dialect == "postgres"


def holder(history: History, app: str) -> LockHolder | None:
    rows = history._query("SELECT app, pid, host, acquired_at, command FROM deploy_locks WHERE app = ?", (app,))
    if not rows:
        return None
    held = LockHolder(**dict(rows[0]))
    if _is_postgres(history):
        held.session_alive = history.db.session_lock_held(_lock_name(app))
    return held


def _why_not_running(held: LockHolder) -> str:
    if held.pid_reused:
        return f"that process is no longer running (pid {held.pid} now belongs to a process started after the lock was taken)"
    return "that process is no longer running"


def acquire(history: History, app: str, command: str, *, break_lock: bool = False) -> list[int]:
    """Take `app`'s lock for this process. Returns the numbers of orphaned pending revisions it resolved."""
    if _is_postgres(history):
        return _acquire_session_lock(history, app, command, break_lock)
    with history.transaction() as db:
        row = db.execute("SELECT app, pid, host, acquired_at, command FROM deploy_locks WHERE app = ?", (app,)).fetchone()
        if row is not None:
            held = LockHolder(**dict(row))
            if held.pid == os.getpid() and held.host == socket.gethostname():
                raise OperationError(f"this process already holds the lock of {app}", fix="this is a bug in kit")
            alive = held.alive
            if alive:
                raise LockHeld(
                    f"another kit process is deploying or rolling back {app}: {held.describe()}"
                    + ("; --break-lock never takes a lock from a process that still runs" if break_lock else ""),
                    fix="wait for it to finish (`kit status` shows its pending revision), then run this again",
                )
            if not break_lock:
                why = _why_not_running(held) if alive is False else "kit cannot tell from here whether it still runs"
                left = [f"r{r[0]}" for r in db.execute("SELECT number FROM revisions WHERE app = ? AND status = 'pending'", (app,))]
                pending = f"; it left {', '.join(left)} pending" if left else ""
                raise StaleLock(
                    f"{app} is locked by {held.describe()}, and {why}{pending}",
                    fix="if no deploy of this app is running anywhere, run the same command with --break-lock "
                    "(its pending revision is then marked failed)",
                )
            db.execute("DELETE FROM deploy_locks WHERE app = ?", (app,))
            History._event(db, app, 0, "lock-broken", f"lock of {held.describe()} broken by pid {os.getpid()}")
        resolved = _resolve_orphans(db, app)
        _insert_row(db, app, command)
    return resolved


def _acquire_session_lock(history: History, app: str, command: str, break_lock: bool) -> list[int]:
    conn = history.db
    if not conn.try_session_lock(_lock_name(app)):
        held = holder(history, app)
        who = held.describe() if held is not None else "a kit process that is taking it right now"
        raise LockHeld(
            f"another kit process is deploying or rolling back {app}: {who}; the database holds its lock while that process's connection lives"
            + ("; --break-lock never takes a lock from a process that still runs" if break_lock else ""),
            fix="wait for it to finish (`kit status` shows who holds it), then run this again",
        )
    try:
        with history.transaction() as db:
            row = db.execute("SELECT app, pid, host, acquired_at, command FROM deploy_locks WHERE app = ?", (app,)).fetchone()
            if row is not None:  # its holder's connection ended without releasing it: the process died
                held = LockHolder(**dict(row))
                db.execute("DELETE FROM deploy_locks WHERE app = ?", (app,))
                History._event(db, app, 0, "lock-freed", f"lock of {held.describe()} freed by the database when its connection ended; taken by pid {os.getpid()}")
            resolved = _resolve_orphans(db, app)
            _insert_row(db, app, command)
        return resolved
    except BaseException:
        _unlock_quietly(history, app)
        raise


def _resolve_orphans(db: Any, app: str) -> list[int]:
    # Any pending revision now has no process to finish it: the lock's holder is the only writer.
    resolved = []
    for rev in db.execute("SELECT number, pid, host FROM revisions WHERE app = ? AND status = 'pending'", (app,)).fetchall():
        note = f"interrupted: the kit process (pid {rev['pid']} on {rev['host']}) stopped before this revision finished"
        db.execute("UPDATE revisions SET status = 'failed', error = ?, finished_at = ? WHERE app = ? AND number = ?", (note, now(), app, rev["number"]))
        History._event(db, app, rev["number"], "failed", note)
        resolved.append(rev["number"])
    return resolved


def _insert_row(db: Any, app: str, command: str) -> None:
    db.execute(
        "INSERT INTO deploy_locks (app, pid, host, acquired_at, command) VALUES (?, ?, ?, ?, ?)",
        (app, os.getpid(), socket.gethostname(), now(), command),
    )


def release(history: History, app: str) -> None:
    try:
        with history.transaction() as db:
            db.execute("DELETE FROM deploy_locks WHERE app = ? AND pid = ? AND host = ?", (app, os.getpid(), socket.gethostname()))
    finally:
        if _is_postgres(history):
            _unlock_quietly(history, app)


def _unlock_quietly(history: History, app: str) -> None:
    # A connection that is gone has released its session locks with it: nothing is left to undo.
    try:
        history.db.unlock_session(_lock_name(app))
    except history.db.database_errors:
        pass


def wait_until_free(history: History, app: str, timeout: float) -> bool:
    """Whether `app`'s lock is free (or its holder dead) within `timeout` seconds; for tests and scripts."""
    deadline = time.monotonic() + timeout
    while True:
        held = holder(history, app)
        if held is None or held.alive is False or time.monotonic() > deadline:
            return held is None or held.alive is False
        time.sleep(0.05)
