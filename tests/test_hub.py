"""kit/hub.py against a local Hub (tests/hubserver.py) through the real huggingface_hub client.

huggingface_hub reads HF_ENDPOINT, HF_HUB_OFFLINE and HF_HOME when it is imported, so every read
runs in a fresh process (`_read`), as `kit lock` does. Only the Hub's HTTP service is replaced, and
it answers from real recorded config files (tests/data/hub/models.json).
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import BASE_PROFILE, REPO, run_kit
from .hubserver import HUB_DATA, TOKEN, HubServer, Repo, load_repos

MANIFEST = json.loads((HUB_DATA / "models.json").read_text(encoding="utf-8"))
READER = """
import json, sys
from kit.errors import KitError
from kit.hub import read_model
out = []
for arg in sys.argv[1:]:
    model_id, _, revision = arg.partition("@")
    try:
        r = read_model(model_id, revision or None)
        out.append({"id": r.id, "revision": r.revision, "commit": r.commit, "files": r.files, "facts": r.facts.to_record(), "notes": r.notes})
    except KitError as exc:
        out.append({"id": model_id, "error": type(exc).__name__, "message": str(exc), "exit": exc.exit_code})
print(json.dumps(out))
"""


def hub_env(home: Path, url: str | None, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGING"))}
    env.update(HF_HOME=str(home), HF_HUB_DISABLE_TELEMETRY="1", HF_HUB_ETAG_TIMEOUT="5", HF_HUB_DOWNLOAD_TIMEOUT="5")
    env["HF_ENDPOINT"] = url or "http://127.0.0.1:9"
    env["HF_HUB_OFFLINE"] = "0"  # run_kit starts from the test's environment, which conftest made offline
    env.update(extra)
    return env


def _read(env: dict[str, str], *refs: str) -> list[dict]:
    proc = subprocess.run([sys.executable, "-c", READER, *refs], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    return json.loads(proc.stdout)


@pytest.fixture
def hub():
    with HubServer() as server:
        yield server


def test_the_fixtures_are_many_real_checkpoints_with_provenance():
    models = MANIFEST["models"]
    assert len(models) >= 25
    for m in models:
        assert m["provenance"]["config.json"], m["id"]
        assert "@" in m["provenance"]["config.json"] or "corpus id" in m["provenance"]["config.json"], m["id"]
        if m["weights"] is not None:
            assert m["weights"]["source"].startswith(("the real model.safetensors.index.json", "DERIVED")), m["id"]
    kinds = {json.loads((HUB_DATA / m["files"]["config.json"]).read_text())["architectures"][0] for m in models}
    for needed in ("LlamaForCausalLM", "Qwen2ForCausalLM", "Qwen3ForCausalLM", "Qwen3MoeForCausalLM", "MixtralForCausalLM", "Gemma2ForCausalLM",
                   "DeepseekV3ForCausalLM", "GptOssForCausalLM", "Phi3ForCausalLM", "GlmMoeDsaForCausalLM", "NemotronHForCausalLM",
                   "Qwen3VLForConditionalGeneration"):
        assert needed in kinds, needed


def test_every_fixture_reads_through_the_real_client(hub, tmp_path):
    models = MANIFEST["models"]
    results = _read(hub_env(tmp_path, hub.url, HF_TOKEN=TOKEN), *(m["id"] for m in models))
    assert not [r for r in results if "error" in r], [r for r in results if "error" in r]
    for m, r in zip(models, results, strict=True):
        assert r["revision"] == "main" and r["commit"] == m["commit"], m["id"]
        for name, rel in m["files"].items():  # the sha256 of each file kit read is the file's own
            assert r["files"][name] == hashlib.sha256((HUB_DATA / rel).read_bytes()).hexdigest(), (m["id"], name)
        config = json.loads((HUB_DATA / m["files"]["config.json"]).read_text())
        text = config.get("text_config") or config
        assert r["facts"]["num_hidden_layers"] == text["num_hidden_layers"], m["id"]
        assert r["facts"]["architecture"] == config["architectures"][0], m["id"]
        assert r["facts"]["weight_bytes"] == (m["weights"]["total_bytes"] if m["weights"] else 0), m["id"]
    # the client asked the Hub's own endpoints, nothing else
    assert all(" /api/models/" in q or "/resolve/" in q for q in hub.requests), hub.requests[:5]


def test_a_branch_is_resolved_to_its_commit_and_a_commit_reads_as_itself(hub, tmp_path):
    qwen = next(m for m in MANIFEST["models"] if m["id"] == "Qwen/Qwen2.5-3B-Instruct")
    by_branch, by_commit = _read(hub_env(tmp_path, hub.url), "Qwen/Qwen2.5-3B-Instruct@main", f"Qwen/Qwen2.5-3B-Instruct@{qwen['commit']}")
    assert by_branch["commit"] == by_commit["commit"] == "aa8e72537993ba99e69dfaafa59ed015b17504d1"
    assert by_branch["revision"] == "main" and by_commit["revision"] == qwen["commit"]
    # the Hub's own parameter count for this commit (3,085,938,688 BF16) x 2 bytes
    assert by_branch["facts"]["weight_bytes"] == 6_171_877_376


def test_answers_that_are_final_become_clear_errors(hub, tmp_path):
    gated, revision, missing = _read(hub_env(tmp_path, hub.url), "meta-llama/Meta-Llama-3.1-8B", "Qwen/Qwen3-8B@v9.9", "acme/no-such-model")
    assert gated["error"] == "ModelAccessError" and gated["exit"] == 2
    assert "gated" in gated["message"] and "HF_TOKEN" in gated["message"] and "model.hf_secret" in gated["message"]
    assert revision["error"] == "ModelAccessError" and "model.revision" in revision["message"] and "'v9.9'" in revision["message"]
    assert missing["error"] == "ModelAccessError" and "does not exist" in missing["message"]


def test_a_malformed_config_names_the_file_and_the_key(tmp_path):
    base = load_repos()["Qwen/Qwen3-8B"]
    broken = json.loads(base.files["config.json"])
    del broken["num_hidden_layers"]
    repos = {
        "acme/not-json": Repo("acme/not-json", "1" * 40, {"config.json": b'{"architectures": ["LlamaForCausalLM"], '}, refs={"main": "1" * 40}),
        "acme/no-layers": Repo("acme/no-layers", "2" * 40, {"config.json": json.dumps(broken).encode()}, refs={"main": "2" * 40}),
    }
    with HubServer(repos) as server:
        not_json, no_layers = _read(hub_env(tmp_path, server.url), "acme/not-json", "acme/no-layers")
    assert not_json["error"] == "ModelConfigError" and "config.json of acme/not-json at commit 1111" in not_json["message"] and "not valid JSON" in not_json["message"]
    assert no_layers["error"] == "ModelConfigError" and "num_hidden_layers: missing" in no_layers["message"] and no_layers["exit"] == 2


def test_offline_reads_the_cache_the_online_read_filled(hub, tmp_path):
    (online,) = _read(hub_env(tmp_path, hub.url, HF_TOKEN=TOKEN), "google/gemma-2-9b-it")
    offline, uncached = _read(hub_env(tmp_path, None, HF_HUB_OFFLINE="1"), "google/gemma-2-9b-it", "Qwen/Qwen3-8B")
    assert offline["commit"] == online["commit"] and offline["facts"] == online["facts"] and offline["files"] == online["files"]
    assert offline["facts"]["weight_bytes"] == 18_483_411_968  # the real index is in the cache
    assert uncached["error"] == "HubUnreachable" and "HF_HUB_OFFLINE" in uncached["message"]


def test_offline_from_the_standard_cache_layout(tmp_path):
    """A cache laid out as huggingface_hub lays it out (models--org--name/refs, snapshots/<commit>), made by hand."""
    commit = "0123456789abcdef0123456789abcdef01234567"
    snap = tmp_path / "hub" / "models--Qwen--Qwen3-8B" / "snapshots" / commit
    snap.mkdir(parents=True)
    (snap / "config.json").write_bytes((HUB_DATA / "files/Qwen--Qwen3-8B/config.json").read_bytes())
    (tmp_path / "hub" / "models--Qwen--Qwen3-8B" / "refs").mkdir()
    (tmp_path / "hub" / "models--Qwen--Qwen3-8B" / "refs" / "main").write_text(commit)
    (r,) = _read(hub_env(tmp_path, None, HF_HUB_OFFLINE="1"), "Qwen/Qwen3-8B")
    assert r["commit"] == commit and r["facts"]["num_key_value_heads"] == 8
    assert r["facts"]["weight_bytes"] == 0 and "weight bytes unknown" in r["notes"][0]


def test_kit_lock_stops_on_a_gated_model_without_a_token_and_writes_nothing(hub, tmp_path):
    root = tmp_path / "repo"
    (root / ".git").mkdir(parents=True)
    (root / "profiles").mkdir()
    (root / "profiles/p.toml").write_text(BASE_PROFILE.replace("Qwen/Qwen2.5-Coder-7B-Instruct", "meta-llama/Meta-Llama-3.1-8B"))
    result = run_kit("lock", "profiles/p.toml", cwd=root, env=hub_env(tmp_path / "home", hub.url))
    assert result.code == 2, result
    assert "meta-llama/Meta-Llama-3.1-8B is a gated model" in result.err and "HF_TOKEN" in result.err and "Traceback" not in result.err
    assert not (root / "profiles/p.lock").exists()


def test_an_unreachable_hub_is_said_at_once_not_after_the_clients_backoff(tmp_path):
    import time

    started = time.monotonic()
    (r,) = _read(hub_env(tmp_path, None), "Qwen/Qwen3-8B")  # HF_ENDPOINT: a closed port
    assert r["error"] == "HubUnreachable" and "could not be reached" in r["message"]
    assert time.monotonic() - started < 15  # huggingface_hub alone retries for about 23 s


@pytest.mark.network
def test_kit_lock_records_the_model_and_kit_check_uses_it_offline(hub, tmp_path):
    """End to end: uv resolves for real, the model comes from the local Hub; check then runs with no Hub at all."""
    root = tmp_path / "repo"
    (root / ".git").mkdir(parents=True)
    (root / "profiles").mkdir()
    text = BASE_PROFILE.replace("Qwen/Qwen2.5-Coder-7B-Instruct", "Qwen/Qwen3-8B").replace('type = "A10G"', 'type = "H100"')
    (root / "profiles/p.toml").write_text(text.replace("max_model_len = 32768", "max_model_len = 131072"))
    env = hub_env(tmp_path / "home", hub.url)
    first = run_kit("lock", "profiles/p.toml", cwd=root, env=env)
    assert first.code == 0, first
    assert "Qwen/Qwen3-8B@main -> " in first.out
    lock = (root / "profiles/p.lock").read_text()
    assert "# kit-model: commit = " + next(m["commit"] for m in MANIFEST["models"] if m["id"] == "Qwen/Qwen3-8B") in lock
    again = run_kit("lock", "profiles/p.toml", cwd=root, env=env)
    assert again.code == 0 and "unchanged" in again.out and (root / "profiles/p.lock").read_text() == lock
    offline = hub_env(tmp_path / "elsewhere", None, HF_HUB_OFFLINE="1")
    checked = run_kit("check", "profiles/p.toml", cwd=root, env=offline)
    assert checked.code == 1 and "model-len-exceeds-context" in checked.out and "40960" in checked.out


def test_the_server_answers_lfs_metadata_as_the_client_reads_it(hub, tmp_path):
    """Weight shards are LFS files on the Hub: the client takes their size from X-Linked-Size (kit sums the
    sizes from the model-info listing; this keeps the server honest about both)."""
    code = (
        "import json, sys\n"
        "from huggingface_hub import HfApi, get_hf_file_metadata, hf_hub_url\n"
        "meta = get_hf_file_metadata(hf_hub_url('Qwen/Qwen3-8B', 'model-00001-of-00004.safetensors'))\n"
        "info = HfApi().model_info('Qwen/Qwen3-8B', files_metadata=True)\n"
        "sib = {s.rfilename: (s.size, s.lfs.sha256 if s.lfs else None) for s in info.siblings}\n"
        "print(json.dumps({'size': meta.size, 'etag': meta.etag, 'commit': meta.commit_hash, 'listed': sib['model-00001-of-00004.safetensors']}))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], env=hub_env(tmp_path, hub.url), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    got = json.loads(proc.stdout)
    qwen = next(m for m in MANIFEST["models"] if m["id"] == "Qwen/Qwen3-8B")
    assert got["size"] == got["listed"][0] == qwen["weights"]["total_bytes"] // 4
    assert got["etag"] == got["listed"][1] and got["commit"] == qwen["commit"]
