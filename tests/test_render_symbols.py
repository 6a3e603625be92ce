"""The rendered vLLM app names only what the pinned vLLM release defines.

tests/data/vllm_symbols.json is read from each release's own source by
scripts/record_vllm_symbols.py. From it this test builds a stand-in `vllm` package that has exactly
that release's names: the structured-output classes and their fields, SamplingParams fields,
EngineArgs fields, LLM methods, LLM.chat's parameters and whether it takes a batch (lists). The
rendered Engine adapter is then run against it, so an import, keyword or method the release lacks
fails here as it would in the container; class mode's batching of concurrent requests is run against
a chat that records its calls. vLLM itself (GPU wheels of several GB per release) is what is replaced.

The attention backend (engine.attention_backend) is checked the same way: the rendered app must set
it through what that release reads, the VLLM_ATTENTION_BACKEND variable of vllm/envs.py or the
EngineArgs field attention_backend / --attention-backend flag, and never through a setting the
release ignores.
"""

from __future__ import annotations

import ast
import json
import sys
import threading
import time
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
REJECTED = "a request the engine rejects"  # the stand-in's chat raises ValueError for the whole call
VLLM_PROFILES = [p for p in sorted(PROFILES.glob("*.toml")) if load(p).profile.engine.name == "vllm"]


def fake_vllm(release: dict) -> dict[str, types.ModuleType]:
    """Modules `vllm` and `vllm.sampling_params` with only the names `release` defines."""
    sp = release["sampling_params"]
    engine_fields = set(release["EngineArgs"]["fields"]) | set(release["LLM"]["init_params"])
    converts = set(release["LLM"]["converts_dict"])

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

    chat = release["LLM"]["chat"]

    class Output:
        finish_reason, token_ids = "stop", [1, 2]

        def __init__(self, prompt: str):
            self.text = json.dumps({"ok": True, "prompt": prompt})

    class RequestOutput:
        prompt_token_ids = [1, 2, 3]

        def __init__(self, prompt: str):
            self.outputs = [Output(prompt)]

    class LLM:
        def __init__(self, **kwargs):
            unknown = set(kwargs) - engine_fields
            if unknown:
                raise TypeError(f"EngineArgs.__init__() got an unexpected keyword argument {sorted(unknown)}")
            for key, value in kwargs.items():
                if isinstance(value, dict) and key not in converts:
                    raise TypeError(f"LLM() passes {key} to EngineArgs as a raw dict in this release")
            self.kwargs = kwargs
            self.calls: list[list[str]] = []  # per chat call, the prompts it was given
            self.entered = threading.Event()  # set when chat is called
            self.gate = threading.Event()  # chat returns once it is set
            self.gate.set()

        def chat(self, messages, sampling_params=None, **kwargs):
            """Outputs in input order (as vLLM's are); a ValueError for the whole call if one prompt is REJECTED."""
            unknown = set(kwargs) - set(chat["params"])
            if unknown:
                raise TypeError(f"LLM.chat() got an unexpected keyword argument {sorted(unknown)}")
            batched = bool(messages) and isinstance(messages[0], list)
            if batched:
                if not chat["batch"]:
                    raise TypeError(f"LLM.chat of this release takes one conversation ({chat['messages']})")
                if not isinstance(sampling_params, list) or len(sampling_params) != len(messages):
                    raise ValueError("the lengths of prompts and sampling_params must be the same")
            conversations = messages if batched else [messages]
            prompts = [c[-1]["content"] for c in conversations]
            self.calls.append(prompts)
            self.entered.set()
            assert self.gate.wait(10), "the test never opened the gate"
            if REJECTED in prompts:
                raise ValueError("the grammar backend cannot compile the schema")
            return [RequestOutput(prompt) for prompt in prompts]

    for method in release["LLM"]["methods"]:
        if method != "chat":
            setattr(LLM, method, lambda self, *a, **k: [RequestOutput("")])
    vllm = types.ModuleType("vllm")
    vllm.LLM, vllm.SamplingParams, vllm.sampling_params = LLM, sampling.SamplingParams, sampling
    return {"vllm": vllm, "vllm.sampling_params": sampling}


