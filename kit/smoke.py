"""Deployment -> SmokeResult: is the deployed app healthy, and does it generate schema-valid JSON in time?

The contract is the rendered app's (templates/serve_class.py.j2): `GET /health` answers 200 with a JSON
object whose `bundle` must be the bundle hash kit deployed (when it names one), and `POST /generate` takes `{"prompt", "max_tokens", "schema"}` and
answers `{"text": ...}`. The generated text must be strict JSON (`json.loads`, no lenient fallback: no
code fences stripped, no NaN, no duplicate keys, no raw control characters, which are reported by
position) and valid against the schema (the `jsonschema` library, the draft the schema names).

The first request may start a container and load the model, so it gets the cold-start budget; the
warm latency budget is judged on a request to a warm container.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import httpx

from kit.errors import OperationError


@dataclass
class Check:
    name: str
    ok: bool
    detail: str
    seconds: float | None = None


@dataclass
class SmokeResult:
    ok: bool
    checks: list[Check] = field(default_factory=list)
    output: str | None = None  # the generated text, as received
    health_url: str | None = None
    generate_url: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def failures(self) -> list[Check]:
        return [c for c in self.checks if not c.ok]

    def summary(self) -> str:
        if self.ok:
            return "passed: " + "; ".join(c.detail for c in self.checks)
        return "failed: " + "; ".join(f"{c.name}: {c.detail}" for c in self.failures())


@dataclass
class SmokeSpec:
    """The profile's [smoke] section, plus the schema it names."""

    prompt: str
    max_tokens: int = 512
    latency_budget_s: float = 30.0
    cold_start_budget_s: float = 900.0
    schema: dict[str, Any] | None = None
    bundle_hash: str | None = None
    mode: str = "class"  # serving.mode: class (POST /generate) or openai (POST /v1/chat/completions)
    model: str = ""  # the model id, which the OpenAI-compatible server expects in requests

    @classmethod
    def from_profile(cls, profile: dict[str, Any], texts: dict[str, str], bundle_hash: str | None = None) -> SmokeSpec | None:
        """From a resolved profile (as stored with a revision) and its files; None when it has no [smoke]."""
        smoke = profile.get("smoke")
        if not smoke:
            return None
        schema_file = smoke.get("schema") or (profile.get("structured_output") or {}).get("schema")
        schema = json.loads(texts[schema_file]) if schema_file and schema_file in texts else None
        return cls(
            prompt=smoke["prompt"],
            max_tokens=smoke.get("max_tokens", 512),
            latency_budget_s=smoke.get("latency_budget_s", 30.0),
            cold_start_budget_s=smoke.get("cold_start_budget_s", 900.0),
            schema=schema,
            bundle_hash=bundle_hash,
            mode=(profile.get("serving") or {}).get("mode", "class"),
            model=(profile.get("model") or {}).get("id", ""),
        )


def _named(urls: dict[str, str], name: str) -> str | None:
    """The URL of the web function or method `name` (a deploy reports a class's methods as Cls.method)."""
    return next((u for n, u in urls.items() if n.rsplit(".", 1)[-1] == name), None)


def base_url(urls: dict[str, str], mode: str = "class") -> str | None:
    """The one base URL a deploy serves, without a trailing slash; None when there is none.

    Class mode: the class's @modal.asgi_app method (kit.render.WEB_METHOD), serving POST /generate and
    GET /health; openai mode: the web server function (kit.render.SERVER_FUNCTION); otherwise the only
    URL reported. A revision deployed while kit rendered one fastapi_endpoint per route (each at its own
    URL, with its route at /) has none: see `endpoints`.
    """
    from kit.render import SERVER_FUNCTION, WEB_METHOD

    if mode == "class" and (_named(urls, "http_generate") or _named(urls, "health")):
        return None
    url = _named(urls, WEB_METHOD if mode == "class" else SERVER_FUNCTION)
    url = url or (next(iter(urls.values())) if len(urls) == 1 else urls.get("app") or urls.get("base"))
    return url.rstrip("/") if url else None


