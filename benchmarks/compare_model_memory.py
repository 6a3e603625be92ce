"""kit's memory arithmetic beside vLLM's own figures for the same configs on an H200.

vLLM 0.20.0 ran each config with dummy weights (benchmarks/gpu/model_memory.py; logs and numbers in
benchmarks/gpu/results/model_memory/). Here kit derives the same model's facts from the same
config.json (the test Hub's fixtures, tests/data/hub/) and compares:

  weights      kit's weight bytes (safetensors index total_size, or derived)   vs "Model loading took X GiB"
  KV tokens    vLLM's KV memory / kit's KV bytes per token                     vs "GPU KV cache size: N tokens"
  KV memory    0.9 x memory - weights - kit's 2 GiB overhead estimate          vs "Available KV cache memory: X GiB"

    python benchmarks/compare_model_memory.py     (writes benchmarks/results-model-memory.md)
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from kit import catalog  # noqa: E402
from kit.catalog import GIB  # noqa: E402
from kit.knowledge.model import derive  # noqa: E402

RESULTS = ROOT / "benchmarks" / "gpu" / "results" / "model_memory"
HUB = ROOT / "tests" / "data" / "hub"
# GPU run folder -> the fixture whose config.json it ran (same bytes), and what kind of model it is
RUNS = {
    "llama31-8b": ("meta-llama/Meta-Llama-3.1-8B", "dense, GQA 32/8"),
    "qwen3-30b-a3b": ("Qwen/Qwen3-30B-A3B", "MoE 128 experts, GQA 32/4"),
    "dsv2-lite": ("deepseek-ai/DeepSeek-V2-Lite-Chat", "MoE, MLA latent 512+64"),
    "gemma2-9b": ("google/gemma-2-9b-it", "dense, 21 of 42 layers sliding 4096"),
}


def pct(kit: float, vllm: float) -> str:
    return f"{(kit - vllm) / vllm * 100:+.2f}%"


def main() -> int:
    vllm = json.loads((RESULTS / "vllm_0.20.0_h200.json").read_text())
    manifest = {m["id"]: m for m in json.loads((HUB / "models.json").read_text())["models"]}
    h200 = catalog.gpus().find("H200")
    overhead = int(catalog.capabilities()["memory"]["activation_overhead_bytes"])
    rows, logs, worst = [], [], 0.0
    for run, (model_id, kind) in RUNS.items():
        v = vllm[run]
        m = manifest[model_id]
        files = {n: json.loads((HUB / rel).read_text()) for n, rel in m["files"].items()}
        facts = derive(files["config.json"], index=files.get("model.safetensors.index.json"), weight_file_bytes=(m["weights"] or {}).get("total_bytes"))
        util = v["gpu_memory_utilization"]
        assert v["device_total_bytes"] == h200.memory_bytes, "the H200 in kit/data/gpus.toml is the one measured"
        v_weights = float(v["weights"]) * GIB
        v_kv = float(v["kv_available"]) * GIB
        v_tokens = int(v["kv_tokens"].replace(",", ""))
        per_token = facts.kv_bytes_per_token()
        kit_tokens = int(v_kv // per_token)
        kit_kv = h200.memory_bytes * util - facts.weight_bytes - overhead
        v_conc = float(v["concurrency"][1])
        kit_conc = v_kv / facts.kv_bytes_for_sequence(v["max_model_len"])
        checks = [(facts.weight_bytes, v_weights), (kit_tokens, v_tokens), (kit_conc, v_conc)]
        worst = max(worst, *(abs(a - b) / b * 100 for a, b in checks))
        rows.append(
            f"| {model_id} ({kind}) | {facts.weight_bytes / GIB:.2f} | {float(v['weights']):.2f} | {pct(facts.weight_bytes, v_weights)} "
            f"| {per_token:,} | {kit_tokens:,} | {v_tokens:,} | {pct(kit_tokens, v_tokens)} | {kit_conc:.2f}x | {v_conc:.2f}x | {pct(kit_conc, v_conc)} "
            f"| {kit_kv / GIB:.2f} | {float(v['kv_available']):.2f} | {pct(kit_kv, v_kv)} |"
        )
        logs.append(f"### {model_id}: `{run}` (weights: {m['weights']['source'] if m['weights'] else 'unknown'})\n")
        logs += ["```", *v["lines"], "```", ""]
    text = "\n".join(
        [
            "# kit's model memory arithmetic against vLLM on an H200",
            "",
            "vLLM 0.20.0 (torch 2.11.0+cu130) on one NVIDIA H200 (150,109,880,320 bytes), `load_format=\"dummy\"`,",
            "`gpu_memory_utilization=0.90`, `max_model_len=4096`, `enforce_eager=True`, one engine per model, 2026-12-02",
            "(`benchmarks/gpu/model_memory.py`; full logs beside `benchmarks/gpu/results/model_memory/vllm_0.20.0_h200.json`).",
            "The configs are the test Hub's fixtures (tests/data/hub/models.json gives each one's provenance).",
            "Produced by `python benchmarks/compare_model_memory.py`.",
            "",
            "- **weights**: kit's weight bytes (the real safetensors index where one was found, else derived from the",
            "  config) against vLLM's `Model loading took X GiB` (rounded to 0.01 GiB by vLLM).",
            "- **KV tokens**: the KV memory vLLM reported, divided by kit's KV bytes per token (every attention layer),",
            "  against vLLM's `GPU KV cache size: N tokens`. This checks kit's per-architecture KV formula.",
            "- **sequences**: vLLM's KV memory divided by kit's KV bytes for one 4,096-token sequence",
            "  (`kv_bytes_for_sequence`, the figure of the one-sequence check) against vLLM's `Maximum concurrency`.",
            "- **KV memory**: kit's own estimate of what is left for the KV cache (0.9 x memory - weights - the 2 GiB",
            "  overhead of kit/data/capabilities.toml) against vLLM's measured `Available KV cache memory`.",
            "",
            "| model | kit weights GiB | vLLM weights GiB | diff | kit KV B/token | kit tokens | vLLM tokens | diff | kit 4096-token seqs | vLLM max concurrency | diff | kit KV GiB | vLLM KV GiB | diff |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
            *rows,
            "",
            f"Largest difference in weights, KV tokens and sequences: {worst:.2f}% (the bound is 5%).",
            "",
            "Not exercised here: a sequence longer than a sliding window (max_model_len 4,096 equals gemma-2's window, so",
            "the window cap changes nothing at this length), tensor parallelism (one GPU), and CUDA graphs (eager mode).",
            "kit's 2 GiB overhead estimate is below what vLLM left aside in eager mode (2.2-3.9 GiB here): it only",
            "decides the *margin* warnings, never an error, and the library's A10G profiles that run for real fit only with",
            "an overhead near 2 GiB, so it stays.",
            "",
            "For gemma-2 vLLM's reported token count divides the KV memory by the bytes of *every* layer (its",
            "hybrid allocator shares one pool between the sliding and the full layers); kit reports the same",
            "number, and for the one-sequence check it counts a sliding layer at most its 4,096-token window, as",
            "vLLM's `check_enough_kv_cache_memory` does (SlidingWindowSpec.max_memory_usage_bytes).",
            "",
            "## vLLM's log lines",
            "",
            *logs,
        ]
    )
    (ROOT / "benchmarks" / "results-model-memory.md").write_text(text + "\n", encoding="utf-8")
    print(text.split("## vLLM")[0])
    return 0 if worst <= 5 else 1


if __name__ == "__main__":
    sys.exit(main())
