"""The structured-output API render uses, derived from each vLLM release's source, against the hand-kept table."""

from __future__ import annotations

from packaging.specifiers import SpecifierSet

from kit.engine_api import derived_api_row
from kit.knowledge.engines import releases
from kit.rules import api_table
from tests.conftest import BASE_PROFILE, run_kit

FIELDS = ("params_class", "sampling_kwarg", "engine_backend_arg", "engine_backend_form", "openai_field")


def test_derived_rows_agree_with_the_hand_kept_table_wherever_both_answer():
    compared = 0
    for version in releases("vllm"):
        derived = derived_api_row("vllm", version)
        rows = [r for r in api_table() if r["engine"] == "vllm" and not r.get("deprecated") and SpecifierSet(r["versions"]).contains(version, prereleases=True)]
        if derived is None or not rows:
            continue
        [row] = rows
        assert {k: derived[k] for k in FIELDS} == {k: row[k] for k in FIELDS}, version
        compared += 1
    assert compared >= 40  # every recorded release from 0.8.4 to 0.33.0 that has an sdist


def test_the_boundaries_come_from_the_source():
    assert derived_api_row("vllm", "0.5.4") is None  # no GuidedDecodingParams yet: nothing to render with
    old = derived_api_row("vllm", "0.6.3")
    assert (old["params_class"], old["sampling_kwarg"], old["engine_backend_form"]) == ("GuidedDecodingParams", "guided_decoding", "string")
    assert any("sha256:" in s for s in old["sources"])
    assert derived_api_row("vllm", "0.10.2")["params_class"] == "GuidedDecodingParams"
    assert derived_api_row("vllm", "0.11.0")["params_class"] == "StructuredOutputsParams"  # both exist there; the new one
    assert derived_api_row("vllm", "0.15.0") is None  # published without an sdist: the table answers
    assert derived_api_row("sglang", "0.5.5") is None


def test_an_old_release_renders_from_its_derived_api(tree, tmp_path):
    profile = BASE_PROFILE.replace('vllm = "0.9.2"', 'vllm = "0.6.3"').replace('transformers = "4.53.0"', 'transformers = "4.45.2"').replace('xgrammar = "0.1.19"\n', "")
    profile += '\n[structured_output]\nbackend = "outlines"\nschema = "schemas/s.json"\n\n[serving]\nmode = "openai"\n'
    root = tree({"profiles/p.toml": profile, "profiles/schemas/s.json": {"type": "object"}})
    r = run_kit("render", "profiles/p.toml", "-o", str(tmp_path / "out"), cwd=root)
    assert r.code == 0, r.err
    import json

    api = json.loads((tmp_path / "out" / "manifest.json").read_text())["structured_output_api"]
    assert api["versions"] == "==0.6.3" and api["params_class"] == "GuidedDecodingParams"  # the derived row, not a table range
    assert "'--guided-decoding-backend', 'outlines'" in (tmp_path / "out" / "app.py").read_text()
    older = run_kit("render", "profiles/p.toml", "-o", str(tmp_path / "o2"), cwd=tree({"profiles/p.toml": profile.replace('"0.6.3"', '"0.5.4"'), "profiles/schemas/s.json": {"type": "object"}}))
    assert older.code == 1 and "no structured-output API data for vllm 0.5.4" in older.err


def test_every_release_the_unverified_rule_spares_can_render():
    """vllm-structured-output-api-unverified stays silent only where render has an API row (derived or typed)."""
    from packaging.version import Version

    from kit.rules import rules_by_id

    spared = [s for s in rules_by_id()["vllm-structured-output-api-unverified"].when["packages"]["vllm"]]
    for version in releases("vllm"):
        v = Version(version)
        if any(SpecifierSet(s).contains(v) for s in spared):
            continue
        covered = derived_api_row("vllm", version) is not None or any(
            r["engine"] == "vllm" and SpecifierSet(r["versions"]).contains(v, prereleases=True) for r in api_table()
        )
        assert covered, version
