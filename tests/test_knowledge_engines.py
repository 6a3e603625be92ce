"""The engine source facts: the recorder run for real over sdists built here and served by a local index,
and the committed store read at the boundaries the issue and the audit name.

The boundary tests read kit/knowledge/store/engines/*.json, which `python -m kit.knowledge.derive.source`
wrote from every release's sdist on PyPI; each asserted version is what that source shows.
"""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import sys
import tarfile
import textwrap
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from kit.knowledge import delta, engines
from kit.knowledge.derive import source

# -- an sdist-shaped tarball of real-looking vLLM source, served by a local PEP 691 index ----------------

SAMPLING_OLD = '''
import msgspec
from dataclasses import dataclass

@dataclass
class GuidedDecodingParams:
    json: object = None
    regex: str | None = None
    backend: str | None = None

class SamplingParams(msgspec.Struct):
    n: int = 1
    temperature: float = 1.0
    guided_decoding: GuidedDecodingParams | None = None
'''
SAMPLING_NEW = '''
import msgspec
from dataclasses import dataclass

@dataclass
class StructuredOutputsParams:
    json: object = None
    _backend: str | None = None
    _backend_was_auto: bool = False

class SamplingParams(msgspec.Struct):
    n: int = 1
    temperature: float = 1.0
    structured_outputs: StructuredOutputsParams | None = None
'''
ARGS = '''
from dataclasses import dataclass
from typing import Literal

GuidedDecodingBackend = Literal["auto", "xgrammar", "guidance"]

@dataclass
class EngineArgs:
    model: str = "facebook/opt-125m"
    guided_decoding_backend: GuidedDecodingBackend = "auto"
{extra}
    @staticmethod
    def add_cli_args(parser):
        parser.add_argument("--model", type=str)
        {flag}
'''
PROTOCOL = '''
from pydantic import BaseModel

class ChatCompletionRequest(BaseModel):
    messages: list
    response_format: dict | None = None
    {field}: dict | None = None
'''
ENVS = '''
import os

def env_with_choices(name, default, choices):
    def get():
        value = os.getenv(name, default)
        if value not in choices():
            raise ValueError(f"Invalid value '{value}' for {name}.")
        return value
    return get

environment_variables = {
    "VLLM_USE_V1": lambda: bool(int(os.getenv("VLLM_USE_V1", "1"))),
    "VLLM_ATTENTION_BACKEND": @ATTN@,
}
'''
PROCESSOR = '''
class Processor:
    def _validate_structured_output(self, params):
        engine_level_backend = self.decoding_config.backend
        if params.structured_outputs._backend:
            if (params.structured_outputs._backend != engine_level_backend
                    and not (engine_level_backend == "auto" and {exempt})):
                raise ValueError(
                    "Request-level structured output backend selection is not "
                    f"supported. The request specified '{{params}}'.")
'''
REGISTRY = '''
_TEXT_GENERATION_MODELS = {
    "LlamaForCausalLM": ("llama", "LlamaForCausalLM"),
    {extra_arch}
}
_EMBEDDING_MODELS = {
    "BertModel": ("bert", "BertEmbeddingModel"),
    "LlamaForCausalLM": ("llama", "LlamaForCausalLM"),
}
_PREVIOUSLY_SUPPORTED_MODELS = {"MotifForCausalLM": "0.10.2"}
_VLLM_MODELS = {**_TEXT_GENERATION_MODELS, **_EMBEDDING_MODELS}
'''
FP8 = '''
class Fp8Config(QuantizationConfig):
    @classmethod
    def get_name(cls) -> str:
        return "fp8"

    @classmethod
    def get_min_capability(cls) -> int:
        return {cap}
'''


