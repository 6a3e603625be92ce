"""kit render: every library profile renders, imports with the real `modal`, and serves the right shape.

The Modal cloud is the one thing replaced: the rendered app is imported and inspected offline
(`Function.info()`), and its methods run in-process (`.local()`) with a test double for the engine;
the FastAPI app its @modal.asgi_app method builds is called through fastapi's TestClient.
Snapshots: tests/snapshots/render/<profile>/; KIT_UPDATE_SNAPSHOTS=1 rewrites them.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from kit.catalog import gpus
from kit.errors import EXIT_FINDINGS
from kit.load import LoadedProfile, load
from kit.render import CLASS_NAME, MANIFEST_FILE, SERVER_FUNCTION, WEB_METHOD, RenderError, bundle_hash, render, write
from tests.conftest import PROFILES, REPO, run_kit
from tests.rendered import enter, import_bundle, local, local_async, service_function

LIBRARY = sorted(PROFILES.glob("*.toml"))
SNAPSHOTS = Path(__file__).parent / "snapshots" / "render"
UPDATE_SNAPSHOTS = os.environ.get("KIT_UPDATE_SNAPSHOTS") == "1"  # read at import: an autouse fixture clears KIT_*
# Fields of manifest.json that change with any byte of kit, the lock or the templates; the snapshot
# shows that they exist, the determinism tests check their values.
VOLATILE = ("bundle_hash", "lock_hash", "profile_hash", "template_version", "kit_version")


class FakeEngine:
    """Stands in for vLLM / SGLang: records what the shared implementation asked for."""

    def __init__(self, text: str = '{"name": "add", "ok": true}', error: Exception | None = None):
        self.text = text
        self.error = error
        self.calls: list[tuple] = []

    async def complete(self, prompt, schema, max_tokens, temperature):
        self.calls.append((prompt, schema, max_tokens, temperature))
        if self.error:
            raise self.error
        return {"text": self.text, "finish_reason": "stop", "prompt_tokens": 7, "completion_tokens": 11}


def variant(tmp_path: Path, profile: str = "qwen25-a10g", **sections) -> LoadedProfile:
    """A library profile with sections replaced (validation bypassed), moved away from its lockfile."""
    loaded = load(PROFILES / f"{profile}.toml")
    loaded.path = tmp_path / loaded.path.name  # a changed profile would find its lockfile stale
    p = loaded.profile
    update = {}
    for section, values in sections.items():
        current = getattr(p, section)
        update[section] = {**current, **values} if isinstance(current, dict) else current.model_copy(update=values)
    loaded.profile = p.model_copy(update=update)
    return loaded


@pytest.fixture(params=LIBRARY, ids=lambda p: p.stem)
def library_profile(request):
    return load(request.param)


def _snapshot_files(bundle) -> dict[str, str]:
    files = {k: v for k, v in bundle.files.items() if k != "requirements.txt"}  # the lockfile: reviewed as itself
    manifest = json.loads(files[MANIFEST_FILE])
    for key in VOLATILE:
        if manifest.get(key) is not None:
            manifest[key] = f"<{key}>"
    files[MANIFEST_FILE] = json.dumps(manifest, indent=2, sort_keys=True) + "\n"
    return files


# -- the app Modal sees -------------------------------------------------------------------------


def test_library_profile_imports_with_real_modal(library_profile, tmp_path, monkeypatch):
    p = library_profile.profile
    bundle = render(library_profile)
    imported = import_bundle(bundle, tmp_path / "bundle", monkeypatch)
    gpu = gpus().find(p.gpu.type)
    volumes_expected = {"/root/.cache/huggingface": "huggingface-cache"}
    if p.engine.name == "vllm":
        volumes_expected["/root/.cache/vllm"] = "vllm-cache"
    if "flashinfer-python" in p.packages:
        volumes_expected["/root/.cache/flashinfer"] = "flashinfer-cache"

    if p.serving.mode == "class":
        fn = service_function(imported, CLASS_NAME)
        kwargs = imported.decorator_kwargs["cls"]
    else:
        fn = getattr(imported.module, SERVER_FUNCTION)
        kwargs = imported.decorator_kwargs["function"]
    info = fn.info()
    assert info.gpus == [(gpu.modal_name, p.gpu.count)]
    assert info.timeout == p.serving.timeout
    assert info.concurrency_info.max_inputs == p.serving.max_inputs
    assert {path: v.name for path, v in info.volumes.items()} == volumes_expected
    assert len(info.secrets) == (1 if p.model.hf_secret else 0)
    assert (kwargs["scaledown_window"], kwargs["min_containers"], kwargs["max_containers"]) == (
        p.serving.scaledown_window,
        p.serving.min_containers,
        p.serving.max_containers,
    )
    if p.serving.mode == "class":
        has_web = bool({"http_generate", "health"} & set(p.serving.endpoints))
        assert info.method_names == [e for e in p.serving.endpoints if e == "generate"] + ([WEB_METHOD] if has_web else [])
        # One web method, an ASGI app (method None: not a fastapi_endpoint), so one base URL for every route.
        web = {name: d.method for name, d in (info.method_details or {}).items()}
        assert web == ({WEB_METHOD: None} if has_web else {})
        routes = {(r.path, m) for r in _web_app(imported).routes if r.path in ("/generate", "/health") for m in r.methods}
        assert routes == {(path, method) for e, (method, path) in (("http_generate", ("POST", "/generate")), ("health", ("GET", "/health"))) if e in p.serving.endpoints}
    else:
        assert info.web_info is not None and info.method_names is None
        assert imported.decorator_kwargs["web_server"]["startup_timeout"] == p.serving.startup_timeout
        command = imported.module.SERVER_COMMAND
        assert p.model.id in command and "--revision" in command


def _web_app(imported, engine=None):
    """The FastAPI app the class's @modal.asgi_app method builds, run in-process (its @modal.enter hook too)."""
    imported.module.load_engine = lambda: engine or FakeEngine()
    return local(getattr(getattr(imported.module, CLASS_NAME)(), WEB_METHOD))


