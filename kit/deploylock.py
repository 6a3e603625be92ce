"""One deploy or rollback per app at a time: a lock row in the history database.

The row names the holder (pid, host, start time, command). A holder on this host whose pid is gone
left a stale lock: kit says so and breaks it only when asked (`--break-lock`); it never does silently.
Breaking a lock also resolves what the dead process left pending, so history never keeps a revision
that no process will finish.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass

from kit.errors import OperationError
from kit.history import History, now


@dataclass
class LockHolder:
    app: str
    pid: int
    host: str
    acquired_at: str
    command: str

    @property
    def alive(self) -> bool | None:
        """True or False on this host; None when another host holds it (kit cannot tell)."""
        if self.host != socket.gethostname():
            return None
        return pid_alive(self.pid)

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
    # A zombie (killed, not yet reaped by its parent) still answers kill(0); it runs no more code.
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
            state = fh.read().rpartition(")")[2].split()[0]
        return state not in ("Z", "X")
    except (OSError, IndexError):
        return True


def holder(history: History, app: str) -> LockHolder | None:
    rows = history._query("SELECT app, pid, host, acquired_at, command FROM deploy_locks WHERE app = ?", (app,))
    return LockHolder(**dict(rows[0])) if rows else None


def acquire(history: History, app: str, command: str, *, break_lock: bool = False) -> list[int]:
    """Take `app`'s lock for this process. Returns the numbers of orphaned pending revisions it resolved."""
    resolved: list[int] = []
    with history.transaction() as db:
        row = db.execute("SELECT app, pid, host, acquired_at, command FROM deploy_locks WHERE app = ?", (app,)).fetchone()
        if row is not None:
            held = LockHolder(**dict(row))
            alive = held.alive
            if held.pid == os.getpid() and held.host == socket.gethostname():
                raise OperationError(f"this process already holds the lock of {app}", fix="this is a bug in kit")
            if not break_lock:
                if alive:
                    raise LockHeld(
                        f"another kit process is deploying or rolling back {app}: {held.describe()}",
                        fix="wait for it to finish (`kit status` shows its pending revision), then run this again",
                    )
                why = "that process is no longer running" if alive is False else "kit cannot tell from here whether it still runs"
                left = [f"r{r[0]}" for r in db.execute("SELECT number FROM revisions WHERE app = ? AND status = 'pending'", (app,))]
                pending = f"; it left {', '.join(left)} pending" if left else ""
                raise StaleLock(
                    f"{app} is locked by {held.describe()}, and {why}{pending}",
                    fix="if no deploy of this app is running anywhere, run the same command with --break-lock "
                    "(its pending revision is then marked failed)",
                )
            db.execute("DELETE FROM deploy_locks WHERE app = ?", (app,))
            History._event(db, app, 0, "lock-broken", f"lock of {held.describe()} broken by pid {os.getpid()}")
        # Any pending revision now has no process to finish it: the lock's holder is the only writer.
        for rev in db.execute("SELECT number, pid, host FROM revisions WHERE app = ? AND status = 'pending'", (app,)).fetchall():
            note = f"interrupted: the kit process (pid {rev['pid']} on {rev['host']}) stopped before this revision finished"
            db.execute("UPDATE revisions SET status = 'failed', error = ?, finished_at = ? WHERE app = ? AND number = ?", (note, now(), app, rev["number"]))
            History._event(db, app, rev["number"], "failed", note)
            resolved.append(rev["number"])
        db.execute(
            "INSERT INTO deploy_locks (app, pid, host, acquired_at, command) VALUES (?, ?, ?, ?, ?)",
            (app, os.getpid(), socket.gethostname(), now(), command),
        )
    return resolved


def release(history: History, app: str) -> None:
    with history.transaction() as db:
        db.execute("DELETE FROM deploy_locks WHERE app = ? AND pid = ? AND host = ?", (app, os.getpid(), socket.gethostname()))
