"""The computed rules about what the base image holds (kit/data/rules/image.toml, issue 12).

Called by kit.check with its `emit(rule_id, keys, **values)`; reads kit.image_facts, never the network.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from packaging.version import Version

from kit.image_facts import ImageFacts, image_facts, is_release
from kit.load import LoadedProfile

Emit = Callable[..., None]
ENGINE_PACKAGE = {"vllm": "vllm", "sglang": "sglang"}


def image_findings(loaded: LoadedProfile, closure: Any, emit: Emit) -> None:
    p = loaded.profile
    img = image_facts(p.image.base, p.image.builder_version)
    _unknown(loaded, img, emit)
    if p.engine_from_image:
        _engine_from_image(loaded, img, emit)
    _python_for_builder(loaded, emit)
    _not_a_release(loaded, img, closure, emit)
    _sdists(img, closure, emit)


def _unknown(loaded: LoadedProfile, img: ImageFacts, emit: Emit) -> None:
    p = loaded.profile
    missing = img.unknown
    pkg = ENGINE_PACKAGE[p.engine.name]
    engine_unknown = p.engine_from_image and not img.known and pkg not in p.packages
    if engine_unknown:
        missing.append(f"the {pkg} version (rules about {pkg} versions)")
    if not missing:
        return
    from kit.lockfile import platform_for

    platform, assumed = platform_for(img.base, loaded.profile.image.builder_version)
    emit(
        "image-unknown",
        keys=["image.base"],
        missing=", ".join(m.split(" (")[0] for m in missing),
        detail="; ".join(missing) if img.known else "no row matches it",
        platform=platform,
        platform_note=" (glibc assumed: the oldest manylinux floor kit resolves for)" if assumed else "",
        engine_note=(
            f" The engine comes from the image, and kit does not know which {pkg} it holds: the lock does not constrain the"
            f" additions to it. Name it in [packages] ({pkg} = \"<version>\") and kit resolves and checks with it."
            if engine_unknown
            else ""
        ),
    )


def _engine_from_image(loaded: LoadedProfile, img: ImageFacts, emit: Emit) -> None:
    p = loaded.profile
    pkg = ENGINE_PACKAGE[p.engine.name]
    held = img.packages.get(pkg)
    named = p.packages.get(pkg)
    if img.engine is not None and img.engine != p.engine.name:
        emit("engine-image-mismatch", held=f"{img.engine} {img.packages.get(img.engine, '')}".strip(), wanted=f"engine.name = {p.engine.name!r}",
             fix_detail=f"set engine.name = {img.engine!r}, or use a {p.engine.name} image")
        return
    if img.known and img.engine is None:
        emit("engine-not-in-image", package=pkg)
        return
    if held is not None and named is not None and Version(named) != Version(held):
        emit("engine-image-mismatch", held=f"{pkg} {held}", wanted=f"{pkg} {named}",
             fix_detail=f"remove {pkg} from [packages] (the image's {held} is used), or use the image of {pkg} {named}")
    if img.python and "python" in p.image.model_fields_set and p.image.python != img.python:
        emit("image-python-mismatch", python=p.image.python, image_python=img.python)


def _python_for_builder(loaded: LoadedProfile, emit: Emit) -> None:
    """Modal installs the profile's Python (debian_slim, add_python) only in the series its builder version accepts."""
    from kit.image_facts import python_series

    p = loaded.profile
    version = p.image.builder_version
    if version is None or p.engine_from_image:
        return
    series, _ = python_series(version)
    if series and p.image.python not in series:
        emit("image-python-unsupported-by-builder", keys=["image.python", "image.builder_version"], python=p.image.python, builder=version, series=", ".join(series))


def _not_a_release(loaded: LoadedProfile, img: ImageFacts, closure: Any, emit: Emit) -> None:
    p = loaded.profile
    pkg = ENGINE_PACKAGE[p.engine.name]
    raw = p.packages.get(pkg) or (img.packages.get(pkg) if p.engine_from_image else None)
    if raw is None or is_release(raw):
        return
    v = Version(raw)
    what = ", ".join(w for w, on in (("dev", v.is_devrelease), ("pre-release", v.is_prerelease and not v.is_devrelease), (f"local +{v.local}", bool(v.local))) if on)
    emit("engine-build-not-a-release", keys=[f"packages.{pkg}"], package=pkg, version=raw, what=what)


def _sdists(img: ImageFacts, closure: Any, emit: Emit) -> None:
    kinds = closure.sdist_kinds if closure is not None else {}
    for item, kind in sorted(kinds.items()):
        name, _, version = item.partition("==")
        keys = [f"packages.{name}"]
        if kind == "pure-python":
            emit("lock-sdist-pure-python", keys=keys, package=name, version=version)
            continue
        needs = [c for c in kind.removeprefix("compiles(").removesuffix(")").split(",") if c]
        lacking = []
        unknown = []
        for tool in needs:
            has = img.nvcc if tool == "nvcc" else img.compilers
            if has is False:
                lacking.append(tool)
            elif has is None:
                unknown.append(tool)
        if lacking:
            emit("lock-sdist-needs-compiler", keys=keys, package=name, version=version, compilers=", ".join(needs), lacks=f"no {', '.join(lacking)}")
        elif unknown:
            emit("lock-sdist-compilers-unknown", keys=keys, package=name, version=version, compilers=", ".join(unknown))
