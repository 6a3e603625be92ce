#!/bin/bash
# On the GPU machine, after raw_sweep.sh (which leaves vLLM 0.20.0 in /tmp/vl and its dependencies in
# /tmp/site), carrying $G/k (benchmarks/gpu/prepare.sh):
#   G=.gpu bash $G/k/src/benchmarks/gpu/run.sh
# Runs the rendered app in class mode, then in openai mode, with the 151,646-token tokenizer. Writes
# rendered_class.json, rendered_openai.json and rendered.log to $OUT.
set -u
G=${G:-.gpu}
K=$PWD/$G/k
[ -d /tmp/vl/vllm ] || { echo "no /tmp/vl: run raw_sweep.sh (after ../shared/gpu's setup) on this machine first"; exit 3; }
OUT=${OUT:-$PWD/benchmarks/gpu/out}; mkdir -p "$OUT"; export OUT
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site_kit $K/whl/*.whl || exit 4
rm -rf /tmp/kit-hf && cp -r $K/hf /tmp/kit-hf && xz -d /tmp/kit-hf/hub/models--*/snapshots/*/*.xz
export PYTHONPATH=/tmp/vl:/tmp/site:/tmp/site_kit:$K/src PYTHONUNBUFFERED=1
export HF_HOME=/tmp/kit-hf HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 VLLM_NO_USAGE_STATS=1 DO_NOT_TRACK=1
source $K/env.sh  # the profile's image environment (Modal sets it in the container)
timeout ${T_CLASS:-250} python3 $K/src/benchmarks/gpu/class_mode.py $K/class > "$OUT/rendered.log" 2>&1; echo "class rc=$?"
for pid in $(nvidia-smi --query-compute-apps=pid --format=csv,noheader); do echo "ending leftover $pid"; kill -9 "$pid"; done
nvidia-smi --query-gpu=memory.used --format=csv,noheader
timeout ${T_OPENAI:-270} python3 $K/src/benchmarks/gpu/openai_mode.py $K/openai >> "$OUT/rendered.log" 2>&1; echo "openai rc=$?"
for pid in $(nvidia-smi --query-compute-apps=pid --format=csv,noheader); do echo "ending leftover $pid"; kill -9 "$pid"; done
grep -E "^\[kit-gpu\]|Traceback|Error|backend|Asynchronous" "$OUT/rendered.log" | cut -c1-330 | head -70
echo RENDERED_DONE
