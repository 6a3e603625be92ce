"""What the image holds (issue 12): image facts, the engine from the image, extras, sdists, non-release builds.

`network` tests resolve with the real uv against the package index and read real sdists; the rest
run offline over real TOML files on disk.
"""

from __future__ import annotations

import json

import pytest
from packaging.version import Version

from kit import lockfile, resolve
from kit.check import check
from kit.image_facts import image_facts, is_release
from kit.load import load
from kit.render import render

from .conftest import BASE_PROFILE
from .rendered import import_bundle


def _profile(tree, text: str, name: str = "p"):
    root = tree({f"profiles/{name}.toml": text})
    return load(root / f"profiles/{name}.toml")


def _rules(report) -> dict[str, str]:
    return {f.rule: f.severity for f in report.findings}


# -- image facts -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("base", "builder", "glibc", "nvcc", "cuda", "python"),
    [
        ("nvidia/cuda:11.8.0-devel-ubuntu20.04", None, "2.31", True, "11.8.0", None),
        ("nvidia/cuda:12.8.1-cudnn-runtime-ubuntu22.04", None, "2.35", False, "12.8.1", None),
        ("nvidia/cuda:13.0.1-base-ubuntu24.04", None, "2.39", False, "13.0.1", None),
        ("debian_slim", None, "2.36", False, None, None),
        ("debian_slim", "2023.12", "2.31", False, None, None),
        ("debian_slim", "2026.10", "2.41", False, None, None),
        ("python:3.12-slim-bookworm", None, "2.36", False, None, "3.12"),
        ("python:3.11-trixie", None, "2.41", False, None, "3.11"),
        ("lmsysorg/sglang:v0.5.5", None, "2.35", True, "12.9.1", "3.12"),
        ("vllm/vllm-openai:v0.9.1", None, "2.35", True, "12.8.1", "3.12"),
    ],
)
def test_image_facts(base, builder, glibc, nvcc, cuda, python):
    f = image_facts(base, builder)
    assert (f.known, f.glibc, f.nvcc, f.cuda, f.python) == (True, Version(glibc), nvcc, cuda, python)
    assert f.sources and not f.unknown


def test_an_image_kit_half_knows_names_only_what_it_does_not_know():
    floating = image_facts("python:3.12-slim")  # Debian follows the release of the day: glibc unknown
    assert floating.known and floating.python == "3.12" and floating.slim and floating.compilers is False
    assert [m.split(" (")[0] for m in floating.unknown] == ["glibc"]
    assert not image_facts("python:3.12-alpine").known  # musl, not glibc: kit claims nothing


def test_engine_images_hold_their_engine_and_its_exact_pins():
    sg = image_facts("lmsysorg/sglang:v0.5.5")
    assert sg.engine == "sglang" and sg.packages["sglang"] == "0.5.5" and sg.packages["sgl-kernel"] == "0.3.16.post5"
    assert sg.packages["torch"] == "2.8.0" and sg.libnuma and sg.python_on_path and sg.no_deps == ("nvidia-nccl-cu12",)
    v = image_facts("vllm/vllm-openai:v0.9.1")
    assert v.packages["vllm"] == "0.9.1" and v.packages["torch"] == "2.7.0" and v.python_on_path is False


def test_recorded_debian_slim_rows_match_the_installed_modal_wheel():
    import tomllib

    from kit.data import record_images  # noqa: F401 - the recorder, importable as a module
    from kit.data.record_images import HERE, debian_slim_rows

    recorded = json.loads((HERE / "images.recorded.json").read_text())["debian_slim"]
    assert debian_slim_rows(tomllib.loads((HERE / "images.toml").read_text())) == recorded


