"""Model facts derived from real configs (kit/knowledge/model.py), recorded in a lock, checked by kit check.

The configs are the recorded fixtures of the test Hub (tests/data/hub/models.json, with provenance).
The lock's model section here is written the way `kit lock` writes it (resolve.render with
ModelRecord.lock_lines), from facts derived from those files, so no network is needed;
tests/test_hub.py covers reading the same files through huggingface_hub.
"""

from __future__ import annotations

import json

import pytest

from kit import lockfile, resolve
from kit.check import check
from kit.hub import ModelRecord
from kit.knowledge.model import MalformedConfig, ModelFacts, derive
from kit.load import load

from .conftest import BASE_PROFILE
from .hubserver import HUB_DATA
from .weight_count import parameters

MODELS = {m["id"]: m for m in json.loads((HUB_DATA / "models.json").read_text(encoding="utf-8"))["models"]}


def facts(model_id: str) -> ModelFacts:
    m = MODELS[model_id]
    files = {name: json.loads((HUB_DATA / rel).read_text(encoding="utf-8")) for name, rel in m["files"].items()}
    weights = m["weights"]["total_bytes"] if m["weights"] else None
    return derive(
        files["config.json"],
        index=files.get("model.safetensors.index.json"),
        weight_file_bytes=weights,
        hf_quant_config=files.get("hf_quant_config.json"),
    )


# -- derivation ------------------------------------------------------------------------------------


def test_kv_bytes_per_architecture():
    # GQA: 2 x 32 layers x 8 KV heads x 128 x 2 B
    assert facts("meta-llama/Meta-Llama-3.1-8B").kv_bytes_per_token() == 131_072
    # MLA: one latent (512) + rope key (64) per layer, no per-head K/V: 27 x 576 x 2 B
    dsv2 = facts("deepseek-ai/DeepSeek-V2-Lite-Chat")
    assert dsv2.attention == "mla" and dsv2.kv_bytes_per_token() == 31_104
    assert facts("deepseek-ai/DeepSeek-V3").kv_bytes_per_token() == 61 * 576 * 2
    # MLA latents are not split across tensor-parallel ranks; GQA heads are
    assert dsv2.kv_bytes_per_token(tp=4) == 31_104
    assert facts("meta-llama/Meta-Llama-3.1-70B").kv_bytes_per_token(tp=8) == 2 * 80 * 1 * 128 * 2
    # fewer KV heads than ranks: each rank keeps one (replicated)
    assert facts("Qwen/Qwen3-30B-A3B").kv_bytes_per_token(tp=8) == 2 * 48 * 1 * 128 * 2


def test_sliding_window_layers_keep_only_the_window():
    gemma = facts("google/gemma-2-9b-it")
    assert (gemma.kv_layers, gemma.sliding_layers, gemma.sliding_window) == (42, 21, 4096)
    per_layer = 2 * 8 * 256 * 2
    assert gemma.kv_bytes_for_sequence(8192) == per_layer * (21 * 8192 + 21 * 4096)
    assert gemma.kv_bytes_for_sequence(1000) == per_layer * 42 * 1000
    oss = facts("openai/gpt-oss-20b")
    assert (oss.sliding_layers, oss.sliding_window, oss.quantization) == (12, 128, "mxfp4")


def test_hybrid_models_count_only_their_attention_layers():
    qwen35 = facts("Qwen/Qwen3.5-27B")
    assert qwen35.multimodal and (qwen35.kv_layers, qwen35.state_layers) == (16, 48)
    # Nemotron-H: hybrid_override_pattern, "*" attention, "M" Mamba-2, "-" MLP (118 blocks)
    nemotron = facts("nvidia/Nemotron-H-56B-Base-8K")
    assert (nemotron.num_hidden_layers, nemotron.kv_layers, nemotron.state_layers) == (118, 10, 54)


