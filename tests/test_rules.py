"""The rule data: every rule well-formed and sourced; the rules that matter fire on real stacks."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

from kit import catalog
from kit.check import check
from kit.load import load
from kit.rules import all_rules, api_table, attention_table

from .conftest import BASE_PROFILE

SOURCE = re.compile(r"(https?://|pypi-metadata|package metadata|vllm|sglang|sgl-kernel|transformers|flashinfer|xgrammar|modal|kit design|kit/data|kit/knowledge|knowledge store|sha256:|PEP \d+|NVIDIA|torch)", re.I)


def test_every_rule_has_why_fix_and_a_source():
    rules = all_rules()
    assert len(rules) > 40
    for r in rules:
        assert r.why.strip() and r.fix.strip(), r.id
        assert r.sources and all(SOURCE.search(s) for s in r.sources), (r.id, r.sources)


def test_every_computed_rule_is_emitted_by_the_code():
    code = "".join(p.read_text() for p in Path(catalog.__file__).parent.glob("*.py"))
    for r in all_rules():
        if r.computed:
            assert f'"{r.id}"' in code, f"computed rule {r.id} is declared in data but never emitted"


def test_catalog_facts_carry_sources():
    for gpu in catalog.gpus().entries:
        for fact in ("memory_bytes", "compute_capability", "price_per_hour_usd", "max_count"):
            assert gpu.sources.get(fact), (gpu.name, fact)
    for model in catalog.models().values():
        for fact in ("weight_bytes", "num_hidden_layers", "num_key_value_heads", "head_dim"):
            assert model.sources.get(fact), (model.id, fact)


def test_api_table_covers_every_vllm_release_from_084_without_overlap():
    from packaging.specifiers import SpecifierSet
    from packaging.version import Version

    rows = [r for r in api_table() if r["engine"] == "vllm" and not r.get("deprecated")]
    for v in ["0.8.4", "0.9.2", "0.10.2", "0.11.0", "0.11.2", "0.12.0", "0.20.0", "0.33.0"]:
        hits = [r for r in rows if SpecifierSet(r["versions"]).contains(Version(v))]
        assert len(hits) == 1, (v, hits)


def test_attention_table_covers_every_vllm_release_from_084_without_overlap():
    from packaging.specifiers import SpecifierSet
    from packaging.version import Version

    rows = [r for r in attention_table() if r["engine"] == "vllm"]
    for v in ["0.8.4", "0.9.2", "0.10.2", "0.11.0", "0.12.0", "0.13.0", "0.14.1", "0.15.0", "0.15.1", "0.20.0", "0.33.0"]:
        hits = [r for r in rows if SpecifierSet(r["versions"]).contains(Version(v))]
        assert len(hits) == 1, (v, hits)
    assert all(r["sources"] and r["on_unknown"] for r in attention_table())


def _findings(tree, text: str) -> set[str]:
    root = tree({"profiles/p.toml": text})
    return {f.rule for f in check(load(root / "profiles/p.toml")).active()}


def _stack(**packages: str) -> str:
    body = "\n".join(f'{k} = "{v}"' for k, v in packages.items())
    return re.sub(r"\[packages\]\n(.*?\n)\n", f"[packages]\n{body}\n\n", BASE_PROFILE, flags=re.S)


def _attention(text: str, backend: str | None = None, env: str | None = None) -> str:
    """The profile with engine.attention_backend and/or VLLM_ATTENTION_BACKEND in image.env."""
    if backend:
        text = text.replace('name = "vllm"', f'name = "vllm"\nattention_backend = "{backend}"')
    if env:
        text = text.replace('python = "3.11"', f'python = "3.11"\nenv = {{ VLLM_ATTENTION_BACKEND = "{env}" }}')
    return text


CASES = [
    # (what, profile text, rule that must fire)
    ("aimv2: vLLM 0.9.2 + transformers 4.54.0", _stack(vllm="0.9.2", transformers="4.54.0", xgrammar="0.1.19"), "vllm-transformers-aimv2"),
    ("transformers 5 on vLLM 0.11.0", _stack(vllm="0.11.0", transformers="5.0.0", xgrammar="0.1.25"), "vllm-transformers-v5-tokenizer"),
    (
        "guided_json on vLLM 0.12",
        _stack(vllm="0.12.0", transformers="4.57.1", xgrammar="0.1.27").replace('name = "vllm"', 'name = "vllm"\nargs = { guided_json = "{}" }'),
        "vllm-guided-json-removed",
    ),
    (
        "flashinfer without nvcc",
        _stack(vllm="0.9.2", transformers="4.53.0", xgrammar="0.1.19", **{"flashinfer-python": "0.2.6.post1"}).replace("nvidia/cuda:12.4.1-devel-ubuntu22.04", "debian_slim"),
        "flashinfer-jit-needs-nvcc",
    ),
    ("vLLM 0.20 wheels on Ubuntu 20.04", _stack(vllm="0.20.0", transformers="4.57.1").replace("12.4.1-devel-ubuntu22.04", "12.8.0-devel-ubuntu20.04"), "vllm-wheel-glibc-2.35"),
    ("an old engine whose structured-output API is unverified", _stack(vllm="0.5.4", transformers="4.44.0"), "vllm-structured-output-api-unverified"),
    ("VLLM_ATTENTION_BACKEND on vLLM 0.20", _attention(_stack(vllm="0.20.0", transformers="4.57.1"), env="FLASH_ATTN"), "vllm-attention-backend-env-ignored"),
    ("VLLM_ATTENTION_BACKEND on vLLM 0.13", _attention(_stack(vllm="0.13.0", transformers="4.57.1"), env="FLASH_ATTN"), "vllm-attention-backend-env-deprecated"),
    ("a backend vLLM 0.20 does not have", _attention(_stack(vllm="0.20.0", transformers="4.57.1"), backend="XFORMERS"), "attention-backend-unknown"),
    ("a lower-case name on vLLM 0.9.2 (silently dropped)", _attention(BASE_PROFILE, backend="flash_attn"), "attention-backend-unknown-ignored"),
    ("attention backend on a vLLM kit has no row for", _attention(_stack(vllm="0.7.3", transformers="4.48.0"), backend="FLASH_ATTN"), "attention-backend-unverified"),
]


@pytest.mark.parametrize("what,text,rule", CASES, ids=[c[0] for c in CASES])
def test_rule_fires(tree, what, text, rule):
    assert rule in _findings(tree, text)


def test_a_backend_name_on_an_unrecorded_vllm(tree, monkeypatch):
    # the engine store records every release the [[attention]] rows cover; without it (and outside
    # kit/data/attention_backends.json) kit says the name went unchecked
    from kit import release_facts

    monkeypatch.setattr(release_facts, "attention_names", lambda engine, version: None)
    assert "attention-backend-names-unrecorded" in _findings(tree, _attention(_stack(vllm="0.17.0", transformers="4.57.1"), backend="FLASH_ATTN"))


def test_known_good_baseline_fires_no_error(tree):
    root = tree({"profiles/p.toml": BASE_PROFILE})
    report = check(load(root / "profiles/p.toml"))
    assert report.count("error") == 0, [f.rule for f in report.active()]


def test_attention_backend_names_per_release(tree):
    attention_rules = {"attention-backend-unknown", "attention-backend-unknown-ignored", "attention-backend-names-unrecorded", "attention-backend-unverified"}
    # 0.20.0 upper-cases the name; 0.9.2 matches it exactly; ULTRAQUANT arrived after 0.20.0.
    assert not attention_rules & _findings(tree, _attention(_stack(vllm="0.20.0", transformers="4.57.1"), backend="flash_attn"))
    assert not attention_rules & _findings(tree, _attention(BASE_PROFILE, backend="XFORMERS"))
    assert not attention_rules & _findings(tree, _attention(_stack(vllm="0.33.0", transformers="4.57.1"), backend="ULTRAQUANT"))
    assert "attention-backend-unknown" in _findings(tree, _attention(_stack(vllm="0.20.0", transformers="4.57.1"), backend="ULTRAQUANT"))
    # the variable is fine where it is the mechanism
    assert not {"vllm-attention-backend-env-ignored", "vllm-attention-backend-env-deprecated"} & _findings(tree, _attention(BASE_PROFILE, env="FLASH_ATTN"))


def test_aimv2_boundary_is_exact(tree):
    # 4.53.3 is the last release before the conflicting config; 0.10.0 carries the fix.
    assert "vllm-transformers-aimv2" not in _findings(tree, _stack(vllm="0.9.2", transformers="4.53.3", xgrammar="0.1.19"))
    assert "vllm-transformers-aimv2" not in _findings(tree, _stack(vllm="0.10.0", transformers="4.54.0", xgrammar="0.1.21"))


def test_sglang_profile_passes_and_unverified_is_only_context():
    from .conftest import PROFILES

    report = check(load(PROFILES / "qwen3-coder-30b-sglang.toml"))
    assert not report.failed(strict=True)
    assert any(f.rule == "sglang-unverified-stack" and f.severity == "info" for f in report.active())


@pytest.mark.skipif(importlib.util.find_spec("kit.knowledge.query") is None, reason="needs the knowledge store (kit/knowledge)")
def test_sglang_without_libnuma_on_a_slim_image(tree):
    from .conftest import PROFILES

    text = (PROFILES / "qwen3-coder-30b-sglang.toml").read_text()
    text = text.replace('apt_packages = ["libnuma1"]', "").replace("nvidia/cuda:12.8.0-devel-ubuntu22.04", "debian_slim").replace('schema = "schemas/ir-v1.json"', "")
    found = _findings(tree, text)
    assert found & {"sgl-kernel-libnuma", "sglang-kernel-libnuma"}, found