def endpoints(urls: dict[str, str], mode: str = "class") -> tuple[str, str]:
    """(health URL, generate URL) from the web endpoints a deploy reported: the base URL + /health and /generate."""
    base = base_url(urls, mode)
    if base:
        return f"{base}/health", base + ("/v1/chat/completions" if mode == "openai" else "/generate")
    health, generate = _named(urls, "health"), _named(urls, "http_generate")
    if health and generate:  # a revision deployed with one URL per endpoint, each route at /
        return health, generate
    raise OperationError(
        f"the deploy reported no web endpoint to smoke-test (got {sorted(urls) or 'none'})",
        fix="keep `health` and `http_generate` in [serving] endpoints, or add a [smoke] section only to profiles that serve HTTP",
    )


def parse_strict(text: str) -> Any:
    """json.loads, stricter: no NaN/Infinity, no duplicate keys; errors say where and what."""

    def no_constant(name: str) -> Any:
        raise ValueError(f"{name} is not JSON (a non-standard constant)")

    def no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        seen: dict[str, Any] = {}
        for k, v in pairs:
            if k in seen:
                raise ValueError(f"duplicate key {k!r} in an object")
            seen[k] = v
        return seen

    try:
        return json.loads(text, parse_constant=no_constant, object_pairs_hook=no_duplicates)
    except json.JSONDecodeError as exc:
        where = f"line {exc.lineno}, column {exc.colno} (character {exc.pos})"
        if exc.msg.startswith("Invalid control character"):
            char = text[exc.pos] if exc.pos < len(text) else ""
            raise ValueError(f"raw control character {char!r} (U+{ord(char):04X}) inside a string at {where}: JSON requires it escaped") from None
        context = text[max(0, exc.pos - 20) : exc.pos + 20]
        raise ValueError(f"{exc.msg} at {where}, near {context!r}") from None


def validate(doc: Any, schema: dict[str, Any]) -> list[str]:
    """Every way `doc` breaks `schema`, as 'path: message' lines (empty when valid)."""
    import jsonschema

    cls = jsonschema.validators.validator_for(schema)
    try:
        cls.check_schema(schema)
    except jsonschema.SchemaError as exc:
        return [f"the schema itself is invalid: {exc.message}"]
    errors = sorted(cls(schema).iter_errors(doc), key=lambda e: list(e.absolute_path))
    return [f"{'/' + '/'.join(str(p) for p in e.absolute_path) if e.absolute_path else '(root)'}: {e.message}" for e in errors]


def run(spec: SmokeSpec, urls: dict[str, str], *, client: httpx.Client | None = None) -> SmokeResult:
    """Run the smoke test against a deployment's endpoints."""
    health_url, generate_url = endpoints(urls, spec.mode)
    result = SmokeResult(ok=False, health_url=health_url, generate_url=generate_url)
    own = client is None
    client = client or httpx.Client(follow_redirects=True, headers={"user-agent": "kit-smoke"})
    try:
        _run(spec, client, health_url, generate_url, result)
    finally:
        if own:
            client.close()
    result.ok = bool(result.checks) and all(c.ok for c in result.checks)
    return result


def _timed(fn: Any) -> tuple[Any, float]:
    start = time.monotonic()
    value = fn()
    return value, time.monotonic() - start


