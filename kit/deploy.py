"""Bundle -> Deployment -> Revision: deploy, smoke-test, record; and roll back to a stored revision.

The order is the safety argument. Everything that can fail on the user's side (check, lock, render,
credentials, the history file, the app's deploy lock) fails before Modal is called. The revision is
recorded `pending` before the deploy starts, so a process killed mid-deploy leaves a trace that the
next command sees (through the stale lock) and resolves. A rollback never reads the working copy: it
redeploys the bundle stored with the revision.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from kit import deploylock
from kit.errors import OperationError, UsageError
from kit.history import History, HistoryError, Revision, now, who
from kit.load import LoadedProfile
from kit.plan import Plan, make
from kit.smoke import SmokeResult, SmokeSpec
from kit.target import DeployResult, RollbackUnsupported, Target, TargetError
from kit.tree import write_files

Echo = Callable[[str], None]


class BundleLike(Protocol):
    files: dict[str, str]
    manifest: dict[str, Any]
    hash: str


class CredentialsMissing(UsageError):
    """No Modal token: said before any work that costs time."""


@dataclass
class Prepared:
    """A checked profile, its lock, and its rendered bundle: everything a deploy needs from the working copy."""

    loaded: LoadedProfile
    profile: dict[str, Any]
    bundle: BundleLike
    check_summary: str
    check_errors: list[str]
    lock_state: str  # fresh | stale | missing
    lock_reason: str
    lock_text: str | None
    lock_hash: str | None
    lock_packages: int = 0


@dataclass
class Outcome:
    ok: bool
    revision: Revision
    messages: list[str] = field(default_factory=list)
    rollback: Revision | None = None  # the automatic rollback an --atomic deploy made


def require_credentials(target: Target) -> None:
    if not target.credentials_present():
        raise CredentialsMissing("no Modal credentials: kit cannot deploy, roll back or read Modal's history", fix=target.credentials_help())


def prepare(loaded: LoadedProfile, renderer: Callable[[LoadedProfile], BundleLike] | None = None) -> Prepared:
    """Check, verify the lock, render. Check errors and lock problems are returned as blockers, not raised."""
    import hashlib

    from kit import lockfile
    from kit.check import check

    st = lockfile.status(loaded)
    closure = lockfile.closure_for(loaded) if st.state == "fresh" else None
    report = check(loaded, closure)
    errors = [f"{f.rule}: {f.summary}" for f in report.active() if f.severity == "error"]
    summary = f"{report.count('error')} error(s), {report.count('warning')} warning(s)" + ("" if report.closure_checked else " (pinned packages only: no fresh lock)")
    lock_text = st.lock.text if st.lock is not None else None
    if renderer is None:
        from kit.render import render as renderer
    bundle = renderer(loaded)
    return Prepared(
        loaded=loaded,
        profile=loaded.profile.model_dump(mode="json", by_alias=True),
        bundle=bundle,
        check_summary=summary,
        check_errors=errors,
        lock_state=st.state,
        lock_reason=st.reason,
        lock_text=lock_text,
        lock_hash=hashlib.sha256(lock_text.encode()).hexdigest() if lock_text is not None else None,
        lock_packages=len(st.lock.packages) if st.lock is not None else 0,
    )


def plan(prep: Prepared, history: History | None) -> Plan:
    loaded, profile = prep.loaded, prep.profile
    app = loaded.profile.app.name
    current = history.current(app) if history is not None else None
    result = make(loaded=loaded, bundle_hash=prep.bundle.hash, bundle_files=sorted(prep.bundle.files), current=current)
    result.check = prep.check_summary
    for err in prep.check_errors:
        result.blockers.append(f"kit check: {err}")
    lock_rel = loaded.rel(loaded.path.with_suffix(".lock"))
    if prep.lock_state == "fresh":
        result.lock = f"{lock_rel} is fresh: {prep.lock_packages} packages, hashed (sha256 {prep.lock_hash[:12] if prep.lock_hash else '?'})"
    else:
        result.lock = f"{lock_rel}: {prep.lock_state} ({prep.lock_reason})"
        result.blockers.append(f"the lockfile is {prep.lock_state}: run `kit lock {loaded.display}` and commit {lock_rel}")
        result.diff.notes = [n for n in result.diff.notes if not n.startswith("lockfile is stale")]  # the blocker says it
    spec = SmokeSpec.from_profile(profile, loaded.texts)
    if spec is None:
        result.smoke = "none: the profile has no [smoke] section, so the deploy is recorded without a smoke test"
    else:
        schema = (profile.get("smoke") or {}).get("schema") or (profile.get("structured_output") or {}).get("schema")
        result.smoke = (
            f"GET /health, POST /generate (max_tokens {spec.max_tokens}), output strict JSON"
            + (f" valid against {schema}" if schema else "")
            + f", warm latency <= {spec.latency_budget_s:g} s, cold start <= {spec.cold_start_budget_s:g} s"
        )
    if history is not None:
        for rev in history.pending(app):
            result.notes.append(f"r{rev.number} is still pending (pid {rev.pid} on {rev.host}); `kit status {app}` says whether it still runs")
    if result.same_bundle:
        result.notes.append(f"the bundle is identical to the current revision r{current.number}'s: a deploy would record a new revision of the same app")
    return result


# --- recording ---------------------------------------------------------------------------------


def _git(root: Path) -> tuple[str | None, bool | None]:
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=5)
        if head.returncode != 0:
            return None, None
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root, capture_output=True, text=True, timeout=5)
        return head.stdout.strip(), bool(dirty.stdout.strip()) if dirty.returncode == 0 else None
    except (OSError, subprocess.TimeoutExpired):
        return None, None


def _tag(bundle_hash: str) -> str:
    return f"kit-r{{number}}-{bundle_hash[:12]}"  # {number} is filled in when the revision gets its number


def new_revision(prep: Prepared) -> Revision:
    import kit

    loaded = prep.loaded
    commit, dirty = _git(loaded.root)
    return Revision(
        app=loaded.profile.app.name,
        number=0,
        status="pending",
        kind="deploy",
        environment=loaded.profile.app.environment,
        profile_name=loaded.profile.name,
        profile_path=loaded.display,
        profile=prep.profile,
        profile_texts=dict(loaded.texts),
        profile_hash=loaded.content_hash(),
        lock_text=prep.lock_text,
        lock_hash=prep.lock_hash,
        bundle_files=dict(prep.bundle.files),
        bundle_hash=prep.bundle.hash,
        manifest=dict(prep.bundle.manifest),
        kit_version=kit.__version__,
        git_commit=commit,
        git_dirty=dirty,
        created_by=who(),
        host=socket.gethostname(),
        pid=os.getpid(),
        created_at=now(),
        modal_tag=_tag(prep.bundle.hash),
    )


# --- deploy ------------------------------------------------------------------------------------


@dataclass
class Context:
    history: History
    target: Target
    deploy_timeout: float
    modal_timeout: float
    echo: Echo
    on_output: Callable[[str], None] | None = None
    smoke_runner: Callable[[SmokeSpec, dict[str, str]], SmokeResult] | None = None

    def smoke(self, spec: SmokeSpec, urls: dict[str, str]) -> SmokeResult:
        if self.smoke_runner is not None:
            return self.smoke_runner(spec, urls)
        from kit import smoke

        return smoke.run(spec, urls)


@contextmanager
def _terminate_as_interrupt() -> Iterator[None]:
    """SIGTERM (a CI runner cancelled, `kill`) unwinds a deploy as Ctrl-C does: the revision is marked
    failed, the lock released, the `modal deploy` process group killed, the bundle's temporary copy removed."""

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signal.Signals(signum).name}")

    try:
        previous = signal.signal(signal.SIGTERM, interrupt)
    except ValueError:  # not the main thread: leave signals to whoever owns them
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def deploy(prep: Prepared, ctx: Context, *, atomic: bool, break_lock: bool = False) -> Outcome:
    """Deploy a prepared bundle: lock, record pending, deploy, smoke, record the result."""
    with _terminate_as_interrupt():
        return _deploy(prep, ctx, atomic=atomic, break_lock=break_lock)