def _test_client(app):
    """fastapi's TestClient (over httpx) for an ASGI app, in-process."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*install `httpx2`")  # starlette 1.x prefers httpx2; httpx works
        from fastapi.testclient import TestClient
    return TestClient(app)


def _client(tmp_path, monkeypatch, engine=None):
    """A TestClient on the rendered class-mode app's one base URL, with `engine` in place of vLLM."""
    return _test_client(_web_app(import_bundle(render(load(PROFILES / "qwen25-a10g.toml")), tmp_path / "b", monkeypatch), engine))


def test_class_mode_shared_implementation(tmp_path, monkeypatch):
    loaded = load(PROFILES / "qwen25-a10g.toml")
    imported = import_bundle(render(loaded), tmp_path / "b", monkeypatch)
    m = imported.module
    fake = FakeEngine()
    monkeypatch.setattr(m, "load_engine", lambda: fake)
    server = getattr(m, CLASS_NAME)()
    default_schema = json.loads((REPO / "profiles" / "schemas" / "ir-v1.json").read_text())

    enter(server)
    body = local_async(server.generate, "write add")
    assert body["json"] == {"name": "add", "ok": True}
    assert body["profile"] == "qwen25-a10g" and body["model"] == loaded.profile.model.id
    assert body["bundle"] == json.loads((tmp_path / "b" / MANIFEST_FILE).read_text())["bundle_hash"]
    assert body["usage"] == {"prompt_tokens": 7, "completion_tokens": 11}
    assert fake.calls[-1] == ("write add", default_schema, 512, 0.0)

    client = _test_client(local(getattr(server, WEB_METHOD)))  # the same instance: the same engine
    response = client.post("/generate", json={"prompt": "p", "schema": {"type": "string"}, "max_tokens": 5, "temperature": 0.5})
    assert response.status_code == 200
    assert response.json()["text"] == fake.text and response.json()["bundle"] == body["bundle"]
    assert fake.calls[-1] == ("p", {"type": "string"}, 5, 0.5)

    health = client.get("/health")
    assert health.status_code == 200
    health = health.json()
    assert health["status"] == "ok" and health["profile"] == "qwen25-a10g" and health["bundle"] == body["bundle"]
    assert health["pinned"]["vllm"] == "0.9.2" and "vllm" in health["versions"]