def run_adapter(module, release: dict, monkeypatch) -> dict:
    for name, mod in fake_vllm(release).items():
        monkeypatch.setitem(sys.modules, name, mod)
    engine = module.Engine()
    out = engine.complete("p", {"type": "object"}, 16, 0.0)
    engine.complete("p", None, 16, 0.0)  # unconstrained: the keyword is passed as None
    return out


def cli_flags_exist(command: list[str], release: dict) -> list[str]:
    fields = set(release["EngineArgs"]["fields"])
    flags = [a[2:].replace("-", "_") for a in command if a.startswith("--")]
    return [f for f in flags if f not in fields | {"host", "port", "served_model_name"}]


@pytest.mark.parametrize("path", VLLM_PROFILES, ids=lambda p: p.stem)
def test_library_profile_uses_only_symbols_of_its_release(path, tmp_path, monkeypatch):
    loaded = load(path)
    version = str(loaded.profile.version("vllm"))  # the image's vLLM when the engine comes from the image
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


# -- class mode batches concurrent requests ------------------------------------------------------------


def concurrent_engine(version: str, max_inputs: int, tmp_path, monkeypatch):
    """The rendered class-mode Engine of vllm `version` with serving.max_inputs, on that release's stand-in."""
    loaded = variant(tmp_path, packages={"vllm": version}, serving={"mode": "class", "max_inputs": max_inputs})
    imported = import_bundle(render(loaded), tmp_path / "b", monkeypatch)
    for name, mod in fake_vllm(SYMBOLS[version]).items():
        monkeypatch.setitem(sys.modules, name, mod)
    return imported.module, imported.module.Engine()


def complete_concurrently(engine, prompts: list[str]) -> tuple[dict, list[list[str]]]:
    """Call engine.complete from one thread per prompt, all waiting at once.

    The first request reaches chat alone; the stand-in holds it there until every other request is
    queued, so the second chat call must take all of them. Returns prompt -> output (or exception) and
    the chat calls.
    """
    engine.llm.gate.clear()
    results: dict = {}

    def call(prompt: str) -> None:
        try:
            results[prompt] = engine.complete(prompt, {"type": "object"}, 16, 0.0)
        except Exception as exc:  # noqa: BLE001 - the test looks at it
            results[prompt] = exc

    threads = [threading.Thread(target=call, args=(prompts[0],))]
    threads[0].start()
    assert engine.llm.entered.wait(10)
    threads += [threading.Thread(target=call, args=(prompt,)) for prompt in prompts[1:]]
    for queued, t in enumerate(threads[1:], start=1):
        t.start()
        deadline = time.monotonic() + 10
        while engine.queue.qsize() < queued and prompts[queued] not in results and time.monotonic() < deadline:  # queued in this order
            time.sleep(0.001)
    assert engine.queue.qsize() == len(prompts) - 1, results
    engine.llm.gate.set()
    for t in threads:
        t.join(10)
    assert len(results) == len(prompts)
    return results, engine.llm.calls


@pytest.mark.parametrize("version", sorted(SYMBOLS, key=Version))
def test_class_mode_batches_concurrent_requests(version, tmp_path, monkeypatch):
    """N concurrent complete() calls: fewer chat calls than N, the waiting ones in one call, each caller its own output."""
    module, engine = concurrent_engine(version, 32, tmp_path, monkeypatch)
    assert module.CHAT_BATCH_MAX == 32 and SYMBOLS[version]["LLM"]["chat"]["batch"]
    prompts = [f"prompt {i}" for i in range(12)]
    results, calls = complete_concurrently(engine, prompts)
    assert calls == [prompts[:1], prompts[1:]]  # one chat call for the 11 that waited, in the order they came
    for prompt in prompts:
        assert json.loads(results[prompt]["text"]) == {"ok": True, "prompt": prompt}


