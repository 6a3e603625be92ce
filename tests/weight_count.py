"""Parameter count of a checkpoint from its config.json, for the test Hub's fixtures whose real
safetensors index could not be read here (tests/data/hub/models.json says which).

Counts every tensor the transformers implementation stores for the families below; checked against
real indexes and the Hub's own parameter counts in tests/test_hub_fixtures.py. Returns None for a
family it does not know: the fixture then serves no weight files, and kit records the weights unknown.
"""

from __future__ import annotations

from typing import Any

DENSE = {"llama", "mistral", "qwen2", "qwen3", "phi3", "gemma2"}
MOE = {"mixtral", "qwen3_moe"}
MLA = {"deepseek_v2", "deepseek_v3", "kimi_k2"}


def _attention(c: dict[str, Any]) -> int:
    h, nh = c["hidden_size"], c["num_attention_heads"]
    kvh = c.get("num_key_value_heads") or nh
    hd = c.get("head_dim") or h // nh
    n = h * nh * hd + 2 * h * kvh * hd + nh * hd * h
    if c["model_type"] == "qwen2" or c.get("attention_bias"):
        n += nh * hd + 2 * kvh * hd + (h if c.get("attention_bias") and c["model_type"] != "qwen2" else 0)
    if c["model_type"] in ("qwen3", "qwen3_moe"):
        n += 2 * hd  # q_norm, k_norm
    return n


def _mla(c: dict[str, Any]) -> int:
    h, nh = c["hidden_size"], c["num_attention_heads"]
    nope, rope, v = c["qk_nope_head_dim"], c["qk_rope_head_dim"], c["v_head_dim"]
    kv, ql = c["kv_lora_rank"], c.get("q_lora_rank")
    q = h * ql + ql + ql * nh * (nope + rope) if ql else h * nh * (nope + rope)
    return q + h * (kv + rope) + kv + kv * nh * (nope + v) + nh * v * h


def parameters(c: dict[str, Any]) -> int | None:
    t = c.get("model_type", "")
    if t not in DENSE | MOE | MLA:
        return None
    h, layers, vocab = c["hidden_size"], c["num_hidden_layers"], c["vocab_size"]
    tied = c.get("tie_word_embeddings", t == "gemma2")
    total = vocab * h * (1 if tied else 2) + h  # embeddings (+ lm_head) + final norm
    norms = (4 if t == "gemma2" else 2) * h
    for i in range(layers):
        attn = _mla(c) if t in MLA else _attention(c)
        if t in MOE:
            experts = c.get("num_local_experts") or c["num_experts"]
            inter = c.get("moe_intermediate_size") or c["intermediate_size"]
            mlp = experts * 3 * h * inter + h * experts
        elif t in MLA and i >= c.get("first_k_dense_replace", 0) and i % c.get("moe_layer_freq", 1) == 0:
            experts, inter = c["n_routed_experts"], c["moe_intermediate_size"]
            mlp = (experts + c.get("n_shared_experts", 0)) * 3 * h * inter + h * experts
            if c.get("topk_method") == "noaux_tc":
                mlp += experts  # e_score_correction_bias
        else:
            mlp = 3 * h * c["intermediate_size"]
        total += attn + mlp + norms
    return total


def weight_bytes(c: dict[str, Any]) -> int | None:
    """Bytes at 2 per parameter: 16-bit checkpoints only (None for quantized or unknown families)."""
    if c.get("quantization_config") or str(c.get("torch_dtype", c.get("dtype", "bfloat16"))) not in ("bfloat16", "float16"):
        return None
    n = parameters(c)
    return None if n is None else 2 * n
