"""The rendered vLLM app names only what the pinned vLLM release defines.

tests/data/vllm_symbols.json is read from each release's own source by
scripts/record_vllm_symbols.py. From it this test builds a stand-in `vllm` package that has exactly
that release's names: the structured-output classes and their fields, SamplingParams fields,
EngineArgs and AsyncEngineArgs fields, the async engine (`from vllm import AsyncEngineArgs,
AsyncLLMEngine`, from_engine_args, generate's parameters), where StructuredOutputsConfig lives and
which config dicts EngineArgs converts itself. The rendered Engine adapter is then run against it, so
an import, keyword or method the release lacks fails here as it would in the container; class mode's
continuous batching is run against an engine that records which requests are in flight together.
vLLM itself (GPU wheels of several GB per release) is what is replaced.

The attention backend (engine.attention_backend) is checked the same way: the rendered app must set
it through what that release reads, the VLLM_ATTENTION_BACKEND variable of vllm/envs.py or the
EngineArgs field attention_backend / --attention-backend flag, and never through a setting the
release ignores.
"""

from __future__ import annotations

import ast
import asyncio
import json
import sys
import types
from importlib import resources
from pathlib import Path

import pytest
from packaging.specifiers import SpecifierSet
from packaging.version import Version

from kit.load import load
from kit.render import render
from kit.rules import api_table, attention_table
from tests.conftest import PROFILES
from tests.rendered import import_bundle
from tests.test_render import variant

SYMBOLS = json.loads((Path(__file__).parent / "data" / "vllm_symbols.json").read_text())["releases"]
REJECTED = "a request the engine rejects"  # the stand-in's generate raises ValueError for it
VLLM_PROFILES = [p for p in sorted(PROFILES.glob("*.toml")) if load(p).profile.engine.name == "vllm"]


def fake_vllm(release: dict) -> dict[str, types.ModuleType]:
    """Modules `vllm`, `vllm.sampling_params`, `vllm.config` and `transformers` with only the names `release` defines."""
    sp = release["sampling_params"]
    ae = release["async_engine"]
    engine_fields = set(release["EngineArgs"]["fields"]) | set((ae["AsyncEngineArgs"] or {}).get("fields", []))
    converts = set(ae["engine_args_converts_dict"])

    def strict(name: str, fields: set[str]):
        def init(self, *args, **kwargs):
            unknown = set(kwargs) - fields
            if args or unknown:
                raise TypeError(f"{name}: unexpected keyword argument(s) {sorted(unknown)} (positional: {args})")
            self.kwargs = kwargs

        return type(name, (), {"__init__": init})

    sampling = types.ModuleType("vllm.sampling_params")
    for cls, defined in sp["defines"].items():
        if defined:
            setattr(sampling, cls, strict(cls, set(sp["classes"][cls]["fields"])))
    sampling.SamplingParams = strict("SamplingParams", set(sp["SamplingParams"]["fields"]))
    sampling.RequestOutputKind = types.SimpleNamespace(CUMULATIVE=0, DELTA=1, FINAL_ONLY=2)

    class Output:
        finish_reason, token_ids = "stop", [1, 2]

        def __init__(self, prompt: str):
            self.text = json.dumps({"ok": True, "prompt": prompt})

    class RequestOutput:
        def __init__(self, prompt: str, finished: bool):
            self.outputs = [Output(prompt)]
            self.finished = finished

    engine_cls = (ae["classes"].get("v1") if ae["AsyncLLMEngine_is_alias_of_v1"] else ae["classes"].get("v0")) or {}
    generate_params = engine_cls.get("generate", [])

    class AsyncLLMEngine:
        """generate: an async generator, like vLLM's; records which requests were in flight together."""

        def __init__(self, args):
            self.args = args
            self.in_flight: set[str] = set()
            self.together: list[set[str]] = []  # the in-flight set each time a request joined
            self.release = asyncio.Event()  # generate finishes once it is set
            self.release.set()

        @classmethod
        def from_engine_args(cls, args):
            if "from_engine_args" not in engine_cls.get("methods", []):
                raise AttributeError("from_engine_args")
            for key, value in args.kwargs.items():
                if isinstance(value, dict) and key not in converts:
                    raise TypeError(f"EngineArgs keeps {key} as a raw dict in this release: 'dict' object has no attribute 'backend'")
            return cls(args)

        async def generate(self, prompt, sampling_params, request_id, **kwargs):
            if generate_params[:3] != ["prompt", "sampling_params", "request_id"] or set(kwargs) - set(generate_params):
                raise TypeError(f"generate() of this release takes {generate_params}")
            text = "".join(chr(i) for i in prompt["prompt_token_ids"])
            if REJECTED in text:
                raise ValueError("the grammar backend cannot compile the schema")
            self.in_flight.add(text)
            self.together.append(set(self.in_flight))
            try:
                await self.release.wait()
                yield RequestOutput(text, finished=True)
            finally:
                self.in_flight.discard(text)

    vllm = types.ModuleType("vllm")
    vllm.SamplingParams, vllm.sampling_params = sampling.SamplingParams, sampling
    if "AsyncEngineArgs" in ae["exports"] and ae["AsyncEngineArgs"] is not None:
        vllm.AsyncEngineArgs = strict("AsyncEngineArgs", engine_fields)
    if "AsyncLLMEngine" in ae["exports"] and engine_cls:
        vllm.AsyncLLMEngine = AsyncLLMEngine
    config = types.ModuleType("vllm.config")
    if ae["StructuredOutputsConfig_in"]:
        config.StructuredOutputsConfig = strict("StructuredOutputsConfig", {"backend", "disable_any_whitespace", "disable_additional_properties"})
    vllm.config = config

    class AutoTokenizer:
        """The prompt round-trips through the token ids, so the stand-in engine can echo it."""

        @classmethod
        def from_pretrained(cls, name, revision=None, trust_remote_code=False):
            assert name.startswith("Qwen/") and revision, (name, revision)  # the engine's model, at its pinned revision
            return cls()

        def apply_chat_template(self, messages, tokenize, add_generation_prompt):
            assert tokenize is False and add_generation_prompt is True
            return messages[-1]["content"]

        def __call__(self, text, add_special_tokens):
            assert add_special_tokens is False
            return {"input_ids": [ord(c) for c in text]}

    transformers = types.ModuleType("transformers")
    transformers.AutoTokenizer = AutoTokenizer
    return {"vllm": vllm, "vllm.sampling_params": sampling, "vllm.config": config, "transformers": transformers}


