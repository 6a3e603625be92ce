"""Endpoint -> BenchReport: how fast a served model answers, and whether what it answers is strict JSON.

A sweep over concurrency levels. At each level `concurrency` requests are in flight at once until
`requests` have finished; per level: p50/p95 latency, time to first byte (streamed OpenAI only),
output tokens/s, requests/s, the share of outputs that are strict JSON and valid against the schema,
and the GPU cost of 1,000 requests at that throughput (one container kept busy).

Two protocols:
- kit's (the rendered app's class mode): `POST /generate {"prompt", "max_tokens", "schema"}` ->
  `{"text": ..., "usage": {...}}`, `GET /health`.
- OpenAI-compatible (`--openai`, the rendered app's openai mode, or any such server):
  `POST /v1/chat/completions`, streamed, with `response_format` `json_schema`; `GET /v1/models`.

Strict JSON is `kit.smoke.parse_strict` (json.loads with no lenient fallback). An output whose only
fault is a raw control character inside a string (what xgrammar 0.1.33 produced on the GPU machine)
is counted apart from other failures, so the number is reported, not hidden by a lenient parser.

Nothing here knows about terminals: `on_sample` is how the CLI draws its progress bar.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import httpx

from kit import __version__
from kit.errors import OperationError, UsageError
from kit.smoke import parse_strict, validate

if TYPE_CHECKING:
    from kit.history import BenchRun

DEFAULT_CONCURRENCY = (1, 4, 16, 32)
DEFAULT_PROMPT = (
    "Return a JSON object with the name of a task, the list of steps and how many steps there are. "
    "Task: prepare an order for shipping."
)
MAX_CONCURRENCY = 512
MAX_REQUESTS = 10_000
ERRORS_KEPT = 3


@dataclass
class Endpoint:
    """Where to send requests, and what serves them (for the cost column)."""

    base_url: str
    protocol: str = "kit"  # "kit" | "openai"
    generate_url: str = ""
    health_url: str = ""
    model: str | None = None  # OpenAI: the served model name (default: the first of GET /v1/models)
    gpu: str | None = None
    gpu_count: int = 1
    revision: str | None = None  # "app@rN" when the target is a kit deployment

    def __post_init__(self) -> None:
        self.base_url = self.base_url.rstrip("/")
        if self.protocol == "openai":
            self.generate_url = self.generate_url or f"{self.base_url}/v1/chat/completions"
            self.health_url = self.health_url or f"{self.base_url}/v1/models"
        else:
            self.generate_url = self.generate_url or f"{self.base_url}/generate"
            self.health_url = self.health_url or f"{self.base_url}/health"


@dataclass
class Workload:
    prompt: str = DEFAULT_PROMPT
    max_tokens: int = 256
    schema: dict[str, Any] | None = None
    temperature: float | None = None  # None: the server's default


@dataclass
class Sample:
    """One request's outcome."""

    latency_s: float
    ok: bool = True
    error: str | None = None
    ttfb_s: float | None = None
    output_tokens: int | None = None
    json: str = "invalid"  # "strict" | "control_chars" (raw control character in a string) | "invalid"
    schema_valid: bool | None = None  # None: no schema, or not strict JSON
    problem: str | None = None  # why the output is not strict JSON, or breaks the schema


@dataclass
class Level:
    concurrency: int
    requests: int
    ok: int
    errors: int
    wall_s: float
    requests_per_s: float
    latency_p50_s: float | None
    latency_p95_s: float | None
    ttfb_p50_s: float | None
    ttfb_p95_s: float | None
    output_tokens: int | None
    output_tokens_per_s: float | None
    strict_json: int
    control_chars_in_strings: int
    invalid_json: int
    schema_valid: int | None
    strict_json_share: float | None
    schema_valid_share: float | None
    cost_per_1k_requests_usd: float | None
    error_examples: list[str] = field(default_factory=list)
    json_problem_examples: list[str] = field(default_factory=list)


