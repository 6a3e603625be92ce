"""Modal app rendered by kit from a profile: change the profile and run `kit render`, do not edit.

Every value below that came from the profile is a Python literal. manifest.json (shipped next to this
file) records the profile hash, the lock hash and the bundle hash that /health reports.
"""

import json
import time
from pathlib import Path

import modal

PROFILE = 'qwen25-a10g'
APP_NAME = 'ir-generator'
MODEL_ID = 'Qwen/Qwen2.5-Coder-7B-Instruct'
MODEL_REVISION = 'c03e6d358207e414f1eca0bb1891e29f1db0e242'
ENGINE = 'vllm'
ENGINE_PACKAGE = 'vllm'
PINNED = {'hf-transfer': '0.1.9', 'transformers': '4.53.0', 'vllm': '0.9.2', 'xgrammar': '0.1.19'}
GPU = 'A10'

# Next to this file locally (kit's bundle directory) and in the container (Modal mounts a single-file
# app at /root/<name>.py and kit's files at /root/).
_HERE = Path(__file__).parent
_REMOTE = "/root"

image = (
    modal.Image.from_registry('nvidia/cuda:12.4.1-devel-ubuntu22.04', add_python='3.11')
    # requirements.txt is the bundle's: the lockfile with hashes, or the profile's pins when unlocked.
    .uv_pip_install(
        requirements=[str(_HERE / "requirements.txt")],
        uv_version='0.13.9',
        extra_options='--require-hashes --no-deps --only-binary :all:',
    )
    .env({'HF_HUB_ENABLE_HF_TRANSFER': '1'})
    # Mounted at container start (not baked into a layer): a new manifest does not rebuild the image.
    .add_local_file(_HERE / "manifest.json", _REMOTE + "/manifest.json")
    .add_local_file(_HERE / "schema.json", _REMOTE + "/schema.json")
)

app = modal.App(APP_NAME, image=image)

VOLUMES = {
    '/root/.cache/huggingface': modal.Volume.from_name('huggingface-cache', create_if_missing=True),
    '/root/.cache/vllm': modal.Volume.from_name('vllm-cache', create_if_missing=True),
}
SECRETS = []


def manifest() -> dict:
    """kit's manifest of this bundle (profile, lock and bundle hashes); empty if it is missing."""
    try:
        return json.loads((_HERE / "manifest.json").read_text())
    except (OSError, ValueError):
        return {}


def installed_versions() -> dict:
    """The versions of the pinned packages actually installed in this container (None: absent)."""
    from importlib import metadata

    out = {}
    for name in PINNED:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


ENGINE_KWARGS = {'model': 'Qwen/Qwen2.5-Coder-7B-Instruct', 'revision': 'c03e6d358207e414f1eca0bb1891e29f1db0e242', 'tokenizer_revision': 'c03e6d358207e414f1eca0bb1891e29f1db0e242', 'dtype': 'bfloat16', 'max_model_len': 32768, 'gpu_memory_utilization': 0.9, 'enforce_eager': False, 'tensor_parallel_size': 1, 'guided_decoding_backend': 'xgrammar'}
MAX_TOKENS_DEFAULT = 512
MAX_TOKENS_LIMIT = 32768
TEMPERATURE_DEFAULT = 0.0
FIELDS = ("prompt", "schema", "max_tokens", "temperature")


def default_schema():
    """The profile's default JSON schema (structured_output.schema), or None."""
    return json.loads((_HERE / "schema.json").read_text())


def load_engine():
    """The engine, loaded once per container (called from @modal.enter)."""
    return Engine()