def run_adapter(module, release: dict, monkeypatch) -> dict:
    for name, mod in fake_vllm(release).items():
        monkeypatch.setitem(sys.modules, name, mod)
    engine = module.Engine()
    out = asyncio.run(engine.complete("p", {"type": "object"}, 16, 0.0))
    asyncio.run(engine.complete("p", None, 16, 0.0))  # unconstrained: the keyword is passed as None
    return out


def cli_flags_exist(command: list[str], release: dict) -> list[str]:
    fields = set(release["EngineArgs"]["fields"])
    flags = [a[2:].replace("-", "_") for a in command if a.startswith("--")]
    return [f for f in flags if f not in fields | {"host", "port", "served_model_name"}]


@pytest.mark.parametrize("path", VLLM_PROFILES, ids=lambda p: p.stem)
def test_library_profile_uses_only_symbols_of_its_release(path, tmp_path, monkeypatch):
    loaded = load(path)
    version = str(loaded.profile.version("vllm"))  # the image's vLLM when the engine comes from it
    assert version in SYMBOLS, f"vllm {version} is not recorded: python scripts/record_vllm_symbols.py {version}"
    release = SYMBOLS[version]
    imported = import_bundle(render(loaded), tmp_path / "b", monkeypatch)
    if loaded.profile.serving.mode == "class":
        assert json.loads(run_adapter(imported.module, release, monkeypatch)["text"]) == {"ok": True, "prompt": "p"}
    else:
        assert cli_flags_exist(imported.module.SERVER_COMMAND, release) == []
        assert release["ChatCompletionRequest"]["response_format"]


@pytest.mark.parametrize("version", sorted(SYMBOLS, key=Version))
@pytest.mark.parametrize("mode", ["class", "openai"])
def test_every_recorded_release_gets_an_api_it_has(version, mode, tmp_path, monkeypatch):
    """The api table's choice, per recorded release (its boundaries included), against the release's source."""
    release = SYMBOLS[version]
    loaded = variant(tmp_path, packages={"vllm": version}, serving={"mode": mode})
    imported = import_bundle(render(loaded), tmp_path / "b", monkeypatch)
    if mode == "class":
        run_adapter(imported.module, release, monkeypatch)
    else:
        assert cli_flags_exist(imported.module.SERVER_COMMAND, release) == []