def sdist(version: str, new: bool) -> bytes:
    """vllm-<version>.tar.gz: the old API (GuidedDecodingParams, V0) or the new one (StructuredOutputsParams, V1 only)."""
    files = {
        "vllm/sampling_params.py": SAMPLING_NEW if new else SAMPLING_OLD,
        "vllm/engine/arg_utils.py": ARGS.format(
            extra="    attention_backend: str | None = None\n" if new else "",
            flag='parser.add_argument("--attention-backend", type=str)' if new else "pass",
        ),
        "vllm/entrypoints/openai/protocol.py": PROTOCOL.format(field="structured_outputs" if new else "guided_json"),
        "vllm/envs.py": ENVS.replace(
            "@ATTN@", 'env_with_choices("VLLM_ATTENTION_BACKEND", None, lambda: ["FLASH_ATTN"])' if new else 'lambda: os.getenv("VLLM_ATTENTION_BACKEND")'
        ),
        "vllm/v1/engine/processor.py": PROCESSOR.format(exempt="params.structured_outputs._backend_was_auto"),
        "vllm/v1/engine/async_llm.py": "class AsyncLLM:\n    pass\n",
        "vllm/engine/async_llm_engine.py": "from vllm.v1.engine.async_llm import AsyncLLM\nAsyncLLMEngine = AsyncLLM\n"
        if new
        else "class AsyncLLMEngine:\n    pass\n",
        "vllm/engine/llm_engine.py": "LLMEngine = object\n" if new else "class LLMEngine:\n    pass\n",
        "vllm/model_executor/models/registry.py": REGISTRY.replace("{extra_arch}", '"Qwen3MoeForCausalLM": ("qwen3_moe", "Qwen3MoeForCausalLM"),' if new else ""),
        "vllm/model_executor/layers/quantization/fp8.py": FP8.format(cap=75 if new else 80),
        "vllm/platforms/interface.py": "import enum\n\nclass _Backend(enum.Enum):\n    FLASH_ATTN = enum.auto()\n    XFORMERS = enum.auto()\n",
        "tests/vllm/envs.py": "environment_variables = {'NOT_THE_PACKAGE': None}\n",  # a test file of the same name: not the package's
    }
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for path, text in files.items():
            data = textwrap.dedent(text).encode()
            info = tarfile.TarInfo(f"vllm-{version}/{path}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


class Index:
    """A PEP 691 JSON simple index on localhost: /simple/vllm/ and the files it lists."""

    def __init__(self, versions: dict[str, bytes | None]):
        self.versions = versions
        self.downloads: list[str] = []
        index = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                if self.path == "/simple/vllm/":
                    assert self.headers["Accept"] == "application/vnd.pypi.simple.v1+json"
                    body = json.dumps(index.page()).encode()
                else:
                    name = self.path.rsplit("/", 1)[-1]
                    index.downloads.append(name)
                    body = index.files()[name]
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/simple/"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def files(self) -> dict[str, bytes]:
        out = {f"vllm-{v}.tar.gz": data for v, data in self.versions.items() if data is not None}
        out |= {f"vllm-{v}-cp38-abi3-manylinux1_x86_64.whl": b"wheel" for v in self.versions}
        return out

    def page(self) -> dict:
        base = self.url.removesuffix("simple/") + "files/"
        return {
            "meta": {"api-version": "1.1"},
            "name": "vllm",
            "versions": list(self.versions),
            "files": [
                {"filename": n, "url": base + n, "hashes": {"sha256": hashlib.sha256(d).hexdigest()}, "size": len(d)} for n, d in self.files().items()
            ],
        }


@pytest.fixture
def index():
    idx = Index({"0.2.0": sdist("0.2.0", new=False), "0.2.1": None, "0.3.0": sdist("0.3.0", new=True), "0.4.0rc1": None})
    yield idx
    idx.server.shutdown()


@pytest.fixture
def store_engines(monkeypatch, tmp_path):
    """Point the query side at a store under tmp_path (and forget what it cached)."""

    def use(store_dir: Path):
        monkeypatch.setattr(engines, "STORE", store_dir)
        for fn in (engines._doc, engines._rows, engines._facts_of, engines._without_sdist):
            fn.cache_clear()

    yield use
    for fn in (engines._doc, engines._rows, engines._facts_of, engines._without_sdist):
        fn.cache_clear()


def test_refresh_records_each_release_from_its_sdist(index, tmp_path, store_engines):
    store, cache = tmp_path / "store", tmp_path / "cache"
    summary = source.refresh(store, ["vllm", "torch"], cache=cache, index=index.url, log=lambda m: None)["vllm"]
    assert summary["releases"] == 3 and summary["added"] == ["0.2.0", "0.2.1", "0.3.0"]  # 0.4.0rc1: a pre-release
    assert summary["without_sdist"] == ["0.2.1"] and sorted(index.downloads) == ["vllm-0.2.0.tar.gz", "vllm-0.3.0.tar.gz"]
    assert summary["bytes_downloaded"] == sum(len(index.files()[n]) for n in index.downloads)

    store_engines(store / "engines")
    old, new = engines.engine_facts("vllm", "0.2.0"), engines.engine_facts("vllm", "0.3.0")
    assert engines.engine_facts("vllm", "0.2.1") is None and engines.release_status("vllm", "0.2.1") == "no-sdist"
    assert engines.engine_facts("vllm", "0.3.1.dev4+g123") is None and engines.release_status("vllm", "9.9.9") is None
    assert engines.engine_facts("vllm", "0.3.0+cu126").version == "0.3.0"  # a local build of the same source

    assert old.structured_output.classes == {"GuidedDecodingParams"} and new.structured_output.classes == {"StructuredOutputsParams"}
    assert "guided_json" in old.structured_output.request_fields and "structured_outputs" in new.structured_output.request_fields
    assert old.structured_output.backends == {"auto", "xgrammar", "guidance"}
    assert old.structured_output.request_backend_rejected_with_auto is True
    assert new.structured_output.request_backend_check["function"] == "Processor._validate_structured_output"
    assert {"VLLM_USE_V1", "VLLM_ATTENTION_BACKEND"} <= new.env_vars and "NOT_THE_PACKAGE" not in new.env_vars
    assert (old.unknown_attention_backend_raises, new.unknown_attention_backend_raises) == (False, True)
    assert (old.attention_backend_arg, new.attention_backend_arg) == (False, True)
    assert new.facts["attention.cli_flag"] is True and old.attention_backends == {"FLASH_ATTN", "XFORMERS"}
    assert (old.has_v0, new.has_v0, new.has_v1) == (True, False, True)
    assert (old.async_engine_class, new.async_engine_class) == ("AsyncLLMEngine", "AsyncLLM")
    assert new.architecture_kinds["LlamaForCausalLM"] == ("embedding", "text_generation")
    assert "Qwen3MoeForCausalLM" in new.architectures - old.architectures and "MotifForCausalLM" not in new.architectures
    assert (old.quant_min_capability["fp8"], new.quant_min_capability["fp8"]) == (80, 75)
    sha = hashlib.sha256(index.files()["vllm-0.3.0.tar.gz"]).hexdigest()
    assert new.provenance["quant_min_capability.fp8"] == (
        f"vllm==0.3.0 vllm-0.3.0.tar.gz sha256:{sha}:vllm/model_executor/layers/quantization/fp8.py:Fp8Config.get_min_capability"
    )
    assert engines.first_release_with("vllm", lambda f: not f.has_v0) == "0.3.0"
    assert engines.changes("vllm", lambda f: f.quant_min_capability["fp8"]) == [("0.2.0", 80), ("0.3.0", 75)]


def test_refresh_is_incremental_and_reproducible(index, tmp_path):
    store, cache = tmp_path / "store", tmp_path / "cache"
    source.refresh(store, ["vllm"], cache=cache, index=index.url, log=lambda m: None)
    first = (store / "engines" / "vllm.json").read_bytes()
    index.downloads.clear()
    again = source.refresh(store, ["vllm"], cache=tmp_path / "empty-cache", index=index.url, log=lambda m: None)["vllm"]
    assert again["added"] == [] and again["bytes_downloaded"] == 0 and index.downloads == []  # nothing fetched again
    assert (store / "engines" / "vllm.json").read_bytes() == first

    index.versions["0.2.1"] = sdist("0.2.1", new=False)  # the sdist appears later: only that release is read
    third = source.refresh(store, ["vllm"], cache=cache, index=index.url, log=lambda m: None)["vllm"]
    assert third["added"] == ["0.2.1"] and index.downloads == ["vllm-0.2.1.tar.gz"]


class SharedFetcher:
    """The interface `python -m kit.knowledge refresh` hands every recorder (project pages, whole files), over urllib here."""

    def __init__(self, index_url: str):
        self.index, self.requests, self.bytes = index_url, 0, 0

    def project(self, name: str) -> dict:
        return json.loads(self.get(f"{self.index}{name}/", {"Accept": "application/vnd.pypi.simple.v1+json"}))

    def get(self, url: str, headers: dict | None = None) -> bytes:
        import urllib.request

        with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {})) as resp:
            data = resp.read()
        self.requests, self.bytes = self.requests + 1, self.bytes + len(data)
        return data


