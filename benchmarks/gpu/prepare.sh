#!/usr/bin/env bash
# Here (any machine with the internet), in the repository root: stage what the GPU machine needs, in an
# ignored folder $G (default .gpu) of the checkout the device tool sends ($STAGE_ROOT, default this one):
#   $G/p1, $G/p2   vLLM 0.20.0 for that machine (../shared/gpu/prepare.sh; see its README)
#   $G/k/model     the Qwen2.5-7B shape (config.json) with a 151,646-token byte-level BPE ($TOKENIZER: a folder
#                  written by ../shared/gpu/train_tokenizer.py), its big files xz-compressed
#   $G/k/hf        a Hugging Face cache holding the same files at the library profile's pinned revision
#   $G/k/whl       the modal client and what kit and `vllm serve` need there beyond the image, as wheels
#   $G/k/whl_raw   outlines_core (vLLM 0.20.0's outlines backend)
#   $G/k/src       kit, its templates and these scripts (the device tool sends the session's checkout)
#   $G/k/class, $G/k/openai, $G/k/env.sh   the profile rendered by kit in both modes, its image environment
# Then, on one warm nvidia-h200 machine (device tool), three calls (see results.md, "Run it again"):
#   bash $G/p1/setup.sh                                 carry $G/p1
#   G=$G bash $G/k/src/benchmarks/gpu/raw_sweep.sh      carry $G/p2 $G/k
#   G=$G bash $G/k/src/benchmarks/gpu/run.sh            carry $G/k
set -euo pipefail
root=$(git rev-parse --show-toplevel); cd "$root"
G=${G:-.gpu}
dest=${STAGE_ROOT:-$root}
shape=${SHAPE:-../shared/gpu/model-qwen25-7b-shape}
tokenizer=${TOKENIZER:?set TOKENIZER to a folder written by ../shared/gpu/train_tokenizer.py}
kit=$root/${KIT:-.venv/bin/kit}
py=$root/${PY:-.venv/bin/python}
profile=benchmarks/gpu/qwen25-h200-dummy.toml
exclude=$(git -C "$dest" rev-parse --git-path info/exclude)
case $exclude in /*) ;; *) exclude=$dest/$exclude ;; esac
grep -qx "/$G/" "$exclude" 2>/dev/null || echo "/$G/" >> "$exclude"
[ -f "$dest/$G/p1/setup.sh" ] && [ -f "$dest/$G/p2/run.sh" ] || { echo "stage $dest/$G/p1 and p2 first: ../shared/gpu/prepare.sh (it writes .gpu/)"; exit 3; }
k=$dest/$G/k
rm -rf "$k"; mkdir -p "$k/whl" "$k/whl_raw" "$k/model" "$k/src/benchmarks"
dl() {
  local to=$1; shift
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d "$to" "$@" 2>&1 | grep -v '^WARNING: Location' || true
}
dl "$k/whl" modal==1.6.4 grpclib==0.4.9 h2==4.4.1 hpack==4.2.0 hyperframe==6.1.0 synchronicity==0.12.7 toml==0.10.2 \
  types-certifi==2021.10.8.3 types-toml==0.10.8.20260518 watchfiles==1.3.0 jsonschema==4.26.0 \
  jsonschema-specifications==2025.9.1 referencing==0.37.0 rpds-py==2026.9.1 pydantic-settings==2.16.3 \
  python-dotenv==1.2.4 typer==0.29.2 \
  uvicorn==0.38.0 prometheus-fastapi-instrumentator==7.1.0 model-hosting-container-standards==0.1.16 jmespath==1.0.1 supervisor
# (the last line: what `vllm serve` imports beyond ../shared/gpu's set, which covers the in-process LLM only)
dl "$k/whl_raw" outlines_core==0.2.14  # vLLM 0.20.0 requires exactly this one
# The model folder: the shape's config and chat template, the trained tokenizer.
cp "$shape/config.json" "$shape/tokenizer_config.json" "$k/model/"
for f in tokenizer.json vocab.json merges.txt; do xz -T0 -6 -c "$tokenizer/$f" > "$k/model/$f.xz"; done
cp -r kit templates pyproject.toml "$k/src/"
mkdir -p "$k/src/benchmarks/gpu" "$k/src/profiles/schemas"
cp benchmarks/gpu/*.py benchmarks/gpu/*.sh "$k/src/benchmarks/gpu/"
cp profiles/schemas/*.json "$k/src/profiles/schemas/"
find "$k/src" -name __pycache__ -prune -exec rm -rf {} +
KIT_SERVING__MODE=class "$kit" render "$profile" -o "$k/class"
KIT_SERVING__MODE=openai "$kit" render "$profile" -o "$k/openai"
"$py" - "$profile" "$k" <<'PY'
import shlex, sys
from pathlib import Path
from kit.load import load
p = load(sys.argv[1]).profile
k = Path(sys.argv[2])
# The image's environment: Modal sets it in the container; .local() runs here, so run.sh exports it.
(k / "env.sh").write_text("".join(f"export {key}={shlex.quote(v)}\n" for key, v in sorted(p.image.env.items())))
snap = k / "hf" / "hub" / ("models--" + p.model.id.replace("/", "--"))
(snap / "refs").mkdir(parents=True)
(snap / "refs" / "main").write_text(p.model.revision)
(snap / "snapshots" / p.model.revision).mkdir(parents=True)
print(snap / "snapshots" / p.model.revision)
PY
cp "$k/model/"* "$k/hf/hub/"models--*/snapshots/*/
chmod -R u+w "$k"
du -sh "$dest/$G/p1" "$dest/$G/p2" "$k"