def test_quantization_and_context_from_the_config():
    fp8 = facts("Qwen/Qwen3-30B-A3B-FP8")
    assert fp8.quantization == "fp8" and fp8.fp8_block and fp8.quant_detail == "block [128, 128]"
    assert facts("nvidia/Llama-3.1-70B-Instruct-FP8").quantization == "modelopt"  # from hf_quant_config.json
    vl = facts("Qwen/Qwen3-VL-8B-Instruct")
    assert vl.multimodal and vl.num_hidden_layers == 36
    # vLLM's derived length: yarn scales original_max_position_embeddings (4096 x 40); llama3 scales nothing
    assert facts("deepseek-ai/DeepSeek-V2-Lite-Chat").max_position_embeddings == 163_840
    assert facts("meta-llama/Meta-Llama-3.1-8B").max_position_embeddings == 131_072
    assert facts("Qwen/Qwen2.5-3B-Instruct").max_position_embeddings == 32_768
    capped = derive(json.loads((HUB_DATA / MODELS["Qwen/Qwen3-8B"]["files"]["config.json"]).read_text()), tokenizer_config={"model_max_length": 4096})
    assert capped.max_position_embeddings == 4096 and "tokenizer_config" in capped.context_note


def test_the_lock_record_round_trips():
    for model_id in MODELS:
        f = facts(model_id)
        record = {k: str(v) for k, v in f.to_record().items()}
        assert ModelFacts.from_record(record) == f, model_id


@pytest.mark.parametrize(
    "config, key",
    [({"num_hidden_layers": 2}, "architectures"), ({"architectures": ["X"], "num_attention_heads": 4}, "num_hidden_layers"), ({"architectures": ["X"], "num_hidden_layers": 2, "num_attention_heads": "4"}, "num_attention_heads")],
)
def test_a_malformed_config_names_the_key(config, key):
    with pytest.raises(MalformedConfig) as info:
        derive(config)
    assert info.value.key == key


def test_the_weight_counter_of_the_fixtures_matches_real_indexes_and_the_hubs_counts():
    """tests/weight_count.py sizes the fixtures that have no index: it must reproduce the ones that do."""

    def config(model_id):
        return json.loads((HUB_DATA / MODELS[model_id]["files"]["config.json"]).read_text())

    assert 2 * parameters(config("google/gemma-2-9b-it")) == MODELS["google/gemma-2-9b-it"]["weights"]["total_bytes"] == 18_483_411_968
    assert 2 * parameters(config("Qwen/Qwen3-Coder-30B-A3B-Instruct")) == 61_064_245_248  # the real index
    assert parameters(config("Qwen/Qwen2.5-3B-Instruct")) == 3_085_938_688  # the Hub's safetensors parameter count
    assert parameters(config("deepseek-ai/DeepSeek-V2-Lite-Chat")) == 15_706_484_224  # the model report's count


# -- kit check on locked model facts ------------------------------------------------------------------


def locked(tree, text: str, model_id: str):
    """A profile and a lock whose model section holds the facts of `model_id`, as `kit lock` writes it."""
    root = tree({"profiles/p.toml": text})
    loaded = load(root / "profiles/p.toml")
    m = MODELS[model_id]
    record = ModelRecord(id=model_id, revision=loaded.profile.model.revision or "main", commit=m["commit"], facts=facts(model_id), files={"config.json": "0" * 64})
    inputs = lockfile.resolution_inputs(loaded)
    body = "".join(f"{n}=={v} \\\n    --hash=sha256:{'0' * 64}\n" for n, v in sorted(loaded.profile.packages.items()))
    lockfile.lock_path(loaded).write_text(resolve.render(loaded, inputs, body, ["https://index.invalid/simple"], [], model_lines=record.lock_lines()), encoding="utf-8")
    return load(root / "profiles/p.toml")


