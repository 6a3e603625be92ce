#!/usr/bin/env bash
# Here (any machine with the internet), in the repository root: stage what benchmarks/gpu/run.sh needs on
# the GPU machine, in ignored folders that travel with `carry`:
#   .gpu/p1, .gpu/p2  vLLM 0.20.0 for that machine (../shared/gpu/prepare.sh; see its README)
#   .whl/             the modal client and what kit needs there beyond the machine's image, as wheels
#   .gpu/kit/         the library profile rendered by kit (class and openai mode, load_format "dummy"),
#                     a Hugging Face cache holding the model's config and tokenizer at the pinned
#                     revision (no weights), and the profile's image environment as env.sh
set -euo pipefail
root=$(git rev-parse --show-toplevel); cd "$root"
shape=${SHAPE:-../shared/gpu/model-qwen25-7b-shape}
kit=${KIT:-.venv/bin/kit}
py=${PY:-.venv/bin/python}
profile=benchmarks/gpu/qwen25-h200-dummy.toml
for p in /.gpu/ /.whl/; do grep -qx "$p" .git/info/exclude || echo "$p" >> .git/info/exclude; done
[ -f .gpu/p1/setup.sh ] && [ -f .gpu/p2/run.sh ] || bash ../shared/gpu/prepare.sh
mkdir -p .whl
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .whl \
  modal==1.6.4 grpclib==0.4.9 h2==4.4.1 hpack==4.2.0 hyperframe==6.1.0 synchronicity==0.12.7 toml==0.10.2 \
  types-certifi==2021.10.8.3 types-toml==0.10.8.20260518 watchfiles==1.3.0 jsonschema==4.26.0 \
  jsonschema-specifications==2025.9.1 referencing==0.37.0 rpds-py==2026.9.1 pydantic-settings==2.16.3 \
  python-dotenv==1.2.4 typer==0.29.2 \
  uvicorn==0.38.0 prometheus-fastapi-instrumentator==7.1.0 model-hosting-container-standards==0.1.16 jmespath==1.0.1 supervisor
# (the last line: what `vllm serve` imports beyond ../shared/gpu's set, which covers the in-process LLM only)
rm -rf .gpu/kit; mkdir -p .gpu/kit
KIT_SERVING__MODE=class "$kit" render "$profile" -o .gpu/kit/class
KIT_SERVING__MODE=openai "$kit" render "$profile" -o .gpu/kit/openai
"$py" - "$profile" <<'PY'
import shlex, sys
from pathlib import Path
from kit.load import load
p = load(sys.argv[1]).profile
# The image's environment: Modal sets it in the container; .local() runs here, so run.sh exports it.
# (engine.attention_backend is rendered into the app itself, as the pinned vLLM reads it.)
env = dict(p.image.env)
Path(".gpu/kit/env.sh").write_text("".join(f"export {k}={shlex.quote(v)}\n" for k, v in sorted(env.items())))
snap = Path(".gpu/kit/hf/hub") / ("models--" + p.model.id.replace("/", "--"))
(snap / "refs").mkdir(parents=True)
(snap / "refs" / "main").write_text(p.model.revision)
(snap / "snapshots" / p.model.revision).mkdir(parents=True)
print(snap / "snapshots" / p.model.revision)
PY
cp "$shape"/* .gpu/kit/hf/hub/models--*/snapshots/*/
chmod -R u+w .gpu/kit
du -sh .gpu/p1 .gpu/p2 .whl .gpu/kit
