"""Each audited fact at its exact boundary: the real failure it cites on one side (a corpus case or the
release just before the change) and a stack that works on the other.

The versions are the releases where the behaviour changes in the engines' own source (read from the
sdists; see the rule's sources); the stacks are profiles on disk checked by the real `kit check`.
"""

from __future__ import annotations

import importlib.util
import re

import pytest
from packaging.version import Version

from kit import catalog
from kit.catalog import GIB
from kit.check import check
from kit.load import load
from kit.rules import attention_row

from .corpus import load_cases, run_case

CASES = {c.id: c for c in load_cases()}
STORE = importlib.util.find_spec("kit.knowledge.query") is not None
needs_store = pytest.mark.skipif(not STORE, reason="needs the knowledge store (kit/knowledge)")

PROFILE = """\
name = "p"
[app]
name = "p"
[model]
id = "Qwen/Qwen2.5-Coder-7B-Instruct"
dtype = "float16"
max_model_len = 4096
{quant}
[gpu]
type = "{gpu}"
[image]
base = "{image}"
python = "3.11"
{apt}
[packages]
{packages}
[engine]
name = "{engine}"
{engine_extra}
[structured_output]
backend = "xgrammar"
"""


def _findings(tree, *, engine="vllm", packages, gpu="A100-80GB", quant="", image="nvidia/cuda:12.8.0-devel-ubuntu22.04", apt="", engine_extra="") -> dict[str, str]:
    pins = "\n".join(f'{k} = "{v}"' for k, v in packages.items())
    text = PROFILE.format(quant=quant, gpu=gpu, image=image, apt=apt, packages=pins, engine=engine, engine_extra=engine_extra)
    root = tree({"profiles/p.toml": text})
    return {f.rule: f.severity for f in check(load(root / "profiles/p.toml")).active()}


def _corpus(case_id: str, tmp_path) -> dict[str, str]:
    return dict(run_case(CASES[case_id], tmp_path).findings)


FP8 = 'quantization = "fp8"'


# -- FP8: the least compute capability is per engine and per release -----------------------------


def test_fp8_real_failure_vllm_041_on_sm86(tmp_path):
    # vllm-project/vllm#4327: "Minimum capability: 90. Current capability: 86."
    assert _corpus("vllm-041-fp8-sm86", tmp_path).get("gpu-fp8-unsupported") == "error"


@pytest.mark.parametrize(
    "before,after,gpu",
    [
        ("0.4.1", "0.4.2", "L4"),  # floor 9.0 -> 8.9: FP8 on Ada loads from 0.4.2
        ("0.5.0.post1", "0.5.1", "A100-80GB"),  # floor 8.9 -> 8.0: FP8 Marlin, weight-only on Ampere
        ("0.13.0", "0.14.0", "T4"),  # floor 8.0 -> 7.5: FP8 on T4 is not an error from 0.14.0
    ],
)
def test_fp8_floor_moves_exactly_where_the_release_moves_it(tree, before, after, gpu):
    assert _findings(tree, packages={"vllm": before}, gpu=gpu, quant=FP8).get("gpu-fp8-unsupported") == "error"
    assert "gpu-fp8-unsupported" not in _findings(tree, packages={"vllm": after}, gpu=gpu, quant=FP8)


def test_fp8_native_gpu_is_fine_on_a_working_stack(tmp_path):
    # Modal's vllm_inference example: Llama 3.1 8B FP8 on an H100 with vLLM 0.9.1
    found = _corpus("modal-vllm-inference-091-h100", tmp_path)
    assert not {r for r in found if r.startswith("gpu-fp8")}


def test_sglang_has_no_marlin_for_block_fp8_off_native_fp8(tree):
    # The library's SGLang profile serves Qwen3-Coder-30B-A3B-Instruct-FP8 (block-wise FP8, MoE): on an
    # H100 it runs; on an A100 SGLang has no Marlin path (sgl-project/sglang#13471: fp8e4nv on A800).
    root = tree({"profiles/a.toml": _sglang_fp8("A100-80GB"), "profiles/h.toml": _sglang_fp8("H100")})
    a100 = {f.rule: f.severity for f in check(load(root / "profiles/a.toml")).active()}
    h100 = {f.rule for f in check(load(root / "profiles/h.toml")).active()}
    assert a100.get("gpu-fp8-sglang-no-marlin") == "error"
    assert not {r for r in h100 if r.startswith("gpu-fp8")}