def test_class_mode_batch_is_capped_at_max_inputs(tmp_path, monkeypatch):
    module, engine = concurrent_engine("0.20.0", 4, tmp_path, monkeypatch)
    prompts = [f"prompt {i}" for i in range(10)]
    results, calls = complete_concurrently(engine, prompts)
    assert [len(c) for c in calls] == [1, 4, 4, 1] and sum(calls, []) == prompts
    assert all(json.loads(results[p]["text"])["prompt"] == p for p in prompts)


@pytest.mark.parametrize("version", ["0.9.2", "0.20.0", "0.33.0"])
def test_a_rejected_request_fails_alone(version, tmp_path, monkeypatch):
    """vLLM raises ValueError for the whole call: the batch is retried one by one, only the bad request gets it."""
    module, engine = concurrent_engine(version, 32, tmp_path, monkeypatch)
    prompts = ["prompt 0", "prompt 1", REJECTED, "prompt 3"]
    results, calls = complete_concurrently(engine, prompts)
    assert calls == [["prompt 0"], prompts[1:], ["prompt 1"], [REJECTED], ["prompt 3"]]
    assert isinstance(results[REJECTED], ValueError)
    for prompt in ("prompt 0", "prompt 1", "prompt 3"):
        assert json.loads(results[prompt]["text"])["prompt"] == prompt
    status, body = module.respond(engine, {"prompt": REJECTED})  # alone, through the app's one implementation: 422
    assert status == 422 and "cannot compile" in body["error"]


def test_an_engine_error_reaches_every_request_of_its_batch(tmp_path, monkeypatch):
    module, engine = concurrent_engine("0.20.0", 32, tmp_path, monkeypatch)
    real = type(engine.llm).chat

    def broken(self, messages, *args, **kwargs):
        out = real(self, messages, *args, **kwargs)
        if isinstance(messages[0], list):
            raise RuntimeError("CUDA error: an illegal memory access")
        return out

    monkeypatch.setattr(type(engine.llm), "chat", broken)
    prompts = [f"prompt {i}" for i in range(5)]
    results, calls = complete_concurrently(engine, prompts)
    assert calls == [prompts[:1], prompts[1:]]  # no retry: not a request's fault
    assert json.loads(results["prompt 0"]["text"])["prompt"] == "prompt 0"
    assert all(isinstance(results[p], RuntimeError) for p in prompts[1:])
    assert json.loads(engine.complete("after", None, 16, 0.0)["text"])["prompt"] == "after"  # the engine thread carries on


def test_one_input_at_a_time_calls_chat_per_request(tmp_path, monkeypatch):
    """serving.max_inputs = 1: no engine thread, one chat call with one conversation per request, as before."""
    engine_threads = lambda: sum(t.name == "kit-engine" for t in threading.enumerate())  # noqa: E731
    before = engine_threads()
    module, engine = concurrent_engine("0.20.0", 1, tmp_path, monkeypatch)
    assert module.CHAT_BATCH_MAX == 1 and engine_threads() == before
    engine.complete("a", None, 16, 0.0)
    engine.complete("b", {"type": "object"}, 16, 0.0)
    assert engine.llm.calls == [["a"], ["b"]]
    assert module.respond(engine, {"prompt": REJECTED})[0] == 422


def test_api_rows_batch_only_where_the_recording_says_chat_takes_lists():
    """[[api]] chat_batch is true only where every recorded release in the row's range takes lists in LLM.chat."""
    for row in api_table():
        if row["engine"] != "vllm":
            continue
        covered = [v for v in SYMBOLS if SpecifierSet(row["versions"]).contains(Version(v))]
        assert covered, row["versions"]
        if row.get("chat_batch", False):
            assert all(SYMBOLS[v]["LLM"]["chat"]["batch"] for v in covered), row["versions"]