@pytest.mark.parametrize(
    ("payload", "status", "reason"),
    [
        ({}, 400, "'prompt' is required"),
        ({"prompt": "   "}, 400, "non-empty"),
        ({"prompt": 3}, 400, "non-empty string"),
        ("not an object", 400, "JSON object"),
        ({"prompt": "p", "schema": "object"}, 400, "'schema' must be a JSON Schema object"),
        ({"prompt": "p", "schema": {}}, 400, "'schema' must be a JSON Schema object"),
        ({"prompt": "p", "schema": {"type": 5}}, 400, "schema.type"),
        ({"prompt": "p", "max_tokens": 0}, 400, "between 1 and 32768"),
        ({"prompt": "p", "max_tokens": 32769}, 400, "between 1 and 32768"),
        ({"prompt": "p", "max_tokens": True}, 400, "max_tokens"),
        ({"prompt": "p", "max_tokens": "9"}, 400, "max_tokens"),
        ({"prompt": "p", "temperature": 3}, 400, "temperature"),
        ({"prompt": "p", "stream": True}, 400, "unknown field(s) stream"),
    ],
)
def test_request_validation(payload, status, reason, tmp_path, monkeypatch):
    imported = import_bundle(render(load(PROFILES / "qwen25-a10g.toml")), tmp_path / "b", monkeypatch)
    m = imported.module
    fake = FakeEngine()
    monkeypatch.setattr(m, "load_engine", lambda: fake)
    server = getattr(m, CLASS_NAME)()
    response = _test_client(local(getattr(server, WEB_METHOD))).post("/generate", json=payload)
    assert response.status_code == status
    assert reason in response.json()["error"]
    assert fake.calls == []  # refused before the engine
    if isinstance(payload, dict) and "prompt" in payload and set(payload) <= {"prompt", "schema", "max_tokens", "temperature"}:
        with pytest.raises(ValueError, match=f"^{status}: "):
            local_async(server.generate, **payload)


def test_http_requests_that_are_not_json_objects_get_400(tmp_path, monkeypatch):
    fake = FakeEngine()
    client = _client(tmp_path, monkeypatch, fake)
    for body in (b"", b"{not json", b"\xff"):
        response = client.post("/generate", content=body, headers={"content-type": "application/json"})
        assert response.status_code == 400 and "must be JSON" in response.json()["error"], body
    response = client.post("/generate", json=["p"])
    assert response.status_code == 400 and "JSON object" in response.json()["error"]
    # Other paths and methods answer with {error} too, never the engine.
    assert (client.get("/generate").status_code, client.get("/generate").json()) == (405, {"error": "Method Not Allowed"})
    assert (client.post("/health").status_code, client.get("/nope").status_code) == (405, 404)
    assert "error" in client.get("/nope").json() and fake.calls == []
    assert client.get("/docs").status_code == 404 and client.get("/openapi.json").status_code == 404


def test_engine_refusal_is_422(tmp_path, monkeypatch):
    client = _client(tmp_path, monkeypatch, FakeEngine(error=ValueError("grammar compile failed")))
    response = client.post("/generate", json={"prompt": "p", "schema": {"type": "object", "properties": {"a": {"$ref": "#/nope"}}}})
    assert response.status_code == 422 and "grammar compile failed" in response.json()["error"]


@pytest.mark.parametrize(
    ("endpoints", "methods", "routes"),
    [
        (["generate"], ["generate"], None),  # no HTTP endpoint: no web method, no URL
        (["generate", "health"], ["generate", WEB_METHOD], {"/health"}),
        (["http_generate"], [WEB_METHOD], {"/generate"}),
        (["health", "http_generate"], [WEB_METHOD], {"/generate", "/health"}),
    ],
)
def test_only_listed_endpoints_are_rendered(endpoints, methods, routes, tmp_path, monkeypatch):
    bundle = render(variant(tmp_path, serving={"endpoints": endpoints}))
    imported = import_bundle(bundle, tmp_path / "b", monkeypatch)
    info = service_function(imported, CLASS_NAME).info()
    assert info.method_names == methods
    assert bundle.manifest["entrypoints"]["web"] == ([WEB_METHOD] if routes else [])
    if routes is None:
        assert not info.method_details and not hasattr(getattr(imported.module, CLASS_NAME), WEB_METHOD)
        assert "asgi_app" not in bundle.files["app.py"] and "fastapi" not in bundle.files["app.py"]
        return
    assert list(info.method_details) == [WEB_METHOD]
    assert {r.path for r in _web_app(imported).routes} == routes


def test_hf_secret_is_a_modal_secret_never_a_value(tmp_path, monkeypatch):
    loaded = variant(tmp_path, model={"hf_secret": "hf-token"})
    bundle = render(loaded)
    assert "modal.Secret.from_name('hf-token')" in bundle.files["app.py"]
    assert "HF_TOKEN" not in bundle.files["app.py"].replace("(as HF_TOKEN)", "")
    info = service_function(import_bundle(bundle, tmp_path / "b", monkeypatch), CLASS_NAME).info()
    assert len(info.secrets) == 1


# -- the structured-output API comes from the data table -------------------------------------------