def test_unknown_image_gets_one_info_and_no_assumed_nvcc(tree):
    text = BASE_PROFILE.replace("nvidia/cuda:12.4.1-devel-ubuntu22.04", "example.com/team/custom:7")
    report = check(_profile(tree, text.replace('vllm = "0.9.2"', 'vllm = "0.11.0"\ntorch = "2.8.0"').replace('xgrammar = "0.1.19"', 'xgrammar = "0.2.8"\nflashinfer-python = "0.3.1"')))
    unknown = [f for f in report.findings if f.rule == "image-unknown"]
    # "kit does not know" is context, never a warning (docs/rules.md, severity contract)
    assert len(unknown) == 1 and unknown[0].severity == "info"
    assert "glibc, nvcc, Python not checked" in unknown[0].summary
    assert "x86_64-manylinux_2_28" in unknown[0].why and "assumed" in unknown[0].why
    # Rules that fire on "no nvcc" do not fire on "nvcc unknown".
    assert not [f for f in report.findings if f.rule.startswith("flashinfer") and f.severity == "error"]
    assert not [f.rule for f in report.findings if f.severity == "warning"]


def test_library_images_are_all_known():
    from .conftest import PROFILES

    for path in sorted(PROFILES.glob("*.toml")):
        loaded = load(path)
        assert image_facts(loaded.profile.image.base, loaded.profile.image.builder_version).unknown == [], path


def test_builder_version_moves_debian_slim_platform_and_the_lock_hash(tree):
    text = BASE_PROFILE.replace('"nvidia/cuda:12.4.1-devel-ubuntu22.04"', '"debian_slim"')
    default = lockfile.resolution_inputs(_profile(tree, text))
    trixie = lockfile.resolution_inputs(_profile(tree, text.replace("[image]", '[image]\nbuilder_version = "2026.10"'), "q"))
    assert default.platform == "x86_64-manylinux_2_36" and trixie.platform == "x86_64-manylinux_2_41"
    assert default.hash() != trixie.hash()


# -- the engine from the image ---------------------------------------------------------------------

SGLANG_IMAGE = """\
name = "s"
[app]
name = "s"
[model]
id = "Qwen/Qwen2.5-Coder-7B-Instruct"
[gpu]
type = "H100"
[image]
base = "lmsysorg/sglang:v0.5.5"
engine = "from-image"
[packages]
hf-transfer = "0.1.9"
[engine]
name = "sglang"
"""


def test_engine_from_image_is_never_engine_not_pinned_and_locks_only_the_additions(tree):
    loaded = _profile(tree, SGLANG_IMAGE)
    report = check(loaded)
    assert "engine-not-pinned" not in _rules(report) and report.count("error") == 0
    inputs = lockfile.resolution_inputs(loaded)
    assert inputs.requirements == ("hf-transfer==0.1.9",) and inputs.engine_requirement == "sglang[all]==0.5.5"
    assert inputs.python == "3.12" and inputs.platform == "x86_64-manylinux_2_35"
    assert "torch==2.8.0" in inputs.constraints and not any(c.startswith(("sglang==", "nvidia-nccl-cu12")) for c in inputs.constraints)
    assert loaded.profile.version("sglang") == Version("0.5.5")


def test_engine_from_image_mismatches_are_errors(tree):
    wrong = _profile(tree, SGLANG_IMAGE.replace('hf-transfer = "0.1.9"', 'sglang = "0.5.4"').replace("[image]", '[image]\npython = "3.11"'))
    assert _rules(check(wrong)).items() >= {"engine-image-mismatch": "error", "image-python-mismatch": "error"}.items()
    other = _profile(tree, SGLANG_IMAGE.replace('name = "sglang"', 'name = "vllm"'), "q")
    assert _rules(check(other))["engine-image-mismatch"] == "error"