def test_chat_batch_symbols_match_the_source():
    """Spot checks: messages takes a list of conversations and sampling_params a list, 0.8.4 (list[...]) to 0.33.0 (Sequence[...])."""
    assert SYMBOLS["0.8.4"]["LLM"]["chat"]["messages"] == "Union[list[ChatCompletionMessageParam], list[list[ChatCompletionMessageParam]]]"
    assert SYMBOLS["0.8.4"]["LLM"]["chat"]["sampling_params"] == "Optional[Union[SamplingParams, list[SamplingParams]]]"
    assert SYMBOLS["0.33.0"]["LLM"]["chat"]["messages"] == "list[ChatCompletionMessageParam] | Sequence[list[ChatCompletionMessageParam]]"
    assert SYMBOLS["0.33.0"]["LLM"]["chat"]["sampling_params"] == "SamplingParams | Sequence[SamplingParams] | None"
    assert all(r["LLM"]["chat"]["params"][:3] == ["messages", "sampling_params", "use_tqdm"] for r in SYMBOLS.values())


def test_a_release_without_list_chat_is_not_batched(tmp_path, monkeypatch):
    """The check has teeth: a batched call against a chat recorded as taking one conversation fails."""
    release = json.loads(json.dumps(SYMBOLS["0.20.0"]))
    release["LLM"]["chat"]["batch"] = False
    module, engine = concurrent_engine("0.20.0", 32, tmp_path, monkeypatch)
    for name, mod in fake_vllm(release).items():
        monkeypatch.setitem(sys.modules, name, mod)
    engine.llm = module.Engine().llm  # the stand-in of the altered release
    results, _ = complete_concurrently(engine, ["x", "y", "z"])
    assert isinstance(results["y"], TypeError) and isinstance(results["z"], TypeError)


# -- the attention backend -------------------------------------------------------------------------


def image_env(app: str) -> dict:
    """The literal the rendered image passes to .env(...) ({} when there is none)."""
    for node in ast.walk(ast.parse(app)):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "env":
            return ast.literal_eval(node.args[0])
    return {}


def attention_setting(bundle, imported, mode: str) -> dict[str, str | None]:
    """Where the rendered app puts the backend: the image variable, the engine keyword, the server flag."""
    command = imported.module.SERVER_COMMAND if mode == "openai" else []
    return {
        "env_var": image_env(bundle.files["app.py"]).get("VLLM_ATTENTION_BACKEND"),
        "engine_arg": imported.module.ENGINE_KWARGS.get("attention_backend") if mode == "class" else None,
        "cli_flag": command[command.index("--attention-backend") + 1] if "--attention-backend" in command else None,
    }


def assert_reads_it(setting: dict, release: dict, backend: str) -> None:
    """The backend is set exactly once, through a mechanism the release defines."""
    att = release["attention"]
    used = {k: v for k, v in setting.items() if v is not None}
    assert len(used) == 1, f"the backend must be set exactly once (vLLM 0.13-0.14 refuse both), got {used}"
    (how, value), = used.items()
    assert value == backend
    assert att[how]["defined"], f"the app sets the backend through {att[how]['name']}, which this release does not define ({att[how]['file']})"
    if att["engine_arg"]["defined"]:
        assert how != "env_var", "this release has the attention_backend argument: VLLM_ATTENTION_BACKEND is deprecated (0.13-0.14) or ignored (0.15+)"


@pytest.mark.parametrize("path", VLLM_PROFILES, ids=lambda p: p.stem)
def test_library_profile_sets_attention_through_what_its_release_reads(path, tmp_path, monkeypatch):
    loaded = load(path)
    release = SYMBOLS[str(loaded.profile.version("vllm"))]
    bundle = render(loaded)
    imported = import_bundle(bundle, tmp_path / "b", monkeypatch)
    setting = attention_setting(bundle, imported, loaded.profile.serving.mode)
    if loaded.profile.engine.attention_backend:
        assert_reads_it(setting, release, loaded.profile.engine.attention_backend)
    elif not release["attention"]["env_var"]["defined"]:
        assert setting["env_var"] is None, "VLLM_ATTENTION_BACKEND in image.env: this release ignores it"


