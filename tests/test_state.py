"""kit.state: the store's choice, `kit state`, migration to a shared store, credentials, the deploy lock
across processes (PostgreSQL's advisory lock, SQLite's row), concurrency, and the history store's
fault handling (issue 13 items 2, 6, 7, 9, 10, 12). Tests that take `state` run on both backends.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from kit import deploy as kd
from kit import deploylock
from kit.deploylock import pid_alive
from kit.history import History, HistoryError
from kit.load import load
from kit.state import open_history, parse
from tests.deployfakes import fake, kit, make_target, profile, profile_tree  # noqa: F401 (fake, profile: fixtures)
from tests.statefixtures import require_postgres, with_schema
from tests.test_history import deployed, revision


def context(history: History) -> kd.Context:
    return kd.Context(history=history, target=make_target(), deploy_timeout=30.0, modal_timeout=10.0, echo=lambda line: None)


def history_rows(env: dict[str, str]) -> list[tuple[int, str]]:
    code, out, err = kit("history", "--format", "json", env=env)
    assert code == 0, err
    return [(r["number"], r["status"]) for r in json.loads(out)["revisions"]]


def password_of(url: str) -> str:
    from kit.state.base import url_password

    secret = url_password(url)
    assert secret, "the test URL should carry a password"
    return secret


# --- choosing the store, `kit state`, credentials ----------------------------------------------


def test_state_shows_the_sqlite_default(tmp_path):
    code, out, err = kit("state", env={"KIT_STATE_DIR": str(tmp_path / "s")})
    assert code == 0, err
    assert "backend    sqlite" in out and str(tmp_path / "s" / "history.db") in out and "KIT_STATE_DIR" in out


@pytest.mark.postgres
def test_state_shows_postgres_with_its_password_masked(postgres_schema, tmp_path):
    secret = password_of(postgres_schema)
    env = {"KIT_STATE_URL": postgres_schema, "KIT_STATE_DIR": str(tmp_path / "unused")}
    code, out, err = kit("state", env=env)
    assert code == 0 and "exists     False" in out, err
    h = open_history(parse(postgres_schema, "test"))
    deployed(h, "1" * 64)
    h.close()
    code, out, err = kit("state", "--format", "json", env=env)
    assert code == 0, err
    info = json.loads(out)
    assert info["backend"] == "postgres" and info["server"].startswith("PostgreSQL ") and info["apps"] == {"app": 1}
    assert ":***@" in info["location"] and secret not in out + err
    code, out, err = kit("history", "--format", "json", env=env)
    assert code == 0 and secret not in out + err


@pytest.mark.postgres
def test_a_wrong_password_is_reported_without_it(postgres_schema, tmp_path):
    wrong = postgres_schema.replace(password_of(postgres_schema), "Wr0ng-Secret")
    code, out, err = kit("history", env={"KIT_STATE_URL": wrong})
    assert code == 2 and "cannot reach the shared deploy history" in err and "password authentication failed" in err
    assert "Wr0ng-Secret" not in out + err and ":***@" in err and "Traceback" not in err


@pytest.mark.postgres
def test_password_from_pgpassword_or_pgpass_as_libpq_reads_them(postgres_schema, tmp_path):
    secret = password_of(postgres_schema)
    bare = postgres_schema.replace(f":{secret}@", "@")
    code, out, err = kit("state", env={"KIT_STATE_URL": bare, "PGPASSWORD": secret, "PGPASSFILE": str(tmp_path / "none")})
    assert code == 0 and "backend    postgres" in out, err
    from urllib.parse import urlsplit

    u = urlsplit(bare)
    passfile = tmp_path / "pgpass"
    passfile.write_text(f"{u.hostname}:{u.port}:{u.path.lstrip('/')}:{u.username}:{secret}\n")
    passfile.chmod(0o600)
    code, out, err = kit("state", env={"KIT_STATE_URL": bare, "PGPASSFILE": str(passfile)})
    assert code == 0 and "backend    postgres" in out, err
    code, out, err = kit("state", env={"KIT_STATE_URL": bare, "PGPASSFILE": str(tmp_path / "none")})
    assert code == 2 and "password" in err  # no password anywhere: the server's refusal, explained


@pytest.mark.postgres
def test_kit_toml_chooses_the_store_and_must_not_hold_a_password(postgres_schema, tmp_path):
    secret = password_of(postgres_schema)
    repo = tmp_path / "repo"
    (repo / ".git").mkdir(parents=True)
    bare = postgres_schema.replace(f":{secret}@", "@")
    (repo / "kit.toml").write_text(f'[state]\nurl = "{bare}"\n')
    code, out, err = kit("state", cwd=repo, env={"PGPASSWORD": secret})
    assert code == 0 and "backend    postgres" in out and "kit.toml [state] url" in out, err
    (repo / "kit.toml").write_text(f'[state]\nurl = "{postgres_schema}"\n')
    code, out, err = kit("state", cwd=repo, env={})
    assert code == 2 and "kit.toml: state.url carries a password" in err and "PGPASSWORD" in err
    assert secret not in out + err


def test_an_unknown_store_url_is_refused(tmp_path):
    code, _, err = kit("history", env={"KIT_STATE_URL": "mysql://u:hunter22@h/db"})
    assert code == 2 and "KIT_STATE_URL" in err and "hunter22" not in err and "postgresql://" in err


# --- kit state migrate -------------------------------------------------------------------------


@pytest.mark.postgres
def test_migrate_copies_a_local_history_idempotently_and_verifies_it(postgres_schema, tmp_path):
    from tests.test_history import bench_run

    secret = password_of(postgres_schema)
    local = History.open(tmp_path / "local")
    deployed(local, "1" * 64)
    deployed(local, "2" * 64)
    failed = local.record_pending(revision(bundle="3" * 64))
    local.mark_failed("app", failed.number, "smoke test failed")
    deployed(local, "4" * 64, app="other")
    local.record_bench(bench_run(number=2, p50=0.25))
    local.close()
    env = {"KIT_STATE_DIR": str(tmp_path / "local")}
    code, out, err = kit("state", "migrate", "--to", postgres_schema, env=env)
    assert code == 0, err
    assert "app: copied (3 revisions, 7 events, 1 bench_runs)" in out and "other: copied (1 revisions" in out
    assert "2 app(s) from" in out and secret not in out + err
    code, out, err = kit("state", "migrate", "--to", postgres_schema, "--format", "json", env=env)
    assert code == 0, err
    report = json.loads(out)
    assert [a["action"] for a in report["apps"]] == ["already there", "already there"]
    # The shared store reads as the local one did.
    local_view = kit("history", "--format", "json", env=env)[1]
    shared_view = kit("history", "--format", "json", env={"KIT_STATE_URL": postgres_schema})[1]
    assert json.loads(local_view) == json.loads(shared_view)
    # A local history that differs from what the store holds is refused, and nothing is written.
    local = History.open(tmp_path / "local")
    deployed(local, "5" * 64)
    local.close()
    code, out, err = kit("state", "migrate", "--to", postgres_schema, env=env)
    assert code == 1 and "already holds a different history of app: revisions: 4 here, 3 there" in err
    assert len(json.loads(kit("history", "app", "--format", "json", env={"KIT_STATE_URL": postgres_schema})[1])["revisions"]) == 3


# --- the deploy lock ---------------------------------------------------------------------------

HOLDER = """
import sys, time
from kit import deploylock
from kit.state import open_history, parse
from tests.test_history import revision
h = open_history(parse(sys.argv[1], "test"))
deploylock.acquire(h, "app", "kit deploy held-by-test")
h.record_pending(revision())
print("held", flush=True)
time.sleep(120)
"""


def _holder(state) -> subprocess.Popen:
    where = state.url if state.backend == "postgres" else f"sqlite:///{state.path}/history.db"
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, where], stdout=subprocess.PIPE, text=True, cwd=Path(__file__).parent.parent)
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_a_live_holder_is_never_taken_and_a_killed_one_frees_the_lock(state):
    h = state.open()
    proc = _holder(state)
    try:
        held = deploylock.holder(h, "app")
        assert held.pid == proc.pid and held.alive is True and held.command == "kit deploy held-by-test"
        for break_lock in (False, True):  # issue 13 item 2: never while the holder runs, and it says who
            with pytest.raises(deploylock.LockHeld, match=f"pid {proc.pid} on .*kit deploy held-by-test"):
                deploylock.acquire(h, "app", "kit deploy x", break_lock=break_lock)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        proc.kill()
    if state.backend == "postgres":
        # The server ends the dead session's lock: taken over without --break-lock, its pending revision resolved.
        assert deploylock.wait_until_free(h, "app", timeout=10)
        assert deploylock.acquire(h, "app", "kit deploy x") == [1]
        assert [e.note for e in h.events("app") if e.status == "lock-freed"]
    else:
        with pytest.raises(deploylock.StaleLock, match="no longer running; it left r1 pending"):
            deploylock.acquire(h, "app", "kit deploy x")
        assert deploylock.acquire(h, "app", "kit deploy x", break_lock=True) == [1]
    assert h.get("app", 1).status == "failed" and deploylock.holder(h, "app").pid == os.getpid()
    deploylock.release(h, "app")
    assert deploylock.holder(h, "app") is None


def test_a_reused_pid_is_not_reported_as_another_kit_process(tmp_path):
    # issue 13 item 12: the holder died and its pid now runs something that started after the lock was taken.
    h = History.open(tmp_path)
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        h.db.execute("INSERT INTO deploy_locks VALUES ('app', ?, ?, '2020-01-01T00:00:00+00:00', 'kit deploy old')", (other.pid, socket.gethostname()))
        with pytest.raises(deploylock.StaleLock, match=f"no longer running \\(pid {other.pid} now belongs to a process started after the lock was taken\\)"):
            deploylock.acquire(h, "app", "kit deploy x")
        assert deploylock.acquire(h, "app", "kit deploy x", break_lock=True) == []
    finally:
        other.kill()
        other.wait()


@pytest.mark.parametrize("n", [2, 10])
def test_concurrent_deploys_of_one_app_run_one_at_a_time_and_none_is_lost(state, fake, profile, n):
    env = {**fake.env(), **state.env}
    fake.behave(deploy_delay="0.5")
    procs = [kit("deploy", str(profile), "--yes", env=env, wait=False) for _ in range(n)]
    results = []
    for p in procs:
        out, err = p.communicate(timeout=300)
        results.append((p.returncode, err))
    ran = sum(1 for code, _ in results if code == 0)
    refused = sum(1 for code, err in results if code == 1 and "another kit process is deploying or rolling back ir-generator" in err)
    h = state.open(readonly=True)
    revs = h.revisions("ir-generator")
    finished = [r for r in revs if r.status in ("deployed", "superseded")]
    lost = (n - ran - refused) + sum(1 for r in revs if r.status == "pending") + abs(len(fake.read()["deploys"]) - ran) + abs(len(finished) - ran)
    print(f"\nconcurrency {state.backend}: attempted {n}, ran {ran}, refused {refused}, lost {lost}")
    assert not (fake.dir / "overlaps").exists(), "two deploys ran at once"
    assert ran >= 1 and lost == 0, results
    assert [r.number for r in revs] == list(range(1, ran + 1)) and sum(r.status == "deployed" for r in revs) == 1
    assert deploylock.holder(h, "ir-generator") is None


# --- faults of the store (issue 13) ------------------------------------------------------------


def _open_at_once(where: str, barrier, results) -> None:
    barrier.wait()
    try:
        h = open_history(parse(where, "test"))
        results.put(("ok", h.applied_migrations()))
        h.close()
    except BaseException as exc:  # noqa: BLE001 - the test reports whatever happened
        results.put(("error", f"{type(exc).__name__}: {exc}"))


def test_a_new_history_opened_by_many_processes_at_once(state):
    # issue 13 item 9: 11 of 280 simultaneous first opens failed with "database is locked".
    n = 24
    ctx = multiprocessing.get_context("fork")
    barrier, results = ctx.Barrier(n), ctx.Queue()
    where = state.url if state.backend == "postgres" else f"sqlite:///{state.path}/history.db"
    procs = [ctx.Process(target=_open_at_once, args=(where, barrier, results)) for _ in range(n)]
    for p in procs:
        p.start()
    got = [results.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(timeout=30)
    from kit.history_db import MIGRATIONS

    assert got == [("ok", [name for name, _ in MIGRATIONS])] * n
    if state.backend == "sqlite":
        assert sorted(p.name for p in state.path.iterdir() if p.name.endswith(".new")) == []  # no private copy left


def test_a_malformed_row_is_named_and_the_others_are_listed(state, tmp_path):
    # issue 13 item 6: bad JSON, an unknown status, an extra column.
    h = state.open()
    for bundle in ("1", "2", "3", "4"):
        deployed(h, bundle * 64)
    h.db.execute("UPDATE revisions SET profile_json = '{not json' WHERE number = 2")
    if state.backend == "sqlite":
        h.db.execute("PRAGMA ignore_check_constraints = ON")
    else:
        h.db.execute("ALTER TABLE revisions DROP CONSTRAINT revisions_status_check")
    h.db.execute("UPDATE revisions SET status = 'exploded' WHERE number = 3")
    h.db.execute("ALTER TABLE revisions ADD COLUMN added_by_hand TEXT")
    assert [r.number for r in h.revisions("app")] == [1, 4]
    assert [str(d) for d in h.damaged] == [
        "r2 of app cannot be read: its profile_json is not JSON (Expecting property name enclosed in double quotes: line 1 column 2 (char 1))",
        "r3 of app cannot be read: its status 'exploded' is none of pending, deployed, failed, superseded, rolled_back",
    ]
    with pytest.raises(HistoryError, match="r2 of app cannot be read"):
        h.get("app", 2)
    assert h.rollback_target("app").number == 1  # rollback still finds the good revisions
    code, out, err = kit("history", "app", env=state.env)
    assert code == 1 and "warning: r2 of app cannot be read" in err and "warning: r3 of app" in err and "Traceback" not in err
    assert "r1" in out and "r4" in out
    code, out, err = kit("status", "app", env=state.env)
    assert "r2 of app cannot be read" in err and "r4" in out and "Traceback" not in err


def test_sigterm_during_a_deploy_is_handled_as_ctrl_c(state, fake, profile, tmp_path):
    # issue 13 item 10: not left pending, lock released, `modal deploy` killed, the bundle's temporary copy removed.
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    env = {**fake.env(), **state.env, "TMPDIR": str(tmp)}
    fake.behave(deploy="block")
    proc = kit("deploy", str(profile), "--yes", env=env, wait=False)
    modal_pid = int(fake.wait_for("deploying"))
    try:
        assert [p.name for p in tmp.iterdir() if p.name.startswith("kit-bundle-")]
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 130 and "interrupted (signal SIGTERM): r1 marked failed" in err and "Traceback" not in err
    deadline = time.monotonic() + 10
    while pid_alive(modal_pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not pid_alive(modal_pid)
    assert [p.name for p in tmp.iterdir() if p.name.startswith("kit-bundle-")] == []
    h = state.open(readonly=True)
    assert deploylock.holder(h, "ir-generator") is None
    rev = h.get("ir-generator", 1)
    assert rev.status == "failed" and "interrupted: KeyboardInterrupt: signal SIGTERM" in rev.error
    fake.behave(deploy=None)
    code, _, err = kit("deploy", str(profile), "--yes", env=env)  # no --break-lock needed
    assert code == 0, err


def test_an_empty_history_file_is_reported_not_restarted(tmp_path, fake, profile):
    # issue 13 item 12: a 0-byte history.db said "needs an upgrade", and a deploy restarted at r1.
    state = tmp_path / "state"
    state.mkdir()
    (state / "history.db").write_bytes(b"")
    env = {**fake.env(), "KIT_STATE_DIR": str(state)}
    for args in (("history",), ("deploy", str(profile), "--yes")):
        code, _, err = kit(*args, env=env)
        assert code == 2 and "is an empty file (0 bytes)" in err and "will not start a new history over it" in err, err
    assert (state / "history.db").read_bytes() == b"" and fake.read()["deploys"] == []


def test_a_foreign_sqlite_file_is_left_untouched(tmp_path):
    # issue 13 item 12: kit switched someone else's database to WAL while saying it left it untouched.
    path = tmp_path / "history.db"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE notes (body TEXT)")
    db.execute("INSERT INTO notes VALUES ('mine')")
    db.commit()
    db.close()
    before = path.read_bytes()
    for readonly in (False, True):
        with pytest.raises(HistoryError, match=r"a SQLite database, but not kit's deploy history \(its tables: notes\); kit left it untouched"):
            History.open(tmp_path, readonly=readonly)
    assert path.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["history.db"]
    assert sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone()[0] == "delete"


def test_disk_full_after_modal_accepted_says_modal_serves_an_unrecorded_revision(state, fake, profile):
    # issue 13 item 12. The full disk is the driver's error, raised where the write happens (kit's
    # connection): a real full disk cannot be made here without mounting a filesystem.
    h = state.open()
    if state.backend == "sqlite":
        full = sqlite3.OperationalError("database or disk is full")
    else:
        import psycopg

        full = psycopg.errors.DiskFull("could not extend file: No space left on device")
    real = h.db.execute

    def execute(sql, args=()):
        if sql.startswith("UPDATE revisions SET modal_version"):
            raise full
        return real(sql, args)

    h.db.execute = execute
    with pytest.raises(HistoryError) as exc:
        kd.deploy(kd.prepare(load(profile)), context(h), atomic=False)
    text = exc.value.render()
    assert "Modal accepted r1 of ir-generator and now serves it as v1 (tag kit-r1-" in text and "could not be written" in text
    assert "history still shows r1 as pending" in text and "kit status ir-generator" in text
    assert len(fake.read()["deploys"]) == 1


def test_secret_looking_values_are_masked_in_the_history(state, fake, tmp_path):
    # issue 13 item 7 (the history's part): never stored in clear, never shown by `kit history`.
    token, key = "hf_" + "A1b2C3d4E5f6G7h8I9j0K1l2", "sk-" + "proj-Zz9Yy8Xx7Ww6Vv5Uu4Tt3"
    profile = profile_tree(tmp_path / "repo", extra=f'\n[engine.args]\napi_key = "{key}"\n')
    text = profile.read_text().replace('env = { HF_HUB_ENABLE_HF_TRANSFER = "1" }', f'env = {{ HF_HUB_ENABLE_HF_TRANSFER = "1", HF_TOKEN = "{token}" }}')
    profile.write_text(text)
    h = state.open()
    outcome = kd.deploy(kd.prepare(load(profile)), context(h), atomic=False)
    assert outcome.ok, outcome.messages
    rev = h.get("ir-generator", 1)
    assert rev.redacted == ["engine.args.api_key", "image.env.HF_TOKEN"]
    assert rev.profile["image"]["env"]["HF_TOKEN"] == "***masked***" and rev.profile["image"]["env"]["HF_HUB_ENABLE_HF_TRANSFER"] == "1"
    stored = json.dumps([list(r) for r in h._query("SELECT * FROM revisions")] + [list(r) for r in h._query("SELECT * FROM events")])
    assert token not in stored and key not in stored and "***masked***" in stored
    code, out, err = kit("history", "--format", "json", env=state.env)
    assert code == 0 and token not in out and key not in out and '"redacted": [' in out
    # Its stored bundle holds the mask, so kit will not redeploy it as it is: it says why.
    fake.behave(deploy=None)
    h.record_pending(revision(app="ir-generator", bundle="9" * 64))
    h.mark_deployed("ir-generator", 2)
    back = kd.rollback("ir-generator", context(h), to=1)
    assert not back.ok and "cannot be redeployed: kit masked its secret-looking values (engine.args.api_key, image.env.HF_TOKEN)" in back.messages[0]


@pytest.mark.postgres
def test_migrate_masks_secrets_an_older_kit_stored_in_clear(postgres_schema, tmp_path):
    token = "hf_" + "Q1w2E3r4T5y6U7i8O9p0A1s2"
    local = History.open(tmp_path / "local")
    deployed(local, "1" * 64)
    # As a kit before masking stored it: the value in the profile and in the rendered app.
    local.db.execute(
        "UPDATE revisions SET profile_json = ?, bundle_files = ?",
        (json.dumps({"app": {"name": "app"}, "image": {"env": {"HF_TOKEN": token}}}, sort_keys=True), json.dumps({"app.py": f"ENV = {{'HF_TOKEN': {token!r}}}\n"})),
    )
    local.close()
    env = {"KIT_STATE_DIR": str(tmp_path / "local")}
    for action in ("copied", "already there"):
        code, out, err = kit("state", "migrate", "--to", postgres_schema, env=env)
        assert code == 0 and f"app: {action}" in out, err
    shared = open_history(parse(postgres_schema, "test"), readonly=True)
    stored = json.dumps([list(r) for r in shared._query("SELECT * FROM revisions")])
    assert token not in stored and shared.get("app", 1).redacted == ["image.env.HF_TOKEN"]
    shared.close()


@pytest.mark.postgres
def test_a_read_only_postgres_store_refuses_a_deploy_and_still_reads(postgres_schema, fake, profile):
    # The PostgreSQL side of test_read_only_state_file: every transaction of this session is read-only.
    h = open_history(parse(postgres_schema, "test"))
    assert kd.deploy(kd.prepare(load(profile)), context(h), atomic=False).ok
    h.close()
    read_only = f"{postgres_schema}%20-cdefault_transaction_read_only%3Don"  # appended to the schema's options=
    env = {**fake.env(), "KIT_STATE_URL": read_only}
    code, out, err = kit("deploy", str(profile), "--yes", env=env)
    assert code == 2 and "read-only transaction" in err and "nothing was changed" in err and "Traceback" not in err
    assert len(fake.read()["deploys"]) == 1
    assert history_rows(env) == [(1, "deployed")]


@pytest.mark.postgres
def test_tables_in_the_schema_that_are_not_kits_are_left_untouched(postgres_schema):
    import psycopg

    with psycopg.connect(postgres_schema, autocommit=True) as other:
        other.execute("CREATE TABLE revisions (id int, body text)")
        other.execute("INSERT INTO revisions VALUES (1, 'theirs')")
    code, _, err = kit("history", env={"KIT_STATE_URL": postgres_schema})
    assert code == 2 and "holds tables named as kit's (revisions) that kit did not make; kit left them untouched" in err
    with pytest.raises(HistoryError, match="kit left them untouched"):
        open_history(parse(postgres_schema, "test"))
    with psycopg.connect(postgres_schema, autocommit=True) as other:
        assert other.execute("SELECT body FROM revisions").fetchall() == [("theirs",)]
        assert other.execute("SELECT count(*) FROM information_schema.tables WHERE table_schema = current_schema()").fetchone()[0] == 1
