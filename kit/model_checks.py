"""The computed rules about the model on its GPUs: tensor parallelism against head counts, dtype and
quantization against compute capability, architecture against the engine's registry, weights and KV
cache against memory, max_model_len against the model's context. Text and sources of each rule are in
kit/data/rules/computed.toml; kit/check.py runs these beside its other computed rules.

Severity follows what kit knows: an error only where the numbers say the engine will refuse (the
weights alone, or weights + one max_model_len sequence, above gpu_memory_utilization x memory with
no allowance for activations); a warning where it fails only once kit's estimated overhead is counted;
info where kit lacks the facts.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from packaging.version import Version

from kit import catalog
from kit.catalog import GIB
from kit.memory import SOURCE_CATALOG, MemoryFit, memory_fit, model_facts

if TYPE_CHECKING:
    from kit.check import _Computed

_HEX40 = frozenset("0123456789abcdef")
# engine.args keys that change the model's context as vLLM derives it (rope scaling overrides).
CONTEXT_OVERRIDES = ("hf_overrides", "rope_scaling", "rope_theta")


def _round_down(n: float) -> int:
    """A friendly bound: two significant figures, rounded down (42,052 -> 42,000)."""
    if n < 100:
        return max(int(n), 0)
    digits = len(str(int(n))) - 2
    return int(n // 10**digits * 10**digits)


def engine_release(engine: str, version: Version | None) -> Any:
    """The pinned engine release's facts from kit's knowledge store (kit.knowledge.engines: the model
    registry and each quantization method's minimum compute capability, read from the release's own
    source); None when kit has none for it."""
    if version is None:
        return None
    from kit.knowledge.engines import engine_facts

    return engine_facts(engine, str(version))  # None for a release the store has no source of


def _source(release: Any, fact: str) -> str:
    try:
        return str(release.source_of(fact))
    except Exception:  # noqa: BLE001
        return f"{getattr(release, 'engine', '')}=={getattr(release, 'version', '')}"


# vLLM registry tables (vllm/model_executor/models/registry.py) whose models generate text; the others
# (embedding, classification, late interaction, reward, speculative drafts) are pooling or helper models.
GENERATIVE_KINDS = frozenset({"text_generation", "multimodal", "transformers_backend", "transformers_supported", "oot_supported"})


def quant_method_name(method: str, detail: str) -> str:
    """The engine's name for a checkpoint's quantization (vLLM get_name): ModelOpt NVFP4 is modelopt_fp4."""
    if method == "modelopt" and "FP4" in detail.upper():
        return "modelopt_fp4"
    return method


class ModelChecks:
    def __init__(self, computed: _Computed):
        self.c = computed
        self.p = computed.p
        self.gpu = computed.gpu
        self.view, self.note = model_facts(computed.loaded)
        self.model = self.view.facts if self.view else None

    def emit(self, rule: str, keys: list[str] | None = None, **values: Any) -> None:
        self.c.emit(rule, keys=keys, **values)

    def run(self) -> None:
        self.revision()
        self.tensor_parallel()
        self.dtype()
        self.quantization()
        self.registry()
        self.memory()

    # -- the model's identity ------------------------------------------------------------------

    def revision(self) -> None:
        rev = self.p.model.revision
        pinned = rev is not None and len(rev) == 40 and set(rev) <= _HEX40
        # No revision at all is kit's long-standing default (the engine loads main); a branch or tag the
        # profile names is pinned once `kit lock` records its commit.
        if rev is not None and not pinned and not (self.view and self.view.commit):
            self.emit("model-revision-unpinned", revision=rev)
        if self.note:
            self.emit("model-facts-not-locked", note=self.note)

    def registry(self) -> None:
        if self.model is None or not self.model.architecture:
            return
        pkg = "vllm" if self.p.engine.name == "vllm" else "sglang"
        version = self.p.version(pkg)
        release = engine_release(self.p.engine.name, version)
        archs = getattr(release, "architectures", None) if release is not None else None
        arch = self.model.architecture
        if archs:
            if arch not in archs:
                self.emit("model-not-in-registry", architecture=arch, package=pkg, version=str(version), source=_source(release, "architectures"))
                return
            kinds = tuple(getattr(release, "architecture_kinds", {}).get(arch, ()))
            if kinds and not set(kinds) & GENERATIVE_KINDS:
                self.emit("model-kind-not-generative", architecture=arch, package=pkg, version=str(version), kinds=", ".join(kinds), source=_source(release, "architectures"))
            return
        if self.model.min_vllm and self.p.engine.name == "vllm":
            vllm = self.c.facts.packages.get("vllm")
            if vllm is not None and vllm < Version(self.model.min_vllm):
                self.emit("model-needs-newer-vllm", architecture=arch, min_vllm=self.model.min_vllm)
                return
        if version is not None and self.view is not None and self.view.source != SOURCE_CATALOG:
            self.emit("model-registry-unknown", architecture=arch, package=pkg, version=str(version))

    # -- parallelism ---------------------------------------------------------------------------

    def tensor_parallel(self) -> None:
        tp = self.p.tensor_parallel_size
        if tp > self.p.gpu.count:
            self.emit("tp-exceeds-gpus", tp=tp, count=self.p.gpu.count)
        m = self.model
        if m is None:
            return
        if m.num_attention_heads % tp:
            self.emit("tp-heads-indivisible", tp=tp, heads=m.num_attention_heads)
            return
        kv = m.num_key_value_heads
        if m.attention != "mla" and tp > 1 and (kv % tp if kv >= tp else tp % kv):
            self.emit("tp-kv-heads-indivisible", tp=tp, kv_heads=kv)

    # -- dtype and quantization ----------------------------------------------------------------

    def dtype(self) -> None:
        if not self.gpu:
            return
        cap = catalog.capabilities().get("bf16", {})
        min_cc = Version(str(cap.get("min_compute_capability", "8.0")))
        if self.gpu.compute_capability >= min_cc:
            return
        cc = str(self.gpu.compute_capability)
        native = self.model.torch_dtype if self.model else ""
        if self.p.model.dtype == "bfloat16":
            self.emit("gpu-bf16-unsupported", cc=cc, min_cc=str(min_cc))
        elif self.p.model.dtype == "auto" and native == "bfloat16":
            self.emit("gpu-bf16-auto", cc=cc, min_cc=str(min_cc))

    def quantization(self) -> None:
        if not self.gpu:
            return
        m = self.model
        quant = (self.p.model.quantization or (m.quantization if m else "") or "").lower()
        if not quant:
            return
        if quant != "fp8":
            self._quantization_from_release(quant, (m.quant_detail if m else "") or quant)
            return
        self._fp8()

    def _fp8(self) -> None:
        """FP8 weights against the GPU: the least capability is per engine and per release, read from the
        release's own Fp8Config.get_min_capability (kit.release_facts: the engine store, else sdist rows)."""
        from kit import release_facts

        m = self.model
        engine = self.p.engine.name
        pkg = "vllm" if engine == "vllm" else "sglang"
        version = self.p.version(pkg)
        if version is None:  # unpinned: engine-not-pinned says so
            return
        caps = catalog.capabilities()
        native = Version(str(caps["fp8_w8a8"]["min_compute_capability"]))
        cc = self.gpu.compute_capability
        floor = release_facts.fp8_min_capability(engine, version)
        if floor is not None and cc < floor.value:  # checked first: vLLM 0.4.1's floor (9.0) is above native FP8
            self.emit("gpu-fp8-unsupported", cc=str(cc), min_cc=str(floor.value), package=pkg, version=str(version), fact=floor.source)
            return
        if cc >= native:
            return
        if floor is None:
            self.emit("gpu-fp8-unverified", package=pkg, version=str(version), cc=str(cc))
            return
        # Between the release's floor and native FP8: weight-only paths, which block-wise and MoE FP8 lack
        # (SGLang has none for them; vLLM's Marlin gained both in fp8_block_marlin.min_vllm).
        block_or_moe = bool(m and (m.fp8_block or getattr(m, "num_experts", 0)))
        if engine == "sglang":
            if block_or_moe:
                self.emit("gpu-fp8-sglang-no-marlin", cc=str(cc), native_cc=str(native))
            return
        min_vllm = Version(str(caps["fp8_block_marlin"]["min_vllm"]))
        if block_or_moe and version < min_vllm:
            self.emit("gpu-fp8-marlin-too-old", cc=str(cc), min_vllm=str(min_vllm))
        else:
            self.emit("gpu-fp8-weight-only", cc=str(cc), native_cc=str(native))

    def _quantization_from_release(self, quant: str, detail: str) -> None:
        """A method's minimum compute capability as the pinned release's own source declares it."""
        pkg = "vllm" if self.p.engine.name == "vllm" else "sglang"
        version = self.p.version(pkg)
        release = engine_release(self.p.engine.name, version) if self.p.engine.name == "vllm" else None
        mins = getattr(release, "quant_min_capability", None) or {}
        name = quant_method_name(quant, detail)
        need = mins.get(name)
        if need is None:
            self.emit("quantization-capability-unknown", method=quant, detail=detail)
            return
        cc = self.gpu.compute_capability
        have = cc.major * 10 + cc.minor
        if have < int(need):
            self.emit(
                "gpu-quantization-unsupported",
                method=name,
                package=pkg,
                version=str(version),
                min_cc=f"{int(need) // 10}.{int(need) % 10}",
                need=str(need),
                have=str(have),
                cc=str(cc),
                source=_source(release, "quant_min_capability"),
            )

    # -- memory and context --------------------------------------------------------------------

    def memory(self) -> None:
        m = self.model
        if m is None:
            self.emit("model-unknown", model=self.p.model.id)
            return
        self.context()
        fit = memory_fit(self.c.loaded, view=self.view)
        if fit is None:
            if not m.weight_bytes:
                self.emit("model-weights-unknown", model=self.p.model.id, source=self.view.source)
            return
        gpus = f"{self.p.gpu.count}x {fit.gpu.name}" if self.p.gpu.count > 1 else fit.gpu.name
        values = dict(
            weights_gib=f"{fit.weights / GIB:.1f}",
            gpus=gpus,
            budget_gib=f"{fit.budget / GIB:.1f}",
            limit_gib=f"{fit.limit / GIB:.1f}",
            util=f"{fit.util:.2f}",
            overhead_gib=f"{fit.overhead / GIB:.1f}",
            source=self.view.source,
        )
        if not fit.weights_fit:
            self.emit("gpu-memory-weights" if fit.weights_surely_exceed else "gpu-memory-weights-margin", **values)
            return
        if not fit.kv_fits:
            values["bigger"] = self._bigger_gpu()
            self.emit(
                "gpu-memory-kv-cache" if fit.kv_surely_exceeds else "gpu-memory-kv-cache-margin",
                keys=["model.max_model_len", "gpu.type"],
                kv_gib=f"{fit.kv_needed / GIB:.1f}",
                tokens=f"{fit.max_len}",
                per_token_kib=f"{fit.per_token / 1024:.0f}",
                fits=f"{_round_down(self._fitting_len(fit))}",
                formula=m.kv_formula,
                **values,
            )

    def context(self) -> None:
        m = self.model
        wanted = self.p.model.max_model_len
        if m is None or wanted is None or wanted <= m.max_position_embeddings:
            return
        overridden = any(k in self.p.engine.args for k in CONTEXT_OVERRIDES)
        allowed = self.p.image.env.get("VLLM_ALLOW_LONG_MAX_MODEL_LEN", "") not in ("", "0")
        certain = self.p.engine.name == "vllm" and not overridden and not allowed and self.view.source != SOURCE_CATALOG
        self.emit(
            "model-len-exceeds-context" if certain else "model-len-exceeds-context-maybe",
            tokens=str(wanted),
            context=str(m.max_position_embeddings),
            derived=m.context_note or "max_position_embeddings",
            source=self.view.source,
        )

    def _fitting_len(self, fit: MemoryFit) -> int:
        """The longest single sequence whose KV cache fits beside the weights (sliding windows counted)."""
        lo, hi = 0, fit.max_len
        kv_dtype = 1 if self.p.engine.kv_cache_dtype.startswith("fp8") else 2
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if self.model.kv_bytes_for_sequence(mid, fit.tp, kv_dtype) * fit.tp <= fit.kv_budget:
                lo = mid
            else:
                hi = mid - 1
        return lo

    def _bigger_gpu(self) -> str:
        """The cheapest GPU type (same count) on which weights and one full-length sequence fit."""
        fitting = []
        for g in catalog.gpus().entries:
            fit = memory_fit(self.c.loaded, g, view=self.view) if self.p.gpu.count <= g.max_count else None
            if fit is not None and fit.weights_fit and fit.kv_fits:
                fitting.append(g)
        if not fitting:
            return "a larger tensor-parallel setup (gpu.count)"
        best = min(fitting, key=lambda g: g.price_per_hour_usd)
        return f"use {best.name} (${best.price_per_hour_usd:.2f}/h)"