class Engine:
    """vLLM's async engine in-process (AsyncLLMEngine, the version pinned in PINNED; kit/data/async_engine.toml):
    every request is added to the running batch as it arrives (continuous batching), so concurrent inputs
    of this container share the GPU's decode steps. Structured output: SamplingParams(guided_decoding=GuidedDecodingParams(json=schema)),
    the API of vllm ==0.9.2 (kit/data/rules/structured_output.toml)."""

    def __init__(self):
        import itertools

        from transformers import AutoTokenizer
        from vllm import AsyncEngineArgs, AsyncLLMEngine

        kwargs = dict(ENGINE_KWARGS)
        self.engine = AsyncLLMEngine.from_engine_args(AsyncEngineArgs(**kwargs))
        # The chat template is applied here, as LLM.chat does: rendered as text, then tokenized without
        # special tokens, at the revision the engine loads.
        self.tokenizer = AutoTokenizer.from_pretrained(
            kwargs.get("tokenizer") or kwargs["model"],
            revision=kwargs.get("tokenizer_revision") or kwargs.get("revision"),
            trust_remote_code=bool(kwargs.get("trust_remote_code", False)),
        )
        self.request_ids = itertools.count()

    async def complete(self, prompt: str, schema, max_tokens: int, temperature: float) -> dict:
        from vllm import SamplingParams
        from vllm.sampling_params import GuidedDecodingParams, RequestOutputKind

        params = SamplingParams(
            max_tokens=max_tokens,
            temperature=temperature,
            output_kind=RequestOutputKind.FINAL_ONLY,  # one output per request, as LLM.chat gets: no per-step copies
            guided_decoding=GuidedDecodingParams(json=schema) if schema is not None else None,
        )
        text = self.tokenizer.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True)
        token_ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        final = None
        async for out in self.engine.generate({"prompt_token_ids": token_ids}, params, f"kit-{next(self.request_ids)}"):
            final = out
        choice = final.outputs[0]
        return {
            "text": choice.text,
            "finish_reason": choice.finish_reason,
            "prompt_tokens": len(token_ids),
            "completion_tokens": len(choice.token_ids),
        }


class RequestError(Exception):
    """A request the app refuses: `status` is the HTTP status, `reason` says what to change."""

    def __init__(self, status: int, reason: str):
        super().__init__(f"{status}: {reason}")
        self.status = status
        self.reason = reason


def validate(payload) -> dict:
    """Check a request ({prompt, schema?, max_tokens?, temperature?}); return it with defaults filled."""
    if not isinstance(payload, dict):
        raise RequestError(400, "the request must be a JSON object with a 'prompt'")
    unknown = sorted(str(k) for k in payload if k not in FIELDS)
    if unknown:
        raise RequestError(400, f"unknown field(s) {', '.join(unknown)}; known: {', '.join(FIELDS)}")
    prompt = payload.get("prompt")
    if prompt is None:
        raise RequestError(400, "'prompt' is required")
    if not isinstance(prompt, str) or not prompt.strip():
        raise RequestError(400, "'prompt' must be a non-empty string")
    schema = payload.get("schema")
    if schema is None:
        schema = default_schema()
    elif not isinstance(schema, dict) or not schema:
        raise RequestError(400, "'schema' must be a JSON Schema object, e.g. {\"type\": \"object\", ...}")
    elif "type" in schema and not isinstance(schema["type"], str | list):
        raise RequestError(400, "'schema.type' must be a string or a list of strings")
    else:
        try:
            json.dumps(schema)
        except (TypeError, ValueError) as exc:
            raise RequestError(400, f"'schema' is not JSON: {exc}") from None
    max_tokens = payload.get("max_tokens", MAX_TOKENS_DEFAULT)
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1 or (MAX_TOKENS_LIMIT is not None and max_tokens > MAX_TOKENS_LIMIT):
        bound = f"between 1 and {MAX_TOKENS_LIMIT}" if MAX_TOKENS_LIMIT is not None else "at least 1"
        raise RequestError(400, f"'max_tokens' must be an integer {bound}")
    temperature = payload.get("temperature", TEMPERATURE_DEFAULT)
    if isinstance(temperature, bool) or not isinstance(temperature, int | float) or not 0.0 <= temperature <= 2.0:
        raise RequestError(400, "'temperature' must be a number between 0 and 2")
    return {"prompt": prompt, "schema": schema, "max_tokens": max_tokens, "temperature": float(temperature)}


