"""Structured-output backends and settings on raw vLLM, with a real-size vocabulary (one engine per run).

    python3 benchmarks/gpu/so_sweep.py MODEL_DIR BACKEND WHITESPACE      (WHITESPACE: any | compact)

MODEL_DIR is the Qwen2.5-7B shape with the 151,646-token tokenizer of ../shared/gpu/train_tokenizer.py
(dummy weights). One engine per process, configured as kit renders it: structured_outputs_config
{"backend": BACKEND, "disable_any_whitespace": WHITESPACE == "compact"}, FLASH_ATTN, vLLM's defaults
otherwise (async scheduling is on by default in 0.20.0). Measured, each as tok/s over wall time:
  free     unconstrained, ignore_eos, 256 tokens: the reference
  long     a schema whose string cannot end within 256 tokens (minLength 2000): the per-step cost of the
           constraint over the full 256 tokens (../shared/gpu/so_backends.py's shape)
  obj      bench.py's schema with unbounded strings: a realistic shape, requests end when the model closes it
  ir       profiles/schemas/ir-v1.json (the library profile's schema: enums, patterns, bounded strings)
  bounded  strings of at most 12 characters: every output should end well inside 256 tokens; strict JSON
  pattern  (xgrammar only) the bounded schema with its strings as a pattern that excludes control characters
at 32 together and 1 at a time. Writes $OUT/so_<BACKEND>_<WHITESPACE>.json.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("VLLM_USE_FLASHINFER_SAMPLER", "0")
os.environ.setdefault("VLLM_NO_USAGE_STATS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

sys.path.insert(0, str(Path(__file__).parent))
from common import SCHEMA, SCHEMA_BOUNDED, end_children  # noqa: E402

MODEL, BACKEND, WHITESPACE = sys.argv[1], sys.argv[2], sys.argv[3]
OUT = Path(os.environ.get("OUT") or ".")
TAG = f"{BACKEND}_{WHITESPACE}"
R: dict = {"backend": BACKEND, "whitespace": WHITESPACE}
LONG = {
    "type": "object",
    "properties": {"name": {"type": "string", "minLength": 2000}, "steps": {"type": "array", "items": {"type": "string"}}, "count": {"type": "integer"}},
    "required": ["name", "steps", "count"],
}
IR = json.loads((Path(__file__).resolve().parents[2] / "profiles" / "schemas" / "ir-v1.json").read_text())
NO_CONTROL = '^[^\\x00-\\x1f"\\\\]{0,12}$'
PATTERN = json.loads(json.dumps(SCHEMA_BOUNDED))
PATTERN["properties"]["name"] = {"type": "string", "pattern": NO_CONTROL}
PATTERN["properties"]["steps"]["items"] = {"type": "string", "pattern": NO_CONTROL}
SCHEMAS = {"long": LONG, "obj": SCHEMA, "ir": IR, "bounded": SCHEMA_BOUNDED, "pattern": PATTERN}
PROMPTS = [f"Request {i}: return a JSON object with a task name, its steps and their count. Task {i}." for i in range(64)]


def log(*a: object) -> None:
    print(f"[so {TAG}]", *a, flush=True)


def save() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / f"so_{TAG}.json").write_text(json.dumps(R, indent=1) + "\n")


t0 = time.perf_counter()
from vllm import LLM, SamplingParams  # noqa: E402
from vllm.sampling_params import StructuredOutputsParams  # noqa: E402

llm = LLM(
    model=MODEL,
    load_format="dummy",
    dtype="bfloat16",
    max_model_len=4096,
    gpu_memory_utilization=0.85,
    attention_config={"backend": "FLASH_ATTN"},
    structured_outputs_config={"backend": BACKEND, **({"disable_any_whitespace": True} if WHITESPACE == "compact" else {})},
    seed=0,
)
R["engine_start_s"] = round(time.perf_counter() - t0, 1)
R["vocab"] = len(llm.get_tokenizer())
log("engine up", R["engine_start_s"], "s, vocabulary", R["vocab"])


def sp(kind: str) -> SamplingParams:
    if kind == "free":
        return SamplingParams(max_tokens=256, temperature=1.0, ignore_eos=True)
    return SamplingParams(max_tokens=256, temperature=1.0, structured_outputs=StructuredOutputsParams(json=SCHEMAS[kind]))


def strictness(outs) -> dict:
    strict = ctrl = stopped = stopped_strict = 0
    for o in outs:
        c = o.outputs[0]
        ok = True
        try:
            json.loads(c.text)  # strict=True: raw control characters inside strings are refused
        except ValueError:
            ok = False
        strict += ok
        ctrl += any(ord(ch) < 32 and ch not in "\n\r\t " for ch in c.text)
        if c.finish_reason == "stop":
            stopped += 1
            stopped_strict += ok
    return {"strict_json": strict, "with_control_chars": ctrl, "stopped": stopped, "stopped_strict": stopped_strict}


def run(kind: str, n: int, offset: int = 0) -> dict:
    t = time.perf_counter()
    outs = llm.generate(PROMPTS[offset : offset + n], sp(kind), use_tqdm=False)
    wall = time.perf_counter() - t
    toks = [len(o.outputs[0].token_ids) for o in outs]
    r = {"n": n, "wall_s": round(wall, 3), "tokens": sum(toks), "min_max_tokens": [min(toks), max(toks)], "tok_s": round(sum(toks) / wall, 1), "req_s": round(n / wall, 2)}
    if kind != "free":
        r.update(strictness(outs))
        r["example"] = outs[0].outputs[0].text[:120]
    return r


def stage(name: str, kind: str, n: int, offset: int = 0) -> None:
    try:
        R[name] = run(kind, n, offset)
    except Exception as exc:  # noqa: BLE001 - record it, carry on with the next measurement
        R[name] = {"error": f"{type(exc).__name__}: {exc}"[:600]}
    log(name, json.dumps(R[name]))
    save()


def main() -> None:
    # outlines compiles a regex of the whole schema over the vocabulary: minLength 2000 is left out there.
    kinds = (["long"] if BACKEND != "outlines" else []) + ["obj", "ir", "bounded"] + (["pattern"] if BACKEND == "xgrammar" else [])
    stage("warm_free", "free", 4)
    for kind in kinds:
        stage(f"warm_{kind}", kind, 4, 60)  # grammar compilation, first use of each shape
    for rep in range(2):
        stage(f"free32_{rep}", "free", 32)
    if "long" in kinds:
        stage("long32", "long", 32)
    stage("obj32", "obj", 32, 8)
    stage("ir32", "ir", 32, 8)
    stage("bounded32", "bounded", 32, 16)
    if "pattern" in kinds:
        stage("pattern32", "pattern", 32, 16)
    for rep in range(2):
        for kind in ("free", *[k for k in ("long", "obj") if k in kinds]):
            stage(f"{kind}1_{rep}", kind, 1, 3 + rep)
    R["done"] = True
    save()
    log("DONE")


try:
    main()
finally:
    end_children()  # vLLM's engine core process, by its id: the next configuration needs the GPU's memory
    os._exit(0)  # vLLM's atexit handlers can hang; everything is saved
