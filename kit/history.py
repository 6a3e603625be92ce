"""Deployment history: every revision kit deployed (or tried to), with what it deployed.

Where it is kept (kit.state: a SQLite file by default, PostgreSQL for a team), one transaction per
change and the ledger of schema migrations are kit.history_db's; this module is what is stored and
how kit reads and writes it, the same on either backend.

A revision is what Helm calls one: the full profile text (every file of the `extends` chain and its
schemas), the lockfile, the rendered bundle's files, their hashes, who deployed it from which commit,
Modal's tag and version, and the smoke results, so a rollback redeploys exactly what ran.

Statuses: `pending` (recorded before the deploy starts), `deployed` (live and smoke-tested; at most
one per app), `superseded` (was deployed, replaced by a later deploy), `rolled_back` (was deployed,
replaced by a rollback), `failed` (the deploy, the smoke test or the process itself failed).

Bench runs (migration 002): what `kit bench APP[@rN]` measured against a revision, one row per run,
with the sweep's levels as JSON and a short summary in columns (`kit history`, `kit diff` read them).
A read-only open of a database that predates them still reads its revisions and sees no runs.

Secret-looking values of image.env and engine.args are masked in everything a revision stores
(kit.state.redact); `redacted` lists their keys. A row kit cannot read (bad JSON, an unknown status)
is named in `damaged` and left out, so one bad row never hides the others.
"""

from __future__ import annotations

import getpass
import json
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from kit.errors import OperationError
from kit.history_db import HistoryDatabase, HistoryError, now

STATUSES = ("pending", "deployed", "failed", "superseded", "rolled_back")
GOOD = ("deployed", "superseded", "rolled_back")  # passed a smoke test when they were deployed