@dataclass
class BenchReport:
    target: str
    protocol: str
    model: str | None
    revision: str | None
    gpu: str | None
    gpu_count: int
    price_per_hour_usd: float | None
    workload: dict[str, Any]
    started_at: str
    kit_version: str
    levels: list[Level] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def errors(self) -> int:
        return sum(level.errors for level in self.levels)

    @property
    def requests(self) -> int:
        return sum(level.requests for level in self.levels)

    def summary(self) -> dict[str, float | None]:
        """Best requests/s of any level; p50 latency and tokens/s at concurrency 1; strict-JSON share of all outputs."""
        answered = [lv for lv in self.levels if lv.ok]
        one = next((lv for lv in answered if lv.concurrency == 1), None)
        ok = sum(lv.ok for lv in answered)
        return {
            "best_requests_per_s": max((lv.requests_per_s for lv in answered), default=None),
            "latency_p50_s_c1": one.latency_p50_s if one else None,
            "output_tokens_per_s_c1": one.output_tokens_per_s if one else None,
            "strict_json_share": round(sum(lv.strict_json for lv in answered) / ok, 4) if ok else None,
        }


def percentile(values: list[float], q: float) -> float | None:
    """Linear interpolation between closest ranks (numpy's default); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q
    lo, hi = math.floor(pos), math.ceil(pos)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def judge(text: str, schema: dict[str, Any] | None) -> tuple[str, bool | None, str | None]:
    """(json kind, schema valid, problem) of one output: strict JSON first, the schema second."""
    try:
        doc = parse_strict(text)
    except ValueError as exc:
        kind = "invalid"
        if str(exc).startswith("raw control character"):
            # Would a lenient parser have taken it? Then the control characters are its only fault.
            try:
                json.loads(text, strict=False)
                kind = "control_chars"
            except ValueError:
                pass
        return kind, None, str(exc)
    if schema is None:
        return "strict", None, None
    problems = validate(doc, schema)
    return "strict", not problems, ("; ".join(problems[:3]) if problems else None)


def summarize(concurrency: int, samples: list[Sample], wall_s: float, price_per_hour: float | None, gpu_count: int, schema: bool) -> Level:
    done = [s for s in samples if s.ok]
    tokens = [s.output_tokens for s in done]
    total_tokens = sum(t for t in tokens if t is not None) if done and all(t is not None for t in tokens) else None
    ttfbs = [s.ttfb_s for s in done if s.ttfb_s is not None]
    req_s = len(done) / wall_s if wall_s > 0 else 0.0
    cost = None
    if price_per_hour is not None and req_s > 0:
        cost = price_per_hour * gpu_count / 3600 * (1000 / req_s)
    strict = sum(1 for s in done if s.json == "strict")
    valid = sum(1 for s in done if s.schema_valid) if schema else None
    return Level(
        concurrency=concurrency,
        requests=len(samples),
        ok=len(done),
        errors=len(samples) - len(done),
        wall_s=round(wall_s, 3),
        requests_per_s=round(req_s, 3),
        latency_p50_s=_round(percentile([s.latency_s for s in done], 0.50)),
        latency_p95_s=_round(percentile([s.latency_s for s in done], 0.95)),
        ttfb_p50_s=_round(percentile(ttfbs, 0.50)),
        ttfb_p95_s=_round(percentile(ttfbs, 0.95)),
        output_tokens=total_tokens,
        output_tokens_per_s=round(total_tokens / wall_s, 1) if total_tokens is not None and wall_s > 0 else None,
        strict_json=strict,
        control_chars_in_strings=sum(1 for s in done if s.json == "control_chars"),
        invalid_json=sum(1 for s in done if s.json == "invalid"),
        schema_valid=valid,
        strict_json_share=round(strict / len(done), 4) if done else None,
        schema_valid_share=round(valid / len(done), 4) if done and valid is not None else None,
        cost_per_1k_requests_usd=round(cost, 4) if cost is not None else None,
        error_examples=list(dict.fromkeys(s.error for s in samples if s.error))[:ERRORS_KEPT],
        json_problem_examples=list(dict.fromkeys(s.problem for s in done if s.problem))[:ERRORS_KEPT],
    )


def _round(value: float | None, digits: int = 4) -> float | None:
    return None if value is None else round(value, digits)


# -- what to measure: a URL, a deployed revision, a profile's [smoke] ----------------------------


MAX_REVISION = 2**63 - 1  # revision numbers are SQLite integers; a larger one overflows the query


def split_target(target: str) -> tuple[str | None, str | None, int | None]:
    """(url, None, None) for a URL; (None, app, number or None) for `APP`, `APP@3` or `APP@r3`."""
    if target.startswith(("http://", "https://")):
        try:
            host = httpx.URL(target).host
        except (httpx.InvalidURL, ValueError) as exc:
            raise UsageError(f"{target!r} is not a valid URL: {exc}", fix="pass http://HOST:PORT or https://..., e.g. https://me--app-serve.modal.run") from None
        if not host:
            raise UsageError(f"{target!r} names no host", fix="pass http://HOST:PORT or https://...")
        return target, None, None
    if "://" in target:
        raise UsageError(f"{target!r} is not an http(s) URL", fix="pass http://HOST:PORT or https://..., or a deployed app name (APP or APP@r3)")
    app, _, rev = target.partition("@")
    if not app:
        raise UsageError(f"{target!r} names no app", fix="pass a URL, or APP / APP@r3 from `kit history`")
    if not rev:
        return None, app, None
    raw = rev.lower().removeprefix("r")
    # ASCII digits only ('²'.isdigit() is true, int('²') fails); at most SQLite's largest integer.
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 19 or int(raw) > MAX_REVISION:
        raise UsageError(f"{target!r}: {rev!r} is not a revision number", fix="write APP@3 or APP@r3 (see `kit history`)")
    return None, app, int(raw)


def endpoint_from_revision(rev: Any) -> Endpoint:
    """The endpoint of a kit deployment (a history Revision): its URLs, serving mode and GPU."""
    profile = rev.profile or {}
    mode = (profile.get("serving") or {}).get("mode", "class")
    gpu = profile.get("gpu") or {}
    label = f"{rev.app}@{rev.label}"
    if not rev.urls:
        raise OperationError(f"{label} has no web URL in kit's history (status {rev.status})", fix="bench a revision that deployed, or pass its URL")
    from kit.smoke import base_url, endpoints

    where = {"gpu": gpu.get("type"), "gpu_count": gpu.get("count", 1), "revision": label}
    base = base_url(rev.urls, mode)
    if mode == "openai":
        return Endpoint(base_url=base or next(iter(rev.urls.values())), protocol="openai", model=(profile.get("model") or {}).get("id"), **where)
    if base:  # the class's one web method: POST /generate and GET /health under it
        return Endpoint(base_url=base, protocol="kit", **where)
    health, generate = endpoints(rev.urls)  # deployed with one URL per endpoint, each route at /
    return Endpoint(base_url=generate, protocol="kit", generate_url=generate, health_url=health, **where)


def bench_run(report: BenchReport, app: str, number: int) -> BenchRun:
    """The report as a kit.history.BenchRun of revision `number` of `app`, ready to store."""
    import socket

    from kit.history import BenchRun, who

    d = report.as_dict()
    return BenchRun(
        app=app,
        number=number,
        at=report.started_at,
        created_by=who(),
        host=socket.gethostname(),
        kit_version=report.kit_version,
        target=report.target,
        mode="openai" if report.protocol == "openai" else "class",
        model=report.model,
        gpu=report.gpu,
        gpu_count=report.gpu_count,
        price_per_hour_usd=report.price_per_hour_usd,
        workload=d["workload"],
        levels=d["levels"],
        requests=report.requests,
        errors=report.errors,
        **report.summary(),
    )


def workload_from_profile(profile: dict[str, Any], texts: dict[str, str]) -> Workload:
    """The profile's smoke prompt, max_tokens and schema (a resolved profile, as history stores it)."""
    from kit.smoke import SmokeSpec

    spec = SmokeSpec.from_profile(profile, texts)
    if spec is None:
        schema_file = (profile.get("structured_output") or {}).get("schema")
        schema = json.loads(texts[schema_file]) if schema_file and schema_file in texts else None
        return Workload(schema=schema)
    return Workload(prompt=spec.prompt, max_tokens=spec.max_tokens, schema=spec.schema)