@pytest.mark.parametrize("version", sorted(SYMBOLS, key=Version))
@pytest.mark.parametrize("mode", ["class", "openai"])
def test_every_recorded_release_gets_the_attention_setting_it_reads(version, mode, tmp_path, monkeypatch):
    """The [[attention]] table's choice, per recorded release, against what that release's source defines."""
    release = SYMBOLS[version]
    loaded = variant(tmp_path, packages={"vllm": version}, engine={"attention_backend": "FLASH_ATTN"}, serving={"mode": mode})
    bundle = render(loaded)
    imported = import_bundle(bundle, tmp_path / "b", monkeypatch)
    assert_reads_it(attention_setting(bundle, imported, mode), release, "FLASH_ATTN")
    assert "FLASH_ATTN" in release["attention"]["backends"]["names"]
    if mode == "class":  # the stand-in LLM accepts only EngineArgs fields: attention_backend must be one of them
        run_adapter(imported.module, release, monkeypatch)
    else:
        assert cli_flags_exist(imported.module.SERVER_COMMAND, release) == []


def test_attention_rows_agree_with_the_recording():
    """Each vLLM [[attention]] row's mechanism exists in every recorded release it covers, and the newest one is used."""
    for row in attention_table():
        if row["engine"] != "vllm":
            continue
        for version, release in SYMBOLS.items():
            if not SpecifierSet(row["versions"]).contains(Version(version)):
                continue
            att = release["attention"]
            if row["via"] == "env":
                assert att["env_var"]["defined"] and att["env_var"]["name"] == row["env"], version
                assert not att["engine_arg"]["defined"], f"{version} has attention_backend: the row should use it"
            else:
                assert att["engine_arg"]["defined"] and att["engine_arg"]["name"] == row["engine_arg"], version
                assert att["cli_flag"]["defined"] and att["cli_flag"]["name"] == row["cli_flag"], version


def test_attention_symbols_match_what_the_research_found():
    """The boundaries, read from the sources: the argument arrives in 0.13.0, the variable leaves in 0.15.0."""
    att = {v: r["attention"] for v, r in SYMBOLS.items()}
    assert [(v, a["env_var"]["defined"], a["engine_arg"]["defined"], a["cli_flag"]["defined"]) for v, a in att.items() if v in ("0.12.0", "0.13.0", "0.14.1", "0.15.0", "0.20.0")] == [
        ("0.12.0", True, False, False),
        ("0.13.0", True, True, True),
        ("0.14.1", True, True, True),
        ("0.15.0", False, True, True),
        ("0.20.0", False, True, True),
    ]
    assert att["0.9.2"]["backends"]["class"] == "_Backend" and att["0.20.0"]["backends"]["class"] == "AttentionBackendEnum"
    assert SYMBOLS["0.15.0"]["source"].startswith("wheel ")  # 0.15.x has no sdist on the index


def test_kit_backend_names_are_the_recorded_ones():
    """kit/data/attention_backends.json (what `kit check` reads) is the recording's, release by release."""
    kit_data = json.loads(resources.files("kit").joinpath("data", "attention_backends.json").read_text())["vllm"]
    assert kit_data == {v: {"source": r["source"], **r["attention"]["backends"]} for v, r in SYMBOLS.items()}


def test_the_attention_check_has_teeth(tmp_path, monkeypatch):
    """The 0.9.2 rendering (VLLM_ATTENTION_BACKEND) judged against 0.20.0's names fails, as it silently would on the GPU."""
    loaded = variant(tmp_path, packages={"vllm": "0.9.2"}, engine={"attention_backend": "FLASH_ATTN"}, serving={"mode": "openai"})
    bundle = render(loaded)
    setting = attention_setting(bundle, import_bundle(bundle, tmp_path / "b", monkeypatch), "openai")
    with pytest.raises(AssertionError):
        assert_reads_it(setting, SYMBOLS["0.20.0"], "FLASH_ATTN")
