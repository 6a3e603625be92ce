"""Where kit keeps its history and deploy locks, behind one interface: SQLite (default) or PostgreSQL.

The store is chosen, first match wins, by:
1. `KIT_STATE_URL`: postgresql://user@host:port/db (a team's store), or sqlite:///path/to/history.db;
2. `[state] url` in `kit.toml` at the repository's root (the directory holding .git, found upwards
   from the current directory): committed, so it must not carry a password (kit refuses one);
3. the SQLite file `$KIT_STATE_DIR/history.db` (default: the platform state directory, ~/.local/state/kit on Linux).

Both backends hold the same schema through the same migrations (kit.state.schema); kit.history reads
and writes either through a connection with one small interface (execute, begin/commit/rollback,
has_table, columns, explain, describe), and kit.deploylock adds the backend's own lock.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from kit.errors import UsageError
from kit.state.base import StoreError, mask_url, url_password

if TYPE_CHECKING:
    from kit.history import History

SETTINGS_FILE = "kit.toml"


@dataclass
class Location:
    backend: str  # sqlite | postgres
    source: str  # what chose it: KIT_STATE_URL, kit.toml's path, KIT_STATE_DIR, default
    url: str | None = None  # postgres: the full URL (may carry a password: never print it; use `shown`)
    path: Path | None = None  # sqlite: the history.db file

    @property
    def shown(self) -> str:
        return mask_url(self.url) if self.url else str(self.path)

    @property
    def exists(self) -> bool | None:
        """SQLite: whether the file exists; PostgreSQL: None (ask the server)."""
        return self.path.exists() if self.path is not None else None


def parse(url: str, source: str) -> Location:
    """A Location from a store URL, or a UsageError that names where the URL came from."""
    if url.startswith(("postgresql://", "postgres://")):
        return Location("postgres", source, url=url)
    if url.startswith("sqlite:///"):
        path = Path(url[len("sqlite://"):])
        return Location("sqlite", source, path=path if path.suffix == ".db" else path / "history.db")
    raise UsageError(
        f"{source}: {mask_url(url)!r} is not a store URL kit knows",
        fix="write postgresql://USER@HOST:PORT/DATABASE (a team's store) or sqlite:///PATH/history.db",
    )


def repository_root(start: Path) -> Path | None:
    for folder in (start, *start.parents):
        if (folder / ".git").exists() or (folder / SETTINGS_FILE).is_file():
            return folder
    return None


def _from_settings_file(start: Path) -> Location | None:
    root = repository_root(start)
    if root is None or not (root / SETTINGS_FILE).is_file():
        return None
    path = root / SETTINGS_FILE
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise UsageError(f"cannot read {path}: {exc}", fix="fix the file's TOML (see docs/state.md)") from None
    state = data.get("state")
    if state is None:
        return None
    url = state.get("url") if isinstance(state, dict) else None
    if not isinstance(url, str) or not url:
        raise UsageError(f"{path}: state.url must be a store URL", fix='write [state] url = "postgresql://USER@HOST:PORT/DATABASE"')
    if url_password(url):
        raise UsageError(
            f"{path}: state.url carries a password, in a file that is committed",
            fix="remove it from the URL; give it through PGPASSWORD, ~/.pgpass, or KIT_STATE_URL from a secret (docs/state.md)",
        )
    return parse(url, f"{path} [state] url")


def locate(cwd: Path | None = None) -> Location:
    """The store this command uses (see the module's docstring for the order)."""
    url = os.environ.get("KIT_STATE_URL", "").strip()
    if url:
        return parse(url, "KIT_STATE_URL")
    found = _from_settings_file((cwd or Path.cwd()).resolve())
    if found is not None:
        return found
    from kit.settings import Settings

    source = "KIT_STATE_DIR" if os.environ.get("KIT_STATE_DIR") else "default"
    return Location("sqlite", source, path=Settings().state_dir / "history.db")


def open_history(location: Location | None = None, *, readonly: bool = False) -> History | None:
    """The history at `location` (default: `locate()`); None for a read-only look at a store that holds none yet."""
    from kit.history import History

    location = location or locate()
    if location.backend == "sqlite":
        assert location.path is not None
        if readonly and not location.path.exists():
            return None
        if location.path.name == "history.db":
            return History.open(location.path.parent, readonly=readonly)
        from kit.state.sqlite import SQLiteConnection

        return History(SQLiteConnection(location.path, readonly=readonly), readonly=readonly)
    from kit.state.postgres import PostgresConnection

    conn = PostgresConnection(location.url or "", readonly=readonly)
    if readonly and not conn.has_table("_kit_migrations"):
        conn.close()
        return None
    return History(conn, readonly=readonly)


__all__ = ["Location", "StoreError", "locate", "open_history", "parse", "mask_url"]