def gpu_price(gpu: str | None) -> float | None:
    """$/hour of one GPU of this type from kit's catalog; None when unknown."""
    if not gpu:
        return None
    from kit.catalog import gpus

    spec = gpus().find(gpu)
    if spec is None:
        raise UsageError(f"kit's catalog has no GPU {gpu!r}", key="--gpu", fix=f"one of: {', '.join(gpus().canonical_names())}")
    return spec.price_per_hour_usd


# -- one request ----------------------------------------------------------------------------------


def _usage_tokens(body: Any) -> int | None:
    if not isinstance(body, dict):
        return None
    usage = body.get("usage") if isinstance(body.get("usage"), dict) else body
    for key in ("completion_tokens", "output_tokens"):
        if isinstance(usage.get(key), int):
            return usage[key]
    return None


async def _kit_request(client: httpx.AsyncClient, ep: Endpoint, work: Workload, timeout: float) -> tuple[str, int | None, float | None]:
    request: dict[str, Any] = {"prompt": work.prompt, "max_tokens": work.max_tokens}
    if work.schema is not None:
        request["schema"] = work.schema
    if work.temperature is not None:
        request["temperature"] = work.temperature
    resp = await client.post(ep.generate_url, json=request, timeout=timeout)
    if resp.status_code != 200:
        raise _Failed(f"HTTP {resp.status_code}: {resp.text[:200]!r}")
    try:
        body = resp.json()
    except ValueError:
        raise _Failed(f"the answer is not a JSON object: {resp.text[:200]!r}") from None
    text = body.get("text", body.get("output")) if isinstance(body, dict) else None
    if not isinstance(text, str):
        raise _Failed(f"the answer has no `text` string (keys: {sorted(body) if isinstance(body, dict) else type(body).__name__})")
    return text, _usage_tokens(body), None