@pytest.mark.parametrize(
    ("vllm", "params_class", "kwarg", "backend_arg"),
    [
        ("0.9.2", "GuidedDecodingParams", "guided_decoding", "'guided_decoding_backend': 'xgrammar'"),
        ("0.11.0", "StructuredOutputsParams", "structured_outputs", "'structured_outputs_config': {'backend': 'xgrammar'}"),
        ("0.33.0", "StructuredOutputsParams", "structured_outputs", "'structured_outputs_config': {'backend': 'xgrammar'}"),
    ],
)
def test_api_follows_the_table(vllm, params_class, kwarg, backend_arg, tmp_path):
    app = render(variant(tmp_path, packages={"vllm": vllm})).files["app.py"]
    assert f"from vllm.sampling_params import {params_class}, RequestOutputKind\n" in app
    assert f"{kwarg}={params_class}(json=schema)" in app
    assert backend_arg in app


def test_version_without_api_row_is_refused(tmp_path):
    with pytest.raises(RenderError) as err:
        render(variant(tmp_path, packages={"vllm": "0.5.4"}))  # before GuidedDecodingParams (0.6.3): nothing derivable
    assert err.value.exit_code == EXIT_FINDINGS
    assert "no structured-output API data for vllm 0.5.4" in err.value.message


# -- the attention backend setting comes from the [[attention]] table ------------------------------


def _image_env(app: str) -> dict:
    """The literal passed to the image's .env(...) in a rendered app.py ({} when there is none)."""
    for node in ast.walk(ast.parse(app)):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "env":
            return ast.literal_eval(node.args[0])
    return {}


@pytest.mark.parametrize(
    ("vllm", "mode", "env", "kwarg", "flag"),
    [
        ("0.9.2", "class", True, False, False),  # only VLLM_ATTENTION_BACKEND exists
        ("0.9.2", "openai", True, False, False),
        ("0.12.0", "openai", True, False, False),
        ("0.13.0", "class", False, True, False),  # both exist: setting both is a ValueError in vLLM, kit sets the argument
        ("0.14.1", "openai", False, False, True),
        ("0.20.0", "class", False, True, False),  # the variable is gone: only the argument works
        ("0.20.0", "openai", False, False, True),
    ],
)
def test_attention_backend_follows_the_table(vllm, mode, env, kwarg, flag, tmp_path, monkeypatch):
    loaded = variant(tmp_path, packages={"vllm": vllm}, engine={"attention_backend": "FLASH_ATTN"}, serving={"mode": mode})
    bundle = render(loaded)
    app = bundle.files["app.py"]
    assert ("VLLM_ATTENTION_BACKEND" in _image_env(app)) is env
    module = import_bundle(bundle, tmp_path / "b", monkeypatch).module
    if mode == "class":
        assert (module.ENGINE_KWARGS.get("attention_backend") == "FLASH_ATTN") is kwarg
    else:
        command = module.SERVER_COMMAND
        assert (command[command.index("--attention-backend") + 1] == "FLASH_ATTN" if "--attention-backend" in command else False) is flag
    assert bundle.manifest["attention_backend"]["via"] == ("env" if env else "engine_arg")


def test_attention_backend_unset_changes_nothing(tmp_path):
    bundle = render(variant(tmp_path, packages={"vllm": "0.20.0"}))
    app = bundle.files["app.py"]
    assert "attention_backend" not in bundle.manifest
    assert "VLLM_ATTENTION_BACKEND" not in app and "attention_backend" not in app and "--attention-backend" not in app


def test_image_env_wins_over_the_profile_backend_on_env_releases(tmp_path):
    loaded = variant(tmp_path, engine={"attention_backend": "FLASH_ATTN"}, image={"env": {"VLLM_ATTENTION_BACKEND": "XFORMERS"}})
    assert _image_env(render(loaded).files["app.py"])["VLLM_ATTENTION_BACKEND"] == "XFORMERS"


def test_version_without_attention_row_is_refused(tmp_path, monkeypatch):
    import kit.rules

    rows = [r for r in kit.rules.attention_table() if r["versions"] != ">=0.15.0,<=0.33.0"]
    monkeypatch.setattr(kit.rules, "attention_table", lambda: rows)
    loaded = variant(tmp_path, packages={"vllm": "0.20.0"}, engine={"attention_backend": "FLASH_ATTN"})
    with pytest.raises(RenderError) as err:
        render(loaded)
    assert err.value.exit_code == EXIT_FINDINGS
    assert "no attention-backend data for vllm 0.20.0" in err.value.message and "attention.toml" in err.value.fix
    render(variant(tmp_path, packages={"vllm": "0.20.0"}))  # without attention_backend nothing is needed