def who() -> str:
    """The user kit records as having deployed or measured something."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return f"uid {os.getuid()}"


@dataclass
class Revision:
    app: str
    number: int
    status: str
    kind: str
    profile_name: str
    profile_path: str
    profile: dict[str, Any]  # the resolved profile, as validated
    profile_texts: dict[str, str]  # root-relative path -> text: the extends chain and its schema files
    profile_hash: str
    bundle_files: dict[str, str]
    bundle_hash: str
    manifest: dict[str, Any]
    kit_version: str
    created_by: str
    host: str
    pid: int
    created_at: str
    modal_tag: str
    environment: str | None = None
    rollback_of: int | None = None
    lock_text: str | None = None
    lock_hash: str | None = None
    git_commit: str | None = None
    git_dirty: bool | None = None
    finished_at: str | None = None
    modal_version: str | None = None
    modal_app_id: str | None = None
    urls: dict[str, str] = field(default_factory=dict)
    smoke: dict[str, Any] | None = None
    error: str | None = None
    redacted: list[str] = field(default_factory=list)  # keys whose secret-looking values are masked in what is stored

    @property
    def label(self) -> str:
        return f"r{self.number}"

    def summary(self) -> dict[str, Any]:
        """Everything but the stored files: what `kit history --format json` prints per revision."""
        return {
            "app": self.app,
            "number": self.number,
            "status": self.status,
            "kind": self.kind,
            "rollback_of": self.rollback_of,
            "environment": self.environment,
            "profile": self.profile_path,
            "profile_name": self.profile_name,
            "profile_hash": self.profile_hash,
            "lock_hash": self.lock_hash,
            "bundle_hash": self.bundle_hash,
            "bundle_files": sorted(self.bundle_files),
            "kit_version": self.kit_version,
            "git_commit": self.git_commit,
            "git_dirty": self.git_dirty,
            "created_by": self.created_by,
            "host": self.host,
            "pid": self.pid,
            "created_at": self.created_at,
            "finished_at": self.finished_at,
            "modal_tag": self.modal_tag,
            "modal_version": self.modal_version,
            "modal_app_id": self.modal_app_id,
            "urls": self.urls,
            "smoke": self.smoke,
            "error": self.error,
            "redacted": self.redacted,
        }


_JSON_COLUMNS = {"profile": "profile_json", "profile_texts": "profile_texts", "bundle_files": "bundle_files", "manifest": "manifest", "urls": "urls", "smoke": "smoke", "redacted": "redacted"}
_FIELDS = {f.name for f in fields(Revision)}


class DamagedRow(ValueError):
    """A stored revision kit cannot read: which one, and what is wrong with it."""

    def __init__(self, app: str, number: Any, reason: str):
        self.app, self.number, self.reason = app, number, reason
        super().__init__(f"r{number} of {app} cannot be read: {reason}")


def _row_to_revision(row: Any) -> Revision:
    data = dict(row)
    data.pop("id", None)
    app, number = data.get("app", "?"), data.get("number", "?")
    for attr, col in _JSON_COLUMNS.items():
        raw = data.pop(col, None)
        try:
            data[attr] = json.loads(raw) if raw is not None else None
        except (TypeError, ValueError) as exc:
            raise DamagedRow(app, number, f"its {col} is not JSON ({exc})") from None
    if data.get("status") not in STATUSES:
        raise DamagedRow(app, number, f"its status {data.get('status')!r} is none of {', '.join(STATUSES)}")
    data["urls"] = data["urls"] or {}
    data["redacted"] = data["redacted"] or []
    if data["git_dirty"] is not None:
        data["git_dirty"] = bool(data["git_dirty"])
    try:
        # Columns a newer kit (or a hand) added are not this kit's to read; the ones it knows must all be there.
        return Revision(**{k: v for k, v in data.items() if k in _FIELDS})
    except TypeError as exc:
        raise DamagedRow(app, number, str(exc)) from None


@dataclass
class Event:
    app: str
    number: int
    at: str
    status: str
    note: str


@dataclass
class BenchRun:
    """One `kit bench` sweep against a revision: the levels as measured, and a summary of them.

    Summary: the best requests/s of any level; p50 latency and output tokens/s at concurrency 1 (None
    when the sweep had no such level, or all its requests failed); the share of successful outputs,
    over all levels, that were strict JSON. `errors` counts failed requests: a run with failures is
    stored with what was measured.
    """

    app: str
    number: int
    at: str
    created_by: str
    host: str
    kit_version: str
    target: str
    mode: str  # the revision's serving.mode: "class" (kit's /generate) or "openai"
    workload: dict[str, Any]
    levels: list[dict[str, Any]]
    requests: int
    errors: int
    model: str | None = None
    gpu: str | None = None
    gpu_count: int = 1
    price_per_hour_usd: float | None = None
    best_requests_per_s: float | None = None
    latency_p50_s_c1: float | None = None
    output_tokens_per_s_c1: float | None = None
    strict_json_share: float | None = None
    id: int | None = None

    def summary(self) -> dict[str, Any]:
        """Everything but the levels and the workload: what `kit history` shows per revision."""
        return {k: v for k, v in self.as_dict().items() if k not in ("levels", "workload")}

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


_BENCH_SELECT = "SELECT b.*, r.app AS app, r.number AS number FROM bench_runs b JOIN revisions r ON r.id = b.revision_id"


def _row_to_bench(row: Any) -> BenchRun:
    data = dict(row)
    data.pop("revision_id")
    data["workload"] = json.loads(data["workload"])
    data["levels"] = json.loads(data["levels"])
    return BenchRun(**data)


class History(HistoryDatabase):
    """The revisions of every app, in one store (kit.state opens the one configured)."""

    damaged: list[DamagedRow]

    def __init__(self, conn: Any, *, readonly: bool = False):
        self.damaged = []
        super().__init__(conn, readonly=readonly)

    @classmethod
    def open(cls, state_dir: Path, *, readonly: bool = False) -> History:
        """Open (creating it unless `readonly`) the SQLite store `state_dir/history.db`, applying pending migrations."""
        from kit.state.sqlite import SQLiteConnection

        if not readonly:
            try:
                state_dir.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise HistoryError(f"cannot create the state directory {state_dir}: {exc.strerror}", fix="set KIT_STATE_DIR to a writable directory") from None
        return cls(SQLiteConnection(state_dir / "history.db", readonly=readonly), readonly=readonly)

    # --- reading -------------------------------------------------------------------------------
    def _readable(self, rows: list[Any]) -> list[Revision]:
        """The rows as revisions, leaving out (and naming in `damaged`) those kit cannot read."""
        out = []
        for row in rows:
            try:
                out.append(_row_to_revision(row))
            except DamagedRow as bad:
                if not any((d.app, d.number) == (bad.app, bad.number) for d in self.damaged):
                    self.damaged.append(bad)
        return out

    def revisions(self, app: str | None = None) -> list[Revision]:
        if app is None:
            rows = self._query("SELECT * FROM revisions ORDER BY app, number")
        else:
            rows = self._query("SELECT * FROM revisions WHERE app = ? ORDER BY number", (app,))
        return self._readable(rows)

    def get(self, app: str, number: int) -> Revision | None:
        rows = self._query("SELECT * FROM revisions WHERE app = ? AND number = ?", (app, number))
        if not rows:
            return None
        try:
            return _row_to_revision(rows[0])
        except DamagedRow as bad:
            raise HistoryError(str(bad), fix=f"`kit history {app}` lists the revisions kit can read; repair or delete that row by hand") from None

    def current(self, app: str) -> Revision | None:
        """The deployed revision of `app`, if any (None, and named in `damaged`, when it cannot be read)."""
        rows = self._query("SELECT * FROM revisions WHERE app = ? AND status = 'deployed'", (app,))
        found = self._readable(rows)
        return found[0] if found else None

    def apps(self) -> list[str]:
        return [r[0] for r in self._query("SELECT DISTINCT app FROM revisions ORDER BY app")]

    def events(self, app: str, number: int | None = None) -> list[Event]:
        if number is None:
            rows = self._query("SELECT app, number, at, status, note FROM events WHERE app = ? ORDER BY id", (app,))
        else:
            rows = self._query("SELECT app, number, at, status, note FROM events WHERE app = ? AND number = ? ORDER BY id", (app, number))
        return [Event(**dict(r)) for r in rows]

    def rollback_target(self, app: str, to: int | None = None) -> Revision:
        """The revision `kit rollback` redeploys: `to`, or the newest earlier good one with another bundle."""
        current = self.current(app)
        if to is not None:
            rev = self.get(app, to)
            if rev is None:
                raise OperationError(f"{app} has no revision r{to}", fix=f"`kit history {app}` lists its revisions")
            if rev.status == "deployed":
                raise OperationError(f"r{to} is already the deployed revision of {app}", fix="name an earlier revision with --to")
            if rev.status not in GOOD:
                raise OperationError(
                    f"r{to} of {app} is {rev.status}: kit rolls back only to revisions that were deployed and passed their smoke test",
                    fix=f"`kit history {app}` lists them (status superseded or rolled_back)",
                )
            return rev
        for rev in reversed(self.revisions(app)):
            if rev.status != "superseded":
                continue
            if current is not None and rev.bundle_hash == current.bundle_hash:
                continue
            return rev
        what = f"its current revision is {current.label}" if current else "it has no deployed revision"
        raise OperationError(f"{app} has no earlier good revision to roll back to ({what})", fix=f"`kit history {app}` shows what was deployed; deploy a fixed profile with `kit deploy`")

    def bench_runs(self, app: str | None = None, number: int | None = None) -> list[BenchRun]:
        """Bench runs, oldest first: all, an app's, or one revision's."""
        if not self._has_table("bench_runs"):
            return []  # a read-only look at a history from before migration 002
        where, args = [], []
        if app is not None:
            where.append("r.app = ?")
            args.append(app)
        if number is not None:
            where.append("r.number = ?")
            args.append(number)
        sql = _BENCH_SELECT + (f" WHERE {' AND '.join(where)}" if where else "") + " ORDER BY r.app, b.id"
        return [_row_to_bench(r) for r in self._query(sql, tuple(args))]

    def latest_bench(self, app: str | None = None) -> dict[tuple[str, int], BenchRun]:
        """(app, number) -> the newest bench run of each revision that has one."""
        return {(run.app, run.number): run for run in self.bench_runs(app)}

    def measured_runs(self, app: str) -> list[tuple[BenchRun, Revision]]:
        """An app's bench runs that measured latency at concurrency 1 on a revision that was deployed
        (and smoke-tested), with that revision: the current revision's first, then newest first."""
        if not self._has_table("bench_runs"):
            return []
        marks = ", ".join("?" for _ in GOOD)
        rows = self._query(
            _BENCH_SELECT + f" WHERE r.app = ? AND r.status IN ({marks}) AND b.latency_p50_s_c1 IS NOT NULL"
            " ORDER BY r.status = 'deployed' DESC, b.id DESC",
            (app, *GOOD),
        )
        revisions = {r.number: r for r in self.revisions(app)}
        return [(run, revisions[run.number]) for run in map(_row_to_bench, rows) if run.number in revisions]

    # --- writing -------------------------------------------------------------------------------
    def record_bench(self, run: BenchRun) -> BenchRun:
        """Store a bench run of revision `run.number` of `run.app`; sets `run.id`."""
        cols = {k: v for k, v in run.as_dict().items() if k not in ("id", "app", "number")}
        cols["workload"] = json.dumps(run.workload, sort_keys=True)
        cols["levels"] = json.dumps(run.levels)
        with self.transaction() as db:
            row = db.execute("SELECT id FROM revisions WHERE app = ? AND number = ?", (run.app, run.number)).fetchone()
            if row is None:
                raise OperationError(f"kit's history has no revision r{run.number} of {run.app!r} to store the bench run with", fix="see `kit history`")
            cols["revision_id"] = row[0]
            cur = db.execute(f"INSERT INTO bench_runs ({', '.join(cols)}) VALUES ({', '.join('?' for _ in cols)}) RETURNING id", tuple(cols.values()))
            run.id = cur.fetchone()[0]
        return run

    def record_pending(self, rev: Revision) -> Revision:
        """Give `rev` the app's next number and store it as pending, its secret-looking values masked."""
        from kit.state.redact import redact

        redacted, rev.profile, rev.profile_texts, rev.bundle_files, rev.manifest = redact(rev.profile, rev.profile_texts, rev.bundle_files, rev.manifest)
        rev.redacted = sorted(set(rev.redacted) | set(redacted))
        with self.transaction() as db:
            row = db.execute("SELECT COALESCE(MAX(number), 0) FROM revisions WHERE app = ?", (rev.app,)).fetchone()
            rev.number = row[0] + 1
            rev.status = "pending"
            cols = {
                "app": rev.app,
                "number": rev.number,
                "status": rev.status,
                "kind": rev.kind,
                "rollback_of": rev.rollback_of,
                "environment": rev.environment,
                "profile_name": rev.profile_name,
                "profile_path": rev.profile_path,
                "profile_json": json.dumps(rev.profile, sort_keys=True),
                "profile_texts": json.dumps(rev.profile_texts, sort_keys=True),
                "profile_hash": rev.profile_hash,
                "lock_text": rev.lock_text,
                "lock_hash": rev.lock_hash,
                "bundle_files": json.dumps(rev.bundle_files, sort_keys=True),
                "bundle_hash": rev.bundle_hash,
                "manifest": json.dumps(rev.manifest, sort_keys=True),
                "kit_version": rev.kit_version,
                "git_commit": rev.git_commit,
                "git_dirty": None if rev.git_dirty is None else int(rev.git_dirty),
                "created_by": rev.created_by,
                "host": rev.host,
                "pid": rev.pid,
                "created_at": rev.created_at,
                "modal_tag": rev.modal_tag.replace("{number}", str(rev.number)),
                "urls": json.dumps(rev.urls),
            }
            if rev.redacted:
                cols["redacted"] = json.dumps(rev.redacted)
            rev.modal_tag = cols["modal_tag"]
            db.execute(f"INSERT INTO revisions ({', '.join(cols)}) VALUES ({', '.join('?' for _ in cols)})", tuple(cols.values()))
            self._event(db, rev.app, rev.number, "pending", f"{rev.kind} by {rev.created_by}@{rev.host} pid {rev.pid}")
        return rev

    def update(self, app: str, number: int, **values: Any) -> None:
        """Store Modal's answers (tag, version, urls, smoke) on a revision without changing its status."""
        sets = {_JSON_COLUMNS.get(k, k): (json.dumps(v) if k in _JSON_COLUMNS else v) for k, v in values.items()}
        with self.transaction() as db:
            db.execute(f"UPDATE revisions SET {', '.join(f'{k} = ?' for k in sets)} WHERE app = ? AND number = ?", (*sets.values(), app, number))

    def mark_deployed(self, app: str, number: int, *, replaced_status: str = "superseded", note: str = "") -> Revision | None:
        """Make `number` the current revision; the one it replaces becomes `replaced_status`. Returns that one."""
        assert replaced_status in ("superseded", "rolled_back")
        with self.transaction() as db:
            prev = db.execute("SELECT * FROM revisions WHERE app = ? AND status = 'deployed'", (app,)).fetchone()
            if prev is not None:
                db.execute("UPDATE revisions SET status = ? WHERE id = ?", (replaced_status, prev["id"]))
                self._event(db, app, prev["number"], replaced_status, f"replaced by r{number}")
            db.execute("UPDATE revisions SET status = 'deployed', finished_at = ? WHERE app = ? AND number = ?", (now(), app, number))
            self._event(db, app, number, "deployed", note)
        if prev is None:
            return None
        try:
            return _row_to_revision(prev)
        except DamagedRow as bad:
            self.damaged.append(bad)  # replaced all the same; only what it was cannot be shown
            return None

    def mark_failed(self, app: str, number: int, error: str) -> None:
        with self.transaction() as db:
            db.execute("UPDATE revisions SET status = 'failed', error = ?, finished_at = ? WHERE app = ? AND number = ?", (error, now(), app, number))
            self._event(db, app, number, "failed", error)

    def add_note(self, app: str, number: int, note: str) -> None:
        """Append to a finished revision's error text (e.g. 'rolled back automatically by r8')."""
        with self.transaction() as db:
            db.execute("UPDATE revisions SET error = COALESCE(error || '; ', '') || ? WHERE app = ? AND number = ?", (note, app, number))
            status = db.execute("SELECT status FROM revisions WHERE app = ? AND number = ?", (app, number)).fetchone()
            self._event(db, app, number, status[0] if status else "?", note)

    def pending(self, app: str) -> list[Revision]:
        return self._readable(self._query("SELECT * FROM revisions WHERE app = ? AND status = 'pending' ORDER BY number", (app,)))

    @staticmethod
    def _event(db: Any, app: str, number: int, status: str, note: str) -> None:
        db.execute("INSERT INTO events (app, number, at, status, note) VALUES (?, ?, ?, ?, ?)", (app, number, now(), status, note))