def _deploy(prep: Prepared, ctx: Context, *, atomic: bool, break_lock: bool) -> Outcome:
    app = prep.loaded.profile.app.name
    _take_lock(ctx, app, f"kit deploy {prep.loaded.display}", break_lock)
    try:
        rev = ctx.history.record_pending(new_revision(prep))
        ctx.echo(f"recorded r{rev.number} as pending (tag {rev.modal_tag})")
        outcome = _deploy_and_smoke(ctx, rev, lambda d: ctx.target.deploy(d, app, rev.environment, rev.modal_tag, ctx.deploy_timeout, ctx.on_output), replaced="superseded")
        if not outcome.ok and _went_live(outcome) and atomic:
            _auto_rollback(ctx, outcome)
        elif not outcome.ok and _went_live(outcome):
            current = ctx.history.current(app)
            where = f"`kit rollback {app}` returns to r{current.number}" if current else "no earlier good revision exists"
            outcome.messages.append(f"Modal now serves r{rev.number}, which failed its smoke test; {where} (--atomic does it automatically)")
        return outcome
    finally:
        _release_lock(ctx, app)


def _went_live(outcome: Outcome) -> bool:
    return outcome.revision.smoke is not None  # a smoke test ran, so the deploy itself reached Modal


def _release_lock(ctx: Context, app: str) -> None:
    try:
        deploylock.release(ctx.history, app)
    except HistoryError as exc:  # never hide why the deploy stopped behind why the lock stayed
        ctx.echo(f"the deploy lock of {app} could not be released ({exc.message}); the next deploy names it stale (--break-lock)")


