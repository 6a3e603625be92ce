"""A stand-in for the `modal` CLI, for kit's tests only: Modal has no account here.

It speaks the three commands kit's ModalTarget runs (`deploy APP --name --tag`, `app history APP
--json`, `app rollback APP vN`) with Modal's output shapes, keeps Modal's side of the world (versions,
tags, the live bundle) in `$FAKE_MODAL_DIR/state.json`, and misbehaves when the state says so:
`behaviour.deploy` = fail | hang | block (wait for the file `release`), `behaviour.deploy_delay` =
seconds a deploy takes, `behaviour.rollback` = unsupported | ok, `behaviour.history` = fail.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

DIR = Path(os.environ["FAKE_MODAL_DIR"])


def load() -> dict:
    return json.loads((DIR / "state.json").read_text())


def save(state: dict) -> None:
    tmp = DIR / f"state.{os.getpid()}.tmp"
    tmp.write_text(json.dumps(state, indent=1))
    os.replace(tmp, DIR / "state.json")


def opt(args: list[str], name: str) -> str | None:
    return args[args.index(name) + 1] if name in args else None


def deploy(args: list[str]) -> int:
    """One deploy; two at once of the same fake workspace are recorded in `overlaps` (kit's lock must prevent them)."""
    active = DIR / "active"
    try:
        os.close(os.open(active, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except FileExistsError:
        with open(DIR / "overlaps", "a") as fh:
            fh.write(f"{os.getpid()}\n")
    try:
        time.sleep(float(load()["behaviour"].get("deploy_delay", "0")))
        return _deploy(args)
    finally:
        active.unlink(missing_ok=True)


def _deploy(args: list[str]) -> int:
    state = load()
    mode = state["behaviour"].get("deploy", "ok")
    app, tag = opt(args, "--name"), opt(args, "--tag")
    manifest = json.loads(Path("manifest.json").read_text())
    assert Path(args[1]).is_file(), f"no {args[1]} in {os.getcwd()}"
    print(f"Building image im-fake for {app}...", flush=True)
    (DIR / "deploy.pid").write_text(str(os.getpid()))
    if mode == "fail":
        print("Error: Image build for im-fake failed with the exception:\n  pip install exited with status 1", flush=True)
        return 1
    if mode == "hang":
        time.sleep(600)
    if mode == "block":
        (DIR / "deploying").write_text(str(os.getpid()))
        deadline = time.monotonic() + 60
        while not (DIR / "release").exists() and time.monotonic() < deadline:
            time.sleep(0.02)
    state = load()
    version = f"v{len(state['versions']) + 1}"
    state["versions"].append({"version": version, "time_deployed": "2026-11-28T22:00:00Z", "client": "1.6.4", "deployed_by": "tester", "commit": None, "tag": tag})
    state["bundles"][version] = manifest["bundle_hash"]
    state["live_bundle"] = manifest["bundle_hash"]
    state["deploys"].append({"app": app, "tag": tag, "bundle": manifest["bundle_hash"], "files": sorted(os.listdir(".")), "columns": os.environ.get("COLUMNS")})
    save(state)
    base = state["base_url"]
    # The tree modal 1.6.x prints (modal/_output/status.py): a class's web method as `Cls.method -> URL`
    # under its service function, a web function's URL on the line under it.
    print("✓ Created objects.")
    print("├── 🔨 Created mount /root/app.py")
    if manifest["serving_mode"] == "class":
        print(f"└── ✓ Created Function {manifest['entrypoints']['class']}.*.")
        for method in manifest["entrypoints"]["web"]:
            print(f"    └── {manifest['entrypoints']['class']}.{method} -> {base} (unauthenticated)")
    else:
        print(f"└── ✓ Created Function {manifest['entrypoints']['function']}")
        print(f"    └── {base} (unauthenticated)")
    print(f"✓ App deployed in 1.234s! 🎉\n\nView Deployment: https://modal.com/apps/fake/main/deployed/ap-fake{len(state['versions'])}")
    return 0


def history(args: list[str]) -> int:
    state = load()
    if state["behaviour"].get("history") == "fail":
        print("Error: Could not connect to the Modal server.")
        return 1
    rows = []
    for v in state["versions"]:
        row = {k: v[k] for k in ("version", "time_deployed", "client", "deployed_by", "commit")}
        if v.get("tag"):
            row["tag"] = v["tag"]
        rows.append(row)
    print(json.dumps(rows[::-1], indent=2))
    return 0


def rollback(args: list[str]) -> int:
    state = load()
    if state["behaviour"].get("rollback", "unsupported") == "unsupported":
        print("Error: Deployment rollbacks are available on the Team and Enterprise plans.")
        return 1
    target = args[3]
    version = f"v{len(state['versions']) + 1}"
    state["versions"].append({"version": version, "time_deployed": "2026-11-28T23:00:00Z", "client": "1.6.4", "deployed_by": "tester", "commit": None, "tag": None})
    state["bundles"][version] = state["bundles"][target]
    state["live_bundle"] = state["bundles"][target]
    state["rollbacks"].append(target)
    save(state)
    print(f"✓ Rolled back app to {target}")
    return 0


def main(args: list[str]) -> int:
    if args[:1] == ["deploy"]:
        return deploy(args)
    if args[:2] == ["app", "history"]:
        return history(args)
    if args[:2] == ["app", "rollback"]:
        return rollback(args)
    print(f"fake modal: unsupported command {args}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
