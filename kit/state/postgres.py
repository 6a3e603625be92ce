"""The team backend: kit's schema in a PostgreSQL database (psycopg 3), shared by every machine that deploys.

Chosen by a postgresql:// URL (KIT_STATE_URL, or `[state] url` in the repository's kit.toml). The
password may come from the URL, PGPASSWORD, ~/.pgpass (PGPASSFILE) or a Modal secret that sets one
of these: libpq reads them as psql does. kit never prints, stores or reports the password.

Writers are serialized per schema by a transaction advisory lock (SQLite's BEGIN IMMEDIATE, here),
and an app's deploy lock is a session advisory lock held for the whole deploy: the server releases it
the moment the holder's connection ends, so a killed CI runner never leaves a stale lock.
"""

from __future__ import annotations

import hashlib
from typing import Any

from kit.state.base import StoreError, mask_text, mask_url
from kit.state.schema import KIT_TABLES

CONNECT_TIMEOUT_S = 10


class Row(tuple):
    """A result row readable by index and by column name, and as a dict, as sqlite3.Row is."""

    def __new__(cls, names: tuple[str, ...], values: Any) -> Row:
        row = super().__new__(cls, values)
        row._names = names
        return row

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, str):
            return tuple.__getitem__(self, self._names.index(key))
        return tuple.__getitem__(self, key)

    def keys(self) -> list[str]:
        return list(self._names)


def _rows(cursor: Any) -> Any:
    names = tuple(c.name for c in cursor.description or ())
    return lambda values: Row(names, values)


def lock_key(schema: str, name: str) -> int:
    """A signed 64-bit advisory lock key for `name` in this schema (two schemas never collide)."""
    return int.from_bytes(hashlib.sha256(f"kit\0{schema}\0{name}".encode()).digest()[:8], "big", signed=True)


class PostgresConnection:
    dialect = "postgres"

    def __init__(self, url: str, *, readonly: bool = False):
        import psycopg

        self.url = url
        self.where = mask_url(url)
        self.readonly = readonly
        self.database_errors = (psycopg.Error,)
        self.integrity_errors = (psycopg.IntegrityError,)
        try:
            # Keepalives: a deploy holds its lock's connection idle through a long image build; they keep
            # NATs and firewalls from dropping it, and notice a server that went away.
            self.db = psycopg.connect(url, autocommit=True, connect_timeout=CONNECT_TIMEOUT_S, application_name="kit", keepalives=1, keepalives_idle=30, keepalives_interval=10, keepalives_count=3)
        except psycopg.Error as exc:
            raise self.explain(exc) from None
        self.db.row_factory = _rows
        try:
            self.schema = self.db.execute("SELECT current_schema()").fetchone()[0]
        except psycopg.Error as exc:
            raise self.explain(exc) from None
        if self.schema is None:
            self.db.close()
            raise StoreError(f"the search_path of {self.where} names no schema that exists", fix="create the schema, or fix `options=-csearch_path=...` in the URL")
        ours = {r[0] for r in self.execute("SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()")} & KIT_TABLES
        if ours and "_kit_migrations" not in ours:
            self.db.close()
            raise StoreError(
                f"schema {self.schema} of {self.where} holds tables named as kit's ({', '.join(sorted(ours))}) that kit did not make; kit left them untouched",
                fix="give kit a schema of its own: add `options=-csearch_path=kit` to the URL (docs/state.md)",
            )

    def explain(self, exc: BaseException) -> StoreError:
        import psycopg

        msg = mask_text(str(exc).strip(), self.url)
        if isinstance(exc, psycopg.OperationalError) and not getattr(exc, "sqlstate", None):
            return StoreError(
                f"cannot reach the shared deploy history {self.where}: {msg}",
                fix="check the host, port, database and user; the password comes from the URL, PGPASSWORD or ~/.pgpass; "
                "unset KIT_STATE_URL (or kit.toml's [state] url) to use the local history instead",
            )
        if isinstance(exc, psycopg.errors.InsufficientPrivilege):
            return StoreError(f"the shared deploy history {self.where} refused kit: {msg}", fix="grant the user CREATE and USAGE on its schema (docs/state.md)")
        if isinstance(exc, psycopg.errors.DiskFull):
            return StoreError(f"the shared deploy history {self.where} could not be written: {msg}", fix="free space on the database server, then retry")
        return StoreError(f"the shared deploy history {self.where} failed: {msg}", fix="see the database server's log; nothing was changed by this command")

    # --- statements ----------------------------------------------------------------------------
    def execute(self, sql: str, args: tuple[Any, ...] | list[Any] = ()) -> Any:
        # kit's SQL is written with ? placeholders, as sqlite3 takes them; psycopg takes %s.
        return self.db.execute(sql.replace("%", "%%").replace("?", "%s"), tuple(args))

    def begin(self) -> None:
        self.db.execute("BEGIN")
        self.db.execute("SELECT pg_advisory_xact_lock(%s)", (lock_key(self.schema, "writer"),))

    def commit(self) -> None:
        self.db.execute("COMMIT")

    def rollback(self) -> None:
        if self.in_transaction:
            self.db.execute("ROLLBACK")

    @property
    def in_transaction(self) -> bool:
        from psycopg.pq import TransactionStatus

        return self.db.info.transaction_status != TransactionStatus.IDLE

    def has_table(self, name: str) -> bool:
        return bool(self.execute("SELECT 1 FROM information_schema.tables WHERE table_schema = current_schema() AND table_name = ?", (name,)).fetchone())

    def columns(self, table: str) -> list[str]:
        rows = self.execute("SELECT column_name FROM information_schema.columns WHERE table_schema = current_schema() AND table_name = ? ORDER BY ordinal_position", (table,))
        return [r[0] for r in rows]

    def describe(self) -> dict[str, Any]:
        version = self.db.execute("SHOW server_version").fetchone()[0]
        return {"backend": "postgres", "location": self.where, "schema": self.schema, "server": f"PostgreSQL {version}"}

    # --- the deploy lock -----------------------------------------------------------------------
    def try_session_lock(self, name: str) -> bool:
        return bool(self.execute("SELECT pg_try_advisory_lock(?)", (lock_key(self.schema, name),)).fetchone()[0])

    def unlock_session(self, name: str) -> None:
        self.execute("SELECT pg_advisory_unlock(?)", (lock_key(self.schema, name),))

    def session_lock_held(self, name: str) -> bool:
        """Whether any live session (this one included) holds the advisory lock `name`."""
        key = lock_key(self.schema, name) & 0xFFFFFFFFFFFFFFFF
        row = self.execute(
            "SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND granted AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
            " AND classid::bigint = ? AND objid::bigint = ? AND objsubid = 1",
            (key >> 32, key & 0xFFFFFFFF),
        ).fetchone()
        return row is not None

    def close(self) -> None:
        self.db.close()