def _take_lock(ctx: Context, app: str, command: str, break_lock: bool) -> None:
    resolved = deploylock.acquire(ctx.history, app, command, break_lock=break_lock)
    for n in resolved:
        ctx.echo(f"r{n} was left pending by a process that stopped; marked failed")


def _deploy_and_smoke(ctx: Context, rev: Revision, run: Callable[[Path], DeployResult], replaced: str, note: str = "") -> Outcome:
    history, app = ctx.history, rev.app
    try:
        with tempfile.TemporaryDirectory(prefix="kit-bundle-") as tmp:
            result = run(write_files(Path(tmp), rev.bundle_files))
    except TargetError as exc:
        history.mark_failed(app, rev.number, f"deploy failed: {exc.message}")
        return Outcome(False, history.get(app, rev.number), [f"r{rev.number} failed: {exc.message}", *([f"fix: {exc.fix}"] if exc.fix else [])])
    except BaseException as exc:  # Ctrl-C, SIGTERM or a bug: never leave the revision pending behind a released lock
        history.mark_failed(app, rev.number, f"interrupted: {type(exc).__name__}: {exc}".rstrip(": "))
        if isinstance(exc, KeyboardInterrupt):
            ctx.echo(f"interrupted ({exc or 'Ctrl-C'}): r{rev.number} marked failed, the deploy stopped; `kit status {app}` shows what Modal serves")
        raise
    ctx.echo(f"Modal accepted r{rev.number}" + (f" as {result.version}" if result.version else " (version unknown)") + (f"; {result.note}" if result.note else ""))
    try:
        return _smoke_and_record(ctx, rev, result, replaced, note)
    except HistoryError as exc:
        # Modal took the deploy; only kit's record of it failed (a full disk, a lost database): say what runs.
        served = f"{result.version or 'a new version'} (tag {rev.modal_tag})"
        raise HistoryError(
            f"Modal accepted r{rev.number} of {app} and now serves it as {served}, but kit could not record that: {exc.message}. "
            f"kit's history still shows r{rev.number} as pending",
            fix=f"{exc.fix or 'fix the history store'}; then `kit status {app}` shows what Modal serves, and the next deploy with --break-lock marks r{rev.number} failed",
        ) from None