def profile(model_id: str, gpu: str, count: int = 1, max_len: int | None = 8192, dtype: str = "auto") -> str:
    text = BASE_PROFILE.replace("Qwen/Qwen2.5-Coder-7B-Instruct", model_id).replace('type = "A10G"', f'type = "{gpu}"').replace("count = 1", f"count = {count}")
    text = text.replace('dtype = "bfloat16"', f'dtype = "{dtype}"')
    return text.replace("max_model_len = 32768", f"max_model_len = {max_len}" if max_len else "")


def errors(report) -> list[str]:
    return sorted(f.rule for f in report.active() if f.severity == "error")


def test_too_large_a_model_and_its_twin(tree):
    report = check(locked(tree, profile("meta-llama/Meta-Llama-3.1-70B", "A100-80GB"), "meta-llama/Meta-Llama-3.1-70B"))
    f = next(f for f in report.findings if f.rule == "gpu-memory-weights")
    assert f.severity == "error" and "131.4 GiB" in f.summary and "the lock (config.json of meta-llama/Meta-Llama-3.1-70B" in f.why
    twin = check(locked(tree, profile("meta-llama/Meta-Llama-3.1-70B", "H200", count=2), "meta-llama/Meta-Llama-3.1-70B"))
    assert errors(twin) == [] and "model-unknown" not in [f.rule for f in twin.findings]


def test_too_long_a_context_and_its_twin(tree):
    report = check(locked(tree, profile("Qwen/Qwen3-8B", "H100", max_len=131072), "Qwen/Qwen3-8B"))
    f = next(f for f in report.findings if f.rule == "model-len-exceeds-context")
    assert f.severity == "error" and "40960" in f.summary and "max_position_embeddings 40960" in f.why
    assert errors(check(locked(tree, profile("Qwen/Qwen3-8B", "H100", max_len=40960), "Qwen/Qwen3-8B"))) == []


def test_a_dtype_the_gpu_lacks_and_its_twin(tree):
    report = check(locked(tree, profile("Qwen/Qwen3-0.6B", "T4", dtype="bfloat16"), "Qwen/Qwen3-0.6B"))
    assert "gpu-bf16-unsupported" in errors(report)
    auto = check(locked(tree, profile("Qwen/Qwen3-0.6B", "T4", dtype="auto"), "Qwen/Qwen3-0.6B"))
    assert [f.severity for f in auto.findings if f.rule == "gpu-bf16-auto"] == ["warning"]  # vLLM 0.20 falls back to fp16
    assert errors(check(locked(tree, profile("Qwen/Qwen3-0.6B", "T4", dtype="float16"), "Qwen/Qwen3-0.6B"))) == []


def test_kv_cache_error_only_when_certain_margin_is_a_warning(tree):
    # Llama-3.1-8B on L4 (22.0 GiB): 15.0 GiB weights + 16.0 GiB for 131072 tokens is over 0.9 x memory whatever the overhead
    sure = check(locked(tree, profile("meta-llama/Meta-Llama-3.1-8B", "L4", max_len=131072), "meta-llama/Meta-Llama-3.1-8B"))
    assert "gpu-memory-kv-cache" in errors(sure)
    # 32768 tokens (4.0 GiB) fit in 0.9 x memory, but not beside kit's 2 GiB overhead estimate: a warning
    margin = check(locked(tree, profile("meta-llama/Meta-Llama-3.1-8B", "L4", max_len=32768), "meta-llama/Meta-Llama-3.1-8B"))
    assert errors(margin) == [] and "gpu-memory-kv-cache-margin" in [f.rule for f in margin.active() if f.severity == "warning"]


def test_sliding_window_and_mla_fit_where_full_attention_would_not(tree):
    # gemma-2-9b at 8192 on A10G: full-attention arithmetic would need 2.6 GiB of KV, the window keeps it at 2.0 GiB
    report = check(locked(tree, profile("google/gemma-2-9b-it", "A100-40GB", max_len=8192), "google/gemma-2-9b-it"))
    assert errors(report) == []
    mla = check(locked(tree, profile("deepseek-ai/DeepSeek-V2-Lite-Chat", "H100", max_len=163840), "deepseek-ai/DeepSeek-V2-Lite-Chat"))
    assert errors(mla) == []  # 163840 tokens x 30.4 KiB = 4.7 GiB beside 29.3 GiB of weights