async def respond(engine, payload) -> tuple:
    """The one implementation behind `generate` and POST /generate: (HTTP status, JSON body).

    Async: the engine adds each request to its running batch, so the concurrent inputs of this container
    (up to serving.max_inputs, on Modal's event loop) are decoded together.
    """
    try:
        request = validate(payload)
    except RequestError as exc:
        return exc.status, {"error": exc.reason}
    started = time.monotonic()
    try:
        out = await engine.complete(request["prompt"], request["schema"], request["max_tokens"], request["temperature"])
    except ValueError as exc:  # the engine refused the request, e.g. a schema its grammar backend cannot compile
        return 422, {"error": f"the engine rejected the request: {exc}"}
    parsed = None
    if request["schema"] is not None:
        try:
            parsed = json.loads(out["text"])
        except ValueError:
            parsed = None  # e.g. cut off by max_tokens: finish_reason says so
    return 200, {
        "text": out["text"],
        "json": parsed,
        "finish_reason": out.get("finish_reason"),
        "usage": {"prompt_tokens": out.get("prompt_tokens"), "completion_tokens": out.get("completion_tokens")},
        "latency_s": round(time.monotonic() - started, 3),
        "model": MODEL_ID,
        "profile": PROFILE,
        "bundle": manifest().get("bundle_hash"),
    }


def health_report() -> dict:
    """What GET /health reports: what is serving, from which bundle, on which installed versions."""
    return {
        "status": "ok",
        "profile": PROFILE,
        "app": APP_NAME,
        "model": MODEL_ID,
        "revision": MODEL_REVISION,
        "engine": ENGINE,
        "bundle": manifest().get("bundle_hash"),
        "versions": installed_versions(),
        "pinned": PINNED,
    }


@app.cls(
    gpu=GPU,
    timeout=600,
    scaledown_window=300,
    min_containers=0,
    max_containers=2,
    volumes=VOLUMES,
    secrets=SECRETS,
)
@modal.concurrent(max_inputs=1)
class Inference:
    @modal.enter()
    def load(self) -> None:
        self.engine = load_engine()

    @modal.method()
    async def generate(self, prompt: str, schema: dict | None = None, max_tokens: int | None = None, temperature: float | None = None) -> dict:
        """Generate for `.remote()` callers; raises ValueError('<status>: <reason>') for a refused request."""
        payload = {"prompt": prompt, "schema": schema, "max_tokens": max_tokens, "temperature": temperature}
        status, body = await respond(self.engine, {k: v for k, v in payload.items() if v is not None})
        if status != 200:
            raise ValueError(f"{status}: {body['error']}")
        return body

    @modal.asgi_app()
    def web(self):
        """HTTP on one base URL (Modal gives each web method its own): POST /generate, GET /health."""
        from fastapi import FastAPI, Request
        from fastapi.responses import JSONResponse
        from starlette.exceptions import HTTPException

        api = FastAPI(title=APP_NAME, docs_url=None, redoc_url=None, openapi_url=None)

        @api.exception_handler(HTTPException)
        async def refused(request: Request, exc: HTTPException):  # unknown path, wrong method: {error} like the rest
            return JSONResponse(status_code=exc.status_code, content={"error": str(exc.detail)}, headers=exc.headers)

        @api.post("/generate")
        async def http_generate(request: Request):
            """{prompt, schema?, max_tokens?, temperature?}: 200, or 4xx with {error}."""
            try:
                payload = json.loads(await request.body())
            except ValueError:
                return JSONResponse(status_code=400, content={"error": "the request body must be JSON: an object with a 'prompt'"})
            status, body = await respond(self.engine, payload)
            return JSONResponse(status_code=status, content=body)

        @api.get("/health")
        def health() -> dict:
            """Model, profile, bundle hash and installed engine versions."""
            return health_report()

        return api