def _smoke_and_record(ctx: Context, rev: Revision, result: DeployResult, replaced: str, note: str) -> Outcome:
    history, app = ctx.history, rev.app
    history.update(app, rev.number, modal_version=result.version, modal_app_id=result.app_id, urls=result.urls)
    spec = SmokeSpec.from_profile(rev.profile, rev.profile_texts, rev.bundle_hash)
    messages: list[str] = []
    if spec is None:
        history.mark_deployed(app, rev.number, replaced_status=replaced, note=note or "no [smoke] section: not smoke-tested")
        messages.append(f"r{rev.number} deployed without a smoke test (the profile has no [smoke] section)")
        return Outcome(True, history.get(app, rev.number), messages)
    ctx.echo("smoke test: " + ", ".join(f"{k} {v}" for k, v in sorted(result.urls.items())) if result.urls else "smoke test")
    try:
        smoke = ctx.smoke(spec, result.urls)
    except OperationError as exc:
        smoke = SmokeResult(ok=False)
        from kit.smoke import Check

        smoke.checks.append(Check("endpoints", False, exc.message))
    history.update(app, rev.number, smoke=smoke.as_dict())
    if smoke.ok:
        history.mark_deployed(app, rev.number, replaced_status=replaced, note=note or f"smoke test {smoke.summary()}")
        messages.append(f"r{rev.number} deployed and smoke-tested: {smoke.summary()}")
        return Outcome(True, history.get(app, rev.number), messages)
    history.mark_failed(app, rev.number, f"smoke test {smoke.summary()}")
    messages.append(f"r{rev.number} failed its smoke test: {smoke.summary()}")
    return Outcome(False, history.get(app, rev.number), messages)


def _auto_rollback(ctx: Context, outcome: Outcome) -> None:
    failed = outcome.revision
    current = ctx.history.current(failed.app)
    if current is None:
        outcome.messages.append(f"no earlier good revision of {failed.app} to roll back to: Modal serves the failed r{failed.number} (stop it with `modal app stop {failed.app}`)")
        return
    ctx.echo(f"--atomic: rolling back to r{current.number}")
    back = _redeploy(ctx, current, replaced="superseded", note=f"automatic rollback: r{failed.number} failed its smoke test")
    outcome.rollback = back.revision
    outcome.messages.extend(back.messages)
    if back.ok:
        ctx.history.add_note(failed.app, failed.number, f"rolled back automatically by r{back.revision.number} (bundle of r{current.number})")
        outcome.messages.append(f"rolled back automatically: r{back.revision.number} redeployed r{current.number}'s bundle")
    else:
        outcome.messages.append(f"the automatic rollback to r{current.number} failed too: run `kit status {failed.app}`")


# --- rollback ----------------------------------------------------------------------------------


def rollback(app: str, ctx: Context, *, to: int | None = None, break_lock: bool = False) -> Outcome:
    """Redeploy the stored bundle of the previous good revision (or `to`), recorded as a new revision."""
    with _terminate_as_interrupt():
        return _rollback(app, ctx, to=to, break_lock=break_lock)


def _rollback(app: str, ctx: Context, *, to: int | None, break_lock: bool) -> Outcome:
    source = ctx.history.rollback_target(app, to)  # fails clearly before the lock is taken
    _take_lock(ctx, app, f"kit rollback {app}" + (f" --to {to}" if to else ""), break_lock)
    try:
        source = ctx.history.rollback_target(app, to)  # again, under the lock
        return _redeploy(ctx, source, replaced="rolled_back", note=f"rollback to r{source.number}")
    finally:
        _release_lock(ctx, app)


def _redeploy(ctx: Context, source: Revision, *, replaced: str, note: str) -> Outcome:
    rev = Revision(**{**source.__dict__})
    rev.kind, rev.rollback_of = "rollback", source.number
    rev.created_by, rev.host, rev.pid, rev.created_at = who(), socket.gethostname(), os.getpid(), now()
    rev.modal_tag = _tag(source.bundle_hash)
    rev.modal_version = rev.modal_app_id = rev.smoke = rev.error = rev.finished_at = None
    rev.urls = {}
    rev = ctx.history.record_pending(rev)
    ctx.echo(f"recorded r{rev.number} (rollback to r{source.number}) as pending")
    app, env = rev.app, rev.environment

    def run(bundle_dir: Path) -> DeployResult:
        if source.modal_version:
            try:
                result = ctx.target.rollback(app, env, source.modal_version, ctx.modal_timeout, ctx.on_output)
                result.urls = result.urls or dict(source.urls)
                return result
            except RollbackUnsupported as exc:
                if source.redacted:
                    raise TargetError(
                        f"{exc.message}, and r{source.number}'s stored bundle cannot be redeployed: kit masked its secret-looking values "
                        f"({', '.join(source.redacted)}) when it recorded it",
                        fix="move those values into a Modal secret (model.hf_secret, or a secret the app reads), then deploy the fixed profile",
                    ) from None
                ctx.echo(f"{exc.message}; redeploying r{source.number}'s stored bundle instead")
        if source.redacted and not source.modal_version:
            raise TargetError(
                f"r{source.number}'s stored bundle cannot be redeployed: kit masked its secret-looking values ({', '.join(source.redacted)}) when it recorded it",
                fix="move those values into a Modal secret, then deploy the fixed profile",
            )
        return ctx.target.deploy(bundle_dir, app, env, rev.modal_tag, ctx.deploy_timeout, ctx.on_output)

    return _deploy_and_smoke(ctx, rev, run, replaced=replaced, note=note)


