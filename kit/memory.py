"""Weights and KV cache against GPU memory, in bytes: the arithmetic under `kit check`'s memory rules
and `kit diff`'s headroom, apart from the rules because it is a model of the hardware, not a rule."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from kit import catalog
from kit.catalog import GIB
from kit.load import LoadedProfile


@dataclass
class MemoryFit:
    """How a profile's model fits its GPUs: all figures in bytes, totals over gpu.count."""

    gpu: Any
    tp: int
    util: float
    overhead: int  # per GPU, assumed (data/capabilities.toml [memory])
    weights: int
    budget: int  # what the engine may use for weights + KV: util x memory - overhead, summed over GPUs
    per_token: int  # KV bytes per token
    max_len: int  # tokens one sequence may take (max_model_len, or the model's context)

    @property
    def kv_needed(self) -> int:
        return self.per_token * self.max_len

    @property
    def kv_budget(self) -> int:
        return self.budget - self.weights

    @property
    def weights_fit(self) -> bool:
        return self.weights <= self.budget

    @property
    def kv_fits(self) -> bool:
        return self.kv_needed <= self.kv_budget

    @property
    def max_tokens(self) -> int:
        """Tokens of KV cache that fit: the most one sequence can take, or the sum over concurrent ones."""
        return max(self.kv_budget, 0) // self.per_token

    @property
    def headroom(self) -> int:
        """Bytes left after the weights and one full-length sequence (negative: does not fit)."""
        return self.kv_budget - self.kv_needed


def _weight_bytes(loaded: LoadedProfile, arch: Any) -> int:
    p = loaded.profile
    weights = int(arch.weight_bytes)
    native = getattr(arch, "torch_dtype", "bfloat16")
    ckpt_quant = getattr(arch, "quantization", "")
    quant = (p.model.quantization or "").lower()
    # Online FP8 quantization of a 16-bit checkpoint halves the weights (vLLM `quantization="fp8"`).
    if quant == "fp8" and not ckpt_quant and native in ("bfloat16", "float16"):
        weights //= 2
    elif p.model.dtype == "float32" and native in ("bfloat16", "float16") and not ckpt_quant:
        weights *= 2
    return weights


def memory_fit(loaded: LoadedProfile, gpu: catalog.GpuSpec | None = None) -> MemoryFit | None:
    """Weights and KV cache against GPU memory (the profile's GPU type, or `gpu` in its place, same
    count); None when the model or GPU is unknown to the catalogs."""
    p = loaded.profile
    arch = p.model.architecture or catalog.find_model(p.model.id)
    gpu = gpu or catalog.gpus().find(p.gpu.type)
    if arch is None or gpu is None:
        return None
    tp = p.tensor_parallel_size
    util = p.engine.gpu_memory_utilization
    overhead = int(catalog.capabilities().get("memory", {}).get("activation_overhead_bytes", 2 * GIB))
    kv_dtype_bytes = 1 if p.engine.kv_cache_dtype.startswith("fp8") else 2
    return MemoryFit(
        gpu=gpu,
        tp=tp,
        util=util,
        overhead=overhead,
        weights=_weight_bytes(loaded, arch),
        budget=int((gpu.memory_bytes * util - overhead) * tp),
        per_token=2 * arch.num_hidden_layers * arch.num_key_value_heads * arch.head_dim * kv_dtype_bytes,
        max_len=p.model.max_model_len or arch.max_position_embeddings,
    )