def _sglang_fp8(gpu: str) -> str:
    from .conftest import PROFILES

    text = (PROFILES / "qwen3-coder-30b-sglang.toml").read_text()
    return re.sub(r'type = "H100"', f'type = "{gpu}"', text).replace('schema = "schemas/ir-v1.json"', "")


# -- structured output: a request-level backend is rejected 0.8.2-0.10.2 ------------------------------


def test_request_backend_real_failures(tmp_path):
    # vllm#16738 (0.8.4) and vllm PR #19059 (0.9.0, engine backend 'auto')
    for case in ("vllm-084-request-backend-mismatch", "vllm-090-request-backend-pr19059"):
        assert _corpus(case, tmp_path).get("vllm-request-backend-mismatch") == "warning", case


# 0.8.0 has no check and 0.8.2 has it (read from each sdist by the engine store); 0.11.0 stops
# forwarding the request field (a hand bound: the store does not record forwarding)
@needs_store
@pytest.mark.parametrize("version,fires", [("0.8.0", False), ("0.8.2", True), ("0.8.4", True), ("0.8.5", True), ("0.10.2", True), ("0.11.0", False)])
def test_request_backend_window(tree, version, fires):
    found = _findings(tree, packages={"vllm": version, "transformers": "4.53.0" if Version(version) < Version("0.10") else "4.57.6"},
                      engine_extra='args = { guided_decoding_backend = "xgrammar" }')
    assert ("vllm-request-backend-mismatch" in found) is fires


def test_engine_level_backend_alone_is_fine(tmp_path):
    # the seed team's stack: xgrammar chosen once, on the engine
    assert "vllm-request-backend-mismatch" not in _corpus("seed-team-vllm-092-a10g", tmp_path)


# -- attention: an unknown VLLM_ATTENTION_BACKEND raises from 0.10.1 ---------------------------------


def test_unknown_attention_backend_raises_from_0101():
    assert attention_row("vllm", Version("0.10.0"))["unknown_fails"] is False
    assert attention_row("vllm", Version("0.10.1"))["unknown_fails"] is True
    assert attention_row("vllm", Version("0.10.2"))["unknown_fails"] is True


def test_unknown_attention_backend_warns_when_dropped_and_fails_when_rejected(tree):
    before = _findings(tree, packages={"vllm": "0.10.0", "transformers": "4.53.2"}, engine_extra='attention_backend = "BOGUS"')
    after = _findings(tree, packages={"vllm": "0.10.2", "transformers": "4.57.6"}, engine_extra='attention_backend = "BOGUS"')
    assert before.get("attention-backend-unknown-ignored") == "warning" and "attention-backend-unknown" not in before
    assert after.get("attention-backend-unknown") == "error"
    # a name the release defines is fine on both sides
    assert not {"attention-backend-unknown", "attention-backend-unknown-ignored"} & _findings(
        tree, packages={"vllm": "0.10.2", "transformers": "4.57.6"}, engine_extra='attention_backend = "FLASHINFER"'
    ).keys()


# -- SGLang kernels: libnuma linked through sglang-kernel 0.4.3; CUDA 13 from 0.4.2 -----------------


@needs_store
@pytest.mark.parametrize("kernel,version,links", [("sglang-kernel", "0.4.3", True), ("sglang-kernel", "0.4.4", False), ("sgl-kernel", "0.1.6", True)])
def test_kernel_libnuma_boundary(tree, kernel, version, links):
    found = _findings(tree, engine="sglang", packages={"sglang": "0.5.12", kernel: version}, image="debian_slim")
    rule = {"sgl-kernel": "sgl-kernel-libnuma", "sglang-kernel": "sglang-kernel-libnuma"}[kernel]
    assert (found.get(rule) == "error") is links


@needs_store
def test_kernel_libnuma_fixed_by_the_apt_package(tree):
    found = _findings(tree, engine="sglang", packages={"sglang": "0.5.12", "sglang-kernel": "0.4.3"}, image="debian_slim", apt='apt_packages = ["libnuma1"]')
    assert "sglang-kernel-libnuma" not in found


