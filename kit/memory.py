"""Weights and KV cache against GPU memory, in bytes: the arithmetic under `kit check`'s memory rules
and `kit diff`'s headroom, apart from the rules because it is a model of the hardware, not a rule.

Which facts describe the model (`model_facts`): those the profile states in [model.architecture]
(a private model), else those `kit lock` read from the checkpoint's own files into the lock, else
kit's small fallback catalog (data/models.toml).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from kit import catalog
from kit.catalog import GIB
from kit.knowledge.model import ModelFacts
from kit.load import LoadedProfile

SOURCE_STATED = "stated in the profile ([model.architecture])"
SOURCE_CATALOG = "kit's fallback catalog (kit/data/models.toml)"


@dataclass(frozen=True)
class ModelView:
    """The facts kit checks a profile's model against, and where they came from."""

    facts: ModelFacts
    source: str  # SOURCE_STATED, SOURCE_CATALOG, or "the lock (config.json at <commit>)"
    commit: str = ""


def _from_spec(spec: catalog.ModelSpec) -> ModelFacts:
    return ModelFacts(
        architecture=spec.architecture,
        model_type="",
        num_hidden_layers=spec.num_hidden_layers,
        num_attention_heads=spec.num_attention_heads,
        num_key_value_heads=spec.num_key_value_heads,
        head_dim=spec.head_dim,
        max_position_embeddings=spec.max_position_embeddings,
        torch_dtype=spec.torch_dtype,
        quantization=spec.quantization,
        fp8_block=spec.fp8_block,
        weight_bytes=spec.weight_bytes,
        weight_source="kit/data/models.toml",
        min_vllm=spec.min_vllm,
    )


def _from_stated(arch: Any) -> ModelFacts:
    return ModelFacts(
        architecture=arch.architecture or "",
        model_type="",
        num_hidden_layers=arch.num_hidden_layers,
        num_attention_heads=arch.num_attention_heads,
        num_key_value_heads=arch.num_key_value_heads,
        head_dim=arch.head_dim,
        max_position_embeddings=arch.max_position_embeddings,
        torch_dtype=arch.torch_dtype,
        quantization=arch.quantization or "",
        weight_bytes=arch.weight_bytes,
        weight_source="stated in the profile",
        attention="mla" if arch.kv_lora_rank else "gqa",
        kv_lora_rank=arch.kv_lora_rank or 0,
        qk_rope_head_dim=arch.qk_rope_head_dim or 0,
        attention_layers=arch.attention_layers or 0,
        sliding_window=arch.sliding_window or 0,
        sliding_layers=arch.sliding_window_layers or 0,
    )


def model_facts(loaded: LoadedProfile) -> tuple[ModelView | None, str | None]:
    """The model's facts for the checks, and a note when the lock's facts could not be used."""
    from kit import lockfile

    p = loaded.profile
    if p.model.architecture is not None:
        return ModelView(_from_stated(p.model.architecture), SOURCE_STATED), None
    section, note = lockfile.model_section(loaded)
    if section:
        record = {k[len("facts.") :]: v for k, v in section.items() if k.startswith("facts.")}
        try:
            facts = ModelFacts.from_record(record)
        except (TypeError, ValueError) as exc:
            note = f"the lock's model section cannot be read ({exc}); run `kit lock`"
        else:
            commit = section.get("commit", "")
            return ModelView(facts, f"the lock (config.json of {p.model.id} at {commit[:12]})", commit), None
    spec = catalog.find_model(p.model.id)
    if spec is not None:
        return ModelView(_from_spec(spec), SOURCE_CATALOG), note
    return None, note


@dataclass
class MemoryFit:
    """How a profile's model fits its GPUs: all figures in bytes, totals over gpu.count."""

    gpu: Any
    tp: int
    util: float
    overhead: int  # per GPU, assumed (data/capabilities.toml [memory])
    weights: int
    budget: int  # what the engine may use for weights + KV: util x memory - overhead, summed over GPUs
    per_token: int  # KV bytes per token, every attention layer, summed over GPUs
    max_len: int  # tokens one sequence may take (max_model_len, or the model's context)
    kv_needed: int  # KV bytes one max_len sequence needs, summed over GPUs (sliding windows counted as such)
    limit: int  # util x memory summed over GPUs: above it nothing can fit, whatever the overhead

    @property
    def kv_budget(self) -> int:
        return self.budget - self.weights

    @property
    def weights_fit(self) -> bool:
        return self.weights <= self.budget

    @property
    def weights_surely_exceed(self) -> bool:
        """The weights alone exceed util x memory: no overhead assumption is needed to say it fails."""
        return self.weights > self.limit

    @property
    def kv_fits(self) -> bool:
        return self.kv_needed <= self.kv_budget

    @property
    def kv_surely_exceeds(self) -> bool:
        return self.weights + self.kv_needed > self.limit

    @property
    def max_tokens(self) -> int:
        """Tokens of KV cache that fit: the most one sequence can take, or the sum over concurrent ones."""
        return max(self.kv_budget, 0) // max(self.per_token, 1)

    @property
    def headroom(self) -> int:
        """Bytes left after the weights and one full-length sequence (negative: does not fit)."""
        return self.kv_budget - self.kv_needed


def _weight_bytes(loaded: LoadedProfile, facts: ModelFacts) -> int:
    p = loaded.profile
    weights = int(facts.weight_bytes)
    native = facts.torch_dtype
    quant = (p.model.quantization or "").lower()
    # Online FP8 quantization of a 16-bit checkpoint halves the weights (vLLM `quantization="fp8"`).
    if quant == "fp8" and not facts.quantization and native in ("bfloat16", "float16"):
        weights //= 2
    elif p.model.dtype == "float32" and native in ("bfloat16", "float16") and not facts.quantization:
        weights *= 2
    return weights


def memory_fit(loaded: LoadedProfile, gpu: catalog.GpuSpec | None = None, view: ModelView | None = None) -> MemoryFit | None:
    """Weights and KV cache against GPU memory (the profile's GPU type, or `gpu` in its place, same
    count); None when the model's facts, its weight bytes, or the GPU are unknown."""
    p = loaded.profile
    if view is None:
        view, _ = model_facts(loaded)
    gpu = gpu or catalog.gpus().find(p.gpu.type)
    if view is None or gpu is None or not view.facts.weight_bytes:
        return None
    facts = view.facts
    tp = p.tensor_parallel_size
    util = p.engine.gpu_memory_utilization
    overhead = int(catalog.capabilities().get("memory", {}).get("activation_overhead_bytes", 2 * GIB))
    kv_dtype_bytes = 1 if p.engine.kv_cache_dtype.startswith("fp8") else 2
    max_len = p.model.max_model_len or facts.max_position_embeddings
    return MemoryFit(
        gpu=gpu,
        tp=tp,
        util=util,
        overhead=overhead,
        weights=_weight_bytes(loaded, facts),
        budget=int((gpu.memory_bytes * util - overhead) * tp),
        per_token=facts.kv_bytes_per_token(tp, kv_dtype_bytes) * tp,
        max_len=max_len,
        kv_needed=facts.kv_bytes_for_sequence(max_len, tp, kv_dtype_bytes) * tp,
        limit=int(gpu.memory_bytes * util * tp),
    )