def test_tensor_parallel_against_kv_heads(tree):
    report = check(locked(tree, profile("microsoft/phi-4", "H100", count=4), "microsoft/phi-4"))
    assert "tp-kv-heads-indivisible" in errors(report)  # 40 heads / 4 fine, 10 KV heads / 4 not
    assert "tp-kv-heads-indivisible" not in errors(check(locked(tree, profile("microsoft/phi-4", "H100", count=2), "microsoft/phi-4")))


def test_unknown_weights_are_info_and_facts_for_another_model_are_not_used(tree):
    report = check(locked(tree, profile("openai/gpt-oss-20b", "H100"), "openai/gpt-oss-20b"))
    assert [f.severity for f in report.findings if f.rule == "model-weights-unknown"] == ["info"]
    loaded = locked(tree, profile("Qwen/Qwen3-8B", "H100"), "Qwen/Qwen3-8B")
    other = loaded.path.read_text().replace("Qwen/Qwen3-8B", "Qwen/Qwen3-32B")
    loaded.path.write_text(other)
    report = check(load(loaded.path))
    assert "model-facts-not-locked" in [f.rule for f in report.findings] and "model-unknown" in [f.rule for f in report.findings]


def test_render_pins_the_commit_the_lock_resolved_a_branch_to(tree):
    from kit.render import render

    loaded = locked(tree, profile("Qwen/Qwen3-8B", "H100").replace('dtype = "auto"', 'dtype = "auto"\nrevision = "main"'), "Qwen/Qwen3-8B")
    commit = MODELS["Qwen/Qwen3-8B"]["commit"]
    app = render(loaded).files["app.py"]
    assert f"MODEL_REVISION = {commit!r}" in app or f'MODEL_REVISION = "{commit}"' in app
    report = check(loaded)
    assert "model-revision-unpinned" not in [f.rule for f in report.findings]


def test_diff_shows_the_model_facts_that_changed(tree, tmp_path):
    from kit.diff import diff

    old = locked(tree, profile("Qwen/Qwen3-8B", "H100"), "Qwen/Qwen3-8B")
    new_root = tmp_path / "new"
    new_root.mkdir()
    (new_root / ".git").mkdir()
    (new_root / "profiles").mkdir()
    text = profile("Qwen/Qwen3-32B", "H100")
    (new_root / "profiles/p.toml").write_text(text)
    new = load(new_root / "profiles/p.toml")
    record = ModelRecord(id="Qwen/Qwen3-32B", revision="main", commit=MODELS["Qwen/Qwen3-32B"]["commit"], facts=facts("Qwen/Qwen3-32B"), files={"config.json": "1" * 64})
    lock_text = old.path.with_suffix(".lock").read_text()
    head = "".join(f"# kit-model: {k} = {v}\n" for k, v in record.lock_lines())
    body = "".join(line + "\n" for line in lock_text.splitlines() if not line.startswith("# kit-model: "))
    (new_root / "profiles/p.lock").write_text(body.replace("#\n# The whole", head + "#\n# The whole", 1))
    changes = {c.key: (c.old, c.new) for c in diff(old, new).settings}
    assert changes["lock model num_hidden_layers"] == ("36", "64")
    assert changes["lock model weight_bytes"] == (str(MODELS["Qwen/Qwen3-8B"]["weights"]["total_bytes"]), str(MODELS["Qwen/Qwen3-32B"]["weights"]["total_bytes"]))


class _Release:
    """A stand-in for kit.knowledge.engines.EngineFacts (that store is another branch's): only the
    two facts these checks read, and the provenance call."""

    def __init__(self, architectures, quant_min_capability):
        self.engine, self.version = "vllm", "0.9.2"
        self.architectures = frozenset(architectures)
        self.quant_min_capability = quant_min_capability

    def source_of(self, fact):
        return f"vllm==0.9.2 vllm-0.9.2.tar.gz sha256:test:{fact}"


