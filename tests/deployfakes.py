"""The Modal boundary, replaced for tests, and a real local server speaking the rendered app's contract.

- `make_target()` is what `KIT_TARGET=tests.deployfakes:make_target` names: kit's real ModalTarget
  (timeouts, process groups, output parsing, credential checks) running tests/fake_modal.py instead
  of the `modal` CLI. Only the Modal cloud is replaced.
- `AppServer` is a real HTTP server on 127.0.0.1 implementing GET /health and POST /generate on one
  base URL the way templates/serve_class.py.j2's @modal.asgi_app method does (the fake deploy reports
  that URL as `Inference.web`); it serves whatever bundle the fake Modal made live, and answers badly
  on demand (`behaviour.generate` in the state file).
- `kit(...)` runs the real CLI in a subprocess, as root too with file modes obeyed (read_only_as_root).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from kit.target import ModalTarget

HERE = Path(__file__).resolve().parent
REPO = HERE.parent

GOOD_IR = {"version": "1", "functions": [{"name": "add", "params": [{"name": "a", "type": "int"}, {"name": "b", "type": "int"}], "returns": "int", "steps": [{"op": "return", "expr": "a + b"}]}]}

OUTPUTS = {
    "ok": json.dumps(GOOD_IR),
    "fenced": "```json\n" + json.dumps(GOOD_IR) + "\n```",
    "control": '{"version": "1", "functions": [{"name": "add\x01", "params": [], "returns": "int", "steps": [{"op": "return"}]}]}',
    "invalid": json.dumps({"version": "2", "functions": []}),
    "nan": '{"version": "1", "functions": NaN}',
    "duplicate": '{"version": "1", "version": "1", "functions": []}',
}


def make_target() -> ModalTarget:
    return ModalTarget(command=[sys.executable, str(HERE / "fake_modal.py")])


class FakeModal:
    """Modal's side of the world for one test: a state file the fake CLI and the app server share."""

    def __init__(self, folder: Path):
        self.dir = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.server = AppServer(self)
        self.write({"versions": [], "bundles": {}, "live_bundle": None, "deploys": [], "rollbacks": [], "behaviour": {}, "base_url": self.server.url, "requests": 0})

    def read(self) -> dict:
        return json.loads((self.dir / "state.json").read_text())

    def write(self, state: dict) -> None:
        tmp = self.dir / "state.test.tmp"
        tmp.write_text(json.dumps(state, indent=1))
        os.replace(tmp, self.dir / "state.json")

    def behave(self, **behaviour: str | None) -> None:
        state = self.read()
        for k, v in behaviour.items():
            if v is None:
                state["behaviour"].pop(k, None)
            else:
                state["behaviour"][k] = v
        self.write(state)

    def env(self) -> dict[str, str]:
        return {"FAKE_MODAL_DIR": str(self.dir), "KIT_TARGET": "tests.deployfakes:make_target", "MODAL_TOKEN_ID": "ak-test", "MODAL_TOKEN_SECRET": "as-test", "PYTHONPATH": str(REPO)}

    def wait_for(self, name: str, timeout: float = 20) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            path = self.dir / name
            if path.exists() and path.read_text():
                return path.read_text()
            time.sleep(0.02)
        raise AssertionError(f"{name} never appeared in {self.dir}")

    def close(self) -> None:
        self.server.close()


class AppServer:
    def __init__(self, fake: FakeModal):
        self.fake = fake
        handler = type("Handler", (_Handler,), {"fake": fake})
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


_COUNT_LOCK = threading.Lock()