async def _openai_request(client: httpx.AsyncClient, ep: Endpoint, work: Workload, timeout: float, start: float) -> tuple[str, int | None, float | None]:
    request: dict[str, Any] = {
        "model": ep.model,
        "messages": [{"role": "user", "content": work.prompt}],
        "max_tokens": work.max_tokens,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    if work.schema is not None:
        request["response_format"] = {"type": "json_schema", "json_schema": {"name": "output", "schema": work.schema, "strict": True}}
    if work.temperature is not None:
        request["temperature"] = work.temperature
    parts: list[str] = []
    tokens: int | None = None
    ttfb: float | None = None
    async with client.stream("POST", ep.generate_url, json=request, timeout=timeout) as resp:
        if resp.status_code != 200:
            body = (await resp.aread()).decode(errors="replace")
            raise _Failed(f"HTTP {resp.status_code}: {body[:200]!r}")
        async for line in resp.aiter_lines():
            if not line.startswith("data:"):
                continue
            data = line[5:].strip()
            if data == "[DONE]":
                break
            try:
                chunk = json.loads(data)
            except ValueError:
                raise _Failed(f"a streamed chunk is not JSON: {data[:120]!r}") from None
            if isinstance(chunk, dict) and "error" in chunk:
                raise _Failed(f"the server streamed an error: {str(chunk['error'])[:200]}")
            for choice in chunk.get("choices") or []:
                piece = (choice.get("delta") or {}).get("content")
                if piece:
                    if ttfb is None:
                        ttfb = time.perf_counter() - start
                    parts.append(piece)
            if chunk.get("usage"):
                tokens = _usage_tokens(chunk)
    return "".join(parts), tokens, ttfb


class _Failed(Exception):
    pass


async def _one(client: httpx.AsyncClient, ep: Endpoint, work: Workload, timeout: float) -> Sample:
    start = time.perf_counter()
    try:
        if ep.protocol == "openai":
            text, tokens, ttfb = await _openai_request(client, ep, work, timeout, start)
        else:
            text, tokens, ttfb = await _kit_request(client, ep, work, timeout)
    except _Failed as exc:
        return Sample(latency_s=time.perf_counter() - start, ok=False, error=str(exc))
    except httpx.TimeoutException:
        return Sample(latency_s=time.perf_counter() - start, ok=False, error=f"no answer within {timeout:g} s")
    except httpx.HTTPError as exc:
        return Sample(latency_s=time.perf_counter() - start, ok=False, error=f"{type(exc).__name__}: {exc}")
    latency = time.perf_counter() - start
    kind, valid, problem = judge(text, work.schema)
    return Sample(latency_s=latency, ttfb_s=ttfb, output_tokens=tokens, json=kind, schema_valid=valid, problem=problem)


# -- the sweep ------------------------------------------------------------------------------------


async def _level(client: httpx.AsyncClient, ep: Endpoint, work: Workload, concurrency: int, requests: int, timeout: float, on_sample: Callable[[int, Sample], None] | None) -> tuple[list[Sample], float]:
    todo = iter(range(requests))
    samples: list[Sample] = []

    async def worker() -> None:
        for _ in todo:  # a shared iterator: each index is taken by exactly one worker
            sample = await _one(client, ep, work, timeout)
            samples.append(sample)
            if on_sample:
                on_sample(concurrency, sample)

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(min(concurrency, requests))))
    return samples, time.perf_counter() - start