def test_recorded_releases_cover_the_api_table_and_profiles():
    """Each vLLM [[api]] and [[attention]] row has a recorded release; every pin is recorded."""
    recorded = sorted(Version(v) for v in SYMBOLS)
    for row in api_table() + attention_table():
        if row["engine"] == "vllm":
            assert [v for v in recorded if SpecifierSet(row["versions"]).contains(v)], f"no recorded release in {row['versions']}"
    for path in VLLM_PROFILES:
        assert str(load(path).profile.version("vllm")) in SYMBOLS


def test_symbols_match_what_the_research_found():
    """Spot checks of the recording against compat-facts.md section C (removed in 0.12.0, added in 0.11.0)."""
    defines = {v: r["sampling_params"]["defines"] for v, r in SYMBOLS.items()}
    assert defines["0.10.2"] == {"GuidedDecodingParams": True, "StructuredOutputsParams": False}
    assert defines["0.11.0"] == {"GuidedDecodingParams": True, "StructuredOutputsParams": True}
    assert defines["0.12.0"] == {"GuidedDecodingParams": False, "StructuredOutputsParams": True}
    assert SYMBOLS["0.10.2"]["EngineArgs"]["guided_decoding_backend"] and not SYMBOLS["0.10.2"]["EngineArgs"]["structured_outputs_config"]
    assert not SYMBOLS["0.12.0"]["EngineArgs"]["guided_decoding_backend"]


def test_the_stand_in_catches_a_wrong_api(tmp_path, monkeypatch):
    """The check has teeth: the 0.9.2 app run against 0.12.0's names fails as vLLM 0.12.0 would."""
    imported = import_bundle(render(variant(tmp_path, packages={"vllm": "0.9.2"})), tmp_path / "b", monkeypatch)
    with pytest.raises((ImportError, TypeError)):
        run_adapter(imported.module, SYMBOLS["0.12.0"], monkeypatch)


# -- class mode: continuous batching ---------------------------------------------------------------


def class_engine(version: str, tmp_path, monkeypatch, max_inputs: int = 32):
    """The rendered class-mode Engine of vllm `version`, on that release's stand-in."""
    loaded = variant(tmp_path, packages={"vllm": version}, serving={"mode": "class", "max_inputs": max_inputs})
    imported = import_bundle(render(loaded), tmp_path / "b", monkeypatch)
    for name, mod in fake_vllm(SYMBOLS[version]).items():
        monkeypatch.setitem(sys.modules, name, mod)
    return imported.module, imported.module.Engine()


async def complete_together(module, engine, prompts: list[str]) -> dict:
    """Every prompt through the app's one implementation (respond), all started at once on one event loop;
    the stand-in finishes none of them until all are in flight."""
    engine.engine.release.clear()
    tasks = {p: asyncio.create_task(module.respond(engine, {"prompt": p, "schema": {"type": "object"}, "max_tokens": 16})) for p in prompts}
    while len(engine.engine.in_flight) < len([p for p in prompts if p != REJECTED]) and not any(t.done() for t in tasks.values()):
        await asyncio.sleep(0)
    engine.engine.release.set()
    return {p: await t for p, t in tasks.items()}


@pytest.mark.parametrize("version", sorted(SYMBOLS, key=Version))
def test_class_mode_requests_join_the_running_batch(version, tmp_path, monkeypatch):
    """32 concurrent requests are all in the engine at once (none waits for another to finish); each gets its own output."""
    module, engine = class_engine(version, tmp_path, monkeypatch)
    prompts = [f"prompt {i}" for i in range(32)]
    results = asyncio.run(complete_together(module, engine, prompts))
    assert max(len(t) for t in engine.engine.together) == 32
    for prompt in prompts:
        status, body = results[prompt]
        assert status == 200 and body["json"] == {"ok": True, "prompt": prompt}