def test_refresh_through_the_shared_fetcher(index, tmp_path):
    fetcher = SharedFetcher(index.url)
    summary = source.refresh(tmp_path / "store", ["vllm", "torch"], fetcher=fetcher, log=lambda m: None, cache=tmp_path / "cache")
    assert summary["vllm"]["added"] == ["0.2.0", "0.2.1", "0.3.0"] and list(summary) == ["vllm"]
    assert fetcher.requests == 3 and fetcher.bytes > summary["vllm"]["bytes_downloaded"] > 0  # the page, then the two sdists


def test_a_tampered_download_is_refused(index, tmp_path):
    good = index.versions["0.2.0"]
    index.page = (lambda page: lambda: {**page(), "files": [{**f, "hashes": {"sha256": "0" * 64}} for f in page()["files"]]})(index.page)
    with pytest.raises(ValueError, match="sha256"):
        source.refresh(tmp_path / "store", ["vllm"], cache=tmp_path / "cache", index=index.url, log=lambda m: None)
    assert not (tmp_path / "store" / "engines" / "vllm.json").exists() and list((tmp_path / "cache").iterdir()) == []
    assert good  # the served file itself was fine: only the index's hash disagreed


def test_delta_round_trips():
    rows = [
        {"version": "1", "sdist": "a", "sha256": "x", "facts": {"s": ["a", "b"], "architectures": {"X": ["t"], "Z": []}, "v": 1, "gone": True}, "sources": {"s": "p"}},
        {"version": "2", "sdist": None},
        {"version": "3", "sdist": "c", "sha256": "y", "facts": {"s": ["b", "c"], "architectures": {"X": ["e"]}, "v": None}, "sources": {"s": "q"}},
    ]
    stored = delta.encode(rows)
    assert stored[2]["facts"] == {"architectures": {"+": {"X": ["e"]}, "-": ["Z"]}, "gone": {"drop": True}, "s": {"+": ["c"], "-": ["a"]}, "v": {"=": None}}
    assert delta.decode(stored) == rows