def test_architecture_against_the_releases_registry(tree, monkeypatch):
    from kit import model_checks

    monkeypatch.setattr(model_checks, "engine_release", lambda engine, version: _Release({"LlamaForCausalLM"}, {}))
    report = check(locked(tree, profile("Qwen/Qwen3-8B", "H100"), "Qwen/Qwen3-8B"))
    f = next(f for f in report.findings if f.rule == "model-not-in-registry")
    assert f.severity == "error" and "does not register Qwen3ForCausalLM" in f.summary and "sha256:test:architectures" in f.why
    ok = check(locked(tree, profile("meta-llama/Meta-Llama-3.1-8B", "H100"), "meta-llama/Meta-Llama-3.1-8B"))
    assert not {"model-not-in-registry", "model-registry-unknown"} & {f.rule for f in ok.findings}


def test_quantization_against_the_releases_minimum_capability(tree, monkeypatch):
    from kit import model_checks

    monkeypatch.setattr(model_checks, "engine_release", lambda engine, version: _Release({"GptOssForCausalLM"}, {"mxfp4": 80}))
    t4 = check(locked(tree, profile("openai/gpt-oss-20b", "T4", dtype="float16"), "openai/gpt-oss-20b"))
    f = next(f for f in t4.findings if f.rule == "gpu-quantization-unsupported")
    assert f.severity == "error" and "Minimum capability: 80. Current capability: 75." in f.why
    h100 = check(locked(tree, profile("openai/gpt-oss-20b", "H100"), "openai/gpt-oss-20b"))
    assert "gpu-quantization-unsupported" not in {f.rule for f in h100.findings}
    monkeypatch.setattr(model_checks, "engine_release", lambda engine, version: None)  # no store: kit does not know
    unknown = check(locked(tree, profile("openai/gpt-oss-20b", "T4", dtype="float16"), "openai/gpt-oss-20b"))
    assert [f.severity for f in unknown.findings if f.rule == "quantization-capability-unknown"] == ["info"]


def test_the_real_store_knows_vllm_0_9_2_predates_gpt_oss_and_serves_qwen3(tree):
    """kit.knowledge.engines as merged: vllm 0.9.2's registry, read from its sdist."""
    oss = check(locked(tree, profile("openai/gpt-oss-20b", "H100"), "openai/gpt-oss-20b"))
    f = next(f for f in oss.findings if f.rule == "model-not-in-registry")
    assert f.severity == "error" and "vllm-0.9.2.tar.gz" in f.why and "registry.py" in f.why
    qwen3 = check(locked(tree, profile("Qwen/Qwen3-8B", "H100"), "Qwen/Qwen3-8B"))
    assert not {"model-not-in-registry", "model-registry-unknown", "model-kind-not-generative"} & {f.rule for f in qwen3.findings}
    # the same gpt-oss checkpoint with vllm 0.11.0, which registers it: no registry finding
    newer = profile("openai/gpt-oss-20b", "H100").replace('vllm = "0.9.2"\ntransformers = "4.53.0"\nxgrammar = "0.1.19"\n', 'vllm = "0.11.0"\n')
    assert "model-not-in-registry" not in {f.rule for f in check(locked(tree, newer, "openai/gpt-oss-20b")).findings}


def test_a_pooling_only_architecture_is_not_served_for_generation(tree, monkeypatch):
    from kit import model_checks

    release = _Release({"Qwen3ForCausalLM"}, {})
    release.architecture_kinds = {"Qwen3ForCausalLM": ("embedding",)}
    monkeypatch.setattr(model_checks, "engine_release", lambda engine, version: release)
    report = check(locked(tree, profile("Qwen/Qwen3-8B", "H100"), "Qwen/Qwen3-8B"))
    assert "model-kind-not-generative" in errors(report)
