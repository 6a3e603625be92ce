#!/bin/bash
# On the GPU machine, right after ../shared/gpu's step 1 (`bash $G/p1/setup.sh`, which leaves the dependency
# wheels in /tmp/site and part 1 of vLLM in /tmp/stage), carrying $G/p2 and $G/k (benchmarks/gpu/prepare.sh):
#   G=.gpu bash $G/k/src/benchmarks/gpu/raw_sweep.sh
# Assembles vLLM 0.20.0 in /tmp/vl (as ../shared/gpu/run.sh does, without its benchmark), unpacks the model
# folder with the 151,646-token tokenizer, and runs so_sweep.py once per structured-output configuration.
# Writes $OUT/so_<backend>_<whitespace>.json and $OUT/raw_sweep.log.
set -u
G=${G:-.gpu}
K=$G/k
[ -f /tmp/stage/C.so.xz.a ] || { echo "PART1 MISSING (machine was recycled): run $G/p1/setup.sh first"; exit 3; }
t0=$(date +%s)
cp -r $G/p2/* /tmp/stage/
cat /tmp/stage/C.so.xz.a /tmp/stage/C.so.xz.b > /tmp/stage/C.so.xz
mkdir -p /tmp/vl && tar -xJf /tmp/stage/vllm_py.tar.xz -C /tmp/vl
xz -dc /tmp/stage/C.so.xz > /tmp/vl/vllm/_C.abi3.so
xz -dc /tmp/stage/fa3.so.xz > /tmp/vl/vllm/vllm_flash_attn/_vllm_fa3_C.abi3.so
(cd /tmp/vl && sha256sum -c /tmp/stage/so.sha256) || exit 4
# vLLM finds its platform (CUDA) only when importlib.metadata knows the vllm distribution.
mkdir -p /tmp/vl/vllm-0.20.0.dist-info && printf 'Metadata-Version: 2.1\nName: vllm\nVersion: 0.20.0\n' > /tmp/vl/vllm-0.20.0.dist-info/METADATA
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site $K/whl_raw/*.whl || echo "outlines_core not installed"
rm -rf /tmp/model && cp -r $K/model /tmp/model && xz -d /tmp/model/*.xz
echo "assembled in $(( $(date +%s) - t0 )) s"
export PYTHONPATH=/tmp/vl:/tmp/site PYTHONUNBUFFERED=1 VLLM_USE_FLASHINFER_SAMPLER=0 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 VLLM_NO_USAGE_STATS=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
for cfg in ${CONFIGS:-"xgrammar:any" "guidance:compact" "xgrammar:compact" "guidance:any" "outlines:any"}; do
  backend=${cfg%%:*}; ws=${cfg##*:}
  limit=${T_CONFIG:-150}; [ "$backend" = outlines ] && limit=${T_OUTLINES:-100}
  left=$(( ${T_TOTAL:-560} - ($(date +%s) - t0) ))
  [ $left -lt 60 ] && { echo "$cfg skipped: ${left}s left"; continue; }
  [ $limit -gt $left ] && limit=$left
  echo "=== $cfg (limit ${limit}s)" >> $OUT/raw_sweep.log
  timeout $limit python3 $K/src/benchmarks/gpu/so_sweep.py /tmp/model $backend $ws >> $OUT/raw_sweep.log 2>&1
  echo "$cfg rc=$? at $(( $(date +%s) - t0 )) s"
  # an engine core left behind by a run that was stopped holds the GPU's memory: end it by its id
  for pid in $(nvidia-smi --query-compute-apps=pid --format=csv,noheader); do echo "ending leftover $pid"; kill -9 "$pid"; done
  grep -E "^\[so " $OUT/raw_sweep.log | grep "$backend"_"$ws" | grep -E "engine up|free32_0|long32|obj32|ir32|bounded32|pattern32|free1_0|long1_0|obj1_0" | cut -c1-260
done
grep -E "Traceback|Error" $OUT/raw_sweep.log | sort | uniq -c | head -20
echo RAW_SWEEP_DONE
