"""What the GPU scripts share: the workload of ../shared/gpu/bench.py (same prompts, schemas, 256 tokens,
temperature 1.0), importing a rendered app, and ending the processes a script started."""

from __future__ import annotations

import importlib.util
import json
import os
import sys
import time
from pathlib import Path

OUT = Path(os.environ.get("OUT") or "benchmarks/gpu/out")
MAX_TOKENS = 256
TEMPERATURE = 1.0
PROMPTS = [
    f"Request {i}: return a JSON object with the name of a task, the list of steps, "
    f"and how many steps there are. Task: prepare item number {i} for shipping."
    for i in range(64)
]
SCHEMA = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "steps": {"type": "array", "items": {"type": "string"}}, "count": {"type": "integer"}},
    "required": ["name", "steps", "count"],
}
# Length-bounded strings: where the raw run saw xgrammar 0.1.33 emit raw control characters.
SCHEMA_BOUNDED = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 12},
        "steps": {"type": "array", "items": {"type": "string", "maxLength": 12}, "maxItems": 4},
        "count": {"type": "integer", "minimum": 0, "maximum": 999},
    },
    "required": ["name", "steps", "count"],
    "additionalProperties": False,
}


def log(*args: object) -> None:
    print("[kit-gpu]", *args, flush=True)


def import_app(bundle: Path):
    """The rendered app.py, imported as Modal would import it (its own module, next to its files)."""
    spec = importlib.util.spec_from_file_location("app", bundle / "app.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["app"] = module
    spec.loader.exec_module(module)
    return module


def save(name: str, data: dict) -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / name).write_text(json.dumps(data, indent=1) + "\n")


def end_children() -> None:
    """Kill the processes this script started (vLLM's engine core, the server), by their ids."""
    import psutil

    kids = psutil.Process().children(recursive=True)
    for p in kids:
        try:
            p.terminate()
        except psutil.NoSuchProcess:
            pass
    _, alive = psutil.wait_procs(kids, timeout=15)
    for p in alive:
        p.kill()


def versions() -> dict:
    out = {"python": sys.version.split()[0], "date": time.strftime("%Y-%m-%d")}
    try:
        import torch

        out["gpu"] = torch.cuda.get_device_name(0)
    except Exception as exc:  # noqa: BLE001 - reported, not fatal
        out["gpu"] = f"? {type(exc).__name__}"
    for mod in ("torch", "vllm", "xgrammar", "transformers", "modal"):
        try:
            out[mod] = getattr(__import__(mod), "__version__", None) or _dist_version(mod)
        except Exception as exc:  # noqa: BLE001 - reported, not fatal
            out[mod] = f"? {type(exc).__name__}"
    return out


def _dist_version(name: str) -> str:
    """xgrammar 0.1.33 has no __version__; ../shared/gpu unpacks it without metadata, so say what was staged."""
    from importlib import metadata

    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "0.1.33 (staged by ../shared/gpu/prepare.sh; no metadata)" if name == "xgrammar" else "?"
