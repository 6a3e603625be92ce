"""vLLM's own memory figures for real model configs, with dummy weights (runs on the GPU machine).

For each model folder (a real config.json + a tiny tokenizer), one engine starts in its own process
with load_format="dummy" (random weights of the real architecture, no download), and the log lines
that say how much memory the weights took and how many KV-cache tokens fit are kept verbatim.
benchmarks/compare_model_memory.py sets them beside kit's own numbers for the same configs.

    python benchmarks/gpu/model_memory.py OUT_DIR MODEL_DIR [MODEL_DIR ...]
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time

PATTERNS = {
    "weights": re.compile(r"Model loading took ([\d.]+) GiB"),
    "kv_available": re.compile(r"Available KV cache memory: ([\d.]+) GiB"),
    "kv_tokens": re.compile(r"GPU KV cache size: ([\d,]+) tokens"),
    "concurrency": re.compile(r"Maximum concurrency for ([\d,]+) tokens per request: ([\d.]+)x"),
}
CHILD = """
import sys, torch
from vllm import LLM
free, total = torch.cuda.mem_get_info()
print(f"[kit-gpu] device total bytes {total}", flush=True)
llm = LLM(model=sys.argv[1], load_format="dummy", max_model_len=int(sys.argv[2]),
          gpu_memory_utilization=float(sys.argv[3]), enforce_eager=True, tensor_parallel_size=1)
print("[kit-gpu] engine up", flush=True)
"""
MAX_LEN = 4096  # the tiny tokenizer's model_max_length caps vLLM's derived maximum
UTIL = 0.90


def main() -> int:
    out, models = sys.argv[1], sys.argv[2:]
    results = {}
    for model in models:
        name = os.path.basename(model.rstrip("/"))
        started = time.time()
        try:
            proc = subprocess.run(
                [sys.executable, "-c", CHILD, model, str(MAX_LEN), str(UTIL)],
                capture_output=True, text=True, timeout=int(os.environ.get("PER_MODEL_TIMEOUT", "150")),
            )
            log, rc = proc.stdout + proc.stderr, proc.returncode
        except subprocess.TimeoutExpired as exc:
            parts = [exc.stdout or "", exc.stderr or ""]
            log = "".join(x.decode(errors="replace") if isinstance(x, bytes) else x for x in parts)
            rc = "timeout"
        with open(os.path.join(out, f"{name}.log"), "w") as fh:
            fh.write(log)
        lines = [ln for ln in log.splitlines() if any(p.search(ln) for p in PATTERNS.values()) or "[kit-gpu]" in ln]
        entry: dict = {"rc": rc, "seconds": round(time.time() - started, 1), "lines": lines, "max_model_len": MAX_LEN, "gpu_memory_utilization": UTIL}
        for key, pat in PATTERNS.items():
            m = next((pat.search(ln) for ln in lines if pat.search(ln)), None)
            if m:
                entry[key] = m.group(1) if key != "concurrency" else [m.group(1), m.group(2)]
        total = next((ln.split()[-1] for ln in lines if "device total bytes" in ln), None)
        entry["device_total_bytes"] = int(total) if total else None
        if rc != 0:
            entry["tail"] = log.splitlines()[-25:]
        results[name] = entry
        print(name, json.dumps({k: v for k, v in entry.items() if k != "tail"}), flush=True)
        with open(os.path.join(out, "model_memory.json"), "w") as fh:
            json.dump(results, fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