def test_working_sglang_stacks_get_no_libnuma_error(tmp_path):
    # tensorzero's T4 deployment: CUDA devel image plus numactl
    found = _corpus("tensorzero-sglang-04102-t4", tmp_path)
    assert not {r for r, s in found.items() if "libnuma" in r and s == "error"}


@needs_store
def test_sglang_kernel_cuda13_from_042():
    from kit.knowledge import query

    def cudart(v: str) -> set[str]:
        return {lib for libs in query.needed_libs("sglang-kernel", v).values() for lib in libs if lib.startswith("libcudart")}

    assert cudart("0.4.1") == {"libcudart.so.12"} and cudart("0.4.2") == {"libcudart.so.13"}
    from kit.rules import rules_by_id

    assert rules_by_id()["sglang-kernel-cuda13-driver"].when["packages"]["sglang-kernel"] == ">=0.4.2"


# -- A10G usable memory as current drivers report it --------------------------------------------------


def test_a10g_memory_is_what_current_drivers_report():
    a10g = catalog.gpus().find("A10G")
    assert round(a10g.memory_bytes / GIB, 2) == 22.06


def test_the_seed_stack_still_fits_an_a10g():
    from .conftest import PROFILES

    report = check(load(PROFILES / "qwen25-a10g.toml"))
    assert not {f.rule for f in report.active() if f.rule.startswith("gpu-memory")}


# -- transformers unpinned: resolved from the releases' own metadata ---------------------------------


@needs_store
def test_unpinned_transformers_real_failure_and_working_twin(tmp_path):
    # gpustack#2665: vLLM 0.9.2 with nothing holding transformers back -> 'aimv2' at import
    assert _corpus("vllm-092-aimv2-gpustack", tmp_path).get("vllm-transformers-unpinned") == "warning"
    # tensorzero on Modal: vLLM 0.8.4 with huggingface-hub 0.32.0, which keeps transformers at 4.53 or below
    assert "vllm-transformers-unpinned" not in _corpus("tensorzero-vllm-084-t4", tmp_path)


@needs_store
@pytest.mark.parametrize("hub,fails", [("0.33.4", False), ("0.34.0", True)])
def test_unpinned_transformers_boundary_is_the_hub_pin(tree, hub, fails):
    # transformers 4.54.0 (the first with 'aimv2') requires huggingface-hub>=0.34.0
    found = _findings(tree, packages={"vllm": "0.9.2", "huggingface-hub": hub})
    assert ("vllm-transformers-unpinned" in found) is fails


# -- sglang[srt]: kit installs the extra itself ----------------------------------------------------


def test_early_sglang_without_a_kernel_pin_is_not_an_error(tmp_path):
    # Modal's sgl_vlm example ran sglang[all]==0.1.17 on an A10G
    found = _corpus("modal-sgl-vlm-sglang-0117-a10g", tmp_path)
    assert "error" not in found.values()


@needs_store
def test_hopper_against_torch_builds(tree):
    # vllm 0.2.1 pins torch==2.0.1, whose PyPI build (cu117) ships sm_37..sm_86 and no sm_90: "NVIDIA H100
    # PCIe with CUDA capability sm_90 is not compatible with the current PyTorch installation"
    # (https://github.com/pytorch/pytorch/issues/110153, vllm-project/vllm#1301); vllm 0.2.2 moved to torch 2.1.0 (sm_90)
    assert _findings(tree, packages={"vllm": "0.2.1"}, gpu="H100").get("torch-cuda-lacks-gpu-arch") == "error"
    assert "torch-cuda-lacks-gpu-arch" not in _findings(tree, packages={"vllm": "0.2.2"}, gpu="H100")
    assert "torch-cuda-lacks-gpu-arch" not in _findings(tree, packages={"vllm": "0.2.1"}, gpu="A100-80GB")


@needs_store
def test_blackwell_against_torch_builds(tree):
    # torch 2.7.x from PyPI is the cu126 build (sm_50..sm_90); 2.8.0 from PyPI is cu128 with sm_100
    # (vllm 0.10.0 pins torch 2.7.1: vllm-project/vllm#21633, sm_120 "not compatible")
    found = _findings(tree, packages={"vllm": "0.10.0", "torch": "2.7.1"}, gpu="B200")
    assert found.get("torch-cuda-lacks-gpu-arch") == "error"
    assert "torch-cuda-lacks-gpu-arch" not in _findings(tree, packages={"vllm": "0.10.2", "torch": "2.8.0"}, gpu="B200")
    # a +cu126 variant of 2.8.0 is not the build the store read: kit does not guess its list
    assert "torch-cuda-lacks-gpu-arch" not in _findings(tree, packages={"vllm": "0.10.2", "torch": "2.8.0+cu126"}, gpu="B200")


