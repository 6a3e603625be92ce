"""Computed rules over release facts (kit/release_facts.py): conditions on what the releases' own
artifacts say, not on typed version windows.

    transformers_unpinned   the transformers a fresh resolve picks, through the transformers windows
    kernel_libnuma          the SGLang kernel's DT_NEEDED libnuma.so.1 against the image
    torch_gpu_arch          the torch build's CUDA architectures against the GPU
    transitive_pins         an exact pin of a pinned package whose own requirement excludes another pin

Each rule's text and sources live in kit/data/rules/*.toml (computed = true); `check` is the
_Computed instance of kit/check.py (profile, facts, emit).
"""

from __future__ import annotations

import re
from typing import Any

from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from kit import release_facts
from kit.lockfile import engine_extras
from kit.rules import Facts, evaluate

ENGINE_PACKAGE = {"vllm": "vllm", "sglang": "sglang"}
# The transformers windows of data/rules/versions.toml, applied to the release a fresh resolve picks.
TRANSFORMERS_RULES = ("vllm-transformers-aimv2", "vllm-transformers-v5-tokenizer", "vllm-transformers-v5-forced")
# An index serving CUDA-specific torch builds: pip and uv prefer its +cuXXX local version over PyPI's.
_TORCH_INDEX = re.compile(r"download\.pytorch\.org/whl/(?:nightly/|test/)?cu(\d+)")


def run(check: Any) -> None:
    transformers_unpinned(check)
    kernel_libnuma(check)
    torch_gpu_arch(check)
    transitive_pins(check)
    wheels_for_image(check)
    engine_env_unread(check)
    cuda_major(check)


def _env(check: Any) -> dict[str, str]:
    return release_facts.marker_env(check.p.image.python)


def _extras(check: Any, package: str) -> tuple[str, ...]:
    extra = engine_extras(check.p.engine.name, check.p.packages).get(package)
    return (extra,) if extra else ()


def _engine(check: Any) -> tuple[str, Version | None]:
    pkg = ENGINE_PACKAGE[check.p.engine.name]
    return pkg, check.p.version(pkg)


def installed_version(check: Any, package: str) -> tuple[str, str] | None:
    """(version, how kit knows) of a package: the profile's pin, the lock's, else the engine's exact pin of it."""
    name = canonicalize_name(package)
    pinned = check.p.packages.get(name)
    if pinned is not None:
        return pinned, "pinned in the profile"
    locked = check.facts.packages.get(name)
    if locked is not None:
        return str(locked), "resolved in the lockfile"
    pkg, version = _engine(check)
    if version is None:
        return None
    for req in release_facts.requirements_on(pkg, str(version), package, _env(check), _extras(check, pkg)) or []:
        exact = release_facts.exact_version(req)
        if exact is not None:
            return exact, f"{pkg} {version} requires {req}"
    return None


# -- transformers ---------------------------------------------------------------------------------


def transformers_unpinned(check: Any) -> None:
    """vLLM with transformers unpinned and no lock: resolve transformers from the releases' own metadata."""
    pkg, vllm = _engine(check)
    if pkg != "vllm" or vllm is None or "transformers" in check.facts.packages:
        return
    window = [check.rules[r] for r in TRANSFORMERS_RULES]
    if not any(SpecifierSet(r.when["packages"]["vllm"]).contains(vllm, prereleases=True) for r in window):
        return
    env = _env(check)
    wanted = release_facts.requirements_on("vllm", str(vllm), "transformers", env)
    hub = check.p.packages.get("huggingface-hub")
    python = Version(f"{check.p.image.python}.0")

    def accepts(candidate: str) -> bool:
        if not all(r.specifier.contains(candidate, prereleases=True) for r in wanted or []):
            return False
        rp = release_facts.requires_python("transformers", candidate)
        if rp and not SpecifierSet(rp).contains(python):
            return False
        on_hub = release_facts.requirements_on("transformers", candidate, "huggingface-hub", env)
        if on_hub is None:
            return False
        return hub is None or all(r.specifier.contains(hub, prereleases=True) for r in on_hub)

    resolved = release_facts.newest_release("transformers", accepts) if wanted is not None else None
    if resolved is None:
        check.emit("vllm-transformers-unchecked")
        return
    trial = Facts(**{**check.facts.__dict__, "packages": {**check.facts.packages, "transformers": Version(resolved)}})
    failures = evaluate(trial, tuple(window))
    if failures:
        check.emit(
            "vllm-transformers-unpinned",
            transformers_resolved=resolved,
            vllm_requires=", ".join(str(r) for r in wanted or []) or "no transformers bound",
            hub_clause=f" and by the pinned huggingface-hub {hub} (through each transformers release's own bound on it)" if hub else "",
            failure=f"{failures[0].summary}. {failures[0].why}",
            fix_hint=failures[0].fix,
        )


