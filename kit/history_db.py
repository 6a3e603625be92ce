"""The SQLite file under kit.history: WAL (or read-only), one transaction per change, and a schema built by
a ledger of migrations (`_kit_migrations`, like sqlite-utils'), so an older kit's file is upgraded in place, never rebuilt."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kit.errors import KitError


def _script(db: sqlite3.Connection, sql: str) -> None:
    """Run statements one by one: executescript() would COMMIT the migration's transaction halfway."""
    for statement in sql.split(";"):
        if statement.strip():
            db.execute(statement)


def _m001_revisions(db: sqlite3.Connection) -> None:
    _script(
        db,
        """
        CREATE TABLE revisions (
            id INTEGER PRIMARY KEY,
            app TEXT NOT NULL,
            number INTEGER NOT NULL,
            status TEXT NOT NULL CHECK (status IN ('pending', 'deployed', 'failed', 'superseded', 'rolled_back')),
            kind TEXT NOT NULL CHECK (kind IN ('deploy', 'rollback')),
            rollback_of INTEGER,
            environment TEXT,
            profile_name TEXT NOT NULL,
            profile_path TEXT NOT NULL,
            profile_json TEXT NOT NULL,
            profile_texts TEXT NOT NULL,
            profile_hash TEXT NOT NULL,
            lock_text TEXT,
            lock_hash TEXT,
            bundle_files TEXT NOT NULL,
            bundle_hash TEXT NOT NULL,
            manifest TEXT NOT NULL,
            kit_version TEXT NOT NULL,
            git_commit TEXT,
            git_dirty INTEGER,
            created_by TEXT NOT NULL,
            host TEXT NOT NULL,
            pid INTEGER NOT NULL,
            created_at TEXT NOT NULL,
            finished_at TEXT,
            modal_tag TEXT NOT NULL,
            modal_version TEXT,
            modal_app_id TEXT,
            urls TEXT NOT NULL DEFAULT '{}',
            smoke TEXT,
            error TEXT,
            UNIQUE (app, number)
        );
        -- The invariant everything else relies on: an app has at most one current revision.
        CREATE UNIQUE INDEX revisions_one_deployed ON revisions (app) WHERE status = 'deployed';
        CREATE TABLE events (
            id INTEGER PRIMARY KEY,
            app TEXT NOT NULL,
            number INTEGER NOT NULL,
            at TEXT NOT NULL,
            status TEXT NOT NULL,
            note TEXT NOT NULL DEFAULT ''
        );
        CREATE TABLE deploy_locks (
            app TEXT PRIMARY KEY,
            pid INTEGER NOT NULL,
            host TEXT NOT NULL,
            acquired_at TEXT NOT NULL,
            command TEXT NOT NULL
        );
        """
    )


def _m002_bench_runs(db: sqlite3.Connection) -> None:
    _script(
        db,
        """
        CREATE TABLE bench_runs (
            id INTEGER PRIMARY KEY,
            revision_id INTEGER NOT NULL REFERENCES revisions (id),
            at TEXT NOT NULL,
            created_by TEXT NOT NULL,
            host TEXT NOT NULL,
            kit_version TEXT NOT NULL,
            target TEXT NOT NULL,
            mode TEXT NOT NULL CHECK (mode IN ('class', 'openai')),
            model TEXT,
            gpu TEXT,
            gpu_count INTEGER NOT NULL DEFAULT 1,
            price_per_hour_usd REAL,
            workload TEXT NOT NULL,
            levels TEXT NOT NULL,
            requests INTEGER NOT NULL,
            errors INTEGER NOT NULL,
            best_requests_per_s REAL,
            latency_p50_s_c1 REAL,
            output_tokens_per_s_c1 REAL,
            strict_json_share REAL
        );
        CREATE INDEX bench_runs_by_revision ON bench_runs (revision_id, id);
        """
    )


Migration = tuple[str, Callable[[sqlite3.Connection], None]]
MIGRATIONS: list[Migration] = [("001_revisions", _m001_revisions), ("002_bench_runs", _m002_bench_runs)]
# Migrations a read-only open can do without: it reads what is there, and their tables read as empty.
READABLE_WITHOUT = {"002_bench_runs"}


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class HistoryError(KitError):
    """The history database cannot be read or written. Nothing in it was changed."""

    exit_code = 2