class _Handler(BaseHTTPRequestHandler):
    fake: FakeModal

    def log_message(self, *args) -> None:  # keep test output clean
        pass

    def _send(self, status: int, body: dict | str) -> None:
        data = (json.dumps(body) if isinstance(body, dict) else body).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        state = self.fake.read()
        if self.path != "/health":
            return self._send(404, {"error": "not found"})
        if state["behaviour"].get("health") == "down":
            return self._send(503, "service unavailable")
        self._send(200, {"status": "ok", "profile": "test", "model": "Qwen/Qwen2.5-Coder-7B-Instruct", "engine": "vllm", "bundle": state["live_bundle"], "versions": {"vllm": "0.9.2"}})

    def do_POST(self) -> None:
        state = self.fake.read()
        length = int(self.headers.get("content-length", 0))
        try:
            payload = json.loads(self.rfile.read(length))
        except ValueError:
            return self._send(400, {"error": "body is not JSON"})
        if self.path != "/generate":
            return self._send(404, {"error": "not found"})
        if not isinstance(payload.get("prompt"), str) or not payload["prompt"]:
            return self._send(400, {"error": "'prompt' must be a non-empty string"})
        mode = state["behaviour"].get("generate", "ok")
        only = state["behaviour"].get("only_bundle")
        if only and only != state["live_bundle"]:
            mode = "ok"  # misbehave only while that bundle is live
        # Count requests across threads through the state file's sibling (the server is the only writer).
        counter = self.fake.dir / "generate.count"
        with _COUNT_LOCK:  # `kit bench` sends requests at once
            n = int(counter.read_text()) if counter.exists() else 0
            counter.write_text(str(n + 1))
        if mode == "error":
            return self._send(500, {"error": "CUDA out of memory"})
        if mode == "slow" or (mode == "slow_first" and n == 0):
            time.sleep(float(state["behaviour"].get("delay", "1.3")))
        text = OUTPUTS.get(mode, OUTPUTS["ok"])
        self._send(200, {"text": text, "json": None, "finish_reason": "stop", "bundle": state["live_bundle"], "model": "Qwen/Qwen2.5-Coder-7B-Instruct"})


def profile_tree(root: Path, *, smoke: bool = True, latency: float = 1.0, extra: str = "") -> Path:
    """A repository with the library's qwen25-a10g profile, its lockfile and schema; returns the profile path."""
    (root / ".git").mkdir(parents=True, exist_ok=True)
    prof = root / "profiles"
    (prof / "schemas").mkdir(parents=True, exist_ok=True)
    shutil.copy(REPO / "profiles" / "schemas" / "ir-v1.json", prof / "schemas" / "ir-v1.json")
    shutil.copy(REPO / "profiles" / "qwen25-a10g.lock", prof / "qwen25-a10g.lock")
    text = (REPO / "profiles" / "qwen25-a10g.toml").read_text()
    head, sep, _ = text.partition("[smoke]")
    assert sep, "the library profile lost its [smoke] section"
    body = head
    if smoke:
        body += f'[smoke]\nprompt = "Write the IR for add(a, b)."\nmax_tokens = 256\nlatency_budget_s = {latency}\ncold_start_budget_s = 5.0\n'
    body += extra
    path = prof / "qwen25-a10g.toml"
    path.write_text(body)
    return path


def kit(*args: str, env: dict[str, str], cwd: Path | None = None, read_only_as_root: bool = False, wait: bool = True):
    """`python -m kit ARGS` in a subprocess with only `env`'s KIT_/MODAL_ variables: (exit code, stdout, stderr), or the process."""
    full = {k: v for k, v in os.environ.items() if not k.startswith(("KIT_", "MODAL_", "FAKE_MODAL"))}
    full.update({"NO_COLOR": "1", "COLUMNS": "200", "PYTHONPATH": str(REPO), "PYTHONDONTWRITEBYTECODE": "1"})
    full.update(env)
    preexec = drop_file_override if read_only_as_root and os.geteuid() == 0 else None
    proc = subprocess.Popen([sys.executable, "-m", "kit", *args], cwd=cwd or REPO, env=full, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=preexec)
    if not wait:
        return proc
    out, err = proc.communicate(timeout=60)
    return proc.returncode, out, err


def drop_file_override() -> None:
    """Root ignores file modes; drop the capabilities that let it (bounding set), so read-only means read-only."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    for cap in (1, 2, 3):  # CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH, CAP_FOWNER
        if libc.prctl(24, cap, 0, 0, 0) != 0:  # PR_CAPBSET_DROP
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")


# Fixtures the deploy and state suites share (imported by those test modules).


@pytest.fixture
def fake(tmp_path, monkeypatch):
    f = FakeModal(tmp_path / "modal")
    for k, v in f.env().items():
        monkeypatch.setenv(k, v)
    yield f
    f.close()


@pytest.fixture
def profile(tmp_path) -> Path:
    return profile_tree(tmp_path / "repo")