# -- the committed store ------------------------------------------------------------------------------

STORED = sorted(engines.STORE.glob("*.json"))


@pytest.mark.parametrize("path", STORED, ids=lambda p: p.stem)
def test_store_is_consistent_and_in_its_canonical_form(path):
    """Oldest first, each release's sdist with its sha256, facts only where there is an sdist, and the file is
    exactly what the recorder would write from its own contents (sorted, delta-encoded: reproducible)."""
    doc = json.loads(path.read_text())
    assert doc["engine"] == path.stem and doc["parser"] == source.PARSER
    rows = delta.decode(doc["releases"])
    versions = [r["version"] for r in rows]
    assert versions == sorted(versions, key=source.Version) and len(set(versions)) == len(versions)
    for r in rows:
        if r["sdist"]:
            assert r["sdist"] == f"{path.stem}-{r['version']}.tar.gz" and len(r["sha256"]) == 64 and r["facts"]
        else:
            assert set(r) == {"version", "sdist"}, r


def test_store_file_is_what_write_produces(tmp_path):
    for path in STORED:
        doc = json.loads(path.read_text())
        out = tmp_path / path.name
        source.write(out, doc["engine"], doc["index"].removesuffix(f"{doc['engine']}/"), delta.decode(doc["releases"]))
        assert out.read_text() == path.read_text(), path.name


def test_importing_the_query_api_stays_cheap():
    code = "import sys, kit.knowledge.engines as e; print(sorted(m for m in ('tarfile', 'urllib.request', 'httpx', 'kit.knowledge.derive.source', 'kit.knowledge.derive.pysource') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


