"""Model facts derived from a checkpoint's own files: config.json (the text config of a multimodal
model), the safetensors index or file sizes, tokenizer_config.json and a ModelOpt hf_quant_config.json.

Pure: no I/O, no network. kit/hub.py reads the files at `kit lock`; the lock records the facts this
module derives (`ModelFacts.to_record`), and `kit check` reads them back (`ModelFacts.from_record`)
without importing huggingface_hub. The KV-cache arithmetic follows vLLM's own KV cache specs
(vllm/v1/kv_cache_interface.py: FullAttentionSpec, SlidingWindowSpec, MLAAttentionSpec), checked
against vLLM on an H200 in benchmarks/results-model-memory.md.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

# Keys vLLM reads, in order, for the model's own maximum length
# (vllm 0.20.0 vllm/transformers_utils/model_arch_config_convertor.py, derived_max_model_len_and_key).
MAX_LEN_KEYS = (
    "max_position_embeddings",
    "n_positions",
    "max_seq_len",
    "seq_length",
    "model_max_length",
    "max_target_positions",
    "max_sequence_length",
    "max_seq_length",
    "seq_len",
)
DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2, "float8_e4m3fn": 1}
# Layer kinds of `layer_types` that hold no per-token KV cache (state-space / linear attention).
STATE_LAYERS = {"mamba", "mamba2", "linear_attention", "conv", "short_conv", "gated_deltanet", "mamba_attention"}
SLIDING_LAYERS = {"sliding_attention", "chunked_attention", "local_attention"}


class MalformedConfig(ValueError):
    """config.json lacks a key kit needs, or has one of the wrong type: `key` names it."""

    def __init__(self, key: str, problem: str):
        self.key = key
        super().__init__(f"{key}: {problem}")


@dataclass(frozen=True)
class ModelFacts:
    """What kit's checks need to know about one checkpoint; every number from its own files."""

    architecture: str
    model_type: str
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    head_dim: int
    max_position_embeddings: int  # the longest max_model_len vLLM accepts (rope scaling, tokenizer cap applied)
    torch_dtype: str = "bfloat16"
    quantization: str = ""  # the checkpoint's quant_method ("fp8", "awq", "mxfp4", "modelopt", ...); "" = none
    quant_detail: str = ""  # e.g. "block [128, 128]", "FP8", "NVFP4", "w4 group 128"
    fp8_block: bool = False
    weight_bytes: int = 0  # 0 = unknown
    weight_source: str = ""  # "model.safetensors.index.json total_size", "file sizes", "stated in the profile"
    attention: str = "gqa"  # gqa | mla
    kv_lora_rank: int = 0
    qk_rope_head_dim: int = 0
    attention_layers: int = 0  # layers that keep a per-token KV cache (fewer than num_hidden_layers in hybrids)
    sliding_window: int = 0
    sliding_layers: int = 0  # of attention_layers, those that keep only the last sliding_window tokens
    state_layers: int = 0  # state-space / linear-attention layers (a fixed state per sequence, no per-token KV)
    num_experts: int = 0
    experts_per_token: int = 0
    multimodal: bool = False
    context_note: str = ""  # how max_position_embeddings was derived
    min_vllm: str = ""  # only from kit's fallback catalog (data/models.toml)

    # -- KV cache ------------------------------------------------------------------------------

    def kv_bytes_per_token_layer(self, tp: int = 1, kv_dtype_bytes: int = 2) -> int:
        """KV bytes one token takes in one attention layer on one GPU.

        GQA: K and V for the KV heads of this GPU (heads are split across tensor-parallel ranks, and
        replicated when there are fewer KV heads than ranks). MLA: the compressed latent plus the
        rope part, one copy per rank (vLLM's MLAAttentionSpec: kv_lora_rank + qk_rope_head_dim).
        """
        if self.attention == "mla":
            return (self.kv_lora_rank + self.qk_rope_head_dim) * kv_dtype_bytes
        heads = max(1, self.num_key_value_heads // max(tp, 1))
        return 2 * heads * self.head_dim * kv_dtype_bytes

    @property
    def kv_layers(self) -> int:
        return self.attention_layers or self.num_hidden_layers

    def kv_bytes_per_token(self, tp: int = 1, kv_dtype_bytes: int = 2) -> int:
        """KV bytes per token over every attention layer on one GPU: what vLLM divides its KV memory by
        when it reports 'GPU KV cache size: N tokens' (sliding-window layers counted in full)."""
        return self.kv_bytes_per_token_layer(tp, kv_dtype_bytes) * self.kv_layers

    def kv_bytes_for_sequence(self, tokens: int, tp: int = 1, kv_dtype_bytes: int = 2) -> int:
        """KV bytes one sequence of `tokens` needs on one GPU: sliding-window layers keep at most the window."""
        per_layer = self.kv_bytes_per_token_layer(tp, kv_dtype_bytes)
        full = self.kv_layers - self.sliding_layers
        window = min(tokens, self.sliding_window) if self.sliding_window else tokens
        return per_layer * (full * tokens + self.sliding_layers * window)

    @property
    def kv_formula(self) -> str:
        if self.attention == "mla":
            text = f"{self.kv_layers} layers x (kv_lora_rank {self.kv_lora_rank} + qk_rope_head_dim {self.qk_rope_head_dim}) x dtype bytes (MLA latent)"
        else:
            text = f"2 x {self.kv_layers} layers x {self.num_key_value_heads} KV heads x head_dim {self.head_dim} x dtype bytes"
        if self.sliding_layers:
            text += f"; {self.sliding_layers} of the layers keep only a {self.sliding_window}-token window"
        if self.state_layers:
            text += f"; {self.state_layers} state-space/linear layers hold no per-token KV"
        return text

    # -- the lock ------------------------------------------------------------------------------

    def to_record(self) -> dict[str, Any]:
        """Flat key -> scalar, sorted: what the lock's model section holds."""
        return {k: v for k, v in sorted(asdict(self).items()) if k != "min_vllm"}

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> ModelFacts:
        kinds = {f.name: f.type for f in fields(cls)}
        values: dict[str, Any] = {}
        for name, raw in record.items():
            if name not in kinds:
                continue  # a field a newer kit wrote: ignore
            kind = kinds[name]
            if kind == "int":
                values[name] = int(raw)
            elif kind == "bool":
                values[name] = raw in (True, "true", "True", "1")
            else:
                values[name] = str(raw)
        return cls(**values)


# -- derivation ------------------------------------------------------------------------------------


def _int(cfg: dict[str, Any], key: str, default: int | None = None) -> int:
    value = cfg.get(key, default)
    if value is None:
        raise MalformedConfig(key, "missing")
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise MalformedConfig(key, f"expected a non-negative integer, found {value!r}")
    return value


def text_config(config: dict[str, Any]) -> tuple[dict[str, Any], bool]:
    """The language model's config: `text_config` (or `llm_config`) of a multimodal checkpoint, else config itself."""
    for key in ("text_config", "llm_config", "language_config"):
        inner = config.get(key)
        if isinstance(inner, dict) and ("num_hidden_layers" in inner or "hidden_size" in inner):
            merged = {k: v for k, v in config.items() if k not in ("text_config", "llm_config", "language_config", "vision_config")}
            merged.update(inner)
            return merged, True
    return config, False


def _dtype(cfg: dict[str, Any], top: dict[str, Any]) -> str:
    for source in (cfg, top):
        for key in ("torch_dtype", "dtype"):
            value = source.get(key)
            if isinstance(value, str):
                return value.replace("torch.", "")
    return "float32"  # transformers' default when a config names no dtype


def _quantization(cfg: dict[str, Any], hf_quant: dict[str, Any] | None) -> tuple[str, str, bool]:
    q = cfg.get("quantization_config")
    if isinstance(q, dict):
        method = str(q.get("quant_method", "")).lower()
        if method == "fp8":
            block = q.get("weight_block_size")
            return method, (f"block {block}" if block else "per-tensor"), bool(block)
        if method in ("awq", "gptq", "gptq_marlin", "awq_marlin"):
            return method, f"w{q.get('bits', '?')} group {q.get('group_size', '?')}", False
        if method == "compressed-tensors":
            fmt = q.get("format", "")
            groups = q.get("config_groups") or {}
            weights = next(iter(groups.values()), {}).get("weights", {}) if groups else {}
            detail = f"{fmt}, {weights.get('type', '?')}{weights.get('num_bits', '')}" if weights else str(fmt)
            return method, detail, False
        if method == "modelopt":
            algo = q.get("quant_algo") or (q.get("quantization") or {}).get("quant_algo", "")
            return method, str(algo), False
        if method == "bitsandbytes":
            return method, "4 bit" if q.get("load_in_4bit") else "8 bit" if q.get("load_in_8bit") else "", False
        return method, "", False
    if hf_quant and isinstance(hf_quant.get("quantization"), dict):
        return "modelopt", str(hf_quant["quantization"].get("quant_algo", "")), False
    return "", "", False


def max_model_len(cfg: dict[str, Any], tokenizer_config: dict[str, Any] | None) -> tuple[int, str]:
    """The longest max_model_len vLLM accepts without VLLM_ALLOW_LONG_MAX_MODEL_LEN, as vLLM derives it
    (vllm 0.20.0 vllm/config/model.py _get_and_verify_max_len): the smallest length key, capped by the
    tokenizer's model_max_length, times the rope scaling factor (yarn: original length x factor;
    llama3, longrope and su scale nothing)."""
    found = [(cfg[k], k) for k in MAX_LEN_KEYS if isinstance(cfg.get(k), int) and not isinstance(cfg.get(k), bool)]
    if not found:
        raise MalformedConfig("max_position_embeddings", "missing (none of vLLM's length keys is in config.json)")
    length, key = min(found)
    note = f"{key} {length}"
    if tokenizer_config and isinstance(tokenizer_config.get("model_max_length"), int) and tokenizer_config["model_max_length"] < length:
        length = tokenizer_config["model_max_length"]
        note = f"tokenizer_config model_max_length {length}"
    rope = cfg.get("rope_scaling") or cfg.get("rope_parameters")
    if isinstance(rope, dict) and "gemma3" not in str(cfg.get("model_type", "")):
        rope_type = rope.get("rope_type") or rope.get("type") or "default"
        factor = rope.get("factor")
        if rope_type not in ("su", "longrope", "llama3", "default") and isinstance(factor, (int, float)) and factor:
            if rope_type == "yarn" and isinstance(rope.get("original_max_position_embeddings"), int):
                length = rope["original_max_position_embeddings"]
                note = f"yarn original_max_position_embeddings {length}"
            length = int(length * factor)
            note += f" x rope {rope_type} factor {factor}"
    return int(length), note


def _layer_kinds(cfg: dict[str, Any], layers: int) -> tuple[int, int, int]:
    """(attention layers, of them sliding-window, state-space layers)."""
    types = cfg.get("layer_types")
    pattern = cfg.get("hybrid_override_pattern")  # Nemotron-H: M = mamba, * = attention, - / E = MLP or MoE
    window = cfg.get("sliding_window")
    if isinstance(types, list) and types:
        state = sum(1 for t in types if t in STATE_LAYERS)
        sliding = sum(1 for t in types if t in SLIDING_LAYERS) if window else 0
        return len(types) - state, sliding, state
    if isinstance(pattern, str) and pattern:
        return pattern.count("*"), 0, pattern.count("M")
    if isinstance(cfg.get("full_attention_interval"), int) and cfg.get("model_type", "").startswith("qwen3_next"):
        interval = cfg["full_attention_interval"]
        attn = layers // interval
        return attn, 0, layers - attn
    model_type = str(cfg.get("model_type", ""))
    if window and model_type == "gemma2":  # every other layer, from layer 0 (vLLM gemma2.py / transformers Gemma2)
        return layers, (layers + 1) // 2, 0
    if window and model_type == "gemma3_text":
        every = int(cfg.get("sliding_window_pattern", 6))
        return layers, layers - layers // every, 0
    if window and model_type in ("mistral", "mixtral") and cfg.get("use_sliding_window", True):
        return layers, layers, 0
    return layers, 0, 0


def derive(
    config: dict[str, Any],
    *,
    index: dict[str, Any] | None = None,
    weight_file_bytes: int | None = None,
    tokenizer_config: dict[str, Any] | None = None,
    hf_quant_config: dict[str, Any] | None = None,
) -> ModelFacts:
    """ModelFacts from the parsed files; MalformedConfig names the key that is missing or wrong."""
    if not isinstance(config, dict):
        raise MalformedConfig("config.json", "is not a JSON object")
    cfg, multimodal = text_config(config)
    archs = config.get("architectures")
    if not isinstance(archs, list) or not archs or not isinstance(archs[0], str):
        raise MalformedConfig("architectures", "missing or not a list of class names")
    layers = _int(cfg, "num_hidden_layers")
    heads = _int(cfg, "num_attention_heads")
    if heads == 0 or layers == 0:
        raise MalformedConfig("num_attention_heads" if heads == 0 else "num_hidden_layers", "must be positive")
    kv_heads = _int(cfg, "num_key_value_heads", heads) or heads
    hidden = cfg.get("hidden_size")
    head_dim = cfg.get("head_dim")
    if not isinstance(head_dim, int) or head_dim <= 0:
        if not isinstance(hidden, int) or hidden <= 0:
            raise MalformedConfig("head_dim", "missing, and hidden_size is missing too")
        head_dim = hidden // heads
    length, note = max_model_len(cfg, tokenizer_config)
    quant, detail, block = _quantization(config if "quantization_config" in config else cfg, hf_quant_config)
    attention = "gqa"
    kv_lora = rope_dim = 0
    if isinstance(cfg.get("kv_lora_rank"), int) and cfg["kv_lora_rank"] > 0:
        attention = "mla"
        kv_lora = cfg["kv_lora_rank"]
        rope_dim = _int(cfg, "qk_rope_head_dim")
    attn_layers, sliding, state = _layer_kinds(cfg, layers)
    weights, source = 0, ""
    if index is not None:
        total = (index.get("metadata") or {}).get("total_size") if isinstance(index, dict) else None
        if isinstance(total, (int, float)) and total > 0:
            weights, source = int(total), "model.safetensors.index.json metadata.total_size"
    if not weights and weight_file_bytes:
        weights, source = int(weight_file_bytes), "weight file sizes"
    experts = next((cfg[k] for k in ("num_experts", "n_routed_experts", "num_local_experts", "moe_num_experts") if isinstance(cfg.get(k), int)), 0)
    per_token = next((cfg[k] for k in ("num_experts_per_tok", "experts_per_token", "moe_topk") if isinstance(cfg.get(k), int)), 0)
    return ModelFacts(
        architecture=archs[0],
        model_type=str(config.get("model_type", "")),
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=kv_heads,
        head_dim=int(head_dim),
        max_position_embeddings=length,
        torch_dtype=_dtype(cfg, config),
        quantization=quant,
        quant_detail=detail,
        fp8_block=block,
        weight_bytes=weights,
        weight_source=source,
        attention=attention,
        kv_lora_rank=kv_lora,
        qk_rope_head_dim=rope_dim,
        attention_layers=attn_layers,
        sliding_window=int(cfg.get("sliding_window") or 0) if sliding else 0,
        sliding_layers=sliding,
        state_layers=state,
        num_experts=int(experts),
        experts_per_token=int(per_token),
        multimodal=multimodal,
        context_note=note,
    )
