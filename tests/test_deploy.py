"""kit deploy / rollback / status / history, end to end.

Everything is real (the library profile and its lockfile, check, render, SQLite, the smoke test over
HTTP to a server on 127.0.0.1, subprocesses) except the Modal cloud: kit's ModalTarget runs
tests/fake_modal.py in place of the `modal` CLI (tests/deployfakes.py says how). After each fault the
history is asserted. Tests that take `history` or `state` run on both history backends, SQLite and a
real PostgreSQL server (tests/statefixtures.py).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from kit import deploy as kd
from kit import deploy_view as view
from kit.deploylock import pid_alive
from kit.errors import OperationError
from kit.history import History
from kit.load import load
from tests.deployfakes import fake, kit, make_target, profile  # noqa: F401 (fake, profile: fixtures)


@pytest.fixture
def history(state):
    return state.open()


def context(history: History, deploy_timeout: float = 30.0) -> tuple[kd.Context, list[str]]:
    said: list[str] = []
    return kd.Context(history=history, target=make_target(), deploy_timeout=deploy_timeout, modal_timeout=10.0, echo=said.append), said


def deploy(profile: Path, history: History, *, atomic: bool = False, **kw) -> kd.Outcome:
    ctx, _ = context(history, **kw)
    return kd.deploy(kd.prepare(load(profile)), ctx, atomic=atomic)


def statuses(history: History, app: str = "ir-generator") -> list[tuple[int, str, str]]:
    return [(r.number, r.status, r.kind) for r in history.revisions(app)]


def bump(profile: Path, old: str = "max_containers = 2", new: str = "max_containers = 3") -> None:
    text = profile.read_text()
    assert old in text
    profile.write_text(text.replace(old, new))


# --- the URLs `modal deploy` prints ------------------------------------------------------------

# The installed modal client's own code prints the "Created objects." tree (modal/_output/status.py):
# a class's web method and a web function, as `modal deploy` shows them through a pipe.
MODAL_TREE = """
import modal
from modal._output.manager import OutputManager
from modal._output.status import FunctionCreationStatus
from modal_proto import api_pb2

with modal.enable_output():
    with OutputManager.get().display_object_tree():
        with FunctionCreationStatus("Function", "Inference.*") as status:
            resp = api_pb2.FunctionCreateResponse()
            resp.function.method_definitions["generate"].function_name = "Inference.generate"
            web = resp.function.method_definitions["web"]
            web.function_name = "Inference.web"
            web.web_url = "https://my-workspace--ir-generator-inference-web.modal.run"
            web.webhook_config.type = api_pb2.WEBHOOK_TYPE_ASGI_APP
            resp.function.method_definitions_set = True
            status.set_response(resp)
        with FunctionCreationStatus("Function", "serve") as status:
            resp = api_pb2.FunctionCreateResponse()
            resp.handle_metadata.web_url = "https://ws--ir-generator-openai-serve.modal.run"
            resp.function.webhook_config.type = api_pb2.WEBHOOK_TYPE_WEB_SERVER
            status.set_response(resp)
