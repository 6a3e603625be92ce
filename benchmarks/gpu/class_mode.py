"""The rendered app in class mode, in-process: the app's own @modal.enter hook (which loads vLLM's async
engine) and its async `generate` method through Modal's `.local()`, at 1, 4, 16 and 32 requests in flight
on one event loop (as Modal runs a container's async inputs), like `kit bench`'s sweep.

    python3 benchmarks/gpu/class_mode.py .gpu/kit/class      (see run.sh for the environment)
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
import warnings
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import MAX_TOKENS, PROMPTS, SCHEMA, SCHEMA_BOUNDED, TEMPERATURE, end_children, import_app, log, save, versions  # noqa: E402

from kit.bench import judge, percentile  # noqa: E402

R: dict = {"mode": "class"}


def local_enter(obj) -> None:
    """Run the app's @modal.enter hook (vLLM loads: the cold start). Modal's .local() runs enter hooks for
    synchronous methods only, so the web method (synchronous: it builds the ASGI app) is called once."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*executing locally.*")
        getattr(obj, mod_web()).local()


def mod_web() -> str:
    return os.environ.get("KIT_WEB_METHOD", "web")


async def call(obj, i: int, schema: dict) -> dict:
    t = time.perf_counter()
    body = await obj.generate.local(PROMPTS[i % len(PROMPTS)], schema=schema, max_tokens=MAX_TOKENS, temperature=TEMPERATURE)
    body["_latency_s"] = time.perf_counter() - t
    return body


def judged(bodies: list[dict], schema: dict) -> dict:
    kinds = [judge(b["text"], schema) for b in bodies]
    stopped = [k for k, b in zip(kinds, bodies, strict=True) if b["finish_reason"] == "stop"]
    return {
        "strict_json": sum(k[0] == "strict" for k in kinds),
        "control_chars_in_strings": sum(k[0] == "control_chars" for k in kinds),
        "invalid_json": sum(k[0] == "invalid" for k in kinds),
        "schema_valid": sum(bool(k[1]) for k in kinds),
        "stopped": len(stopped),
        "stopped_strict": sum(k[0] == "strict" for k in stopped),
        "n": len(kinds),
        "finish_reasons": {r: sum(b["finish_reason"] == r for b in bodies) for r in {b["finish_reason"] for b in bodies}},
        "problems": list(dict.fromkeys(k[2] for k in kinds if k[2]))[:3],
        "examples": [b["text"][:160] for b in bodies[:2]],
    }


async def sweep_point(obj, concurrency: int, n: int, schema: dict) -> dict:
    """n requests, `concurrency` in flight at any moment (as kit bench does), on the app's one event loop."""
    bodies: list = []
    todo = iter(range(n))

    async def worker() -> None:
        for i in todo:
            bodies.append(await call(obj, 8 + i, schema))

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    wall = time.perf_counter() - t0
    lat = [b["_latency_s"] for b in bodies]
    toks = sum(b["usage"]["completion_tokens"] for b in bodies)
    return {
        "concurrency": concurrency, "n": n, "wall_s": round(wall, 3), "output_tok_per_s": round(toks / wall, 1), "req_per_s": round(n / wall, 3),
        "p50_s": round(percentile(lat, 0.5), 3), "p95_s": round(percentile(lat, 0.95), 3), "max_s": round(max(lat), 3),
        "check": judged(bodies, schema),
    }


async def stage(name: str, coro) -> None:
    log("stage", name)
    try:
        R[name] = await coro
    except Exception as exc:  # noqa: BLE001 - keep going, record it
        R[name] = {"error": f"{type(exc).__name__}: {exc}"}
        traceback.print_exc()
    log(name, R[name])
    save("rendered_class.json", R)


# The sweep of kit bench (and of openai_mode.py): concurrency -> requests, max(8, 2 x concurrency).
SWEEP = {1: 8, 4: 8, 16: 32, 32: 64}


async def measure(obj) -> None:
    t0 = time.perf_counter()
    first = await call(obj, 63, SCHEMA)  # the first request after the engine is up (CUDA graphs, grammar compile)
    R["first_request_s"] = round(time.perf_counter() - t0, 2)
    log("first request", R["first_request_s"], "s; output tokens", first["usage"])
    for c, n in SWEEP.items():
        await stage(f"json_c{c}", sweep_point(obj, c, n, SCHEMA))
    await stage("json_bounded_c32", sweep_point(obj, 32, 64, SCHEMA_BOUNDED))
    await stage("json_bounded_c1", sweep_point(obj, 1, 4, SCHEMA_BOUNDED))


def main() -> None:
    bundle = Path(sys.argv[1])
    t0 = time.perf_counter()
    mod = import_app(bundle)
    R["import_s"] = round(time.perf_counter() - t0, 2)
    R["engine_kwargs"] = mod.ENGINE_KWARGS
    R["bundle"] = mod.manifest().get("bundle_hash")
    obj = mod.Inference()
    t0 = time.perf_counter()
    local_enter(obj)
    R["enter_s"] = round(time.perf_counter() - t0, 2)
    R["versions"] = versions()
    R["versions"]["modal"] = __import__("modal").__version__
    save("rendered_class.json", R)
    log("engine up", R["enter_s"], "s")
    asyncio.run(measure(obj))


if __name__ == "__main__":
    try:
        main()
    except Exception:  # noqa: BLE001
        traceback.print_exc()
        R["error"] = traceback.format_exc()[-2000:]
        save("rendered_class.json", R)
    finally:
        end_children()
        os._exit(0)  # vLLM's atexit handlers can hang; everything is saved