# -- the SGLang kernel's shared libraries -----------------------------------------------------------

KERNELS = ("sgl-kernel", "sglang-kernel")


def kernel_libnuma(check: Any) -> None:
    """The kernel's compiled members need libnuma.so.1 (DT_NEEDED); a slim image without libnuma1 lacks it."""
    f = check.facts
    if check.p.engine.name != "sglang" or not f.image_known or not f.image_slim or "libnuma1" in f.apt:
        return
    for kernel in KERNELS:
        found = installed_version(check, kernel)
        if found is None:
            continue
        version, how = found
        libs = release_facts.needed_libs(kernel, version)
        if libs is None:
            continue
        members = sorted(m for m, needed in libs.value.items() if "libnuma.so.1" in needed)
        if members:
            rule = {"sgl-kernel": "sgl-kernel-libnuma", "sglang-kernel": "sglang-kernel-libnuma"}[kernel]
            if how not in ("pinned in the profile", "resolved in the lockfile"):
                rule = "sglang-libnuma-unlocked"
            check.emit(rule, keys=["image.apt_packages", f"packages.{kernel}" if how == "pinned in the profile" else "packages.sglang"],
                       kernel=kernel, kernel_version=version, how=how, members=", ".join(members), fact=libs.source)
        return


# -- torch's CUDA architectures against the GPU -------------------------------------------------


def _arch(cc: Version) -> tuple[int, int]:
    return cc.major, cc.minor


def runs_on(archs: frozenset[str], cc: Version) -> bool:
    """Whether a build with these sm_XX (SASS) / compute_XX (PTX) targets runs on compute capability cc.

    SASS runs on the same major version at an equal or higher minor; PTX is JIT-compiled by the
    driver for any newer GPU."""
    major, minor = _arch(cc)
    for a in archs:
        kind, _, num = a.partition("_")
        try:
            m, n = int(num[:-1]), int(num[-1])
        except ValueError:
            continue
        if kind == "sm" and m == major and n <= minor:
            return True
        if kind == "compute" and (m, n) <= (major, minor):
            return True
    return False


def torch_gpu_arch(check: Any) -> None:
    """The torch build the stack installs carries no kernels for the GPU's architecture."""
    if check.gpu is None:
        return
    found = installed_version(check, "torch")
    if found is None:
        return
    version, how = found
    try:
        public = Version(version)
    except InvalidVersion:
        return
    build = version
    index = next((m for u in check.p.image.extra_index_urls if (m := _TORCH_INDEX.search(u))), None)
    if not public.local and index is not None:
        build = f"{public}+cu{index.group(1)}"  # the extra index's variant outranks PyPI's plain release
    archs = release_facts.torch_archs(build)
    if archs is None or runs_on(archs.value, check.gpu.compute_capability):
        return
    cc = check.gpu.compute_capability
    check.emit(
        "torch-cuda-lacks-gpu-arch",
        torch=build,
        how=how,
        cc=str(cc),
        sm=f"sm_{cc.major}{cc.minor}",
        archs=", ".join(sorted(archs.value)),
        fact=archs.source,
    )


# -- requirements one exact pin further -------------------------------------------------------


def transitive_pins(check: Any) -> None:
    """A pinned package pins another exactly (vllm -> numba==0.61.2) whose own requirement excludes a pin.

    Only without a lockfile: a lock is the resolver's own verdict on the whole closure."""
    if check.facts.closure_checked:
        return
    pins = {canonicalize_name(k): v for k, v in check.p.packages.items()}
    env = _env(check)
    seen: set[tuple[str, str]] = set()
    for name, version in sorted(pins.items()):
        for req in release_facts.requirements(name, version, env, _extras(check, name)) or []:
            middle = canonicalize_name(req.name)
            exact = release_facts.exact_version(req)
            if middle in pins or exact is None or (middle, exact) in seen:
                continue
            seen.add((middle, exact))
            for inner in release_facts.requirements(middle, exact, env) or []:
                other = canonicalize_name(inner.name)
                if other not in pins or other == name or not inner.specifier:
                    continue
                if not inner.specifier.contains(pins[other], prereleases=True):
                    check.emit(
                        "pin-conflict-transitive",
                        keys=[f"packages.{other}", f"packages.{name}"],
                        package=name,
                        version=version,
                        middle=middle,
                        middle_version=exact,
                        requirement=str(inner),
                        other=other,
                        other_version=pins[other],
                    )