FIXTURE = json.loads((Path(__file__).parent / "data" / "vllm_symbols.json").read_text())["releases"]


@pytest.mark.parametrize("version", sorted(v for v, r in FIXTURE.items() if r["source"].startswith("sdist ")))
def test_store_agrees_with_the_older_symbol_recording(version):
    """tests/data/vllm_symbols.json (scripts/record_vllm_symbols.py, a separate reader of the same sdists) and the store agree."""
    old, f = FIXTURE[version], engines.engine_facts("vllm", version)
    assert old["source"].split("sha256:")[1] == f.sha256
    assert {c for c, yes in old["sampling_params"]["defines"].items() if yes} == f.structured_output.classes
    assert set(old["sampling_params"]["SamplingParams"]["fields"]) == f.structured_output.sampling_params_fields
    assert set(old["EngineArgs"]["fields"]) == f.engine_args
    assert set(old["LLM"]["methods"]) == set(f.facts["llm.methods"]) and set(old["LLM"]["init_params"]) == set(f.facts["llm.init_params"])
    assert old["LLM"]["converts_dict"] == f.facts["llm.converts_dict"] and old["LLM"]["chat"] == f.facts["llm.chat"]
    for field_name in ("guided_json", "structured_outputs", "response_format"):
        assert old["ChatCompletionRequest"][field_name] == (field_name in f.structured_output.request_fields)
    att = old["attention"]
    assert att["env_var"]["defined"] == f.facts["attention.env_var_declared"]
    assert (att["engine_arg"]["defined"], att["cli_flag"]["defined"]) == (f.attention_backend_arg, f.facts["attention.cli_flag"])
    assert set(att["backends"]["names"]) == f.attention_backends
    assert f"{att['backends']['file']}:{att['backends']['class']}" == f.facts["attention.enum"]


# -- boundaries, as each release's own source shows them ------------------------------------------------


def vllm(version: str) -> engines.EngineFacts:
    facts = engines.engine_facts("vllm", version)
    assert facts is not None, f"vllm {version} is not in the store"
    return facts


def flips(predicate, engine: str = "vllm") -> list[tuple[str, object]]:
    return engines.changes(engine, predicate)


def test_structured_output_params_class_boundaries():
    """GuidedDecodingParams from 0.6.3; StructuredOutputsParams beside it in 0.11.0; alone from 0.12.0."""
    assert flips(lambda f: tuple(sorted(f.structured_output.classes))) == [
        ("0.2.0", ()),
        ("0.6.3", ("GuidedDecodingParams",)),
        ("0.11.0", ("GuidedDecodingParams", "StructuredOutputsParams")),
        ("0.12.0", ("StructuredOutputsParams",)),
    ]
    assert "guided_decoding" in vllm("0.11.0").structured_output.sampling_params_fields
    assert "guided_decoding" not in vllm("0.12.0").structured_output.sampling_params_fields


def test_guided_request_fields_leave_in_0_12_0():
    assert flips(lambda f: "guided_json" in f.structured_output.request_fields) == [("0.2.0", False), ("0.3.3", True), ("0.12.0", False)]
    assert flips(lambda f: "structured_outputs" in f.structured_output.request_fields) == [("0.2.0", False), ("0.11.0", True)]
    assert flips(lambda f: "guided_decoding_backend" in f.engine_args) == [("0.2.0", False), ("0.4.1", True), ("0.12.0", False)]
    assert "response_format" in vllm("0.4.1").structured_output.request_fields


def test_request_level_backend_is_rejected_under_auto_from_0_8_2_on():
    """kit said the check went away in 0.8.5; the source raises under an "auto" engine in every release from 0.8.2
    (0.8.1's V1 has the check but takes no "auto" engine backend at all: None, the question does not arise)."""
    rejected = flips(lambda f: f.structured_output.request_backend_rejected_with_auto)
    assert rejected == [("0.2.0", False), ("0.8.1", None), ("0.8.2", True)]
    assert "must match engine-level backend" in vllm("0.8.4").structured_output.request_backend_check["message"]
    check = vllm("0.8.5").structured_output.request_backend_check
    assert check["path"] == "vllm/v1/engine/processor.py" and check["function"] == "Processor._validate_structured_output"
    assert "engine_level_backend == 'auto'" in check["conditions"][-1]
    assert vllm("0.14.0").structured_output.request_backend_check["path"] == "vllm/v1/engine/input_processor.py"
    latest = engines.releases("vllm")[-1]
    assert vllm(latest).structured_output.request_backend_rejected_with_auto is True


