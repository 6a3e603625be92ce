"""The rendered app in class mode, in-process: Modal's `.local()` runs the app's own @modal.enter hook
(which loads vLLM) and its `generate` method, one request at a time and 32 at once (threads).

    python3 benchmarks/gpu/class_mode.py .gpu/kit/class      (see run.sh for the environment)
"""

from __future__ import annotations

import os
import sys
import threading
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import MAX_TOKENS, PROMPTS, SCHEMA, SCHEMA_BOUNDED, TEMPERATURE, end_children, import_app, log, save, versions  # noqa: E402

from kit.bench import judge, percentile  # noqa: E402

R: dict = {"mode": "class"}


def call(obj, i: int, schema: dict) -> dict:
    t = time.perf_counter()
    body = obj.generate.local(PROMPTS[i % len(PROMPTS)], schema=schema, max_tokens=MAX_TOKENS, temperature=TEMPERATURE)
    body["_latency_s"] = time.perf_counter() - t
    return body


def judged(bodies: list[dict], schema: dict) -> dict:
    kinds = [judge(b["text"], schema) for b in bodies]
    return {
        "strict_json": sum(k[0] == "strict" for k in kinds),
        "control_chars_in_strings": sum(k[0] == "control_chars" for k in kinds),
        "invalid_json": sum(k[0] == "invalid" for k in kinds),
        "schema_valid": sum(bool(k[1]) for k in kinds),
        "n": len(kinds),
        "finish_reasons": {r: sum(b["finish_reason"] == r for b in bodies) for r in {b["finish_reason"] for b in bodies}},
        "problems": list(dict.fromkeys(k[2] for k in kinds if k[2]))[:3],
        "examples": [b["text"][:160] for b in bodies[:2]],
    }


def sequential(obj, n: int, schema: dict) -> dict:
    bodies = [call(obj, i, schema) for i in range(n)]
    lat = [b["_latency_s"] for b in bodies]
    toks = [b["usage"]["completion_tokens"] for b in bodies]
    return {
        "n": n,
        "latency_s": [round(x, 3) for x in lat],
        "output_tokens": toks,
        "mean_tok_per_s": round(sum(toks) / sum(lat), 1),
        "req_per_s": round(n / sum(lat), 3),
        "p50_s": round(percentile(lat, 0.5), 3),
        "p95_s": round(percentile(lat, 0.95), 3),
        "check": judged(bodies, schema),
    }


def concurrent(obj, n: int, schema: dict) -> dict:
    bodies: list = [None] * n
    gate = threading.Barrier(n + 1)

    def work(i: int) -> None:
        gate.wait()
        bodies[i] = call(obj, 8 + i, schema)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    gate.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    lat = [b["_latency_s"] for b in bodies]
    toks = sum(b["usage"]["completion_tokens"] for b in bodies)
    return {
        "n": n, "threads": n, "wall_s": round(wall, 3), "output_tok_per_s": round(toks / wall, 1), "req_per_s": round(n / wall, 3),
        "p50_s": round(percentile(lat, 0.5), 3), "p95_s": round(percentile(lat, 0.95), 3), "max_s": round(max(lat), 3),
        "check": judged(bodies, schema),
    }


def stage(name: str, fn, *args) -> None:
    log("stage", name)
    try:
        R[name] = fn(*args)
    except Exception as exc:  # noqa: BLE001 - keep going, record it
        R[name] = {"error": f"{type(exc).__name__}: {exc}"}
        traceback.print_exc()
    log(name, R[name])
    save("rendered_class.json", R)


def main() -> None:
    bundle = Path(sys.argv[1])
    t0 = time.perf_counter()
    mod = import_app(bundle)
    R["import_s"] = round(time.perf_counter() - t0, 2)
    R["engine_kwargs"] = mod.ENGINE_KWARGS
    R["bundle"] = mod.manifest().get("bundle_hash")
    obj = mod.Inference()
    t0 = time.perf_counter()
    # The first .local() call runs the @modal.enter hook (vLLM loads: the cold start) and one request.
    first = call(obj, 63, SCHEMA)
    R["enter_and_first_request_s"] = round(time.perf_counter() - t0, 2)
    R["versions"] = versions()
    R["versions"]["modal"] = __import__("modal").__version__
    save("rendered_class.json", R)
    log("engine up", R["enter_and_first_request_s"], "s; first output tokens", first["usage"])
    stage("json_sequential", sequential, obj, 8, SCHEMA)
    stage("json_concurrent32", concurrent, obj, 32, SCHEMA)
    stage("json_bounded_sequential", sequential, obj, 8, SCHEMA_BOUNDED)
    stage("json_bounded_concurrent32", concurrent, obj, 32, SCHEMA_BOUNDED)


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