# -- wheels against the image's Python and glibc -------------------------------------------------


def wheels_for_image(check: Any) -> None:
    """Each pin has a wheel for CPython X.Y on Linux x86_64 at the image's glibc (manylinux tags).

    Only without a lockfile: the lock was resolved for the image's Python already."""
    if check.facts.closure_checked:
        return
    q = release_facts._query()
    if q is None:
        return
    python = check.p.image.python
    glibc = check.facts.image_glibc
    for name, version in sorted(check.p.packages.items()):
        rel = q.release(name, version)
        if rel is None or not rel.wheels:
            continue
        has_sdist = any(f.sdist for f in rel.files)
        if not q.has_wheel_for(name, version, python, None):
            tags = sorted({t for f in rel.wheels for t in f.python})
            check.emit("pin-no-wheel-for-python" if not has_sdist else "pin-builds-for-python", keys=["image.python", f"packages.{name}"],
                       package=name, version=version, tags=", ".join(tags), fact=rel.metadata_source or f"{name}=={version} (knowledge store)")
        elif glibc is not None and not q.has_wheel_for(name, version, python, glibc):
            floor = q.wheel_glibc_floor(name, version, python)
            if not has_sdist:
                check.emit("pin-wheel-needs-newer-glibc", keys=["image.base", f"packages.{name}"], package=name, version=version,
                           floor=str(floor), glibc=str(glibc), fact=rel.metadata_source or f"{name}=={version} (knowledge store)")


# -- engine settings the release does not read ------------------------------------------------------

ENV_PREFIXES = {"vllm": ("VLLM_",), "sglang": ("SGLANG_", "SGL_")}
# Variables with their own rule (what ignoring them costs is known): not repeated here.
ENV_WITH_RULES = {"VLLM_ATTENTION_BACKEND", "VLLM_USE_V1"}


def engine_env_unread(check: Any) -> None:
    """image.env sets VLLM_* / SGLANG_* variables the pinned release's source neither declares nor reads."""
    engine = check.p.engine.name
    _, version = _engine(check)
    names = [k for k in check.p.image.env if k.startswith(ENV_PREFIXES[engine]) and k not in ENV_WITH_RULES]
    if version is None or not names:
        return
    read = release_facts.env_vars_read(engine, version)
    if read is None:
        return
    for name in sorted(n for n in names if n not in read.value):
        check.emit("engine-env-unread", keys=["image.env"], variable=name, package=engine, version=version, fact=read.source)


# -- the CUDA major version of compiled members against torch's -------------------------------------

COMPILED = ("vllm", "sgl-kernel", "sglang-kernel")
_SONAME_MAJOR = re.compile(r"^lib(?:cudart|cublas|cublasLt|nvrtc)\.so\.(\d+)$")


def cuda_major(check: Any) -> None:
    """vllm's _C or the SGLang kernel links libcudart.so.N; the torch build in the stack ships CUDA M's runtime.

    A torch local variant (2.9.0+cu130) differs from the PyPI build (+cu128) only in its local tag, which
    a plain version comparison ignores; the CUDA major is what the linker sees."""
    # torch follows the engine's own exact pin unless the profile pins it or adds an index: only then can
    # the CUDA majors part (and only then is the store worth reading on every check).
    if "torch" not in check.p.packages and not check.p.image.extra_index_urls:
        return
    torch = installed_version(check, "torch")
    if torch is None:
        return
    q = release_facts._query()
    if q is None:
        return
    torch_cuda = q.torch_cuda(torch[0])
    if torch_cuda is None or torch_cuda == "cpu":
        return
    for package in COMPILED:
        found = installed_version(check, package)
        if found is None:
            continue
        libs = release_facts.needed_libs(package, found[0])
        if libs is None:
            continue
        majors = {m.group(1) for needed in libs.value.values() for lib in needed if (m := _SONAME_MAJOR.match(lib))}
        if majors and torch_cuda.split(".")[0] not in majors:
            check.emit(
                "cuda-major-mismatch",
                keys=["packages.torch", f"packages.{package}"],
                package=package,
                version=found[0],
                needs=", ".join(sorted(f"CUDA {m}" for m in majors)),
                torch=torch[0],
                torch_cuda=torch_cuda,
                how=torch[1],
                fact=libs.source,
            )
