"""Modal app rendered by kit from a profile: change the profile and run `kit render`, do not edit.

Every value below that came from the profile is a Python literal. manifest.json (shipped next to this
file) records the profile hash, the lock hash and the bundle hash that /health reports.
"""

import json
import time
from pathlib import Path

import modal

PROFILE = 'qwen25-a10g-vllm-image'
APP_NAME = 'ir-generator-vllm-image'
MODEL_ID = 'Qwen/Qwen2.5-Coder-7B-Instruct'
MODEL_REVISION = 'c03e6d358207e414f1eca0bb1891e29f1db0e242'
ENGINE = 'vllm'
ENGINE_PACKAGE = 'vllm'
PINNED = {'transformers': '4.53.0', 'vllm': '0.9.1'}
GPU = 'A10'

# Next to this file locally (kit's bundle directory) and in the container (Modal mounts a single-file
# app at /root/<name>.py and kit's files at /root/).
_HERE = Path(__file__).parent
_REMOTE = "/root"

image = (
    # The engine comes installed in this image (image.engine = "from-image"): its own Python runs it.
    modal.Image.from_registry(
        'vllm/vllm-openai:v0.9.1',
        setup_dockerfile_commands=[
            # The image's ENTRYPOINT starts its own server instead of running Modal's command.
            "ENTRYPOINT []",
            # Modal runs `python`; this image has only `python3`.
            "RUN ln -sf \"$(command -v python3)\" /usr/local/bin/python",
        ],
    )
    # requirements.txt is the bundle's: the lockfile with hashes, or the profile's pins when unlocked.
    .uv_pip_install(
        requirements=[str(_HERE / "requirements.txt")],
        uv_version='0.13.9',
        extra_options='--require-hashes --no-deps --only-binary :all:',
    )
    # Mounted at container start (not baked into a layer): a new manifest does not rebuild the image.
    .add_local_file(_HERE / "manifest.json", _REMOTE + "/manifest.json")
    .add_local_file(_HERE / "schema.json", _REMOTE + "/schema.json")
)

app = modal.App(APP_NAME, image=image)

VOLUMES = {
    '/root/.cache/huggingface': modal.Volume.from_name('huggingface-cache', create_if_missing=True),
    '/root/.cache/vllm': modal.Volume.from_name('vllm-cache', create_if_missing=True),
}
SECRETS = []


def manifest() -> dict:
    """kit's manifest of this bundle (profile, lock and bundle hashes); empty if it is missing."""
    try:
        return json.loads((_HERE / "manifest.json").read_text())
    except (OSError, ValueError):
        return {}


def installed_versions() -> dict:
    """The versions of the pinned packages actually installed in this container (None: absent)."""
    from importlib import metadata

    out = {}
    for name in PINNED:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


# The engine's own OpenAI-compatible server (continuous batching). Constrained output goes through
# the request: response_format={"type": "json_schema", "json_schema": {"name": ..., "schema": ...}}.
SERVER_PORT = 8000
SERVER_COMMAND = ['vllm', 'serve', 'Qwen/Qwen2.5-Coder-7B-Instruct', '--host', '0.0.0.0', '--port', '8000', '--served-model-name', 'Qwen/Qwen2.5-Coder-7B-Instruct', '--revision', 'c03e6d358207e414f1eca0bb1891e29f1db0e242', '--tokenizer-revision', 'c03e6d358207e414f1eca0bb1891e29f1db0e242', '--dtype', 'bfloat16', '--max-model-len', '32768', '--gpu-memory-utilization', '0.9', '--tensor-parallel-size', '1', '--guided-decoding-backend', 'xgrammar']


@app.function(
    gpu=GPU,
    timeout=600,
    scaledown_window=300,
    min_containers=0,
    max_containers=1,
    volumes=VOLUMES,
    secrets=SECRETS,
)
@modal.concurrent(max_inputs=32)
# Modal's default startup timeout is 5 s; loading the model takes minutes.
@modal.web_server(port=SERVER_PORT, startup_timeout=1200)
def serve() -> None:
    import subprocess

    subprocess.Popen(SERVER_COMMAND)  # an argument list, no shell: profile values are never parsed