# -- settings a release stops reading -------------------------------------------------------------


@pytest.mark.parametrize("hub,ignored", [("0.36.0", False), ("1.0.0", True)])
def test_hf_transfer_variable_under_hub_1(tree, hub, ignored):
    text = PROFILE.format(quant="", gpu="H100", image="nvidia/cuda:12.8.0-devel-ubuntu22.04", apt='env = { HF_HUB_ENABLE_HF_TRANSFER = "1" }',
                          packages=f'vllm = "0.11.2"\nhuggingface-hub = "{hub}"', engine="vllm", engine_extra="")
    root = tree({"profiles/p.toml": text})
    found = {f.rule: f.severity for f in check(load(root / "profiles/p.toml")).active()}
    assert (found.get("hf-transfer-env-ignored") == "warning") is ignored


@pytest.mark.parametrize("vllm,ignored", [("0.11.2", False), ("0.12.0", True)])
def test_vllm_use_v1_after_v0_removal(tree, vllm, ignored):
    text = PROFILE.format(quant="", gpu="H100", image="nvidia/cuda:12.8.0-devel-ubuntu22.04", apt='env = { VLLM_USE_V1 = "1" }',
                          packages=f'vllm = "{vllm}"', engine="vllm", engine_extra="")
    root = tree({"profiles/p.toml": text})
    assert ("vllm-use-v1-ignored" in {f.rule for f in check(load(root / "profiles/p.toml")).active()}) is ignored


# -- wheels against the image's Python --------------------------------------------------------------


@needs_store
def test_a_pin_without_a_wheel_for_the_python(tree):
    # torch 2.1.2 (Modal's Gemma example, on Python 3.10) has no cp312 wheel and no sdist on the index
    ok = _findings(tree, packages={"vllm": "0.4.0.post1", "torch": "2.1.2"}, gpu="H100")
    assert "pin-no-wheel-for-python" not in ok
    text = PROFILE.format(quant="", gpu="H100", image="nvidia/cuda:12.8.0-devel-ubuntu22.04", apt="",
                          packages='vllm = "0.4.0.post1"\ntorch = "2.1.2"', engine="vllm", engine_extra="").replace('python = "3.11"', 'python = "3.12"')
    root = tree({"profiles/p.toml": text})
    found = {f.rule: f.severity for f in check(load(root / "profiles/p.toml")).active()}
    assert found.get("pin-no-wheel-for-python") == "error"


# -- engine facts from the releases' sources (kit/knowledge/engines.py, when its store is present) ------


def _engine_store(engine: str, version: str) -> bool:
    try:
        from kit.knowledge.engines import engine_facts
    except ImportError:
        return False
    return engine_facts(engine, version) is not None


@pytest.mark.skipif(not _engine_store("vllm", "0.10.2"), reason="needs the engine facts store (kit/knowledge/engines.py)")
def test_engine_facts_agree_with_the_audited_boundaries():
    from kit.knowledge.engines import engine_facts

    assert engine_facts("vllm", "0.10.0").unknown_attention_backend_raises is False
    assert engine_facts("vllm", "0.10.1").unknown_attention_backend_raises is True
    assert engine_facts("vllm", "0.13.0").quant_min_capability.get("fp8") == 80
    assert engine_facts("vllm", "0.14.0").quant_min_capability.get("fp8") == 75
    assert "VLLM_USE_V1" not in engine_facts("vllm", "0.12.0").env_vars


@pytest.mark.skipif(not _engine_store("vllm", "0.12.0"), reason="needs the engine facts store (kit/knowledge/engines.py)")
def test_an_engine_variable_the_release_does_not_read(tree):
    text = PROFILE.format(quant="", gpu="H100", image="nvidia/cuda:12.8.0-devel-ubuntu22.04", apt='env = { VLLM_NO_SUCH_SETTING = "1" }',
                          packages='vllm = "0.12.0"', engine="vllm", engine_extra="")
    root = tree({"profiles/p.toml": text})
    assert "engine-env-unread" in {f.rule for f in check(load(root / "profiles/p.toml")).active()}