def test_unknown_attention_backend_raises_again_from_0_10_1():
    """It raised in 0.4.1-0.6.6 (KeyError, then ValueError), not in 0.7.0-0.10.0 (an unknown name is ignored), and
    raises again from 0.10.1 (kit said 0.11.0)."""
    assert flips(lambda f: f.unknown_attention_backend_raises) == [("0.2.0", False), ("0.4.1", True), ("0.7.0", False), ("0.10.1", True)]
    assert vllm("0.4.1").facts["attention.unknown_raises_evidence"] == [
        "vllm/attention/selector.py:_which_attn_to_use looks the name up as Enum[name], unguarded (KeyError)"
    ]
    assert any("Invalid attention backend: '{}'" in e for e in vllm("0.10.1").facts["attention.unknown_raises_evidence"])
    assert vllm("0.10.0").attention_env_var_read and not vllm("0.10.0").unknown_attention_backend_raises


def test_attention_variable_and_argument():
    """VLLM_ATTENTION_BACKEND read from 0.4.1 (envs.py from 0.4.2) through 0.14.1 (0.15.x publish no sdist), gone in
    0.16.0; the attention_backend argument from 0.13.0."""
    assert flips(lambda f: f.attention_env_var_read) == [("0.2.0", False), ("0.4.1", True), ("0.16.0", False)]
    assert flips(lambda f: f.facts["attention.env_var_declared"]) == [("0.2.0", False), ("0.4.2", True), ("0.16.0", False)]
    assert engines.release_status("vllm", "0.15.0") == "no-sdist" and engines.engine_facts("vllm", "0.15.0") is None
    assert flips(lambda f: f.attention_backend_arg) == [("0.2.0", False), ("0.13.0", True)]
    assert "FLASH_ATTN" in vllm("0.9.2").attention_backends and "FLASH_ATTN" in vllm("0.16.0").attention_backends


def test_v0_and_v1_engines():
    """V1 from 0.6.4, V0's LLMEngine gone in 0.11.0 (AsyncLLMEngine is then V1's AsyncLLM); VLLM_USE_V1 still read until 0.11.1."""
    assert flips(lambda f: (f.has_v0, f.has_v1)) == [("0.2.0", (True, False)), ("0.6.4", (True, True)), ("0.11.0", (False, True))]
    assert flips(lambda f: f.async_engine_class) == [("0.2.0", "AsyncLLMEngine"), ("0.11.0", "AsyncLLM")]
    assert flips(lambda f: "VLLM_USE_V1" in f.env_vars) == [("0.2.0", False), ("0.6.4", True), ("0.11.1", False)]
    assert flips(lambda f: f.has_llm_chat) == [("0.2.0", False), ("0.5.5", True)]


def test_fp8_minimum_capability_per_release():
    """Fp8Config.get_min_capability: 90 (0.4.1), 89 (0.4.2), 80 with FP8 Marlin (0.5.1), 75 from 0.14.0."""
    assert flips(lambda f: f.quant_min_capability.get("fp8")) == [("0.2.0", None), ("0.4.1", 90), ("0.4.2", 89), ("0.5.1", 80), ("0.14.0", 75)]
    assert vllm("0.14.0").provenance["quant_min_capability.fp8"].endswith("vllm/model_executor/layers/quantization/fp8.py:Fp8Config.get_min_capability")


def test_qwen_architectures_first_served():
    first = {a: engines.first_release_with("vllm", lambda f, a=a: a in f.architectures) for a in ("Qwen2ForCausalLM", "Qwen2_5_VLForConditionalGeneration", "Qwen3ForCausalLM", "Qwen3MoeForCausalLM")}
    assert first == {"Qwen2ForCausalLM": "0.3.0", "Qwen2_5_VLForConditionalGeneration": "0.7.2", "Qwen3ForCausalLM": "0.8.4", "Qwen3MoeForCausalLM": "0.8.4"}
    assert "text_generation" in vllm("0.8.4").architecture_kinds["Qwen3MoeForCausalLM"]


