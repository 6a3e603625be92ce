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
        for fn in (engines._doc, engines._by_version, engines._without_sdist):
            fn.cache_clear()

    yield use
    for fn in (engines._doc, engines._by_version, engines._without_sdist):
        fn.cache_clear()


def test_refresh_records_each_release_from_its_sdist(index, tmp_path, store_engines):
    store, cache = tmp_path / "store", tmp_path / "cache"
    summary = source.refresh(store, ["vllm", "torch"], cache=cache, index=index.url, log=lambda m: None)["vllm"]
    assert summary["releases"] == 3 and summary["added"] == ["0.2.0", "0.2.1", "0.3.0"]  # 0.4.0rc1: a pre-release
    assert summary["without_sdist"] == ["0.2.1"] and sorted(index.downloads) == ["vllm-0.2.0.tar.gz", "vllm-0.3.0.tar.gz"]
    assert summary["bytes_downloaded"] == sum(len(index.files()[n]) for n in index.downloads)

    store_engines(store)
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
    first = (store / "vllm.json").read_bytes()
    index.downloads.clear()
    again = source.refresh(store, ["vllm"], cache=tmp_path / "empty-cache", index=index.url, log=lambda m: None)["vllm"]
    assert again["added"] == [] and again["bytes_downloaded"] == 0 and index.downloads == []  # nothing fetched again
    assert (store / "vllm.json").read_bytes() == first

    index.versions["0.2.1"] = sdist("0.2.1", new=False)  # the sdist appears later: only that release is read
    third = source.refresh(store, ["vllm"], cache=cache, index=index.url, log=lambda m: None)["vllm"]
    assert third["added"] == ["0.2.1"] and index.downloads == ["vllm-0.2.1.tar.gz"]


def test_a_tampered_download_is_refused(index, tmp_path):
    good = index.versions["0.2.0"]
    index.page = (lambda page: lambda: {**page(), "files": [{**f, "hashes": {"sha256": "0" * 64}} for f in page()["files"]]})(index.page)
    with pytest.raises(ValueError, match="sha256"):
        source.refresh(tmp_path / "store", ["vllm"], cache=tmp_path / "cache", index=index.url, log=lambda m: None)
    assert not (tmp_path / "store" / "vllm.json").exists() and list((tmp_path / "cache").iterdir()) == []
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