def test_engine_from_an_unknown_image_says_what_it_could_not_check(tree):
    loaded = _profile(tree, SGLANG_IMAGE.replace("lmsysorg/sglang:v0.5.5", "example.com/sglang:custom"))
    report = check(loaded)
    # One finding about the image, at info severity: kit not knowing is context (docs/rules.md)
    warned = [f for f in report.findings if f.rule == "image-unknown"]
    assert [(f.rule, f.severity) for f in warned] == [("image-unknown", "info")]
    assert not [f for f in report.findings if f.severity != "info" and f.rule != "sglang-unverified-stack"]
    assert "the sglang version not checked" in warned[0].summary and "Name it in [packages]" in warned[0].why
    named = _profile(tree, SGLANG_IMAGE.replace("lmsysorg/sglang:v0.5.5", "example.com/sglang:custom").replace('hf-transfer = "0.1.9"', 'sglang = "0.5.5"'), "q")
    assert lockfile.resolution_inputs(named).engine_requirement == "sglang==0.5.5"
    assert "sglang version" not in [f for f in check(named).findings if f.rule == "image-unknown"][0].summary
    plain = _profile(tree, SGLANG_IMAGE.replace("lmsysorg/sglang:v0.5.5", "nvidia/cuda:12.8.1-devel-ubuntu22.04"), "r")
    assert _rules(check(plain))["engine-not-in-image"] == "error"


def test_a_dev_build_is_info_and_gets_no_release_rules(tree):
    assert not is_release("0.22.1rc1.dev188") and not is_release("0.9.0+g1a2b3c") and is_release("0.9.2")
    text = BASE_PROFILE.replace('vllm = "0.9.2"', 'vllm = "0.20.1.dev188"').replace("ubuntu22.04", "ubuntu20.04")
    report = check(_profile(tree, text))
    rules = _rules(report)
    assert rules["engine-build-not-a-release"] == "info"
    assert "vllm-wheel-glibc-2.35" not in rules  # 0.20.x's rule on ubuntu20.04 is not applied to a dev build
    release = _rules(check(_profile(tree, text.replace("0.20.1.dev188", "0.20.1"), "q")))
    assert release.get("vllm-wheel-glibc-2.35") == "error"


# -- extras ----------------------------------------------------------------------------------------


def test_extras_reach_the_lock_request_and_the_unlocked_render(tree):
    loaded = _profile(tree, BASE_PROFILE.replace('xgrammar = "0.1.19"', 'xgrammar = "0.1.19"\n"FastAPI[standard]" = "0.115.0"'))
    assert loaded.profile.packages["fastapi"] == "0.115.0" and loaded.profile.extras == {"fastapi": ("standard",)}
    assert "fastapi[standard]==0.115.0" in lockfile.resolution_inputs(loaded).requirements
    assert "fastapi[standard]==0.115.0" in render(loaded).files["requirements.txt"]


def test_a_package_twice_with_and_without_extras_is_refused(tree):
    from kit.errors import ProfileError

    with pytest.raises(ProfileError) as exc:
        _profile(tree, BASE_PROFILE.replace('xgrammar = "0.1.19"', 'xgrammar = "0.1.19"\n"vllm[audio]" = "0.9.2"'))
    assert "listed twice" in exc.value.message


# -- sdists, against the real index ------------------------------------------------------------------


@pytest.mark.network
def test_sdist_classified_by_reading_it():
    from kit.sdist import classify

    assert classify("pyairports", "0.0.1").pure
    assert set(classify("flashinfer-python", "0.2.9rc2").compilers) >= {"nvcc"}


@pytest.mark.network
def test_old_vllm_stack_with_a_pure_python_sdist_locks_checks_and_renders(tree, tmp_path, monkeypatch):
    # vLLM 0.6.3 requires outlines 0.0.46, which requires pyairports, published only as an sdist.
    text = BASE_PROFILE.replace('vllm = "0.9.2"', 'vllm = "0.6.3"').replace('transformers = "4.53.0"', 'transformers = "4.46.3"').replace('xgrammar = "0.1.19"\n', "")
    text += '\n[structured_output]\nbackend = "outlines"\n\n[serving]\nmode = "openai"\n'
    loaded = _profile(tree, text)
    result = resolve.lock_profile(loaded)
    lock = lockfile.parse(result.path)
    assert "pyairports==0.0.1" in lock.build_from_source and lock.sdist_kinds == {"pyairports==0.0.1": "pure-python"}
    assert "pyairports==0.0.1" in lock.text and "--hash=sha256:2fccfc96a47ecbc6f68cfd04cd251ce4694f45add170c74b5dd88921206c2e68" in lock.text
    assert _rules(check(loaded, lockfile.closure_for(loaded)))["lock-sdist-pure-python"] == "info"
    # vLLM 0.6.3's structured-output API is derived from its sdist (kit.engine_api): it renders, and the
    # app imports with the real modal client, the sdist in its requirements.
    bundle = render(loaded)
    assert "pyairports==0.0.1" in bundle.files["requirements.txt"] and "'--guided-decoding-backend', 'outlines'" in bundle.files["app.py"]
    import_bundle(bundle, tmp_path / "bundle", monkeypatch)


