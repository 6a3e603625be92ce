"""The structured-output backend: kit's measured default per release, what it renders, and what `kit check` says.

The figures of kit/data/structured_output_defaults.toml must be the ones the GPU run recorded
(benchmarks/gpu/results/2026-12-02/so_*.json): data whose source is a measurement, checked against it.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from packaging.version import Version

from kit.catalog import data_file
from kit.check import check
from kit.load import load
from kit.render import render
from kit.structured_output import DATA, choice, measured_finding

from .conftest import PROFILES, REPO
from .test_render import variant

RESULTS = REPO / "benchmarks" / "gpu" / "results" / "2026-12-02"
H200 = "qwen25-h200-vllm020"
RULE = "structured-output-backend-measured"


def _h200(tmp_path: Path, **structured_output):
    """The H200 library profile in class mode (ENGINE_KWARGS in the app) with structured_output replaced."""
    return variant(tmp_path, profile=H200, structured_output=structured_output, serving={"mode": "class"})


def test_the_h200_profile_renders_the_measured_default(tmp_path):
    loaded = load(PROFILES / f"{H200}.toml")
    assert loaded.profile.structured_output.backend is None
    bundle = render(loaded)
    so = {"backend": "guidance", "disable_any_whitespace": True}
    for mode in ("class", "openai"):
        app = render(variant(tmp_path, profile=H200, serving={"mode": mode})).files["app.py"]
        if mode == "class":
            assert f"'structured_outputs_config': {so!r}" in app
        else:
            assert "'--structured-outputs-config', '{\"backend\":\"guidance\",\"disable_any_whitespace\":true}'" in app
    assert bundle.manifest["structured_output"]["backend"] == "guidance"
    assert bundle.manifest["structured_output"]["options"] == {"disable_any_whitespace": True}
    assert "benchmarks/gpu/results.md" in bundle.manifest["structured_output"]["source"]


def test_an_explicit_backend_is_rendered_without_the_defaults_options(tmp_path):
    app = render(_h200(tmp_path, backend="xgrammar")).files["app.py"]
    assert "'structured_outputs_config': {'backend': 'xgrammar'}" in app
    app = render(_h200(tmp_path, backend="guidance")).files["app.py"]  # the default's own backend: its options too
    assert "'structured_outputs_config': {'backend': 'guidance', 'disable_any_whitespace': True}" in app


def test_a_release_without_measurements_keeps_xgrammar_and_says_nothing(tmp_path):
    loaded = load(PROFILES / "qwen25-a10g.toml")  # vllm 0.9.2: nothing measured
    assert choice("vllm", Version("0.9.2"), None).backend == "xgrammar" and choice("vllm", Version("0.9.2"), None).source is None
    assert "'guided_decoding_backend': 'xgrammar'" in render(loaded).files["app.py"]
    assert RULE not in {f.rule for f in check(loaded).findings}
    unset = variant(tmp_path, structured_output={"backend": None})
    assert "'guided_decoding_backend': 'xgrammar'" in render(unset).files["app.py"]


@pytest.mark.parametrize("backend", ["xgrammar", "auto"])
def test_check_warns_for_a_backend_measured_worse(backend, tmp_path):
    findings = [f for f in check(_h200(tmp_path, backend=backend)).findings if f.rule == RULE]
    assert len(findings) == 1
    f = findings[0]
    assert f.severity == "warning" and f.keys == ["structured_output.backend"]
    assert "0.66x the tokens/s of guidance at 32 concurrent requests (1,921 against 2,918" in f.why
    assert "not strict JSON: 23 of 32 outputs" in f.why and r'[^"\\\r\n]{min,max}' in f.why
    assert 'set it to "guidance"' in f.fix
    if backend == "auto":
        assert "auto (resolved to xgrammar)" in f.summary


@pytest.mark.parametrize("backend", [None, "guidance"])
def test_check_is_quiet_for_the_default(backend, tmp_path):
    assert RULE not in {f.rule for f in check(_h200(tmp_path, backend=backend)).findings}


def test_engine_args_choosing_the_backend_silence_the_rule(tmp_path):
    loaded = variant(tmp_path, profile=H200, structured_output={"backend": "xgrammar"}, engine={"args": {"structured_outputs_config": {"backend": "xgrammar"}}})
    assert RULE not in {f.rule for f in check(loaded).findings}


def test_an_unmeasured_backend_gets_no_finding():
    assert measured_finding("vllm", Version("0.20.0"), "outlines") is None  # outlines was not measured: nothing claimed


def test_the_data_holds_the_recorded_figures():
    """Every [[measured]] number is the one in the JSON its source names (the GPU run's own output)."""
    doc = data_file(DATA)
    assert doc["default"] and doc["measured"]
    for row in doc["measured"]:
        recorded = json.loads((REPO / row["source"]).read_text())
        assert recorded["backend"] == row["backend"]
        assert recorded["whitespace"] == ("compact" if row["options"].get("disable_any_whitespace") else "any")
        assert row["free_32"] == [recorded["free32_0"]["tok_s"], recorded["free32_1"]["tok_s"]]
        assert (row["obj_32"], row["long_32"]) == (recorded["obj32"]["tok_s"], recorded["long32"]["tok_s"])
        assert (row["one_free"], row["one_obj"]) == (recorded["free1_0"]["tok_s"], recorded["obj1_0"]["tok_s"])
        assert row["bounded_strict"] == [recorded["bounded32"]["strict_json"], recorded["bounded32"]["n"]]
        assert row["bounded_req_s"] == recorded["bounded32"]["req_s"]
        assert row["strict"] == (recorded["bounded32"]["with_control_chars"] == 0)
    for row in doc["default"]:
        best = [r for r in doc["measured"] if r["backend"] == row["backend"] and r["options"] == row["options"]]
        assert best and best[0]["strict"], "the default must be a measured, strict configuration"