def test_cli_refuses_unknown_version_with_exit_1(tree):
    text = (PROFILES / "qwen25-a10g.toml").read_text().replace('vllm = "0.9.2"', 'vllm = "0.7.3"')
    root = tree({"profiles/old.toml": text, "profiles/schemas/ir-v1.json": (PROFILES / "schemas" / "ir-v1.json").read_text()})
    result = run_kit("render", "profiles/old.toml", "-o", "out", cwd=root)
    assert result.code == 1, result.err
    assert "vllm 0.7.3" in result.err and "fix:" in result.err
    assert not (root / "out").exists()


def test_cli_renders_and_warns_without_lock(tree):
    text = (PROFILES / "qwen25-a10g.toml").read_text()
    root = tree({"profiles/p.toml": text, "profiles/schemas/ir-v1.json": (PROFILES / "schemas" / "ir-v1.json").read_text()})
    result = run_kit("render", "profiles/p.toml", "-o", "out", cwd=root)
    assert result.code == 0, result.err
    assert "not locked" in result.err and "kit lock" in result.err
    assert sorted(p.name for p in (root / "out").iterdir()) == ["app.py", "manifest.json", "requirements.txt", "schema.json"]
    manifest = json.loads((root / "out" / "manifest.json").read_text())
    assert manifest["lock_hash"] is None
    reqs = (root / "out" / "requirements.txt").read_text()
    assert "vllm==0.9.2" in reqs and "--hash" not in reqs
    assert "--require-hashes" not in (root / "out" / "app.py").read_text()


def test_locked_profile_installs_with_hashes():
    loaded = load(PROFILES / "qwen25-a10g.toml")
    if not loaded.path.with_suffix(".lock").exists():
        pytest.skip("no lockfile for qwen25-a10g")
    bundle = render(loaded)
    assert bundle.manifest["lock_hash"] is not None
    assert "--hash=sha256:" in bundle.files["requirements.txt"]
    assert "--require-hashes --no-deps" in bundle.files["app.py"]


# -- determinism and the bundle hash ---------------------------------------------------------------


def test_render_is_deterministic(library_profile, tmp_path):
    first = render(library_profile)
    again = render(load(library_profile.path))
    assert first.files == again.files and first.hash == again.hash
    write(first, tmp_path / "a")
    write(again, tmp_path / "b")
    for name in first.files:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    assert first.manifest["bundle_hash"] == first.hash == bundle_hash(first.files)
    assert json.loads(first.files[MANIFEST_FILE]) == first.manifest


def test_bundle_hash_covers_every_file(tmp_path):
    bundle = render(load(PROFILES / "qwen25-a10g.toml"))
    for name in bundle.files:
        changed = dict(bundle.files)
        if name == MANIFEST_FILE:
            doc = json.loads(changed[name])
            doc["profile"] = "other"
            changed[name] = json.dumps(doc)
        else:
            changed[name] += "\n"
        assert bundle_hash(changed) != bundle.hash, name
    doc = json.loads(bundle.files[MANIFEST_FILE])
    doc["bundle_hash"] = "0" * 64  # the hash does not cover itself
    assert bundle_hash({**bundle.files, MANIFEST_FILE: json.dumps(doc)}) == bundle.hash


def test_rendered_app_is_an_importable_module_name(library_profile):
    bundle = render(library_profile)
    assert all(Path(n).stem.isidentifier() for n in bundle.files if n.endswith(".py"))
    ast.parse(bundle.files["app.py"])


def test_check_does_not_import_jinja2_or_modal():
    code = (
        "import sys\nfrom kit.load import load\nfrom kit.check import check\nfrom kit.lockfile import closure_for\n"
        "l = load('profiles/qwen25-a10g.toml'); check(l, closure_for(l))\n"
        "bad = sorted(m for m in ('jinja2', 'modal', 'kit.render') if m in sys.modules)\nassert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True)


# -- snapshots -------------------------------------------------------------------------------------


def test_snapshots(library_profile):
    files = _snapshot_files(render(library_profile))
    where = SNAPSHOTS / library_profile.profile.name
    if UPDATE_SNAPSHOTS:
        where.mkdir(parents=True, exist_ok=True)
        for old in where.iterdir():
            old.unlink()
        for name, text in files.items():
            (where / name).write_bytes(text.encode())
        return
    assert where.is_dir(), f"no snapshot for {library_profile.profile.name}: run KIT_UPDATE_SNAPSHOTS=1 pytest tests/test_render.py"
    stored = {p.name: p.read_text(encoding="utf-8") for p in where.iterdir()}
    assert sorted(stored) == sorted(files)
    for name, text in files.items():
        assert text == stored[name], f"{where / name} differs: review the change, then KIT_UPDATE_SNAPSHOTS=1 pytest tests/test_render.py"