@needs_store
def test_cuda_major_of_the_engine_against_a_torch_local_variant(tree):
    # vLLM 0.11.2 links libcudart.so.12; torch 2.9.0 from PyPI is CUDA 12.8, its +cu130 variant CUDA 13
    same = _findings(tree, packages={"vllm": "0.11.2", "torch": "2.9.0"}, gpu="H100")
    other = _findings(tree, packages={"vllm": "0.11.2", "torch": "2.9.0+cu130"}, gpu="H100")
    assert "cuda-major-mismatch" not in same
    assert other.get("cuda-major-mismatch") == "warning"


# -- requirements one exact pin further, and a hub major against transformers ----------------------


@needs_store
@pytest.mark.parametrize("numpy,fails", [("2.2.6", False), ("2.3.0", True)])
def test_numba_caps_numpy_through_the_engine_pin(tree, numpy, fails):
    # vllm 0.10.1 pins numba==0.61.2, which requires numpy<2.3: "ImportError: Numba needs NumPy 2.2 or
    # less. Got NumPy 2.3." (gpustack/gpustack#2769, vLLM 0.10.1; corpus case vllm-0101-numba-numpy-23)
    found = _findings(tree, packages={"vllm": "0.10.1", "transformers": "4.55.0", "numpy": numpy})
    assert (found.get("pin-conflict-transitive") == "error") is fails


@needs_store
@pytest.mark.parametrize("hub,fails", [("0.36.0", False), ("1.0.0", True)])
def test_hub_major_against_transformers(tree, hub, fails):
    # transformers 4.57.1 requires huggingface-hub>=0.34.0,<1.0 (its Requires-Dist); hub 1.0 is refused
    found = _findings(tree, packages={"vllm": "0.11.0", "transformers": "4.57.1", "huggingface-hub": hub})
    assert (found.get("pin-conflict") == "error") is fails


# -- the hand-kept [[api]] rows against what each release's source defines ---------------------------


@needs_store
def test_api_rows_name_what_every_release_in_their_range_defines():
    # kit renders code from the [[api]] rows (kit/data/rules/structured_output.toml); the engine store read
    # each release's sampling_params.py and arg_utils.py, so every release a row covers must define the
    # row's class, SamplingParams field and engine argument
    from packaging.specifiers import SpecifierSet

    from kit.knowledge import query
    from kit.knowledge.engines import engine_facts
    from kit.rules import api_table

    checked = 0
    for row in api_table():
        for version in query.releases(row["engine"]):
            if not SpecifierSet(row["versions"]).contains(Version(version), prereleases=True):
                continue
            facts = engine_facts(row["engine"], version)
            if facts is None:  # no sdist recorded (vllm 0.15.0, 0.15.1)
                continue
            so = facts.structured_output
            where = (row["engine"], version, row["versions"])
            if row["params_class"]:
                assert row["params_class"] in so.classes, where
            assert row["sampling_kwarg"] in so.sampling_params_fields, where
            assert row["engine_backend_arg"] in so.engine_args, where
            checked += 1
    assert checked > 40


@needs_store
def test_attention_rows_agree_with_every_release_in_their_range():
    # the [[attention]] rows (how a release is told its backend, and whether an unknown name raises)
    # against what the engine store read from each vLLM release's selector and arg_utils
    from packaging.specifiers import SpecifierSet

    from kit.knowledge import query
    from kit.knowledge.engines import engine_facts
    from kit.rules import attention_table

    checked = 0
    for row in attention_table():
        if row["engine"] != "vllm":
            continue
        for version in query.releases("vllm"):
            facts = engine_facts("vllm", version)
            if facts is None or not SpecifierSet(row["versions"]).contains(Version(version), prereleases=True):
                continue
            where = (version, row["versions"])
            assert facts.unknown_attention_backend_raises is row["unknown_fails"], where
            if row["via"] == "env":
                assert facts.attention_env_var_read and not facts.attention_backend_arg, where
            else:
                assert facts.attention_backend_arg, where
            checked += 1
    assert checked > 30
