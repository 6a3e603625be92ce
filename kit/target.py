"""Where bundles are deployed: the only module that talks to Modal.

`Target` is the small interface the rest of kit uses; `ModalTarget` implements it with the `modal`
CLI (`modal deploy --tag`, `modal app history --json`, `modal app rollback`), each call in its own
process group and bounded by a timeout: with a token set and Modal unreachable, the client otherwise
blocks for about a minute, and a build has no upper bound at all.

Tests replace the target, and only it: `KIT_TARGET=package.module:factory` makes `get_target()` call
that factory instead of building a ModalTarget. Only the test suite sets it (tests/deployfakes.py: the
real ModalTarget driving tests/fake_modal.py, a stand-in for the modal CLI).
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import re
import signal
import subprocess
import sys
import threading
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from kit.errors import OperationError, UsageError

TARGET_ENV = "KIT_TARGET"
TAG_PATTERN = re.compile(r"^[a-zA-Z0-9._-]{1,50}$")  # what the modal client accepts as a deployment tag

OutputFn = Callable[[str], None]


@dataclass
class DeployResult:
    """What a deploy or rollback reported back."""

    version: str | None  # Modal's deployment version, "v3"; None when it could not be read
    app_id: str | None = None
    urls: dict[str, str] = field(default_factory=dict)  # web function (name) or web method (Cls.method) -> URL
    output: str = ""
    note: str = ""


@dataclass
class ModalVersion:
    """One row of `modal app history`."""

    version: str
    time_deployed: str | None = None
    tag: str | None = None
    commit: str | None = None
    deployed_by: str | None = None
    client: str | None = None


class TargetError(OperationError):
    """The target refused or failed an operation."""


class TargetTimeout(TargetError):
    """The target did not answer within the time kit allows."""


class RollbackUnsupported(TargetError):
    """The target cannot roll back natively (plan, version unknown): redeploy the stored bundle instead."""


class Target(Protocol):
    name: str

    def credentials_present(self) -> bool: ...

    def credentials_help(self) -> str: ...

    def deploy(self, bundle_dir: Path, app: str, environment: str | None, tag: str, timeout: float, on_output: OutputFn | None = None) -> DeployResult: ...

    def history(self, app: str, environment: str | None, timeout: float) -> list[ModalVersion]: ...

    def rollback(self, app: str, environment: str | None, version: str, timeout: float, on_output: OutputFn | None = None) -> DeployResult: ...


def get_target() -> Target:
    """The Modal target, or the test double named by KIT_TARGET."""
    spec = os.environ.get(TARGET_ENV)
    if not spec:
        return ModalTarget()
    module, _, attr = spec.partition(":")
    try:
        factory = getattr(importlib.import_module(module), attr or "make_target")
    except (ImportError, AttributeError) as exc:
        raise UsageError(f"{TARGET_ENV}={spec} names no target factory: {exc}", fix=f"unset {TARGET_ENV} (only kit's tests set it)") from None
    return factory()


# --- Modal -------------------------------------------------------------------------------------

_APP_ID = re.compile(r"\b(ap-[A-Za-z0-9]+)\b")
# `modal deploy` prints the web URLs in its "Created objects." tree. modal 1.6.x (modal/_output/status.py,
# FunctionCreationStatus.__exit__):
#   ├── ✓ Created Function Inference.*.
#   │   └── Inference.web -> https://ws--app-inference-web.modal.run (unauthenticated)   a web method of a class
#   └── ✓ Created Function serve
#       └── https://ws--app-serve.modal.run (unauthenticated)                            a web function
# Older clients printed `Created web function NAME => URL` / `Created web endpoint for Cls.method => URL`.
# Rich wraps the tree to the terminal width (80 columns through a pipe): kit runs the CLI with a wide
# COLUMNS, and the lines are also joined after their tree guides are stripped, so a wrapped URL is still read.
_TREE_GUIDE = re.compile(r"^[ \t│├└─╰┬|`+]*(?:-- )?(?:[✓🔨]\s*)?", re.MULTILINE)
_NAMED_URL = re.compile(r"(?<![\w.*-])([A-Za-z_][\w.-]*)\s*(?:\([^)\n]*\))?\s*[-=]>\s*(https?://[^\s\[\]]+)")
_FUNCTION_URL = re.compile(r"\bCreated (?:Function|Server) ([A-Za-z_][\w.-]*[\w-])(?:\s*\n⚠[^\n]*)*\s+(https?://[^\s\[\]]+)")
_WIDE = "10000"  # COLUMNS for the modal CLI: one tree row, one line


def deploy_urls(output: str) -> dict[str, str]:
    """Web function / web method name -> URL, from `modal deploy` output (see the shapes above)."""
    start = output.rfind("Created objects.")  # the tree comes after the build logs, which are not read
    text = _TREE_GUIDE.sub("", output[max(start, 0) :])
    found = sorted((m.start(), m.group(1), m.group(2)) for pattern in (_FUNCTION_URL, _NAMED_URL) for m in pattern.finditer(text))
    urls: dict[str, str] = {}
    for _, name, url in found:  # in the order printed
        urls.setdefault(name, url)
    return urls


def _config_path() -> Path:
    return Path(os.environ.get("MODAL_CONFIG_PATH") or Path.home() / ".modal.toml")


class ModalTarget:
    """Modal, through its CLI (history and rollback have no public Python API)."""

    name = "modal"

    def __init__(self, command: list[str] | None = None):
        # The modal CLI as this interpreter runs it; kit's tests pass a stand-in script that speaks its language.
        self.command = command

    # Credentials are checked without importing modal (slow) or calling it: only whether a token is set.
    def credentials_present(self) -> bool:
        if os.environ.get("MODAL_TOKEN_ID") and os.environ.get("MODAL_TOKEN_SECRET"):
            return True
        path = _config_path()
        try:
            config = tomllib.loads(path.read_text(encoding="utf-8"))
        except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError):
            return False
        wanted = os.environ.get("MODAL_PROFILE")
        tables = [v for k, v in config.items() if isinstance(v, dict) and (wanted is None or k == wanted)]
        return any(t.get("token_id") and t.get("token_secret") for t in tables)

    def credentials_help(self) -> str:
        return (
            "run `modal token new` (it opens a browser and writes ~/.modal.toml), or set MODAL_TOKEN_ID and "
            "MODAL_TOKEN_SECRET (a token from https://modal.com/settings/tokens); `kit deploy --dry-run` needs neither"
        )

    def _require_client(self) -> None:
        if importlib.util.find_spec("modal") is None:
            raise TargetError(
                "the modal package is not installed in kit's environment: deploy, rollback and status drive the modal client",
                fix="pip install 'kit-inference[deploy]' (check, lock, render, diff and fmt work without it)",
            )

    def _run(self, args: list[str], timeout: float, what: str, cwd: Path | None = None, on_output: OutputFn | None = None) -> str:
        """Run `python -m modal ARGS` in its own process group; stream its output; kill the group at the deadline."""
        if self.command is None:
            self._require_client()
        cmd = [*(self.command or [sys.executable, "-m", "modal"]), *args]
        env = {**os.environ, "COLUMNS": _WIDE}  # rich wraps to COLUMNS (80 through a pipe): keep each URL on its line
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True, start_new_session=True)
        lines: list[str] = []

        def pump() -> None:
            assert proc.stdout is not None
            for line in proc.stdout:
                lines.append(line)
                if on_output:
                    on_output(line.rstrip("\n"))

        reader = threading.Thread(target=pump, daemon=True)
        reader.start()
        try:
            rc = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            raise TargetTimeout(
                f"{what} did not finish within {timeout:g} s and was stopped",
                fix="check that Modal is reachable (`modal app list`); Modal may still complete a deploy it had started, so run `kit status` before retrying",
            ) from None
        except BaseException:
            _kill_group(proc)
            raise
        reader.join(timeout=5)
        out = "".join(lines)
        if rc != 0:
            tail = "\n".join(out.strip().splitlines()[-15:])
            if "Token missing" in out or "token" in out.lower() and "invalid" in out.lower():
                raise TargetError(f"{what} was refused: Modal has no valid token\n{tail}", fix=self.credentials_help())
            raise TargetError(f"{what} failed (exit {rc}):\n{tail}", fix="read the output above; `kit status` shows what is deployed now")
        return out

    def deploy(self, bundle_dir: Path, app: str, environment: str | None, tag: str, timeout: float, on_output: OutputFn | None = None) -> DeployResult:
        if not TAG_PATTERN.match(tag):
            raise TargetError(f"deployment tag {tag!r} is not one Modal accepts", fix="this is a bug in kit")
        args = ["deploy", "app.py", "--name", app, "--tag", tag]
        if environment:
            args += ["--env", environment]
        out = self._run(args, timeout, f"`modal deploy` of {app}", cwd=bundle_dir, on_output=on_output)
        urls = deploy_urls(out)
        app_id = next(iter(_APP_ID.findall(out)), None)
        version, note = self._version_of(app, environment, tag)
        if "no changes detected" in out.lower():
            note = "Modal skipped the deploy: no changes detected since its current version"
        return DeployResult(version=version, app_id=app_id, urls=urls, output=out, note=note)

    def _version_of(self, app: str, environment: str | None, tag: str) -> tuple[str | None, str]:
        try:
            rows = self.history(app, environment, timeout=60)
        except TargetError as exc:
            return None, f"Modal's version could not be read: {exc.message}"
        for row in rows:
            if row.tag == tag:
                return row.version, ""
        latest = latest_version(rows)
        return (latest.version if latest else None), f"no Modal version carries tag {tag}; recorded the latest"

    def history(self, app: str, environment: str | None, timeout: float) -> list[ModalVersion]:
        args = ["app", "history", app, "--json"]
        if environment:
            args += ["--env", environment]
        out = self._run(args, timeout, f"`modal app history {app}`")
        start = out.find("[")
        try:
            rows = json.loads(out[start:]) if start >= 0 else []
        except json.JSONDecodeError as exc:
            raise TargetError(f"`modal app history` printed something that is not JSON: {exc}", fix="upgrade kit or modal") from None
        return [
            ModalVersion(
                version=str(r.get("version") or r.get("Version")),
                time_deployed=r.get("time_deployed") or r.get("Time deployed"),
                tag=r.get("tag") or r.get("Tag") or None,
                commit=r.get("commit") or r.get("Commit"),
                deployed_by=r.get("deployed_by") or r.get("Deployed by"),
                client=r.get("client") or r.get("Client"),
            )
            for r in rows
            if isinstance(r, dict)
        ]

    def rollback(self, app: str, environment: str | None, version: str, timeout: float, on_output: OutputFn | None = None) -> DeployResult:
        args = ["app", "rollback", app, version]
        if environment:
            args += ["--env", environment]
        try:
            out = self._run(args, timeout, f"`modal app rollback {app} {version}`", on_output=on_output)
        except TargetTimeout:
            raise
        except TargetError as exc:
            # Native rollback is a Team/Enterprise feature; any refusal means: redeploy the bundle.
            raise RollbackUnsupported(f"Modal's native rollback was not available: {exc.message}") from None
        rows = self.history(app, environment, timeout=60)
        latest = latest_version(rows)
        return DeployResult(version=latest.version if latest else None, output=out, note=f"native Modal rollback to {version}")


def latest_version(rows: list[ModalVersion]) -> ModalVersion | None:
    """The newest of Modal's versions (by number)."""

    def number(row: ModalVersion) -> int:
        m = re.match(r"^v(\d+)$", row.version or "")
        return int(m.group(1)) if m else -1

    return max(rows, key=number, default=None)


def _kill_group(proc: subprocess.Popen) -> None:
    for sig, wait in ((signal.SIGTERM, 5), (signal.SIGKILL, 5)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue
