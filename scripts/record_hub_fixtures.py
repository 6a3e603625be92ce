"""Record the test Hub's fixtures (tests/data/hub/): real config.json files (and safetensors indexes
where one was found) of widely used checkpoints, each with where it was read.

Hugging Face itself is not reachable where kit is developed, so the files come from public
repositories that vendor them verbatim, read from local git mirrors at the commits below
(MIRRORS, default /work/.mirror/<owner>+<name>/repo). Two were transcribed from public files whose
repository the search tool does not name (sources in tests/data/hub/files/*/SOURCE).

Where no index was found, the fixture's weight files get sizes derived from the config
(tests/weight_count.py, exact against the real indexes it was checked with) and the manifest says
so; for families that counter does not know, the fixture serves no weight files at all.

    python scripts/record_hub_fixtures.py
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HUB = ROOT / "tests" / "data" / "hub"
MIRRORS = Path(os.environ.get("MIRRORS", "/work/.mirror"))
sys.path.insert(0, str(ROOT / "tests"))

from weight_count import weight_bytes  # noqa: E402

AIC = ("ai-dynamo/aiconfigurator", "095f58a51c4ca8e61b66ec108d86f223f8d559ce", "aic-core/src/aiconfigurator_core/model_configs/{}_config.json")
# (hub id, source repo, commit, path of config.json, path of the index or None, gated on the Hub)
GIT = [
    ("meta-llama/Meta-Llama-3.1-8B", *AIC, None, True),
    ("meta-llama/Meta-Llama-3.1-70B", *AIC, None, True),
    ("meta-llama/Meta-Llama-3.1-405B", *AIC, None, True),
    ("meta-llama/Llama-4-Scout-17B-16E-Instruct", *AIC, None, True),
    ("nvidia/Llama-3.1-70B-Instruct-FP8", *AIC, None, False),
    ("Qwen/Qwen3-0.6B", *AIC, None, False),
    ("Qwen/Qwen3-8B", *AIC, None, False),
    ("Qwen/Qwen3-32B", *AIC, None, False),
    ("Qwen/Qwen3-32B-FP8", *AIC, None, False),
    ("Qwen/Qwen3-30B-A3B", *AIC, None, False),
    ("Qwen/Qwen3-30B-A3B-FP8", *AIC, None, False),
    ("Qwen/Qwen3-235B-A22B", *AIC, None, False),
    ("Qwen/Qwen3-Coder-480B-A35B-Instruct", *AIC, None, False),
    ("Qwen/Qwen3-VL-8B-Instruct", *AIC, None, False),
    ("Qwen/Qwen3.5-27B", *AIC, None, False),
    ("mistralai/Mixtral-8x7B-v0.1", *AIC, None, False),
    ("google/gemma-4-26B-A4B", *AIC, None, False),
    ("deepseek-ai/DeepSeek-V3", *AIC, None, False),
    ("deepseek-ai/DeepSeek-R1", *AIC, None, False),
    ("moonshotai/Kimi-K2-Instruct", *AIC, None, False),
    ("openai/gpt-oss-20b", *AIC, None, False),
    ("openai/gpt-oss-120b", *AIC, None, False),
    ("zai-org/GLM-5", *AIC, None, False),
    ("nvidia/Nemotron-H-56B-Base-8K", *AIC, None, False),
    ("nvidia/NVIDIA-Nemotron-3-Nano-30B-A3B-BF16", *AIC, None, False),
    ("XiaomiMiMo/MiMo-7B-Base", *AIC, None, False),
    ("google/gemma-2-9b-it", "doggy8088/GemmaTokenizerExtractor", "a2757335b21ba6ce9bd2f7701997b2fe79a42dd4", "gemma-2-9b-it/config.json", "gemma-2-9b-it/model.safetensors.index.json", True),
    (
        "Qwen/Qwen3-Coder-30B-A3B-Instruct",
        "ztxz16/fastllm",
        "f8f04c33abb63f6cd4e45f9427a55949a8ebbb44",
        "Qwen3-Coder-30B-A3B-Instruct/config.json",
        "Qwen3-Coder-30B-A3B-Instruct/model.safetensors.index.json",
        False,
    ),
    ("microsoft/phi-4", "mehmetcc/pal", "b5a7a0de48f7a687e62d6512edf901928ac657eb", "phi-4/config.json", None, False),
]
EXTRA_FILES = {"nvidia/Llama-3.1-70B-Instruct-FP8": {"hf_quant_config.json": "nvidia--Llama-3.1-70B-Instruct-FP8_hf_quant_config.json"}}
# Transcribed by hand from the public files named in their SOURCE file (no mirror of those repositories).
TRANSCRIBED = {
    "Qwen/Qwen2.5-3B-Instruct": {"commit": "aa8e72537993ba99e69dfaafa59ed015b17504d1", "gated": False},
    "deepseek-ai/DeepSeek-V2-Lite-Chat": {"commit": None, "gated": False},
}


def git_show(repo: str, commit: str, path: str) -> bytes:
    mirror = MIRRORS / repo.replace("/", "+") / "repo"
    return subprocess.run(["git", "-C", str(mirror), "show", f"{commit}:{path}"], check=True, capture_output=True).stdout


def made_up_commit(model_id: str) -> str:
    return hashlib.sha1(f"kit test hub: {model_id}".encode()).hexdigest()


def entry_for(model_id: str, folder: Path, commit: str | None, gated: bool, provenance: dict[str, str]) -> dict:
    files = {p.name: str(p.relative_to(HUB)) for p in sorted(folder.glob("*.json"))}
    config = json.loads((folder / "config.json").read_bytes())
    entry = {
        "id": model_id,
        "commit": commit or made_up_commit(model_id),
        "commit_source": "the Hub's own record (see provenance)" if commit else "made up by this script: the real commit was not readable here",
        "gated": gated,
        "files": files,
        "provenance": provenance,
    }
    if "model.safetensors.index.json" in files:
        index = json.loads((folder / "model.safetensors.index.json").read_bytes())
        entry["weights"] = {"total_bytes": index["metadata"]["total_size"], "source": "the real model.safetensors.index.json (metadata.total_size)"}
    else:
        # A ModelOpt checkpoint names its quantization in hf_quant_config.json: not a 16-bit checkpoint.
        derived = None if "hf_quant_config.json" in files else weight_bytes(config.get("text_config") or config)
        entry["weights"] = (
            {"total_bytes": derived, "shards": 4, "source": "DERIVED from config.json by tests/weight_count.py (2 bytes x parameters): the real file sizes were not readable here"}
            if derived
            else None
        )
    return entry


def main() -> int:
    models = []
    for model_id, repo, commit, path, index, gated in GIT:
        name = model_id.replace("/", "--")
        src = path.format(name) if "{}" in path else path
        folder = HUB / "files" / name
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "config.json").write_bytes(git_show(repo, commit, src))
        provenance = {"config.json": f"{repo}@{commit}:{src}"}
        if index:
            (folder / "model.safetensors.index.json").write_bytes(git_show(repo, commit, index))
            provenance["model.safetensors.index.json"] = f"{repo}@{commit}:{index}"
        for fname, extra in EXTRA_FILES.get(model_id, {}).items():
            extra_path = src.rsplit("/", 1)[0] + "/" + extra
            (folder / fname).write_bytes(git_show(repo, commit, extra_path))
            provenance[fname] = f"{repo}@{commit}:{extra_path}"
        models.append(entry_for(model_id, folder, None, gated, provenance))
    for model_id, meta in TRANSCRIBED.items():
        folder = HUB / "files" / model_id.replace("/", "--")
        provenance = {"config.json": (folder / "SOURCE").read_text(encoding="utf-8").strip()}
        models.append(entry_for(model_id, folder, meta["commit"], meta["gated"], provenance))
    models.sort(key=lambda m: m["id"].lower())
    doc = {"about": __doc__.strip().splitlines()[0], "models": models}
    (HUB / "models.json").write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")
    print(f"{len(models)} models -> {HUB / 'models.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
