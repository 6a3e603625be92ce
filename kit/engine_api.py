"""The structured-output API of a vLLM release, derived from its own source (kit.knowledge.engines).

Render needs four names per release: the params class, the SamplingParams field that takes it, the
engine argument that picks the backend and whether that argument is a string or a config. Every one
is recorded from the release's sdist, so the row is built here rather than typed; the hand-kept
`[[api]]` table (kit/data/rules/structured_output.toml) answers only for releases the store has no
source of (SGLang, vLLM releases published without an sdist), and a test holds the two to agreement
wherever both answer.
"""

from __future__ import annotations

from typing import Any


def derived_api_row(engine: str, version: str) -> dict[str, Any] | None:
    """An `[[api]]`-shaped row for vLLM `version` from its recorded source; None when kit cannot derive one."""
    if engine != "vllm":
        return None
    from kit.knowledge.engines import engine_facts

    facts = engine_facts(engine, version)
    so = facts.structured_output if facts is not None else None
    if so is None or so.classes is None or so.sampling_params_fields is None:
        return None
    fields, args = so.sampling_params_fields, so.engine_args or frozenset()
    if "StructuredOutputsParams" in so.classes and "structured_outputs" in fields and "structured_outputs_config" in args:
        names = ("StructuredOutputsParams", "structured_outputs", "structured_outputs_config", "config")
    elif "GuidedDecodingParams" in so.classes and "guided_decoding" in fields and "guided_decoding_backend" in args:
        names = ("GuidedDecodingParams", "guided_decoding", "guided_decoding_backend", "string")
    else:
        return None
    if "response_format" not in (so.request_fields or ()):
        return None
    params_class, sampling_kwarg, backend_arg, form = names
    where = f"vllm=={facts.version} sdist sha256:{facts.sha256}"
    return {
        "engine": "vllm",
        "versions": f"=={facts.version}",
        "params_class": params_class,
        "sampling_kwarg": sampling_kwarg,
        "engine_backend_arg": backend_arg,
        "engine_backend_form": form,
        "openai_field": "response_format",
        "deprecated": False,
        "sources": [
            f"{where}: vllm/sampling_params.py (class {params_class}; SamplingParams.{sampling_kwarg})",
            f"{where}: vllm/engine/arg_utils.py (EngineArgs.{backend_arg}); vllm/entrypoints/openai/protocol.py (response_format)",
            "derived by kit/engine_api.py from kit/knowledge/store/engines/vllm.json",
        ],
    }
