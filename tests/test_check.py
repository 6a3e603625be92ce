"""kit check: computed rules with their numbers, allow handling, output formats, and the fast path."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from kit.check import check
from kit.load import load
from kit.memory import memory_fit

from .conftest import BASE_PROFILE, PROFILES, REPO, run_kit


def _check(tree, text: str, extra: dict | None = None):
    root = tree({"profiles/p.toml": text, **(extra or {})})
    return check(load(root / "profiles/p.toml"))


def _rules(report) -> set[str]:
    return {f.rule for f in report.active()}


def _one(report, rule):
    found = [f for f in report.findings if f.rule == rule]
    assert len(found) == 1, [f.rule for f in report.findings]
    return found[0]


def test_library_profiles_pass_kit_check():
    result = run_kit("check")
    assert result.code == 0, result.out + result.err
    names = sorted(p.name for p in PROFILES.glob("*.toml"))
    for name in names:
        assert f"profiles/{name}" in result.out


FP8_FULL_CONTEXT = BASE_PROFILE.replace('id = "Qwen/Qwen2.5-Coder-7B-Instruct"', 'id = "Qwen/Qwen3-Coder-30B-A3B-Instruct-FP8"').replace(
    "max_model_len = 32768\n", ""
).replace('type = "A10G"', 'type = "A100-40GB"').replace('dtype = "bfloat16"\n', "")


def test_kv_cache_finding_carries_the_numbers(tree):
    report = _check(tree, FP8_FULL_CONTEXT)
    f = _one(report, "gpu-memory-kv-cache")
    assert f.severity == "error"
    # Qwen3-Coder-30B-A3B: 2 x 48 layers x 4 KV heads x 128 x 2 B = 96 KiB/token; 262144 tokens = 24 GiB.
    assert "KV cache 24.0 GiB for one 262144-token sequence (96 KiB/token)" in f.summary
    assert "weights 29.0 GiB" in f.summary
    assert "A100-40GB offers" in f.summary and "gpu_memory_utilization 0.90" in f.summary
    assert "lower model.max_model_len to at most ~" in f.fix and "A100-80GB" in f.fix
    assert report.failed()


def test_kv_cache_bound_is_consistent_with_memory_fit(tree):
    root = tree({"profiles/p.toml": FP8_FULL_CONTEXT})
    fit = memory_fit(load(root / "profiles/p.toml"))
    assert fit is not None and not fit.kv_fits and fit.weights_fit
    # The suggested bound really fits, and a bound 10% above it would not.
    bound = fit.max_tokens
    assert bound * fit.per_token <= fit.kv_budget < int(bound * 1.1) * fit.per_token
    fixed = FP8_FULL_CONTEXT.replace("[gpu]", f"[gpu]").replace('name = "vllm"', 'name = "vllm"') + ""
    root2 = tree({"profiles/q.toml": fixed.replace("[gpu]\n", "[gpu]\n").replace('id = "Qwen/Qwen3-Coder-30B-A3B-Instruct-FP8"', f'id = "Qwen/Qwen3-Coder-30B-A3B-Instruct-FP8"\nmax_model_len = {bound}')})
    assert "gpu-memory-kv-cache" not in _rules(check(load(root2 / "profiles/q.toml")))


def test_weights_that_do_not_fit(tree):
    text = BASE_PROFILE.replace('id = "Qwen/Qwen2.5-Coder-7B-Instruct"', 'id = "Qwen/Qwen3-Coder-30B-A3B-Instruct"').replace("max_model_len = 32768", "max_model_len = 8192")
    f = _one(_check(tree, text), "gpu-memory-weights")
    assert "56.9 GiB" in f.summary and "A10G" in f.summary


def test_bf16_on_t4(tree):
    f = _one(_check(tree, BASE_PROFILE.replace('type = "A10G"', 'type = "T4"')), "gpu-bf16-unsupported")
    assert "7.5" in f.summary and "float16" in f.fix


def test_fp8_on_t4_is_an_error_and_on_a100_weight_only(tree):
    t4 = FP8_FULL_CONTEXT.replace('type = "A100-40GB"', 'type = "T4"')
    assert "gpu-fp8-unsupported" in _rules(_check(tree, t4))
    a100 = FP8_FULL_CONTEXT.replace("[gpu]", "[gpu]")
    assert "gpu-fp8-weight-only" in _rules(_check(tree, a100))


def test_block_fp8_marlin_needs_vllm_090(tree):
    old = FP8_FULL_CONTEXT.replace('vllm = "0.9.2"', 'vllm = "0.8.5"').replace('transformers = "4.53.0"', 'transformers = "4.51.3"').replace('xgrammar = "0.1.19"', 'xgrammar = "0.1.18"')
    f = _one(_check(tree, old), "gpu-fp8-marlin-too-old")
    assert "0.9.0" in f.fix


def test_tensor_parallel_checks(tree):
    r = _check(tree, BASE_PROFILE.replace('name = "vllm"', 'name = "vllm"\ntensor_parallel_size = 3').replace("count = 1", "count = 4"))
    f = _one(r, "tp-heads-indivisible")
    assert "28 attention heads" in f.summary and "3" in f.summary
    r = _check(tree, BASE_PROFILE.replace('name = "vllm"', 'name = "vllm"\ntensor_parallel_size = 2'))
    assert "tp-exceeds-gpus" in _rules(r)


def test_gpu_count_above_modal_limit(tree):
    r = _check(tree, BASE_PROFILE.replace("count = 1", "count = 8"))
    assert "gpu-count-exceeds-modal" in _rules(r)  # A10G: at most 4


def test_unknown_model_is_info_and_architecture_table_enables_memory_check(tree):
    unknown = BASE_PROFILE.replace("Qwen/Qwen2.5-Coder-7B-Instruct", "acme/coder-9b")
    r = _check(tree, unknown)
    assert _one(r, "model-unknown").severity == "info"  # kit not knowing is context, not a risk
    with_arch = unknown + (
        "\n[model.architecture]\nnum_hidden_layers = 40\nnum_attention_heads = 32\nnum_key_value_heads = 8\n"
        "head_dim = 128\nmax_position_embeddings = 131072\nweight_bytes = 18000000000\n"
    )
    r = _check(tree, with_arch.replace("max_model_len = 32768", "max_model_len = 131072"))
    assert "model-unknown" not in _rules(r)
    assert "gpu-memory-kv-cache" in _rules(r)


def test_pins_checked_against_recorded_metadata(tree):
    r = _check(tree, BASE_PROFILE.replace('transformers = "4.53.0"', 'transformers = "4.50.0"'))
    f = _one(r, "pin-conflict")
    assert f.summary == "vllm 0.9.2 requires transformers>=4.51.1, but the profile pins transformers 4.50.0"
    r = _check(tree, BASE_PROFILE.replace('python = "3.11"', 'python = "3.13"'))
    f = _one(r, "pin-requires-python")
    assert "<3.13,>=3.9" in f.why


def test_unrecorded_engine_release_is_said_not_guessed(tree):
    # 0.7.99 was never published, so the knowledge store cannot hold it.
    r = _check(tree, BASE_PROFILE.replace('vllm = "0.9.2"', 'vllm = "0.7.99"'))
    assert "metadata-not-recorded" in {f.rule for f in r.findings}


def test_releases_before_084_are_checked_from_the_store(tree):
    # vllm 0.7.3's wheel metadata pins `xgrammar==0.1.11; platform_machine == "x86_64"`.
    r = _check(tree, BASE_PROFILE.replace('vllm = "0.9.2"', 'vllm = "0.7.3"'))
    f = _one(r, "pin-conflict")
    assert f.summary == 'vllm 0.7.3 requires xgrammar==0.1.11; platform_machine == "x86_64", but the profile pins xgrammar 0.1.19'


def test_allow_suppresses_and_stale_allow_warns(tree):
    text = BASE_PROFILE.replace('type = "A10G"', 'type = "T4"') + '\n[[allow]]\nrule = "gpu-bf16-unsupported"\nreason = "we pass dtype at run time"\n'
    r = _check(tree, text)
    f = _one(r, "gpu-bf16-unsupported")
    assert f.allowed == "we pass dtype at run time" and f not in r.active()
    r = _check(tree, BASE_PROFILE + '\n[[allow]]\nrule = "gpu-bf16-unsupported"\nreason = "stale"\n')
    assert _one(r, "allow-unused").severity == "warning"


def test_strict_makes_warnings_fail(tree):
    # A branch that no lock has pinned to a commit: a warning, not an error.
    root = tree({"profiles/p.toml": BASE_PROFILE.replace('dtype = "bfloat16"', 'dtype = "bfloat16"\nrevision = "main"')})
    assert run_kit("check", cwd=root).code == 0
    assert run_kit("check", "--strict", cwd=root).code == 1


def test_json_format_is_stable(tree):
    root = tree({"profiles/p.toml": FP8_FULL_CONTEXT})
    result = run_kit("check", "--format", "json", cwd=root)
    assert result.code == 1
    doc = json.loads(result.out)
    assert doc["version"] == 1
    assert set(doc["summary"]) == {"error", "warning", "info", "profiles", "invalid"}
    (prof,) = doc["profiles"]
    assert set(prof) == {"profile", "name", "closure_checked", "summary", "findings", "notes", "overrides"}
    finding = next(f for f in prof["findings"] if f["rule"] == "gpu-memory-kv-cache")
    assert set(finding) == {"rule", "severity", "summary", "why", "fix", "keys", "sources", "file", "allowed"}
    assert finding["file"] == "profiles/p.toml" and finding["sources"]


def test_github_format_annotates_the_line(tree):
    root = tree({"profiles/p.toml": FP8_FULL_CONTEXT})
    result = run_kit("check", "--format", "github", cwd=root)
    line = next(l for l in result.out.splitlines() if "gpu-memory-kv-cache" in l)
    assert line.startswith("::error file=profiles/p.toml,line=")
    lineno = int(line.split("line=")[1].split(",")[0])
    assert (root / "profiles/p.toml").read_text().splitlines()[lineno - 1].startswith("[model]") or "max_model_len" in (
        root / "profiles/p.toml"
    ).read_text().splitlines()[lineno - 1]


def test_check_path_imports_no_heavy_modules():
    code = (
        "import sys, runpy; sys.argv=['kit','check','profiles/qwen25-a10g-flashinfer.toml'];\n"
        "try:\n runpy.run_module('kit', run_name='__main__')\nexcept SystemExit as e: code=e.code\n"
        "heavy=[m for m in ('jinja2','modal','httpx','pydantic_settings','tomlkit','uv','huggingface_hub','kit.hub') if m in sys.modules]\n"
        "print('HEAVY', heavy, 'EXIT', code)"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, env={"PATH": "/usr/bin:/bin", "NO_COLOR": "1"}).stdout
    assert "HEAVY [] EXIT 0" in out, out


def test_generated_docs_are_fresh():
    from kit.docs import GENERATED

    for rel, make in GENERATED.items():
        assert (REPO / rel).read_text(encoding="utf-8") == make(), f"{rel} is stale: run `python -m kit.docs`"


def test_schema_command_prints_the_json_schema():
    result = run_kit("schema")
    schema = json.loads(result.out)
    assert schema["additionalProperties"] is False
    assert "required" not in schema and schema["if"] == {"required": ["extends"]}  # a child profile is partial
    assert {"app", "model", "gpu", "image", "packages", "engine"} <= set(schema["$defs"]["Profile"]["required"])
