#!/bin/bash
# On the GPU machine, after the two staged steps of ../shared/gpu (which leave vLLM 0.20.0 in /tmp/vl and
# its dependencies in /tmp/site), in the repository root, carrying .whl and .gpu/kit (benchmarks/gpu/prepare.sh):
#   bash benchmarks/gpu/run.sh
# Writes rendered_class.json, rendered_openai.json and rendered.log to $OUT.
set -u
[ -d /tmp/vl/vllm ] || { echo "no /tmp/vl: run ../shared/gpu's two steps on this machine first"; exit 3; }
# vLLM finds its platform (CUDA) only when importlib.metadata knows the vllm distribution; /tmp/vl is a
# bare source tree, so without this it fails with "Device string must not be empty".
mkdir -p /tmp/vl/vllm-0.20.0.dist-info && printf 'Metadata-Version: 2.1\nName: vllm\nVersion: 0.20.0\n' > /tmp/vl/vllm-0.20.0.dist-info/METADATA
OUT=${OUT:-$PWD/benchmarks/gpu/out}; mkdir -p "$OUT"; export OUT
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site_kit .whl/*.whl || exit 4
export PYTHONPATH=/tmp/vl:/tmp/site:/tmp/site_kit:$PWD PYTHONUNBUFFERED=1
export HF_HOME=$PWD/.gpu/kit/hf HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 VLLM_NO_USAGE_STATS=1 DO_NOT_TRACK=1
source .gpu/kit/env.sh  # the profile's image environment (Modal sets it in the container)
timeout ${T_CLASS:-260} python3 benchmarks/gpu/class_mode.py .gpu/kit/class > "$OUT/rendered.log" 2>&1; echo "class rc=$?"
nvidia-smi --query-gpu=memory.used --format=csv,noheader
timeout ${T_OPENAI:-300} python3 benchmarks/gpu/openai_mode.py .gpu/kit/openai >> "$OUT/rendered.log" 2>&1; echo "openai rc=$?"
grep -E "^\[kit-gpu\]|Traceback|Error|backend" "$OUT/rendered.log" | cut -c1-400 | head -60
echo RENDERED_DONE
