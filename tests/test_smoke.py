"""Smoke tests against a real HTTP server on 127.0.0.1 that speaks the rendered app's contract."""

from __future__ import annotations

import json

import pytest

from kit.errors import OperationError
from kit.smoke import SmokeSpec, base_url, endpoints, parse_strict, run, validate
from tests.deployfakes import REPO, FakeModal

SCHEMA = json.loads((REPO / "profiles" / "schemas" / "ir-v1.json").read_text())


@pytest.fixture
def fake(tmp_path):
    f = FakeModal(tmp_path / "modal")
    state = f.read()
    state["live_bundle"] = "b" * 64
    f.write(state)
    yield f
    f.close()


def spec(**kw) -> SmokeSpec:
    base = dict(prompt="Write the IR for add.", max_tokens=64, latency_budget_s=0.3, cold_start_budget_s=5.0, schema=SCHEMA, bundle_hash="b" * 64)
    base.update(kw)
    return SmokeSpec(**base)


def urls(fake: FakeModal) -> dict[str, str]:
    return {"Inference.web": fake.server.url}  # what a deploy reports: the class's one web method


def checks(result) -> dict[str, bool]:
    return {c.name: c.ok for c in result.checks}


def test_passes_on_schema_valid_json_in_budget(fake):
    result = run(spec(), urls(fake))
    assert result.ok, result.summary()
    assert checks(result) == {"health": True, "latency": True, "json": True, "schema": True}
    assert json.loads(result.output)["functions"][0]["name"] == "add"


@pytest.mark.parametrize(
    ("mode", "failing", "words"),
    [
        ("fenced", "json", "Expecting value"),  # no lenient stripping of ``` fences
        ("control", "json", "U+0001"),  # a raw control character is reported, not hidden
        ("nan", "json", "NaN is not JSON"),
        ("duplicate", "json", "duplicate key 'version'"),
        ("invalid", "schema", "/version"),
        ("error", "generate", "answered 500"),
    ],
)
def test_fails_with_a_reason(fake, mode, failing, words):
    fake.behave(generate=mode)
    result = run(spec(), urls(fake))
    assert not result.ok
    failed = [c for c in result.checks if not c.ok]
    assert [c.name for c in failed] == [failing]
    assert words in failed[0].detail


def test_cold_start_is_allowed_for_then_warm_latency_counts(fake):
    fake.behave(generate="slow_first", delay="0.4")
    result = run(spec(), urls(fake))
    assert result.ok, result.summary()
    assert checks(result)["cold_start"] is True
    assert (fake.dir / "generate.count").read_text() == "2"  # judged on a second, warm request


def test_slow_warm_generation_fails_latency(fake):
    fake.behave(generate="slow", delay="0.4")
    result = run(spec(), urls(fake))
    assert not result.ok
    assert checks(result)["latency"] is False


def test_over_the_cold_start_budget_fails(fake):
    fake.behave(generate="slow", delay="0.4")
    result = run(spec(cold_start_budget_s=0.35), urls(fake))
    assert not result.ok
    assert [c.name for c in result.failures()] == ["generate"]  # no answer within the cold-start budget


def test_health_down_or_wrong_bundle(fake):
    fake.behave(health="down")
    result = run(spec(), urls(fake))
    assert [c.name for c in result.failures()] == ["health"] and "503" in result.failures()[0].detail
    fake.behave(health=None)
    result = run(spec(bundle_hash="c" * 64), urls(fake))
    assert "serves bundle bbbbbbbbbbbb, not the deployed cccccccccccc" in result.failures()[0].detail


def test_unreachable_endpoint_fails_fast():
    result = run(spec(cold_start_budget_s=2.0), {"Inference.web": "http://127.0.0.1:9"})
    assert not result.ok and result.failures()[0].name == "health"


def test_endpoints_from_deploy_output_names():
    web = "https://ws--app-inference-web.modal.run"
    assert endpoints({"Inference.web": web}) == (f"{web}/health", f"{web}/generate")
    assert endpoints({"Inference.web": web + "/", "other": "https://o"}) == (f"{web}/health", f"{web}/generate")
    assert base_url({"Inference.web": web}) == web
    assert endpoints({"serve": "https://x.modal.run/"}, "openai") == ("https://x.modal.run/health", "https://x.modal.run/v1/chat/completions")
    # A revision deployed while each fastapi_endpoint had its own URL (route at /): used as they are.
    old = {"Inference.health": "https://h", "Inference.http_generate": "https://g"}
    assert endpoints(old) == ("https://h", "https://g") and base_url(old) is None
    with pytest.raises(OperationError, match="no web endpoint"):
        endpoints({})


def test_parse_strict_and_validate():
    assert parse_strict('{"a": [1, 2.5, "x"]}') == {"a": [1, 2.5, "x"]}
    with pytest.raises(ValueError, match=r"U\+000A"):
        parse_strict('{"a": "line\nbreak"}')
    assert validate({"version": "1", "functions": []}, SCHEMA) == ["/functions: [] should be non-empty"]
    assert validate(json.loads(json.dumps({"version": "1", "functions": [{"name": "f", "params": [], "returns": "int", "steps": [{"op": "return"}]}]})), SCHEMA) == []


def test_smoke_spec_from_a_stored_profile():
    profile = {"smoke": {"prompt": "p", "max_tokens": 8, "latency_budget_s": 2.0}, "structured_output": {"schema": "profiles/schemas/ir-v1.json"}, "serving": {"mode": "class"}, "model": {"id": "a/b"}}
    s = SmokeSpec.from_profile(profile, {"profiles/schemas/ir-v1.json": json.dumps(SCHEMA)})
    assert s is not None and s.schema == SCHEMA and s.cold_start_budget_s == 900.0 and s.max_tokens == 8
    assert SmokeSpec.from_profile({"smoke": None}, {}) is None