async def _prepare(client: httpx.AsyncClient, ep: Endpoint, work: Workload, warmup_timeout: float, warmup: bool) -> None:
    try:
        resp = await client.get(ep.health_url, timeout=warmup_timeout)
    except httpx.HTTPError as exc:
        raise OperationError(f"GET {ep.health_url}: {type(exc).__name__}: {exc}", fix="is the server up, and is the URL its base (no /generate)?") from None
    if resp.status_code != 200:
        raise OperationError(f"GET {ep.health_url} answered {resp.status_code}: {resp.text[:200]!r}", fix="wait until the server is healthy, or check the URL")
    if ep.protocol == "openai" and not ep.model:
        try:
            ep.model = resp.json()["data"][0]["id"]
        except (ValueError, KeyError, IndexError, TypeError):
            raise OperationError(f"GET {ep.health_url} named no served model", fix="pass --model NAME") from None
    if warmup:
        sample = await _one(client, ep, work, warmup_timeout)
        if not sample.ok:
            raise OperationError(f"the warm-up request failed: {sample.error}", fix="check the server's log; the sweep was not started")


def run(
    ep: Endpoint,
    work: Workload,
    *,
    concurrency: tuple[int, ...] = DEFAULT_CONCURRENCY,
    requests: int | None = None,
    timeout: float = 120.0,
    warmup_timeout: float = 900.0,
    warmup: bool = True,
    price_per_hour: float | None = None,
    on_sample: Callable[[int, Sample], None] | None = None,
    on_level: Callable[[int, int], None] | None = None,
) -> BenchReport:
    """Sweep `concurrency`; `requests` per level (default: max(8, 2 x concurrency))."""
    if not concurrency or any(not 1 <= c <= MAX_CONCURRENCY for c in concurrency):
        raise UsageError(f"each concurrency level must be 1-{MAX_CONCURRENCY} (got {list(concurrency)})", key="--concurrency")
    if requests is not None and not 1 <= requests <= MAX_REQUESTS:
        raise UsageError(f"--requests must be 1-{MAX_REQUESTS} (got {requests})", key="--requests")
    report = BenchReport(
        target=ep.base_url,
        protocol=ep.protocol,
        model=ep.model,
        revision=ep.revision,
        gpu=ep.gpu,
        gpu_count=ep.gpu_count,
        price_per_hour_usd=price_per_hour,
        workload={"prompt": work.prompt, "max_tokens": work.max_tokens, "schema": work.schema is not None, "temperature": work.temperature, "timeout_s": timeout},
        started_at=datetime.now(UTC).isoformat(timespec="seconds"),
        kit_version=__version__,
    )

    async def sweep() -> None:
        limits = httpx.Limits(max_connections=max(concurrency), max_keepalive_connections=max(concurrency))
        async with httpx.AsyncClient(limits=limits, follow_redirects=True, headers={"user-agent": f"kit-bench/{__version__}"}) as client:
            await _prepare(client, ep, work, warmup_timeout, warmup)
            report.model = ep.model
            for c in concurrency:
                n = requests if requests is not None else max(8, 2 * c)
                if on_level:
                    on_level(c, n)
                samples, wall = await _level(client, ep, work, c, n, timeout, on_sample)
                report.levels.append(summarize(c, samples, wall, price_per_hour, ep.gpu_count, work.schema is not None))

    asyncio.run(sweep())
    return report