# --- status ------------------------------------------------------------------------------------


@dataclass
class AppStatus:
    app: str
    current: Revision | None
    latest: Revision | None
    pending: list[tuple[Revision, bool | None]]  # revision, is its process alive
    lock: deploylock.LockHolder | None
    modal: list[Any] | None  # ModalVersion rows, None when not read
    modal_error: str | None
    drift: list[str]

    @property
    def in_sync(self) -> bool:
        return not self.drift

    def as_dict(self) -> dict[str, Any]:
        return {
            "app": self.app,
            "current": self.current.summary() if self.current else None,
            "latest": self.latest.summary() if self.latest else None,
            "pending": [{"number": r.number, "pid": r.pid, "host": r.host, "alive": alive} for r, alive in self.pending],
            "lock": self.lock.__dict__ if self.lock else None,
            "modal": [m.__dict__ for m in self.modal] if self.modal is not None else None,
            "modal_error": self.modal_error,
            "drift": self.drift,
            "in_sync": self.in_sync,
        }


def status(app: str, history: History, target: Target | None, modal_timeout: float) -> AppStatus:
    from kit.target import latest_version

    revs = history.revisions(app)
    current = next((r for r in revs if r.status == "deployed"), None)
    lock = deploylock.holder(history, app)
    drift: list[str] = []
    pending = []
    for r in revs:
        if r.status != "pending":
            continue
        alive = lock.alive if lock is not None and lock.pid == r.pid and lock.host == r.host else False
        pending.append((r, alive))
        if alive is False:
            drift.append(f"r{r.number} is pending but its process (pid {r.pid} on {r.host}) is gone: the next `kit deploy` or `kit rollback` of {app} with --break-lock marks it failed")
        elif alive is None:
            drift.append(f"r{r.number} is pending, deployed from {r.host} (pid {r.pid}); kit cannot tell from here whether that process still runs")
    modal_rows, modal_error = None, None
    if target is None or not target.credentials_present():
        modal_error = "Modal's history not read: no credentials"
    else:
        try:
            modal_rows = target.history(app, current.environment if current else (revs[-1].environment if revs else None), modal_timeout)
        except TargetError as exc:
            modal_error = f"Modal's history not read: {exc.message}"
    if modal_rows is not None:
        live = latest_version(modal_rows)
        by_tag = {r.modal_tag: r for r in revs}
        if live is None:
            if current is not None:
                drift.append(f"kit's current revision is r{current.number}, but Modal has no deployment of {app}")
        elif current is not None and current.modal_version == live.version:
            pass
        elif live.tag and live.tag in by_tag:
            served = by_tag[live.tag]
            if served is not current:
                drift.append(f"Modal serves {live.version}, kit's r{served.number} ({served.status}), not the current r{current.number if current else '-'}")
        else:
            who = f" by {live.deployed_by}" if live.deployed_by else ""
            drift.append(f"Modal's live version {live.version} (deployed{who} at {live.time_deployed or '?'}, tag {live.tag or 'none'}) was not deployed by kit" + (f"; kit's current is r{current.number} ({current.modal_version or 'version unknown'})" if current else ""))
    return AppStatus(app, current, revs[-1] if revs else None, pending, lock, modal_rows, modal_error, drift)