def sglang(version: str) -> engines.EngineFacts:
    facts = engines.engine_facts("sglang", version)
    assert facts is not None, f"sglang {version} is not in the store"
    return facts


def test_sglang_structured_output_and_attention():
    assert flips(lambda f: tuple(sorted(f.structured_output.backends)), "sglang") == [
        ("0.1.3", ()),
        ("0.3.5", ("outlines", "xgrammar")),
        ("0.4.3.post3", ("llguidance", "outlines", "xgrammar")),
        ("0.4.4.post4", ("llguidance", "none", "outlines", "xgrammar")),
    ]
    requests = flips(lambda f: tuple(f.facts["structured_output.request_fields"]), "sglang")
    assert requests[0] == ("0.1.3", ("regex",)) and ("0.4.1.post1", ("ebnf", "json_schema", "regex", "response_format")) in requests
    assert sglang("0.5.1").attention_backends >= {"fa3", "flashinfer", "triton"}  # choices bound inside add_cli_args
    assert sglang("0.3.1").attention_backends == {"flashinfer", "triton"} and not sglang("0.3.0").attention_backends
    assert (sglang("0.5.9").has_v0, sglang("0.5.9").attention_env_var_read, sglang("0.5.9").unknown_attention_backend_raises) == (None, None, None)


def test_sglang_fp8_has_no_capability_below_8_0():
    """SGLang's own Fp8Config never goes below 80 (no Marlin FP8 at 7.5); mxfp8 needs 100; 0.2.12-0.4.0 used vLLM's configs."""
    fp8 = flips(lambda f: f.quant_min_capability.get("fp8"), "sglang")
    assert fp8 == [("0.1.3", None), ("0.1.22", 80), ("0.2.12", None), ("0.4.0.post1", 80)]
    assert sglang("0.5.9").quant_min_capability["mxfp8"] == 100


def test_sglang_qwen_architectures_first_served():
    first = {a: engines.first_release_with("sglang", lambda f, a=a: a in f.architectures) for a in ("Qwen2ForCausalLM", "Qwen2_5_VLForConditionalGeneration", "Qwen3ForCausalLM", "Qwen3MoeForCausalLM")}
    assert first == {"Qwen2ForCausalLM": "0.1.10", "Qwen2_5_VLForConditionalGeneration": "0.4.3.post1", "Qwen3ForCausalLM": "0.4.5.post2", "Qwen3MoeForCausalLM": "0.4.5.post2"}


def test_releases_without_sdist_are_unknown_not_guessed():
    assert [v for v in ("0.3.2", "0.4.0", "0.4.0.post1", "0.15.0", "0.15.1") if engines.release_status("vllm", v) == "no-sdist"] == ["0.3.2", "0.4.0", "0.4.0.post1", "0.15.0", "0.15.1"]
    assert engines.release_status("sglang", "0.5.11") == "no-sdist" and engines.engine_facts("sglang", "0.5.11") is None
    assert engines.engine_facts("vllm", "0.2.1").facts and "yanked" in json.loads((engines.STORE / "vllm.json").read_text())["releases"][1]


def test_a_release_asked_for_twice_is_read_from_the_row_cache(tmp_path, monkeypatch):
    """engine_facts keeps each decoded release under KIT_CACHE_DIR (keyed by the store's sha256): same facts."""
    from kit.knowledge import engines

    monkeypatch.setenv("KIT_CACHE_DIR", str(tmp_path))
    first = engines.engine_facts("vllm", "0.9.2")
    assert engines.engine_facts("vllm", "0.0.99") is None  # not a release: remembered as such
    [cached] = list((tmp_path / "engines").glob("vllm-*-0.9.2.json"))
    monkeypatch.setattr(engines, "_by_version", lambda engine: pytest.fail("decoded the whole store again"))
    second = engines.engine_facts("vllm", "0.9.2")
    assert second == first and cached.stat().st_size > 0
    assert engines.engine_facts("vllm", "0.0.99") is None