class HistoryDatabase:
    """One SQLite file with kit's schema, migrated to the newest this kit knows on opening."""

    def __init__(self, path: Path, *, readonly: bool = False):
        self.path = path
        self.readonly = readonly
        self.db = self._connect()
        self.migrate()

    # --- opening -------------------------------------------------------------------------------
    def _connect(self) -> sqlite3.Connection:
        try:
            if self.readonly:
                db = self._connect_readonly()
            else:
                db = sqlite3.connect(self.path, timeout=10.0, isolation_level=None)
                db.execute("PRAGMA journal_mode=WAL")
            db.row_factory = sqlite3.Row
            db.execute("PRAGMA busy_timeout = 10000")
            db.execute("PRAGMA foreign_keys = ON")
            db.execute("SELECT count(*) FROM sqlite_master").fetchone()  # reads the header: catches a corrupt file now
            return db
        except sqlite3.DatabaseError as exc:
            raise self._explain(exc) from None

    def _connect_readonly(self) -> sqlite3.Connection:
        uri = f"file:{self.path}?mode=ro"
        db = sqlite3.connect(uri, uri=True, timeout=10.0, isolation_level=None)
        try:
            db.execute("SELECT count(*) FROM sqlite_master").fetchone()
            return db
        except sqlite3.OperationalError:
            # A WAL database in a directory we cannot write (no -shm file can be made): read it as an
            # immutable snapshot rather than not at all.
            db.close()
            return sqlite3.connect(f"file:{self.path}?immutable=1", uri=True, isolation_level=None)

    def _explain(self, exc: sqlite3.DatabaseError) -> HistoryError:
        msg = str(exc)
        if "readonly" in msg or "read-only" in msg:
            return HistoryError(
                f"the deploy history {self.path} is read-only ({msg}); nothing was deployed or changed",
                fix="make the file and its directory writable, or set KIT_STATE_DIR to a writable copy",
            )
        if isinstance(exc, sqlite3.OperationalError) and ("unable to open" in msg or "disk I/O" in msg):
            return HistoryError(f"cannot open the deploy history {self.path}: {msg}", fix="check that the file and its directory exist and are writable, or set KIT_STATE_DIR")
        if "locked" in msg or "busy" in msg:
            return HistoryError(f"the deploy history {self.path} stayed locked by another kit process for 10 s: {msg}", fix="wait for the other kit command to finish, then retry")
        return HistoryError(
            f"the deploy history {self.path} is not a readable SQLite database ({msg}); kit left it untouched",
            fix="restore it from a backup, or move it aside (kit then starts a new, empty history); kit never deletes it",
        )

    def close(self) -> None:
        self.db.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction, taken up front (BEGIN IMMEDIATE) so two writers never interleave."""
        if self.readonly:
            raise HistoryError(f"the deploy history {self.path} was opened read-only", fix="this is a bug in kit")
        try:
            self.db.execute("BEGIN IMMEDIATE")
        except sqlite3.DatabaseError as exc:
            raise self._explain(exc) from None
        try:
            yield self.db
        except sqlite3.IntegrityError:
            self.db.execute("ROLLBACK")
            raise  # a broken invariant is a bug in kit, not something to explain away
        except sqlite3.DatabaseError as exc:
            if self.db.in_transaction:
                self.db.execute("ROLLBACK")
            raise self._explain(exc) from None
        except BaseException:
            if self.db.in_transaction:
                self.db.execute("ROLLBACK")
            raise
        try:
            self.db.execute("COMMIT")
        except sqlite3.DatabaseError as exc:
            if self.db.in_transaction:
                self.db.execute("ROLLBACK")
            raise self._explain(exc) from None

    def _query(self, sql: str, args: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
        try:
            return self.db.execute(sql, args).fetchall()
        except sqlite3.DatabaseError as exc:
            raise self._explain(exc) from None

    def _has_table(self, name: str) -> bool:
        return bool(self._query("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,)))

    # --- migrations ----------------------------------------------------------------------------
    def applied_migrations(self) -> list[str]:
        has_ledger = self._query("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = '_kit_migrations'")
        if not has_ledger:
            return []
        return [r[0] for r in self._query("SELECT name FROM _kit_migrations ORDER BY name")]

    def migrate(self, migrations: list[Migration] | None = None) -> list[str]:
        """Apply the migrations not yet in the ledger, each in its own transaction; returns their names."""
        migrations = MIGRATIONS if migrations is None else migrations
        done = set(self.applied_migrations())
        pending = [(name, fn) for name, fn in migrations if name not in done]
        unknown = done - {name for name, _ in migrations}
        if unknown:
            raise HistoryError(
                f"the deploy history {self.path} was written by a newer kit (migrations {', '.join(sorted(unknown))})",
                fix="upgrade kit; this one would not understand it",
            )
        if not pending:
            return []
        if self.readonly and {name for name, _ in pending} <= READABLE_WITHOUT:
            return []  # written by an older kit: readable as it is, upgraded by the next command that writes
        if self.readonly:
            raise HistoryError(f"the deploy history {self.path} needs an upgrade that a read-only open cannot apply", fix="run any kit command that writes it (kit deploy --dry-run does not)")
        applied = []
        for name, fn in pending:
            with self.transaction() as db:
                db.execute("CREATE TABLE IF NOT EXISTS _kit_migrations (name TEXT PRIMARY KEY, applied_at TEXT NOT NULL)")
                if db.execute("SELECT 1 FROM _kit_migrations WHERE name = ?", (name,)).fetchone():
                    continue  # another process applied it while we waited for the write lock
                fn(db)
                db.execute("INSERT INTO _kit_migrations (name, applied_at) VALUES (?, ?)", (name, now()))
            applied.append(name)
        return applied