def format_text(report: BenchReport) -> str:
    """The report as a table for people."""
    head = f"kit bench {report.target} ({report.protocol}"
    head += f", model {report.model}" if report.model else ""
    head += f", {report.revision}" if report.revision else ""
    head += ")"
    price = f"{report.gpu} x{report.gpu_count} at ${report.price_per_hour_usd:.2f}/h" if report.price_per_hour_usd is not None else "no GPU price (pass --gpu)"
    w = report.workload
    lines = [head, f"  {w['max_tokens']} max tokens, schema: {'yes' if w['schema'] else 'no'}; {price}", ""]
    cols = ["conc", "reqs", "err", "p50 s", "p95 s", "ttfb p50", "tok/s", "req/s", "strict JSON", "ctrl chars", "schema ok", "$/1k req"]
    rows = []
    for lv in report.levels:
        rows.append([
            str(lv.concurrency), str(lv.requests), str(lv.errors), _f(lv.latency_p50_s, 2), _f(lv.latency_p95_s, 2), _f(lv.ttfb_p50_s, 3),
            _f(lv.output_tokens_per_s, 1), _f(lv.requests_per_s, 2), _share(lv.strict_json, lv.ok), str(lv.control_chars_in_strings),
            _share(lv.schema_valid, lv.ok) if lv.schema_valid is not None else "-", _f(lv.cost_per_1k_requests_usd, 3),
        ])
    widths = [max(len(c), *(len(r[i]) for r in rows)) if rows else len(c) for i, c in enumerate(cols)]
    lines.append("  ".join(c.rjust(wd) for c, wd in zip(cols, widths)))
    lines += ["  ".join(v.rjust(wd) for v, wd in zip(r, widths)) for r in rows]
    notes = []
    for lv in report.levels:
        if lv.control_chars_in_strings:
            notes.append(f"concurrency {lv.concurrency}: {lv.control_chars_in_strings} of {lv.ok} outputs hold raw control characters inside strings (not strict JSON; a lenient parser would hide this)")
        notes += [f"concurrency {lv.concurrency}: error: {e}" for e in lv.error_examples]
        notes += [f"concurrency {lv.concurrency}: output: {p}" for p in lv.json_problem_examples[:1]]
    if notes:
        lines += [""] + [f"  {n}" for n in notes]
    return "\n".join(lines) + "\n"


def _f(value: float | None, digits: int) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _share(part: int | None, whole: int) -> str:
    return "-" if part is None or not whole else f"{part}/{whole}"
