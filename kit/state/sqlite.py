"""The embedded backend: one SQLite file (`<state_dir>/history.db`), WAL, one write transaction at a time.

A new file is built under a private name (WAL switched on, the migrations ledger created) and linked
into place, so no kit process ever sees a half-made or empty history.db: a 0-byte file is someone
else's doing and is reported, never taken for a new history. A SQLite file that is not kit's (tables,
no ledger) is refused before anything is written to it, its journal mode included.
"""

from __future__ import annotations

import os
import sqlite3
import time
from pathlib import Path
from typing import Any

from kit.state.base import StoreBusy, StoreError
from kit.state.schema import LEDGER

BUSY_S = 10.0  # how long one statement waits for another process's write lock


class SQLiteConnection:
    dialect = "sqlite"
    database_errors: tuple[type[BaseException], ...] = (sqlite3.DatabaseError,)
    integrity_errors: tuple[type[BaseException], ...] = (sqlite3.IntegrityError,)

    def __init__(self, path: Path, *, readonly: bool = False):
        self.path = path
        self.where = str(path)
        self.readonly = readonly
        self.db = self._connect()

    # --- opening -------------------------------------------------------------------------------
    def _connect(self) -> sqlite3.Connection:
        if not self.readonly and not self.path.exists():
            self._create()
        self._refuse_empty()
        try:
            db = self._connect_readonly() if self.readonly else sqlite3.connect(self.path, timeout=BUSY_S, isolation_level=None)
            db.row_factory = sqlite3.Row
            db.execute(f"PRAGMA busy_timeout = {int(BUSY_S * 1000)}")
            tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}  # reads the header: a corrupt file fails here
        except sqlite3.DatabaseError as exc:
            raise self.explain(exc) from None
        if tables and "_kit_migrations" not in tables:
            db.close()
            shown = ", ".join(sorted(tables)[:5]) + (", ..." if len(tables) > 5 else "")
            raise StoreError(
                f"{self.path} is a SQLite database, but not kit's deploy history (its tables: {shown}); kit left it untouched",
                fix="point KIT_STATE_DIR at kit's own state directory, or move this file aside",
            )
        if not self.readonly:
            self._wal(db)
        try:
            db.execute("PRAGMA foreign_keys = ON")
        except sqlite3.DatabaseError as exc:
            raise self.explain(exc) from None
        return db

    def _create(self) -> None:
        """Build a new history under a private name and link it into place: never a half-made file."""
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.new")
        try:
            db = sqlite3.connect(tmp, isolation_level=None)
            try:
                db.execute("PRAGMA journal_mode=WAL")
                db.execute(LEDGER)
            finally:
                db.close()  # the last connection checkpoints: everything is in the main file
            try:
                os.link(tmp, self.path)
            except FileExistsError:
                pass  # another kit process made it first: use theirs
        except (OSError, sqlite3.DatabaseError) as exc:
            if isinstance(exc, sqlite3.DatabaseError):
                raise self.explain(exc) from None
            raise StoreError(f"cannot create the deploy history {self.path}: {exc.strerror or exc}", fix="make its directory writable, or set KIT_STATE_DIR") from None
        finally:
            for leftover in (tmp, tmp.with_name(tmp.name + "-wal"), tmp.with_name(tmp.name + "-shm")):
                leftover.unlink(missing_ok=True)

    def _refuse_empty(self) -> None:
        try:
            empty = self.path.stat().st_size == 0
            wal = self.path.with_name(self.path.name + "-wal")
            empty = empty and (not wal.exists() or wal.stat().st_size == 0)
        except OSError:
            return  # missing or unreadable: connecting says which, in its own words
        if empty:
            raise StoreError(
                f"the deploy history {self.path} is an empty file (0 bytes): kit never leaves one, so it was truncated or "
                "made by something else; it holds no revisions, and kit will not start a new history over it",
                fix="restore it from a backup; if it never held anything, delete it and kit starts a new history at r1",
            )

    def _wal(self, db: sqlite3.Connection) -> None:
        """Switch to WAL (a no-op once it is): retried, since the switch can answer 'locked' at once."""
        deadline = time.monotonic() + BUSY_S
        while True:
            try:
                if db.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                    db.execute("PRAGMA journal_mode=WAL")
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) and "busy" not in str(exc) or time.monotonic() > deadline:
                    db.close()
                    raise self.explain(exc) from None
                time.sleep(0.05)

    def _connect_readonly(self) -> sqlite3.Connection:
        uri = f"file:{self.path}?mode=ro"
        db = sqlite3.connect(uri, uri=True, timeout=BUSY_S, isolation_level=None)
        try:
            db.execute("SELECT count(*) FROM sqlite_master").fetchone()
            return db
        except sqlite3.OperationalError:
            # A WAL database in a directory we cannot write (no -shm file can be made): read it as an
            # immutable snapshot rather than not at all.
            db.close()
            return sqlite3.connect(f"file:{self.path}?immutable=1", uri=True, isolation_level=None)

    def explain(self, exc: BaseException) -> StoreError:
        msg = str(exc)
        if "readonly" in msg or "read-only" in msg:
            return StoreError(
                f"the deploy history {self.path} is read-only ({msg}); nothing was deployed or changed",
                fix="make the file and its directory writable, or set KIT_STATE_DIR to a writable copy",
            )
        if "full" in msg:
            return StoreError(f"the deploy history {self.path} could not be written: {msg}", fix="free space on its disk, then retry")
        if isinstance(exc, sqlite3.OperationalError) and ("unable to open" in msg or "disk I/O" in msg):
            return StoreError(f"cannot open the deploy history {self.path}: {msg}", fix="check that the file and its directory exist and are writable, or set KIT_STATE_DIR")
        if "locked" in msg or "busy" in msg:
            return StoreBusy(f"the deploy history {self.path} stayed locked by another process for {BUSY_S:g} s: {msg}", fix="wait for the other kit command to finish, then retry")
        return StoreError(
            f"the deploy history {self.path} is not a readable SQLite database ({msg}); kit left it untouched",
            fix="restore it from a backup, or move it aside (kit then starts a new, empty history); kit never deletes it",
        )

    # --- statements ----------------------------------------------------------------------------
    def execute(self, sql: str, args: tuple[Any, ...] | list[Any] = ()) -> sqlite3.Cursor:
        return self.db.execute(sql, args)

    def begin(self) -> None:
        self.db.execute("BEGIN IMMEDIATE")  # the write lock up front: two writers never interleave

    def commit(self) -> None:
        self.db.execute("COMMIT")

    def rollback(self) -> None:
        if self.db.in_transaction:
            self.db.execute("ROLLBACK")

    @property
    def in_transaction(self) -> bool:
        return self.db.in_transaction

    def has_table(self, name: str) -> bool:
        return bool(self.db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,)).fetchone())

    def columns(self, table: str) -> list[str]:
        return [r[1] for r in self.db.execute(f"PRAGMA table_info({table})")]

    def describe(self) -> dict[str, Any]:
        return {"backend": "sqlite", "location": str(self.path), "server": f"SQLite {sqlite3.sqlite_version} (embedded)"}

    def close(self) -> None:
        self.db.close()