"""


@pytest.mark.parametrize("columns", [None, "10000"])
def test_deploy_urls_read_from_the_modal_clients_own_output(columns):
    import subprocess
    import sys

    from kit.target import deploy_urls

    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"} | ({"COLUMNS": columns} if columns else {})
    out = subprocess.run([sys.executable, "-c", MODAL_TREE], env=env, capture_output=True, text=True, check=True).stdout
    assert ("Inference.web -> https://" in out) is (columns is not None)  # 80 columns through a pipe: the URL wraps
    assert deploy_urls("Building image im-1...\n=> https://example.invalid/simple/vllm/\n" + out) == {
        "Inference.web": "https://my-workspace--ir-generator-inference-web.modal.run",
        "serve": "https://ws--ir-generator-openai-serve.modal.run",
    }


def test_deploy_urls_of_older_clients():
    from kit.target import deploy_urls

    out = (
        "✓ Created objects.\n├── 🔨 Created mount /root/app.py\n"
        "├── 🔨 Created web function Inference.http_generate => https://ws--app-inference-http-generate.modal.run\n"
        "└── 🔨 Created web function Inference.health => https://ws--app-inference-health.modal.run\n"
        "✓ App deployed in 1.2s! 🎉\n\nView Deployment: https://modal.com/apps/ws/main/deployed/app\n"
    )
    assert deploy_urls(out) == {
        "Inference.http_generate": "https://ws--app-inference-http-generate.modal.run",
        "Inference.health": "https://ws--app-inference-health.modal.run",
    }
    assert deploy_urls("+-- Created Function serve\n    `-- https://ws--app-serve.modal.run 🔑\n") == {"serve": "https://ws--app-serve.modal.run"}


# --- in-process: the deploy flow --------------------------------------------------------------


def test_deploy_records_a_complete_revision(fake, profile, history):
    out = deploy(profile, history)
    assert out.ok, out.messages
    rev = history.get("ir-generator", 1)
    state = fake.read()
    assert rev.status == "deployed" and rev.kind == "deploy"
    assert rev.modal_tag == f"kit-r1-{rev.bundle_hash[:12]}" == state["versions"][0]["tag"]
    assert rev.modal_version == "v1" and rev.modal_app_id == "ap-fake1"
    assert state["live_bundle"] == rev.bundle_hash == rev.manifest["bundle_hash"]
    assert set(rev.profile_texts) == {"profiles/qwen25-a10g.toml", "profiles/schemas/ir-v1.json"}
    assert rev.profile_texts["profiles/qwen25-a10g.toml"] == profile.read_text()
    assert rev.lock_text == (profile.parent / "qwen25-a10g.lock").read_text()
    assert {"app.py", "manifest.json", "requirements.txt"} <= set(rev.bundle_files)
    assert state["deploys"][0]["files"] == sorted(rev.bundle_files)  # Modal was handed exactly the bundle
    assert state["deploys"][0]["columns"] == "10000"  # so that rich does not wrap the URL lines
    assert rev.smoke["ok"] and [c["name"] for c in rev.smoke["checks"]] == ["health", "latency", "json", "schema"]
    assert rev.urls == {"Inference.web": fake.server.url}  # one base URL: POST /generate and GET /health under it
    assert (rev.smoke["health_url"], rev.smoke["generate_url"]) == (f"{fake.server.url}/health", f"{fake.server.url}/generate")
    assert rev.created_by and rev.host and rev.kit_version and rev.finished_at
    st = kd.status("ir-generator", history, make_target(), 10)
    assert st.drift == [] and st.current.number == 1


def test_deploy_fails(fake, profile, history):
    fake.behave(deploy="fail")
    out = deploy(profile, history)
    assert not out.ok
    assert statuses(history) == [(1, "failed", "deploy")]
    assert "pip install exited with status 1" in history.get("ir-generator", 1).error
    assert history.current("ir-generator") is None
    assert history.db.execute("SELECT count(*) FROM deploy_locks").fetchone()[0] == 0


def test_deploy_hangs_past_the_timeout(fake, profile, history):
    fake.behave(deploy="hang")
    started = time.monotonic()
    out = deploy(profile, history, deploy_timeout=1.0)
    assert time.monotonic() - started < 10
    assert not out.ok
    rev = history.get("ir-generator", 1)
    assert rev.status == "failed" and "did not finish within 1 s and was stopped" in rev.error
    pid = int(fake.wait_for("deploy.pid"))
    assert not pid_alive(pid)  # the whole process group was killed, not left running


def test_failed_smoke_with_atomic_rolls_back_to_the_last_good_bundle(fake, profile, history):
    assert deploy(profile, history).ok
    good = history.get("ir-generator", 1)
    bump(profile)
    bad = kd.prepare(load(profile)).bundle.hash
    fake.behave(generate="invalid", only_bundle=bad)  # the new bundle generates schema-invalid output
    ctx, said = context(history)
    out = kd.deploy(kd.prepare(load(profile)), ctx, atomic=True)
    assert not out.ok and out.rollback is not None and out.rollback.status == "deployed"
    assert statuses(history) == [(1, "superseded", "deploy"), (2, "failed", "deploy"), (3, "deployed", "rollback")]
    r2, r3 = history.get("ir-generator", 2), history.get("ir-generator", 3)
    assert "/version" in r2.error and "rolled back automatically by r3" in r2.error and not r2.smoke["ok"]
    assert r3.rollback_of == 1 and r3.bundle_hash == good.bundle_hash and r3.bundle_files == good.bundle_files and r3.smoke["ok"]
    assert fake.read()["live_bundle"] == good.bundle_hash
    assert any("--atomic: rolling back to r1" in s for s in said)
    assert any("rolled back automatically: r3 redeployed r1's bundle" in m for m in out.messages)


def test_atomic_rollback_that_fails_too_is_recorded(fake, profile, history):
    assert deploy(profile, history).ok
    bump(profile)
    fake.behave(health="down")  # every bundle is unhealthy now
    out = deploy(profile, history, atomic=True)
    assert not out.ok and out.rollback is not None and out.rollback.status == "failed"
    assert statuses(history) == [(1, "deployed", "deploy"), (2, "failed", "deploy"), (3, "failed", "rollback")]
    assert any("the automatic rollback to r1 failed too" in m for m in out.messages)


def test_failed_smoke_without_atomic_says_what_modal_serves(fake, profile, history):
    assert deploy(profile, history).ok
    bump(profile)
    fake.behave(generate="fenced")
    out = deploy(profile, history, atomic=False)
    assert not out.ok and out.rollback is None
    assert any("Modal now serves r2, which failed its smoke test; `kit rollback ir-generator` returns to r1" in m for m in out.messages)
    assert statuses(history) == [(1, "deployed", "deploy"), (2, "failed", "deploy")]
    st = kd.status("ir-generator", history, make_target(), 10)
    assert st.drift == ["Modal serves v2, kit's r2 (failed), not the current r1"]


def test_rollback_redeploys_the_stored_bundle_never_the_working_copy(fake, profile, history):
    assert deploy(profile, history).ok
    bump(profile)
    assert deploy(profile, history).ok
    r1, r2 = history.get("ir-generator", 1), history.get("ir-generator", 2)
    assert r1.bundle_hash != r2.bundle_hash
    shutil.rmtree(profile.parent)  # the working copy is gone: the rollback must not need it
    ctx, said = context(history)
    out = kd.rollback("ir-generator", ctx)
    assert out.ok, out.messages
    assert statuses(history) == [(1, "superseded", "deploy"), (2, "rolled_back", "deploy"), (3, "deployed", "rollback")]
    r3 = history.get("ir-generator", 3)
    assert r3.rollback_of == 1 and r3.bundle_files == r1.bundle_files and r3.profile_texts == r1.profile_texts
    state = fake.read()
    assert state["deploys"][-1]["bundle"] == r1.bundle_hash == state["live_bundle"]
    assert any("Team and Enterprise" in s and "redeploying r1's stored bundle" in s for s in said)  # native rollback refused
    assert r3.modal_version == "v3" and kd.status("ir-generator", history, make_target(), 10).drift == []


def test_rollback_uses_modals_native_rollback_when_available(fake, profile, history):
    assert deploy(profile, history).ok
    bump(profile)
    assert deploy(profile, history).ok
    fake.behave(rollback="ok")
    ctx, _ = context(history)
    out = kd.rollback("ir-generator", ctx, to=1)
    assert out.ok
    state = fake.read()
    assert state["rollbacks"] == ["v1"] and len(state["deploys"]) == 2  # no third build
    r3 = history.get("ir-generator", 3)
    assert (r3.status, r3.rollback_of, r3.modal_version) == ("deployed", 1, "v3")
    assert kd.status("ir-generator", history, make_target(), 10).drift == []  # v3 has no tag, but kit recorded it


def test_rollback_with_no_earlier_good_revision(fake, profile, history):
    ctx, _ = context(history)
    with pytest.raises(OperationError, match="no earlier good revision"):
        kd.rollback("ir-generator", ctx)
    assert deploy(profile, history).ok
    with pytest.raises(OperationError, match="no earlier good revision to roll back to \\(its current revision is r1\\)"):
        kd.rollback("ir-generator", ctx)
    assert statuses(history) == [(1, "deployed", "deploy")]
    assert len(fake.read()["deploys"]) == 1


def test_status_sees_a_deploy_made_outside_kit(fake, profile, history):
    assert deploy(profile, history).ok
    state = fake.read()
    state["versions"].append({"version": "v2", "time_deployed": "2026-11-29T00:00:00Z", "client": "1.6.4", "deployed_by": "someone", "commit": "abc1234*", "tag": None})
    fake.write(state)
    st = kd.status("ir-generator", history, make_target(), 10)
    assert len(st.drift) == 1 and "v2 (deployed by someone" in st.drift[0] and "was not deployed by kit" in st.drift[0]
    fake.behave(history="fail")
    st = kd.status("ir-generator", history, make_target(), 10)
    assert st.modal is None and "Could not connect" in st.modal_error


def unlocked_prepare(profile: Path, like: kd.Prepared) -> kd.Prepared:
    """prepare() for a profile whose packages changed since its lockfile: rendering needs a fresh lock (and
    `kit lock` the network), so a stand-in renderer returns another bundle. The plan still blocks on the lock."""
    bundle = SimpleNamespace(files=like.bundle.files, manifest=like.bundle.manifest, hash="0" * 64)
    return kd.prepare(load(profile), renderer=lambda _: bundle)


def test_plan_shows_what_kit_diff_shows(fake, profile, history, capsys):
    first = kd.prepare(load(profile))
    assert kd.deploy(first, context(history)[0], atomic=False).ok
    # The second deploy: another GPU, one container more, and a transformers upgrade that vLLM 0.9.2 cannot import.
    bump(profile)
    bump(profile, 'type = "A10G"', 'type = "L40S"')
    bump(profile, 'transformers = "4.53.0"', 'transformers = "4.54.0"')
    plan = kd.plan(unlocked_prepare(profile, first), history)
    d = plan.diff
    assert plan.compared and plan.current.number == 1 and d.status == "changed"
    assert {(c.key, c.old, c.new) for c in d.settings} == {("gpu.type", "A10G", "L40S"), ("serving.max_containers", 2, 3)}
    assert [(p.name, p.old, p.new, p.kind, p.level) for p in d.packages] == [("transformers", "4.53.0", "4.54.0", "upgrade", "minor")]
    assert (d.cost_before.gpu, d.cost_after.gpu) == ("A10G", "L40S") and d.cost_after.per_1k_requests > d.cost_before.per_1k_requests
    assert plan.fleet_before.cost.price_per_hour == pytest.approx(1.10) and plan.fleet_before.ceiling == pytest.approx(2.20)
    assert plan.fleet_after.cost.gpu == "L40S" and plan.fleet_after.max_containers == 3
    assert d.headroom_after > d.headroom_before
    assert [f.rule for f in d.introduced] == ["vllm-transformers-aimv2"] and d.fixed == []
    assert any("vllm-transformers-aimv2" in b for b in plan.blockers) and any("the lockfile is stale" in b for b in plan.blockers)

    view.print_plan(plan, dry_run=True)
    out = capsys.readouterr().out
    assert "changes   since r1: 2 settings, 1 package, 1 finding introduced" in out
    assert "transformers           4.53.0 -> 4.54.0  upgrade, minor" in out
    assert 'gpu.type               "A10G" -> "L40S"' in out
    assert "A10G $1.10/h -> L40S $1.95/h (+$0.85/h, +77%)" in out and "per 1,000 requests     $0.31 -> $0.54 (+$0.24)" in out
    assert "memory headroom        1.9 GiB -> 22.0 GiB (+20.1 GiB)" in out
    assert "+ error   vllm-transformers-aimv2: vLLM 0.9.0-0.9.2 crash at import" in out
    assert "cost now  $1.10/h per running container (A10G); idle floor $0.00/h (min_containers=0), up to $2.20/h at max_containers=2" in out
    assert "cost then $1.95/h per running container (L40S)" in out and "a deploy would stop here" in out

    doc = json.loads(json.dumps(plan.as_dict()))
    assert doc["compared"] and doc["diff"]["packages"] == [{"name": "transformers", "old": "4.53.0", "new": "4.54.0", "kind": "upgrade", "level": "minor"}]
    assert doc["diff"]["cost"]["before"]["per_1k_requests_usd"] < doc["diff"]["cost"]["after"]["per_1k_requests_usd"]
    assert doc["diff"]["memory_headroom_bytes"]["after"] > doc["diff"]["memory_headroom_bytes"]["before"]
    assert doc["diff"]["findings"]["introduced"][0]["rule"] == "vllm-transformers-aimv2"
    assert doc["fleet"]["after"]["ceiling_per_hour_usd"] == pytest.approx(3 * doc["fleet"]["after"]["per_container_per_hour_usd"])


def test_plan_reads_the_revisions_stored_texts_and_lockfile(fake, profile, history, capsys):
    assert deploy(profile, history).ok
    r1 = history.get("ir-generator", 1)
    # As if r1 had run vLLM 0.9.1 with transformers 4.54 (they crash together) and a transitive package had
    # resolved to another version: the plan compares against the stored texts, not the working tree.
    text = r1.profile_texts[r1.profile_path]
    old = text.replace('vllm = "0.9.2"', 'vllm = "0.9.1"').replace('transformers = "4.53.0"', 'transformers = "4.54.0"')
    assert old != text and "regex==2026.11.19 " in r1.lock_text
    history.update("ir-generator", 1, profile_texts={**r1.profile_texts, r1.profile_path: old}, lock_text=r1.lock_text.replace("regex==2026.11.19 ", "regex==2025.1.1 "))
    plan = kd.plan(kd.prepare(load(profile)), history)
    d = plan.diff
    assert plan.compared and plan.blockers == [] and d.settings == []
    assert [(p.name, p.old, p.new, p.kind, p.level) for p in d.packages] == [
        ("transformers", "4.54.0", "4.53.0", "downgrade", "minor"),
        ("vllm", "0.9.1", "0.9.2", "upgrade", "patch"),
    ]
    assert [(p.name, p.old, p.new, p.level) for p in d.locked] == [("regex", "2025.1.1", "2026.11.19", "major")]
    assert [f.rule for f in d.fixed] == ["vllm-transformers-aimv2"] and d.introduced == []
    assert d.cost_before == d.cost_after and d.headroom_before == d.headroom_after
    view.print_plan(plan, dry_run=True)
    out = capsys.readouterr().out
    assert "changes   since r1: 2 packages, 1 locked package, 1 finding fixed" in out
    assert "vllm                   0.9.1 -> 0.9.2  upgrade, patch" in out and "regex                  2025.1.1 -> 2026.11.19  upgrade, major" in out
    assert "- error   vllm-transformers-aimv2" in out and "cost and memory" not in out  # the cost did not change
    assert "r1's stored resolved profile differs from what its files give now" in out  # the texts were edited under it


def test_plan_against_a_revision_this_kit_cannot_load(fake, profile, history, capsys):
    assert deploy(profile, history).ok
    rev = history.get("ir-generator", 1)
    texts = {**rev.profile_texts, rev.profile_path: rev.profile_texts[rev.profile_path].replace("[serving]", "[serving]\nreplicas = 2")}
    history.update("ir-generator", 1, profile_texts=texts)  # as if an older kit had accepted a key this one does not
    plan = kd.plan(kd.prepare(load(profile)), history)
    assert not plan.compared and plan.fleet_before is None and plan.fleet_after.cost.gpu == "A10G"
    assert any("r1's stored profile (profiles/qwen25-a10g.toml, deployed with kit" in n and "serving.replicas: unknown key" in n for n in plan.notes)
    view.print_plan(plan, dry_run=True)
    out = capsys.readouterr().out
    assert "changes   unknown: r1's stored profile does not load in this kit" in out and "ready to deploy" in out
    assert "per 1,000 requests: $0.31 at 1 s per request" in out and "memory    headroom 1.9 GiB" in out


# --- the CLI, in real subprocesses -------------------------------------------------------------


def history_json(env: dict[str, str]) -> list[dict]:
    code, out, err = kit("history", "--format", "json", env=env)
    assert code == 0, err
    return [{"number": r["number"], "status": r["status"], "kind": r["kind"]} for r in json.loads(out)["revisions"]]


def test_dry_run_needs_no_modal_account(tmp_path, profile):
    env = {"HOME": str(tmp_path / "home"), "KIT_STATE_DIR": str(tmp_path / "state")}
    code, out, err = kit("deploy", str(profile), "--dry-run", env=env)
    assert code == 0, err
    assert "Plan: deploy profiles/qwen25-a10g.toml to Modal app ir-generator" in out
    assert "is fresh" in out and "$1.10/h per running container (A10G)" in out and "first deploy" in out
    assert "per 1,000 requests: $0.31 at 1 s per request (assumed: smoke.latency_budget_s)" in out and "memory    headroom 1.9 GiB" in out
    assert "dry run: nothing was deployed or recorded; ready to deploy" in out
    assert not (tmp_path / "state").exists()  # a dry run writes nothing


def test_no_credentials_is_said_first(tmp_path, profile):
    env = {"HOME": str(tmp_path / "home"), "KIT_STATE_DIR": str(tmp_path / "state")}
    started = time.monotonic()
    code, out, err = kit("deploy", str(profile), "--yes", env=env)
    assert code == 2
    assert "no Modal credentials" in err and "modal token new" in err and "MODAL_TOKEN_ID" in err and "MODAL_TOKEN_SECRET" in err
    assert "Plan" not in out and time.monotonic() - started < 10
    code, _, err = kit("rollback", "ir-generator", env=env)
    assert code == 2 and "modal token new" in err


def test_no_terminal_and_no_yes(state, fake, profile):
    code, out, err = kit("deploy", str(profile), env={**fake.env(), **state.env})
    assert code == 2 and "no terminal to confirm" in err and "--yes" in err
    assert fake.read()["deploys"] == []


def test_killed_between_pending_and_deployed(state, fake, profile):
    env = {**fake.env(), **state.env}
    fake.behave(deploy="block")
    proc = kit("deploy", str(profile), "--yes", env=env, wait=False)
    try:
        modal_pid = int(fake.wait_for("deploying"))
        assert history_json(env) == [{"number": 1, "status": "pending", "kind": "deploy"}]
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        os.kill(modal_pid, signal.SIGKILL) if pid_alive(modal_pid) else None
        proc.kill()
        proc.communicate()
    fake.behave(deploy=None)
    # status sees it (on PostgreSQL once the server has noticed the connection is gone: at once, here).
    if state.backend == "postgres":
        from kit.deploylock import wait_until_free

        assert wait_until_free(state.open(readonly=True), "ir-generator", timeout=10)
    code, out, _ = kit("status", "ir-generator", env=env)
    assert code == 1 and "r1 is pending but its process" in out and "is gone" in out
    if state.backend == "postgres":
        # The database released the dead holder's lock: the next deploy takes over, resolving r1, no flag needed.
        code, out, err = kit("deploy", str(profile), "--yes", env=env)
        assert code == 0, err
        assert "r1 was left pending by a process that stopped; marked failed" in err
        assert history_json(env) == [{"number": 1, "status": "failed", "kind": "deploy"}, {"number": 2, "status": "deployed", "kind": "deploy"}]
        return
    # SQLite: a plain deploy refuses, naming the dead process and the flag; nothing changes.
    code, _, err = kit("deploy", str(profile), "--yes", env=env)
    assert code == 1 and "no longer running; it left r1 pending" in err and "--break-lock" in err
    assert history_json(env) == [{"number": 1, "status": "pending", "kind": "deploy"}]
    # --break-lock resolves the orphan and deploys.
    code, out, err = kit("deploy", str(profile), "--yes", "--break-lock", env=env)
    assert code == 0, err
    assert "r1 was left pending by a process that stopped; marked failed" in err
    assert history_json(env) == [{"number": 1, "status": "failed", "kind": "deploy"}, {"number": 2, "status": "deployed", "kind": "deploy"}]


def test_two_deploys_race_for_one_app(state, fake, profile):
    env = {**fake.env(), **state.env}
    fake.behave(deploy="block")
    first = kit("deploy", str(profile), "--yes", env=env, wait=False)
    try:
        fake.wait_for("deploying")
        code, _, err = kit("deploy", str(profile), "--yes", env=env)
        assert code == 1 and "another kit process is deploying or rolling back ir-generator" in err
        # issue 13 item 2: --break-lock never takes the lock of a deploy that still runs, and says who holds it.
        code, _, err = kit("deploy", str(profile), "--yes", "--break-lock", env=env)
        assert code == 1 and f"pid {first.pid} on " in err and "--break-lock never takes a lock from a process that still runs" in err
        code, out, _ = kit("status", "ir-generator", env=env)  # who holds the lock, on either backend
        assert f"lock     held by pid {first.pid} on " in out and "(kit deploy " in out
        (fake.dir / "release").write_text("go")
        out, err = first.communicate(timeout=60)
        assert first.returncode == 0, err
    finally:
        first.kill()
    assert history_json(env) == [{"number": 1, "status": "deployed", "kind": "deploy"}]
    assert len(fake.read()["deploys"]) == 1


def test_corrupt_state_file(tmp_path, fake, profile):
    state = tmp_path / "state"
    state.mkdir()
    (state / "history.db").write_bytes(b"\x00garbage" * 512)
    env = {**fake.env(), "KIT_STATE_DIR": str(state)}
    code, _, err = kit("deploy", str(profile), "--yes", env=env)
    assert code == 2 and "not a readable SQLite database" in err and "untouched" in err
    assert (state / "history.db").read_bytes() == b"\x00garbage" * 512
    assert fake.read()["deploys"] == []  # nothing deployed
    code, _, err = kit("history", env=env)
    assert code == 2 and "not a readable SQLite database" in err


def test_read_only_state_file(tmp_path, fake, profile):
    state = tmp_path / "state"
    env = {**fake.env(), "KIT_STATE_DIR": str(state)}
    h = History.open(state)
    assert deploy(profile, h).ok
    h.close()
    before = history_json(env)
    bump(profile)
    files = [state, *state.iterdir()]
    modes = {p: p.stat().st_mode for p in files}
    try:
        for p in files:
            p.chmod(0o555 if p.is_dir() else 0o444)
        code, out, err = kit("deploy", str(profile), "--yes", env=env, read_only_as_root=True)
        assert code == 2, (out, err)
        assert "is read-only" in err and "nothing was deployed" in err
        assert len(fake.read()["deploys"]) == 1
        code, out, err = kit("history", "--format", "json", env=env, read_only_as_root=True)
        assert code == 0, err  # still readable
        assert [{k: r[k] for k in ("number", "status", "kind")} for r in json.loads(out)["revisions"]] == before
    finally:
        for p, mode in modes.items():
            p.chmod(mode)
    assert history_json(env) == before == [{"number": 1, "status": "deployed", "kind": "deploy"}]