@pytest.mark.network
def test_a_pure_python_sdist_renders_and_imports(tree, tmp_path, monkeypatch):
    loaded = _profile(tree, BASE_PROFILE.replace('xgrammar = "0.1.19"', 'xgrammar = "0.1.19"\npyairports = "0.0.1"'))
    resolve.lock_profile(loaded)
    bundle = render(loaded)
    assert "pyairports==0.0.1" in bundle.files["requirements.txt"]
    assert "--only-binary" not in bundle.files["app.py"]  # the image may build this one sdist
    import_bundle(bundle, tmp_path / "bundle", monkeypatch)


@pytest.mark.network
def test_forbidden_sdists_fail_with_advice_the_user_can_follow(tree):
    from kit.errors import KitError

    loaded = _profile(tree, BASE_PROFILE.replace('xgrammar = "0.1.19"', 'xgrammar = "0.1.19"\npyairports = "0.0.1"').replace("[image]", '[image]\nsdists = "none"'))
    with pytest.raises(KitError) as exc:
        resolve.lock_profile(loaded)
    assert 'image.sdists = "none" forbids' in exc.value.message and not lockfile.lock_path(loaded).exists()
    # Through the engine: the advice names the package that pulls the sdist in.
    old_vllm = BASE_PROFILE.replace('vllm = "0.9.2"', 'vllm = "0.6.3"').replace('transformers = "4.53.0"', 'transformers = "4.46.3"').replace('xgrammar = "0.1.19"\n', "")
    loaded = _profile(tree, old_vllm.replace("[image]", '[image]\nsdists = "none"'), "q")
    with pytest.raises(KitError) as exc:
        resolve.lock_profile(loaded)
    assert "pyairports==0.0.1 has no wheel" in exc.value.message and "(required by outlines>=0.0.43,<=0.0.46)" in exc.value.message
    assert "remove image.sdists" in exc.value.message and "vllm==0.6.3 depends on outlines" in exc.value.message


@pytest.mark.network
def test_engine_from_the_vllm_image_locks_the_additions_only(tree, tmp_path, monkeypatch):
    text = SGLANG_IMAGE.replace("lmsysorg/sglang:v0.5.5", "vllm/vllm-openai:v0.9.1").replace('name = "sglang"', 'name = "vllm"')
    loaded = _profile(tree, text.replace('hf-transfer = "0.1.9"', 'transformers = "4.53.0"'))
    resolve.lock_profile(loaded)
    lock = lockfile.parse(lockfile.lock_path(loaded))
    assert set(lock.packages) == {"transformers"} and lock.provided["vllm"] == Version("0.9.1") and lock.provided["torch"] == Version("2.7.0")
    bundle = render(loaded)
    app = bundle.files["app.py"]
    assert "'vllm/vllm-openai:v0.9.1'" in app and "add_python" not in app
    assert '"ENTRYPOINT []"' in app and "/usr/local/bin/python" in app  # the image's server entrypoint cleared, `python` linked
    assert bundle.files["requirements.txt"].startswith("transformers==4.53.0")
    import_bundle(bundle, tmp_path / "bundle", monkeypatch)


