#!/usr/bin/env bash
# `kit lock` + `kit check` on profiles for models outside kit's old five-model catalog: a model too
# large for its GPU, a context longer than the model's, a dtype the GPU lacks, and a working twin of
# each. The Hub is tests/hubserver.py (real recorded configs; Hugging Face itself is not reachable
# where kit is developed); uv resolves against the real package index. Writes results-model-facts.md.
#
#     bash benchmarks/model_facts_demo.sh
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
kit="$root/.venv/bin/kit"
py="$root/.venv/bin/python"
work=$(mktemp -d)
trap 'kill $hub_pid 2>/dev/null; rm -rf "$work"' EXIT
mkdir -p "$work/.git" "$work/profiles"
"$py" - "$work/profiles" <<'EOF'
import sys
sys.path.insert(0, "tests")
from conftest import BASE_PROFILE
def profile(name, model_id, gpu, count=1, max_len=8192, dtype="auto"):
    text = BASE_PROFILE.replace('name = "base"', f'name = "{name}"').replace('name = "test-app"', f'name = "{name}"')
    text = text.replace("Qwen/Qwen2.5-Coder-7B-Instruct", model_id).replace('type = "A10G"', f'type = "{gpu}"').replace("count = 1", f"count = {count}")
    text = text.replace('dtype = "bfloat16"', f'dtype = "{dtype}"').replace("max_model_len = 32768", f"max_model_len = {max_len}")
    open(f"{sys.argv[1]}/{name}.toml", "w").write(text)
profile("llama70b-a100", "meta-llama/Meta-Llama-3.1-70B", "A100-80GB")
profile("llama70b-h200x2", "meta-llama/Meta-Llama-3.1-70B", "H200", count=2)
profile("qwen3-8b-131k", "Qwen/Qwen3-8B", "H100", max_len=131072)
profile("qwen3-8b-40k", "Qwen/Qwen3-8B", "H100", max_len=40960)
profile("qwen3-06b-t4-bf16", "Qwen/Qwen3-0.6B", "T4", dtype="bfloat16")
profile("qwen3-06b-t4-fp16", "Qwen/Qwen3-0.6B", "T4", dtype="float16")
EOF
port=$((20000 + RANDOM % 20000))
(cd "$root" && exec "$py" tests/hubserver.py "$port") > "$work/hub.log" 2>&1 &
hub_pid=$!
sleep 1
export HF_ENDPOINT="http://127.0.0.1:$port" HF_HOME="$work/hf-home" NO_COLOR=1 COLUMNS=200
unset HF_HUB_OFFLINE HF_TOKEN
out="$root/benchmarks/results-model-facts.md"
run() { echo "\$ $*"; (cd "$work" && "$@" 2>&1); echo "(exit $?)"; echo; }
{
  echo "# kit lock + kit check on models outside the old catalog"
  echo
  echo "Produced by \`bash benchmarks/model_facts_demo.sh\` on $(date -u +%Y-%m-%d): the Hub is tests/hubserver.py serving real"
  echo "recorded configs (tests/data/hub/models.json gives each one's provenance; Llama is gated there as on the Hub),"
  echo "uv resolves against the real package index. Profiles: BASE_PROFILE of tests/conftest.py (vLLM 0.9.2) with the model,"
  echo "GPU, max_model_len and dtype below."
  echo
  echo '```'
  run "$kit" lock profiles/llama70b-a100.toml
  export HF_TOKEN=hf_kit_test_token
  run "$kit" lock
  unset HF_TOKEN
  run grep "^# kit-model:" profiles/llama70b-a100.lock
  run "$kit" check
  echo '```'
} > "$out"
cat "$out"