def _run(spec: SmokeSpec, client: httpx.Client, health_url: str, generate_url: str, result: SmokeResult) -> None:
    cold = httpx.Timeout(spec.cold_start_budget_s, connect=min(30.0, spec.cold_start_budget_s))
    # 1. Health. It may start a container: the cold-start budget applies.
    try:
        resp, took = _timed(lambda: client.get(health_url, timeout=cold))
    except httpx.HTTPError as exc:
        result.checks.append(Check("health", False, f"GET {health_url}: {type(exc).__name__}: {exc}"))
        return
    body = _json_body(resp)
    if spec.mode == "openai" and resp.status_code == 200:
        body = body if isinstance(body, dict) else {}  # the engine's own /health answers an empty 200
    if resp.status_code != 200 or not isinstance(body, dict):
        result.checks.append(Check("health", False, f"GET {health_url} answered {resp.status_code}: {resp.text[:200]!r}", took))
        return
    served = body.get("bundle") or body.get("bundle_hash")  # the rendered app's /health says "bundle"
    if spec.bundle_hash and served and served != spec.bundle_hash:
        result.checks.append(Check("health", False, f"the app serves bundle {served[:12]}, not the deployed {spec.bundle_hash[:12]}", took))
        return
    result.checks.append(Check("health", True, f"health ok in {took:.2f} s", took))

    # 2. Generation. The first may still be cold (the engine loads in the container's enter hook).
    request = _request(spec)
    text, took, error = _generate(client, generate_url, request, cold, spec.mode)
    if error:
        result.checks.append(Check("generate", False, error, took))
        return
    if took > spec.latency_budget_s:
        if took > spec.cold_start_budget_s:
            result.checks.append(Check("cold_start", False, f"first generation took {took:.1f} s, over the cold-start budget of {spec.cold_start_budget_s:g} s", took))
            return
        result.checks.append(Check("cold_start", True, f"first generation {took:.1f} s (cold start, within {spec.cold_start_budget_s:g} s)", took))
        warm = httpx.Timeout(spec.latency_budget_s * 2 + 5, connect=10.0)
        text, took, error = _generate(client, generate_url, request, warm, spec.mode)
        if error:
            result.checks.append(Check("generate", False, f"warm request: {error}", took))
            return
    result.output = text
    ok = took <= spec.latency_budget_s
    result.checks.append(Check("latency", ok, f"generation {took:.2f} s (budget {spec.latency_budget_s:g} s)", took))

    # 3. Strict JSON, then the schema.
    try:
        doc = parse_strict(text)
    except ValueError as exc:
        result.checks.append(Check("json", False, f"output is not strict JSON: {exc}"))
        return
    result.checks.append(Check("json", True, "output is strict JSON"))
    if spec.schema is None:
        result.checks.append(Check("schema", True, "no schema to validate against"))
        return
    problems = validate(doc, spec.schema)
    if problems:
        shown = "; ".join(problems[:5]) + (f"; and {len(problems) - 5} more" if len(problems) > 5 else "")
        result.checks.append(Check("schema", False, f"output breaks the schema: {shown}"))
    else:
        result.checks.append(Check("schema", True, f"output valid against {spec.schema.get('title') or 'the schema'}"))


def _json_body(resp: httpx.Response) -> Any:
    try:
        return resp.json()
    except (ValueError, UnicodeDecodeError):
        return None


def _request(spec: SmokeSpec) -> dict[str, Any]:
    if spec.mode == "openai":
        # response_format, not the old guided_json field: vLLM 0.12 ignores guided_json silently.
        req: dict[str, Any] = {"model": spec.model, "messages": [{"role": "user", "content": spec.prompt}], "max_tokens": spec.max_tokens}
        if spec.schema is not None:
            req["response_format"] = {"type": "json_schema", "json_schema": {"name": "smoke", "schema": spec.schema, "strict": True}}
        return req
    req = {"prompt": spec.prompt, "max_tokens": spec.max_tokens}
    if spec.schema is not None:
        req["schema"] = spec.schema
    return req


def _text_of(body: dict[str, Any], mode: str) -> Any:
    if mode == "openai":
        try:
            return body["choices"][0]["message"]["content"]
        except (KeyError, IndexError, TypeError):
            return None
    return body.get("text", body.get("output"))


def _generate(client: httpx.Client, url: str, request: dict[str, Any], timeout: httpx.Timeout, mode: str = "class") -> tuple[str, float, str | None]:
    start = time.monotonic()
    try:
        resp = client.post(url, json=request, timeout=timeout)
    except httpx.TimeoutException:
        took = time.monotonic() - start
        return "", took, f"POST {url} got no answer within {took:.1f} s"
    except httpx.HTTPError as exc:
        return "", time.monotonic() - start, f"POST {url}: {type(exc).__name__}: {exc}"
    took = time.monotonic() - start
    if resp.status_code != 200:
        return "", took, f"POST {url} answered {resp.status_code}: {resp.text[:300]!r}"
    body = _json_body(resp)
    if not isinstance(body, dict):
        return "", took, f"POST {url} answered a body that is not a JSON object: {resp.text[:200]!r}"
    text = _text_of(body, mode)
    if not isinstance(text, str):
        what = "choices[0].message.content" if mode == "openai" else "`text`"
        return "", took, f"POST {url} answered no {what} string (keys: {sorted(body)})"
    return text, took, None