@pytest.mark.parametrize("version", ["0.9.2", "0.20.0", "0.33.0"])
def test_a_rejected_request_fails_alone(version, tmp_path, monkeypatch):
    """vLLM refuses a bad request alone (ValueError from generate): it gets 422, the others in flight their output."""
    module, engine = class_engine(version, tmp_path, monkeypatch)
    prompts = ["prompt 0", "prompt 1", REJECTED, "prompt 3"]
    results = asyncio.run(complete_together(module, engine, prompts))
    assert results[REJECTED][0] == 422 and "cannot compile" in results[REJECTED][1]["error"]
    for prompt in ("prompt 0", "prompt 1", "prompt 3"):
        assert results[prompt][0] == 200 and results[prompt][1]["json"]["prompt"] == prompt


def test_structured_output_config_reaches_the_engine_as_its_class(tmp_path, monkeypatch):
    """LLM() converts a structured_outputs_config dict, EngineArgs does not: the app converts it (0.11.0+)."""
    _, engine = class_engine("0.20.0", tmp_path, monkeypatch)
    so = engine.engine.args.kwargs["structured_outputs_config"]
    assert type(so).__name__ == "StructuredOutputsConfig" and so.kwargs["backend"] == "xgrammar"
    _, engine = class_engine("0.9.2", tmp_path, monkeypatch)
    assert engine.engine.args.kwargs["guided_decoding_backend"] == "xgrammar"


def test_async_engine_rows_match_the_recording():
    """Every [[async_engine]] vllm row: each recorded release in its range exports the names the row renders,
    its engine has from_engine_args and generate(prompt, sampling_params, request_id), and, where the [[api]]
    row passes a config dict, StructuredOutputsConfig is importable from config_module and not converted by EngineArgs."""
    from kit.catalog import data_file

    rows = [r for r in data_file("async_engine.toml")["async_engine"] if r["engine"] == "vllm"]
    assert rows
    for row in rows:
        covered = [v for v in SYMBOLS if SpecifierSet(row["versions"]).contains(Version(v))]
        assert covered, row["versions"]
        for v in covered:
            ae = SYMBOLS[v]["async_engine"]
            assert {row["engine_class"], row["args_class"]} <= set(ae["exports"]), v
            engine = ae["classes"]["v1" if ae["AsyncLLMEngine_is_alias_of_v1"] else "v0"]
            assert "from_engine_args" in engine["methods"] and engine["generate"][:3] == ["prompt", "sampling_params", "request_id"], v
            api = [r for r in api_table() if r["engine"] == "vllm" and not r.get("deprecated") and SpecifierSet(r["versions"]).contains(Version(v))][0]
            if api["engine_backend_form"] == "config":
                assert ae["StructuredOutputsConfig_in"] == row["config_module"].replace(".", "/") + "/__init__.py", v
                assert api["engine_backend_arg"] not in ae["engine_args_converts_dict"], v


def test_async_engine_symbols_match_the_source():
    """Spot checks: AsyncLLMEngine is the V0 class up to 0.10.2 and an alias of V1's AsyncLLM from 0.11.0."""
    assert not SYMBOLS["0.10.2"]["async_engine"]["AsyncLLMEngine_is_alias_of_v1"] and "v0" in SYMBOLS["0.10.2"]["async_engine"]["classes"]
    assert SYMBOLS["0.11.0"]["async_engine"]["AsyncLLMEngine_is_alias_of_v1"] and "v0" not in SYMBOLS["0.11.0"]["async_engine"]["classes"]
    assert SYMBOLS["0.20.0"]["async_engine"]["classes"]["v1"]["file"] == "vllm/v1/engine/async_llm.py"
    assert SYMBOLS["0.9.2"]["async_engine"]["StructuredOutputsConfig_in"] is None
    assert "compilation_config" in SYMBOLS["0.20.0"]["async_engine"]["engine_args_converts_dict"]


def test_a_release_without_the_async_engine_is_caught(tmp_path, monkeypatch):
    """The check has teeth: the app run against a release recorded without AsyncLLMEngine fails to import it."""
    release = json.loads(json.dumps(SYMBOLS["0.20.0"]))
    release["async_engine"]["exports"] = ["AsyncEngineArgs"]
    imported = import_bundle(render(variant(tmp_path, packages={"vllm": "0.20.0"}, serving={"mode": "class"})), tmp_path / "b", monkeypatch)
    with pytest.raises(ImportError):
        run_adapter(imported.module, release, monkeypatch)
