"""The knowledge store: the committed data is consistent, says what the artifacts said, and the
recorders' real code paths work against real bytes served locally (only the index host is swapped).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from packaging.version import Version

from kit.knowledge import STORE_DIR, audit
from kit.knowledge import query as q
from kit.knowledge.derive import elf, elf_read, index
from kit.knowledge.derive.fetch import Fetcher
from kit.knowledge.derive.remote_zip import RemoteZip

from .conftest import REPO
from .knowledge_server import FakeIndex, build_shared_library


def test_verify_passes_on_the_committed_store():
    proc = subprocess.run([sys.executable, "-m", "kit.knowledge", "verify"], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "verify: 0 problem(s)" in proc.stdout


def test_verify_finds_a_fact_that_disagrees_with_its_artifact(tmp_path):
    store = tmp_path / "store"
    shutil.copytree(STORE_DIR, store)
    path = store / "files" / "torch.json"
    path.write_text(path.read_text().replace('"glibc":"2.28"', '"glibc":"2.17"', 1))
    idx = store / "index" / "vllm.json"
    idx.write_text(idx.read_text().replace('"via":"pep658"', '"via":"guess"', 1))
    archs = store / "archs" / "torch.json"
    archs.write_text(archs.read_text().replace('"archs":["sm_50","sm_60","sm_70","sm_75","sm_80","sm_86","sm_90"]', '"archs":["sm_50","sm_60","sm_70","sm_75","sm_80","sm_86","sm_90","sm_100"]', 1))
    problems = audit.verify(store)
    assert any("glibc '2.17' but the file name says '2.28'" in p for p in problems), problems
    assert any("archs" in p and "are not the string it cites" in p for p in problems), problems
    assert any("vllm.json" in p and "provenance incomplete" in p for p in problems), problems


def test_stats_counts_every_package():
    s = audit.stats(STORE_DIR)
    assert set(index.PACKAGES) <= set(s["packages"])
    assert s["packages"]["vllm"]["releases"] >= 90
    assert s["packages"]["vllm"]["kernels"] >= 90


# -- facts read from the store, as the artifacts showed them --------------------------------------


def test_vllm_092_metadata():
    rel = q.release("vllm", "0.9.2")
    assert "transformers>=4.51.1" in rel.requires_dist
    assert rel.requires_python == "<3.13,>=3.9"
    assert rel.metadata_source.startswith("vllm==0.9.2 vllm-0.9.2-cp38-abi3-manylinux1_x86_64.whl sha256:f3c5da29")
    assert q.release("vllm", "0.9.2.0") == rel  # PEP 440 equality
    assert "0.2.0" in q.releases("vllm") and q.releases("vllm")[0] == "0.2.0"


def test_torch_cuda_from_the_pypi_build_and_from_local_tags():
    assert q.torch_cuda("2.7.1") == "12.6"  # nvidia-cuda-runtime-cu12==12.6.77 in its Requires-Dist
    assert q.torch_cuda("2.9.0") == "12.8"
    assert q.torch_cuda("2.11.0") == "13.0"  # cuda-toolkit[...,cudart,...]==13.0.2
    assert q.torch_cuda("2.9.0+cu126") == "12.6"
    assert q.torch_cuda("2.9.0+cpu") == "cpu"
    assert q.torch_cuda("1.12.1") is None  # bundled its CUDA; the metadata does not say which
    # A local build is not the PyPI release: its metadata is not recorded.
    assert q.release("torch", "2.9.0+cu126") is None
    assert q.release("torch", "2.9.0") is not None


def test_torch_archs_read_from_each_build():
    # torch 2.7.1's PyPI build (CUDA 12.6) has no Blackwell kernels; 2.8.0 (CUDA 12.8) has, and drops sm_70.
    assert q.torch_archs("2.7.1") == {"sm_50", "sm_60", "sm_70", "sm_75", "sm_80", "sm_86", "sm_90"}
    assert q.torch_archs("2.8.0") == {"sm_75", "sm_80", "sm_86", "sm_90", "sm_100", "sm_120"}
    assert "sm_70" in q.torch_archs("2.10.0")
    src = q.torch_archs_source("2.7.1")
    assert src["member"] == "torch/lib/libtorch_python.so" and src["file"].startswith("torch-2.7.1-cp312-cp312-manylinux_2_28_x86_64")
    # The +cu126 variant of 2.7.1 is the build PyPI carries; 2.9.0's PyPI build is CUDA 12.8, so its
    # +cu126 variant is another build kit has not read.
    assert q.torch_archs("2.7.1+cu126") == q.torch_archs("2.7.1")
    assert q.torch_archs("2.9.0+cu126") is None
    assert q.torch_archs("2.9.0+cpu") == frozenset()
    assert q.torch_archs("1.5.0") is None  # no arch string in builds before 1.6: unknown


def test_sglang_kernel_libnuma_and_cuda13_boundaries():
    def libs(pkg, version):
        return {lib for member in (q.needed_libs(pkg, version) or {}).values() for lib in member}

    assert "libnuma.so.1" not in libs("sgl-kernel", "0.1.5")
    assert "libnuma.so.1" in libs("sgl-kernel", "0.1.6")
    assert "libnuma.so.1" in libs("sglang-kernel", "0.4.3")
    assert "libnuma.so.1" not in libs("sglang-kernel", "0.4.4")
    assert "libcudart.so.12" in libs("sglang-kernel", "0.4.1.post1")
    assert "libcudart.so.13" in libs("sglang-kernel", "0.4.2")
    src = q.needed_libs_source("sglang-kernel", "0.4.3")
    assert src["file"] == "sglang_kernel-0.4.3-cp310-abi3-manylinux2014_x86_64.whl" and len(src["sha256"]) == 64
    # Where both methods ran on one wheel they agree: the exact dynamic section and the scan.
    members = q.needed_libs_source("sglang-kernel", "0.4.2")["members"]
    by_method = {m["method"]: set(m["needed"]) for m in members.values()}
    assert by_method["dynamic"] == by_method["segment-scan"]
    assert q.needed_libs("sglang-kernel", "9.9.9") is None
    # vLLM's _C: CUDA 12 runtime through 0.19.1, CUDA 13 from 0.20.0; never libnuma.
    assert "libcudart.so.12" in libs("vllm", "0.19.1") and "libcudart.so.13" in libs("vllm", "0.20.0")
    assert not any("libnuma" in lib for v in q.releases("vllm") for lib in libs("vllm", v))


def test_wheels_glibc_and_python():
    assert q.wheel_glibc_floor("torch", "2.7.1", "3.12") == Version("2.28")
    assert q.has_wheel_for("torch", "2.7.1", "3.12", "2.28") is True
    assert q.has_wheel_for("torch", "2.7.1", "3.12", "2.27") is False
    assert q.has_wheel_for("torch", "2.7.1", "3.14", "2.39") is False  # no cp314 wheel for 2.7.1
    assert q.has_wheel_for("vllm", "0.9.2", "3.12", None) is True  # cp38-abi3
    assert q.has_wheel_for("nonexistent-pkg", "1.0", "3.12", "2.35") is None
    rel = q.release("flashinfer-python", "0.2.6.post1")
    assert rel.sdist_only and rel.requires_dist is None
    assert q.release("flashinfer-jit-cache", "0.5.0") is None  # not on PyPI


# -- the recorders' code against real bytes served locally ----------------------------------------


def test_elf_needed_of_a_real_shared_library_in_a_wheel(tmp_path):
    so = build_shared_library(tmp_path)
    whl = tmp_path / "demo-1.0-cp312-cp312-linux_x86_64.whl"
    with zipfile.ZipFile(whl, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("demo/__init__.py", "")
        zf.write(so.path, "demo/_C.abi3.so")
        zf.write(so.path, "demo/_C_stored.abi3.so", compress_type=zipfile.ZIP_STORED)
        zf.writestr("demo-1.0.dist-info/METADATA", "Metadata-Version: 2.1\nName: demo\nVersion: 1.0\n")
    with FakeIndex({"files": {whl.name: whl.read_bytes()}}) as server:
        fetcher = Fetcher(index=server.url + "/simple")
        found = elf.wheel_needed(fetcher, f"{server.url}/files/{whl.name}", whl.stat().st_size, elf.re.compile(r"^demo/_C.*\.so$"))
        assert server.whole_downloads == 0 and server.range_requests >= 3
    for member in ("demo/_C.abi3.so", "demo/_C_stored.abi3.so"):
        got = found["members"][member]
        assert got["method"] == "dynamic" and got["complete"]
        assert got["needed"] == so.needed  # readelf -d of the same file, in the same order


def test_elf_scan_of_a_prefix_that_stops_before_the_dynamic_section(tmp_path):
    so = build_shared_library(tmp_path)
    data = so.path.read_bytes()
    h = elf_read.header(data)
    prefix = data[: h.first_load_end]
    assert h.dynamic[0] >= len(prefix)  # the dynamic section lies past the first segment, as in big kernels
    got = elf_read.needed(prefix, whole=False)
    assert got.method == "segment-scan" and got.complete
    assert set(so.needed) <= set(got.needed)
    with pytest.raises(elf_read.NotElf):
        elf_read.needed(b"PK\x03\x04" + bytes(100), whole=False)


def test_metadata_member_read_by_ranges(tmp_path):
    whl = tmp_path / "demo-1.0-py3-none-any.whl"
    with zipfile.ZipFile(whl, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for i in range(3000):  # a central directory bigger than the tail read
            zf.writestr(f"demo/m{i:05d}_{'x' * 40}.py", "pass\n")
        zf.writestr("demo-1.0.dist-info/METADATA", "Metadata-Version: 2.1\nName: demo\nRequires-Dist: numpy>=1.24\n")
    with FakeIndex({"files": {whl.name: whl.read_bytes()}}) as server:
        zf = RemoteZip(Fetcher(index=server.url), f"{server.url}/files/{whl.name}", whl.stat().st_size)
        assert b"Requires-Dist: numpy>=1.24" in zf.read("demo-1.0.dist-info/METADATA")
        assert server.whole_downloads == 0


def test_refresh_is_reproducible_and_incremental(tmp_path):
    """Serve hf-transfer's recorded releases as an index; a refresh into an empty store rebuilds the
    committed file exactly; a second fetches only the index page; a new release fetches one file."""
    fake = FakeIndex.from_store("hf-transfer", STORE_DIR, tmp_path)
    store = tmp_path / "store"
    with fake as server:
        fetcher = Fetcher(index=server.url + "/simple")
        index.refresh(store, ["hf-transfer"], fetcher=fetcher, log=lambda *a, **k: None)
        first = server.requests
        # the page, then per release: its .metadata, or (where PyPI had none) a 404, the zip's tail
        # and its METADATA member
        vias = [json.loads(line.split(":", 1)[1].rstrip(","))["metadata"]["via"] for line in (STORE_DIR / "index" / "hf-transfer.json").read_text().splitlines() if line.startswith('"0.')]
        assert first == 1 + sum(1 if via == "pep658" else 3 for via in vias)
        assert server.whole_downloads == 0
        ours = json.loads((store / "index" / "hf-transfer.json").read_text())
        committed = json.loads((STORE_DIR / "index" / "hf-transfer.json").read_text())
        assert {**ours, "index": None} == {**committed, "index": None}
        assert (store / "files" / "hf-transfer.json").read_text() == (STORE_DIR / "files" / "hf-transfer.json").read_text()

        index.refresh(store, ["hf-transfer"], fetcher=Fetcher(index=server.url + "/simple"), log=lambda *a, **k: None)
        assert server.requests == first + 1  # the page only: nothing recorded is fetched again

        server.add_release("hf-transfer", "0.1.99", requires_dist=["typing-extensions"])
        index.refresh(store, ["hf-transfer"], fetcher=Fetcher(index=server.url + "/simple"), log=lambda *a, **k: None)
        assert server.requests == first + 1 + 2  # the page and the new release's metadata
    doc = json.loads((store / "index" / "hf-transfer.json").read_text())
    assert list(doc["releases"])[-1] == "0.1.99"
    assert [doc["strings"][i] for i in doc["releases"]["0.1.99"]["requires_dist"]] == ["typing-extensions"]
    assert not audit.verify_package(store, "hf-transfer")


def test_refresh_cli_names_unknown_packages(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "kit.knowledge", "--store", str(tmp_path), "refresh", "--package", "not-a-kit-package", "--index", "http://127.0.0.1:9/simple"],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2
    assert "not recorded by kit: not-a-kit-package" in proc.stderr
    assert not list(Path(tmp_path).rglob("*.json"))


def test_check_reads_only_the_metadata_of_the_pinned_packages(tree, monkeypatch):
    """`kit check` must not load the store whole: only store/index/ files of the packages it pins."""
    from functools import cache

    from kit.check import check
    from kit.load import load

    from .conftest import BASE_PROFILE

    opened = []
    raw = q._doc.__wrapped__

    @cache
    def recording(kind, pkg):
        opened.append((kind, pkg))
        return raw(kind, pkg)

    monkeypatch.setattr(q, "_doc", recording)
    q.release.cache_clear()
    root = tree({"profiles/p.toml": BASE_PROFILE})
    check(load(root / "profiles/p.toml"))
    q.release.cache_clear()
    # index/ of the pinned packages and of the packages they pin exactly (kit/release_rules.py reads one
    # exact pin further without a lock: vllm 0.9.2 -> torch==2.7.0 -> its archs, numba==0.61.2, ...),
    # files/ of the pinned packages (their wheels against the image's Python and glibc)
    from packaging.requirements import Requirement

    pinned = {"vllm", "transformers", "xgrammar"}
    one_further = {Requirement(r).name for r in q.release("vllm", "0.9.2").requires_dist if "==" in r and "extra ==" not in r}
    assert opened and {kind for kind, _ in opened} <= {"index", "files", "archs"}
    assert {pkg for kind, pkg in opened if kind == "index"} <= pinned | one_further
    assert {pkg for kind, pkg in opened if kind == "files"} <= pinned
    assert {pkg for kind, pkg in opened if kind == "archs"} <= {"torch"}
