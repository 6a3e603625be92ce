"""The rendered app in openai mode: its `serve` function (Modal's `.local()`) starts vLLM's server with
the app's own SERVER_COMMAND; then `kit bench --openai` measures it over loopback.

    python3 benchmarks/gpu/openai_mode.py .gpu/kit/openai      (see run.sh for the environment)

vLLM is on PYTHONPATH on the GPU machine, not installed, so there is no `vllm` executable: a shim on
PATH runs vLLM's own CLI module (`python3 -m vllm.entrypoints.cli.main`) with the same arguments.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import traceback
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import MAX_TOKENS, OUT, SCHEMA, SCHEMA_BOUNDED, TEMPERATURE, end_children, import_app, log, save  # noqa: E402

R: dict = {"mode": "openai"}
START_LIMIT_S = float(os.environ.get("START_LIMIT_S", "240"))


def shim() -> None:
    bin_dir = Path("/tmp/kit-bin")
    bin_dir.mkdir(exist_ok=True)
    exe = bin_dir / "vllm"
    exe.write_text(f'#!/bin/sh\nexec {sys.executable} -m vllm.entrypoints.cli.main "$@"\n')
    exe.chmod(0o755)
    os.environ["PATH"] = f"{bin_dir}:{os.environ['PATH']}"


def wait_healthy(port: int) -> float:
    import psutil

    t0 = time.perf_counter()
    while time.perf_counter() - t0 < START_LIMIT_S:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as resp:
                if resp.status == 200:
                    return time.perf_counter() - t0
        except OSError:
            pass
        if not psutil.Process().children():
            raise RuntimeError("the server process exited before it was healthy (see the log above)")
        time.sleep(1)
    raise RuntimeError(f"the server was not healthy within {START_LIMIT_S:g} s")


def bench(name: str, port: int, schema: dict, concurrency: str, requests: list[str]) -> None:
    schema_file = Path(f"/tmp/kit-schema-{name}.json")
    schema_file.write_text(json.dumps(schema))
    report = Path(f"/tmp/kit-bench-{name}.json")
    cmd = [sys.executable, "-m", "kit", "bench", f"http://127.0.0.1:{port}", "--openai", "--schema", str(schema_file),
           "--max-tokens", str(MAX_TOKENS), "--temperature", str(TEMPERATURE), "--gpu", "H200", "-c", concurrency,
           "--timeout", "120", "--warmup-timeout", "120", "-o", str(report), *requests]
    log("run", " ".join(cmd))
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=240)
    print(proc.stdout, proc.stderr, flush=True)
    log(name, "kit bench exit", proc.returncode)
    R[name] = json.loads(report.read_text()) if report.exists() else {"error": f"kit bench exit {proc.returncode}: {proc.stderr[-800:]}"}
    R[name]["exit_code"] = proc.returncode
    save("rendered_openai.json", R)


def main() -> None:
    mod = import_app(Path(sys.argv[1]))
    R["server_command"] = mod.SERVER_COMMAND
    R["bundle"] = mod.manifest().get("bundle_hash")
    shim()
    mod.serve.local()  # the app's own function: subprocess.Popen(SERVER_COMMAND)
    R["server_start_s"] = round(wait_healthy(mod.SERVER_PORT), 2)
    log("server healthy after", R["server_start_s"], "s")
    save("rendered_openai.json", R)
    bench("json_sweep", mod.SERVER_PORT, SCHEMA, "1,4,16,32", [])
    bench("json_bounded_32", mod.SERVER_PORT, SCHEMA_BOUNDED, "32", ["-n", "64", "--no-warmup"])


if __name__ == "__main__":
    try:
        main()
    except Exception:  # noqa: BLE001
        traceback.print_exc()
        R["error"] = traceback.format_exc()[-2000:]
        save("rendered_openai.json", R)
    finally:
        end_children()
        print("outputs in", OUT, flush=True)
        os._exit(0)
