"""The store under kit.history, whichever backend holds it (kit.state: SQLite by default, PostgreSQL for a
team): one transaction per change, and a schema built by a ledger of migrations (`_kit_migrations`,
like sqlite-utils'), so an older kit's store is upgraded in place, never rebuilt."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from kit.state.base import StoreBusy, StoreError
from kit.state.schema import LEDGER, MIGRATIONS, READABLE_WITHOUT, Migration

__all__ = ["MIGRATIONS", "READABLE_WITHOUT", "Migration", "HistoryDatabase", "HistoryError", "now"]

HistoryError = StoreError
FIRST_OPEN_TRIES = 5  # a new store that many processes open at once: each try already waited out the busy timeout


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class HistoryDatabase:
    """One backend connection with kit's schema, migrated to the newest this kit knows on opening."""

    def __init__(self, conn: Any, *, readonly: bool = False):
        self.db = conn
        self.path = conn.where  # the file, or the URL with its password masked: what messages name
        self.readonly = readonly
        for attempt in range(1, FIRST_OPEN_TRIES + 1):
            try:
                self.migrate()
                break
            except StoreBusy as exc:
                if attempt == FIRST_OPEN_TRIES:
                    conn.close()
                    raise StoreBusy(f"{exc.message} (tried {attempt} times to apply kit's schema)", fix=exc.fix) from None
                time.sleep(0.1 * attempt)
            except BaseException:
                conn.close()
                raise

    def _explain(self, exc: BaseException) -> StoreError:
        return self.db.explain(exc)

    def close(self) -> None:
        self.db.close()

    @contextmanager
    def transaction(self) -> Iterator[Any]:
        """One write transaction, its write lock taken up front so two writers never interleave."""
        if self.readonly:
            raise HistoryError(f"the deploy history {self.path} was opened read-only", fix="this is a bug in kit")
        try:
            self.db.begin()
        except self.db.database_errors as exc:
            self.db.rollback()
            raise self._explain(exc) from None
        try:
            yield self.db
        except self.db.integrity_errors:
            self.db.rollback()
            raise  # a broken invariant is a bug in kit, not something to explain away
        except self.db.database_errors as exc:
            self.db.rollback()
            raise self._explain(exc) from None
        except BaseException:
            self.db.rollback()
            raise
        try:
            self.db.commit()
        except self.db.database_errors as exc:
            self.db.rollback()
            raise self._explain(exc) from None

    def _query(self, sql: str, args: tuple[Any, ...] = ()) -> list[Any]:
        try:
            return self.db.execute(sql, args).fetchall()
        except self.db.database_errors as exc:
            self.db.rollback()
            raise self._explain(exc) from None

    def _has_table(self, name: str) -> bool:
        try:
            return self.db.has_table(name)
        except self.db.database_errors as exc:
            raise self._explain(exc) from None

    # --- migrations ----------------------------------------------------------------------------
    def applied_migrations(self) -> list[str]:
        if not self._has_table("_kit_migrations"):
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
                db.execute(LEDGER)
                if db.execute("SELECT 1 FROM _kit_migrations WHERE name = ?", (name,)).fetchone():
                    continue  # another process applied it while we waited for the write lock
                fn(db)
                db.execute("INSERT INTO _kit_migrations (name, applied_at) VALUES (?, ?)", (name, now()))
            applied.append(name)
        return applied
