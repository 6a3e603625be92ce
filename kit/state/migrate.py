"""`kit state migrate --to URL`: copy a history (the local SQLite one, usually) into another store.

Per app, all or nothing, in one transaction of the target: its revisions, events and bench runs, with
the same numbers and contents (surrogate ids are the target's own). Idempotent: an app the target
already holds identically is left as it is; one it holds differently is refused, naming the first
difference, and nothing of that app is written. Verified after the copy: for every app, the counts
and a SHA-256 over the rows (ids left out, bench runs keyed by their revision's number) are equal on
both sides, or the command fails.

A revision recorded before kit masked secret-looking values (kit.state.redact) is masked on its way
into the shared store: what is compared is the source as the target must hold it.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from kit.errors import OperationError
from kit.history import History

TABLES = ("revisions", "events", "bench_runs")


@dataclass
class AppCopy:
    app: str
    action: str  # copied | already there
    counts: dict[str, int]
    sha256: str


@dataclass
class MigrationReport:
    source: str
    target: str
    apps: list[AppCopy] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"source": self.source, "target": self.target, "apps": [a.__dict__ for a in self.apps]}


def _columns(history: History, table: str) -> list[str]:
    return [c for c in history.db.columns(table) if c not in ("id", "revision_id")] if history._has_table(table) else []


def app_rows(history: History, app: str, columns: dict[str, list[str]]) -> dict[str, list[dict[str, Any]]]:
    """An app's rows, table by table, in a canonical order, as plain values (no ids)."""
    out: dict[str, list[dict[str, Any]]] = {}
    cols = columns["revisions"]
    out["revisions"] = [dict(zip(cols, r, strict=True)) for r in history._query(f"SELECT {', '.join(cols)} FROM revisions WHERE app = ? ORDER BY number", (app,))]
    cols = columns["events"]
    out["events"] = [dict(zip(cols, r, strict=True)) for r in history._query(f"SELECT {', '.join(cols)} FROM events WHERE app = ? ORDER BY id", (app,))]
    cols = columns["bench_runs"]
    if cols:
        sql = f"SELECT r.number, {', '.join('b.' + c for c in cols)} FROM bench_runs b JOIN revisions r ON r.id = b.revision_id WHERE r.app = ? ORDER BY b.id"
        out["bench_runs"] = [dict(zip(["number", *cols], r, strict=True)) for r in history._query(sql, (app,))]
    else:
        out["bench_runs"] = []
    return out


def _masked(row: dict[str, Any]) -> dict[str, Any]:
    """A revision row with its secret-looking values masked, as record_pending would have stored it."""
    from kit.state.redact import redact

    try:
        profile, texts, bundle, manifest = (json.loads(row[c]) for c in ("profile_json", "profile_texts", "bundle_files", "manifest"))
    except (KeyError, TypeError, ValueError):
        return row  # a damaged row is copied as it is: kit history names it on either side
    keys, profile, texts, bundle, manifest = redact(profile, texts, bundle, manifest)
    if not keys:
        return row
    already = json.loads(row.get("redacted") or "[]") if "redacted" in row else []
    return {
        **row,
        "profile_json": json.dumps(profile, sort_keys=True),
        "profile_texts": json.dumps(texts, sort_keys=True),
        "bundle_files": json.dumps(bundle, sort_keys=True),
        "manifest": json.dumps(manifest, sort_keys=True),
        **({"redacted": json.dumps(sorted(set(already) | set(keys)))} if "redacted" in row else {}),
    }


def digest(rows: dict[str, list[dict[str, Any]]]) -> str:
    return hashlib.sha256(json.dumps(rows, sort_keys=True, default=str).encode()).hexdigest()


def _apps(history: History) -> list[str]:
    return [r[0] for r in history._query("SELECT DISTINCT app FROM revisions ORDER BY app")]


def migrate(source: History, target: History, source_name: str, target_name: str) -> MigrationReport:
    """Copy every app of `source` that `target` lacks; verify all of them. Raises OperationError on a conflict."""
    shared = {t: [c for c in _columns(source, t) if c in set(_columns(target, t))] for t in TABLES}
    report = MigrationReport(source_name, target_name)
    for app in _apps(source):
        rows = app_rows(source, app, shared)
        rows["revisions"] = [_masked(r) for r in rows["revisions"]]
        there = app_rows(target, app, shared)
        if there["revisions"]:
            if there != rows:
                raise OperationError(
                    f"{target_name} already holds a different history of {app}: {_first_difference(rows, there)}; nothing of {app} was copied",
                    fix=f"a store keeps one history per app: rename the app, or keep {app}'s history where it is",
                )
            action = "already there"
        else:
            _copy(target, rows, shared)
            action = "copied"
        after = app_rows(target, app, shared)
        if digest(after) != digest(rows):
            raise OperationError(f"the copy of {app} in {target_name} does not match its source: {_first_difference(rows, after)}", fix="report this as a bug in kit; the source is unchanged")
        report.apps.append(AppCopy(app, action, {t: len(rows[t]) for t in TABLES}, digest(rows)))
    return report


def _copy(target: History, rows: dict[str, list[dict[str, Any]]], columns: dict[str, list[str]]) -> None:
    with target.transaction() as db:
        for table in ("revisions", "events"):
            cols = columns[table]
            for row in rows[table]:
                db.execute(f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({', '.join('?' for _ in cols)})", tuple(row[c] for c in cols))
        cols = columns["bench_runs"]
        for row in rows["bench_runs"]:
            rid = db.execute("SELECT id FROM revisions WHERE app = ? AND number = ?", (rows["revisions"][0]["app"], row["number"])).fetchone()[0]
            db.execute(f"INSERT INTO bench_runs (revision_id, {', '.join(cols)}) VALUES (?, {', '.join('?' for _ in cols)})", (rid, *(row[c] for c in cols)))


def _first_difference(want: dict[str, list[dict[str, Any]]], got: dict[str, list[dict[str, Any]]]) -> str:
    for table in TABLES:
        if len(want[table]) != len(got[table]):
            return f"{table}: {len(want[table])} here, {len(got[table])} there"
        for a, b in zip(want[table], got[table], strict=True):
            if a != b:
                label = f"r{a.get('number')}" if "number" in a else "a row"
                cols = sorted(k for k in a if a.get(k) != b.get(k))
                return f"{table} {label} differs in {', '.join(cols)}"
    return "no difference found"
