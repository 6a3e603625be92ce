"""The history store under test, on each backend: `state` runs a test on SQLite and on PostgreSQL.

PostgreSQL is a real server (.ci/postgres installs and starts Debian's package): KIT_TEST_POSTGRES_URL
names its test database, and each test gets a schema of its own (dropped after), reached through the
URL's `options=-csearch_path=...`, so tests never see each other's rows or advisory locks. Without the
variable the PostgreSQL half is skipped here, and fails in CI (CI=true): never a silent skip there.
"""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import pytest

# Read at import: the suite's autouse fixture removes every KIT_* variable from each test's environment.
POSTGRES_URL = os.environ.get("KIT_TEST_POSTGRES_URL")


def require_postgres() -> str:
    if POSTGRES_URL:
        return POSTGRES_URL
    if os.environ.get("CI") == "true":
        pytest.fail("KIT_TEST_POSTGRES_URL is not set: in CI the PostgreSQL tests must run (.ci/run starts the server)")
    pytest.skip("KIT_TEST_POSTGRES_URL not set (.ci/postgres starts a server and prints it)")


def with_schema(url: str, schema: str) -> str:
    sep = "&" if "?" in url else "?"
    return f"{url}{sep}options={quote(f'-csearch_path={schema}', safe='')}"


@dataclass
class Store:
    backend: str  # sqlite | postgres
    env: dict[str, str]  # what a `kit` subprocess needs to use this store
    url: str | None = None
    path: Path | None = None  # sqlite: the state directory
    opened: list = field(default_factory=list)

    def open(self, *, readonly: bool = False):
        from kit.history import History
        from kit.state import Location, open_history

        if self.backend == "sqlite":
            h = History.open(self.path, readonly=readonly)
        else:
            h = open_history(Location("postgres", "test", url=self.url), readonly=readonly)
        self.opened.append(h)
        return h

    @property
    def integrity_error(self) -> type[BaseException]:
        if self.backend == "sqlite":
            import sqlite3

            return sqlite3.IntegrityError
        import psycopg

        return psycopg.IntegrityError


@pytest.fixture
def postgres_schema():
    """A fresh schema in the test database: (URL that uses it, admin connection)."""
    import psycopg

    base = require_postgres()
    name = f"kit_t_{uuid.uuid4().hex[:12]}"
    admin = psycopg.connect(base, autocommit=True)
    admin.execute(f"CREATE SCHEMA {name}")
    try:
        yield with_schema(base, name)
    finally:
        admin.execute(f"DROP SCHEMA {name} CASCADE")
        admin.close()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def state(request, tmp_path):
    """The history store, once per backend."""
    if request.param == "sqlite":
        folder = tmp_path / "state"
        store = Store("sqlite", {"KIT_STATE_DIR": str(folder)}, path=folder)
    else:
        url = request.getfixturevalue("postgres_schema")
        store = Store("postgres", {"KIT_STATE_URL": url, "KIT_STATE_DIR": str(tmp_path / "unused-state")}, url=url)
    yield store
    for h in store.opened:
        try:
            h.close()
        except Exception:
            pass