def test_builder_version_reaches_modal_through_the_rendered_app(tree, tmp_path, monkeypatch):
    import modal.config

    text = BASE_PROFILE.replace('"nvidia/cuda:12.4.1-devel-ubuntu22.04"', '"debian_slim"').replace("[image]", '[image]\nbuilder_version = "2026.10"')
    monkeypatch.delenv("MODAL_IMAGE_BUILDER_VERSION", raising=False)
    bundle = render(_profile(tree, text))
    import_bundle(bundle, tmp_path / "bundle", monkeypatch)
    assert modal.config.config.get("image_builder_version") == "2026.10"
    monkeypatch.delenv("MODAL_IMAGE_BUILDER_VERSION", raising=False)
    assert "MODAL_IMAGE_BUILDER_VERSION" not in render(_profile(tree, BASE_PROFILE, "q")).files["app.py"]


@pytest.mark.network
def test_extras_are_resolved_with_their_dependencies(tree):
    loaded = _profile(tree, BASE_PROFILE.replace('xgrammar = "0.1.19"', 'xgrammar = "0.1.19"\n"fastapi[standard]" = "0.115.0"'))
    resolve.lock_profile(loaded)
    lock = lockfile.parse(lockfile.lock_path(loaded))
    assert "fastapi[standard]==0.115.0" in lock.header["requirements"]
    assert lock.packages["fastapi"] == Version("0.115.0") and {"fastapi-cli", "uvicorn", "email-validator"} <= set(lock.packages)
    assert lockfile.status(loaded).state == "fresh"


def test_recorded_engine_images_are_fresh_for_images_toml():
    """Every engine row of images.toml has its recording (run kit/data/record_images.py after editing one)."""
    import tomllib

    from kit.data.record_images import HERE

    rows = [r for r in tomllib.loads((HERE / "images.toml").read_text())["image"] if r.get("engine")]
    recorded = json.loads((HERE / "images.recorded.json").read_text())["engine_images"]
    assert sorted(recorded) == sorted(r["match"] for r in rows)
    for row in rows:
        entry = recorded[row["match"]]
        assert entry["sources"][0] == row["sources"][0], row["match"]
        assert entry["packages"].items() >= row["dockerfile_pins"].items(), row["match"]


def test_a_python_the_builder_version_does_not_install_is_an_error(tree):
    text = BASE_PROFILE.replace('"nvidia/cuda:12.4.1-devel-ubuntu22.04"', '"debian_slim"')
    old = _profile(tree, text.replace("[image]", '[image]\nbuilder_version = "2024.04"').replace('python = "3.11"', 'python = "3.13"'))
    finding = [f for f in check(old).findings if f.rule == "image-python-unsupported-by-builder"]
    assert finding and finding[0].severity == "error" and "3.10, 3.11, 3.12" in finding[0].why
    ok = _profile(tree, text.replace("[image]", '[image]\nbuilder_version = "2024.10"').replace('python = "3.11"', 'python = "3.13"'), "q")
    assert "image-python-unsupported-by-builder" not in _rules(check(ok))


def test_recorded_python_series_match_the_installed_modal_wheel():
    from modal._image import SUPPORTED_PYTHON_SERIES

    from kit.image_facts import python_series

    for version, series in SUPPORTED_PYTHON_SERIES.items():
        assert python_series(version)[0] == series


def test_diff_reads_the_engine_the_image_holds():
    """kit diff from a pinned vLLM to the vLLM image: the engine moves 0.9.2 -> 0.9.1, it is not "removed"."""
    from kit.diff import diff

    from .conftest import PROFILES

    out = diff(load(PROFILES / "qwen25-a10g.toml"), load(PROFILES / "qwen25-a10g-vllm-image.toml"))
    vllm = [c for c in out.packages if c.name == "vllm"]
    assert [(c.old, c.new) for c in vllm] == [("0.9.2", "0.9.1")]
    assert not [c for c in out.locked if c.name == "torch" and c.new is None]  # the image's torch is read, not "removed"
