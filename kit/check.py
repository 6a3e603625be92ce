"""Profile (+ Lock) -> Report: compatibility rules over versions, APIs, image and hardware.

Data rules are evaluated by kit.rules; the computed ones (memory fit, tensor parallelism, pins
against the packages' own metadata) are here, with their text and sources in
kit/data/rules/computed.toml. Nothing here imports jinja2, modal or httpx: check runs on every save.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from packaging.requirements import InvalidRequirement, Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import Version

from kit import catalog
from kit.errors import ProfileError
from kit.knowledge import query as knowledge
from kit.load import LoadedProfile
from kit.image_checks import image_findings
from kit.model_checks import ModelChecks
from kit.rules import Facts, Finding, all_rules, evaluate, fill, rules_by_id

_REQ_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
ENGINE_PACKAGE = {"vllm": "vllm", "sglang": "sglang"}
# Request fields and API names whose meaning changed across engine releases (see data/rules/structured_output.toml).
WATCHED_FIELDS = {
    "guided_json",
    "guided_regex",
    "guided_choice",
    "guided_grammar",
    "guided_decoding_backend",
    "guided_decoding",
    "GuidedDecodingParams",
    "structured_outputs",
    "structured_outputs_config",
    "response_format",
}


@dataclass
class Closure:
    """The resolved dependency closure from a lockfile: what check runs the rules over when it exists."""

    packages: dict[str, Version]
    via: dict[str, str] = field(default_factory=dict)
    build_from_source: list[str] = field(default_factory=list)  # "name==version" the image builds from an sdist
    sdist_kinds: dict[str, str] = field(default_factory=dict)  # "name==version" -> "pure-python" | "compiles(gcc,nvcc)"


@dataclass
class Report:
    profile: str  # display path
    name: str
    findings: list[Finding]
    closure_checked: bool
    notes: list[str] = field(default_factory=list)
    overrides: list[str] = field(default_factory=list)  # "gpu.type = T4 (from KIT_GPU__TYPE)"

    def active(self) -> list[Finding]:
        return [f for f in self.findings if f.allowed is None]

    def count(self, severity: str) -> int:
        return sum(1 for f in self.active() if f.severity == severity)

    def failed(self, strict: bool = False) -> bool:
        return self.count("error") > 0 or (strict and self.count("warning") > 0)

    def as_dict(self) -> dict[str, Any]:
        return {
            "profile": self.profile,
            "name": self.name,
            "closure_checked": self.closure_checked,
            "summary": {s: self.count(s) for s in ("error", "warning", "info")},
            "findings": [f.as_dict() for f in self.findings],
            "notes": self.notes,
            "overrides": self.overrides,
        }


def _uses_fields(value: Any, out: set[str]) -> None:
    if isinstance(value, dict):
        for k, v in value.items():
            if k in WATCHED_FIELDS:
                out.add(k)
            _uses_fields(v, out)
    elif isinstance(value, list):
        for v in value:
            _uses_fields(v, out)


def facts_for(loaded: LoadedProfile, closure: Closure | None = None) -> Facts:
    p = loaded.profile
    pins = {name: Version(v) for name, v in p.packages.items()}
    from kit.image_facts import image_facts as facts_of, is_release

    img = facts_of(p.image.base, p.image.builder_version)
    packages = dict(closure.packages) if closure else {}
    if p.engine_from_image:  # what images.toml records the engine image holds beats the lock's reading of it
        packages.update({n: Version(v) for n, v in img.packages.items()})
    packages.update(pins)
    engine_pkg = ENGINE_PACKAGE[p.engine.name]
    if engine_pkg in packages and not is_release(packages[engine_pkg]):
        del packages[engine_pkg]  # no release's rules apply to a dev build (rule engine-build-not-a-release)
    gpu = catalog.gpus().find(p.gpu.type)
    used: set[str] = set()
    _uses_fields(p.engine.args, used)
    return Facts(
        engine=p.engine.name,
        packages=packages,
        pinned=frozenset(pins),
        via=dict(closure.via) if closure else {},
        closure_checked=closure is not None,
        image_nvcc=img.nvcc,  # None (unknown): neither `image_nvcc = true` nor `= false` holds
        image_slim=img.slim,
        image_glibc=img.glibc,
        image_known=img.known,
        apt=frozenset(p.image.apt_packages) | ({"libnuma1"} if img.libnuma else set()),
        env=dict(p.image.env),
        gpu_cc=gpu.compute_capability if gpu else None,
        serving_mode=p.serving.mode,
        uses_fields=frozenset(used),
        python=Version(_python(p, img)),
        extra_index=bool(p.image.extra_index_urls),
        placeholders={"gpu": gpu.name if gpu else p.gpu.type, "image": p.image.base, "python": p.image.python, "model": p.model.id},
    )


def _python(p: Any, img: Any) -> str:
    """The Python the app runs on: the image's own when the engine comes from it (unless the profile says)."""
    if p.engine_from_image and img.python and "python" not in p.image.model_fields_set:
        return img.python
    return p.image.python


def check(loaded: LoadedProfile, closure: Closure | None = None, closure_note: str | None = None) -> Report:
    """Every finding for one profile; `[[allow]]` entries mark findings as allowed rather than dropping them."""
    facts = facts_for(loaded, closure)
    findings = evaluate(facts)
    computed = _Computed(loaded, facts, closure)
    findings += computed.run()
    for f in findings:
        f.file = loaded.file_of(f.keys[0]) if f.keys else loaded.display
    _apply_allows(loaded, findings)
    order = {"error": 0, "warning": 1, "info": 2}
    findings.sort(key=lambda f: (order[f.severity], f.rule))
    notes = []
    gpu = catalog.gpus().find(loaded.profile.gpu.type)
    if gpu is not None and loaded.profile.gpu.type != gpu.name:
        notes.append(f"gpu.type {loaded.profile.gpu.type!r} is read as {gpu.name} (kit's name for it)")
    if closure is None:
        notes.append(closure_note or "closure not checked: no lockfile, so only the pinned packages were checked (run `kit lock`)")
    return Report(profile=loaded.display, name=loaded.profile.name, findings=findings, closure_checked=closure is not None, notes=notes, overrides=loaded.override_notes())


def _apply_allows(loaded: LoadedProfile, findings: list[Finding]) -> None:
    known = rules_by_id()
    for i, allow in enumerate(loaded.profile.allow):
        if allow.rule not in known:
            import difflib

            guess = difflib.get_close_matches(allow.rule, list(known), n=1)
            raise ProfileError(
                f"[[allow]] names rule {allow.rule!r}, which does not exist",
                file=loaded.file_of(f"allow.{i}"),
                key=f"allow[{i}].rule",
                fix=(f"did you mean {guess[0]!r}? " if guess else "") + "`kit rules` lists every rule id",
            )
        hit = [f for f in findings if f.rule == allow.rule]
        for f in hit:
            f.allowed = allow.reason
        if not hit:
            rule = known["allow-unused"]
            findings.append(
                Finding(
                    rule=rule.id,
                    severity=rule.severity,
                    summary=rule.summary.format(rule=allow.rule),
                    why=rule.why.format(rule=allow.rule),
                    fix=rule.fix.format(rule=allow.rule),
                    keys=[f"allow.{i}"],
                    sources=list(rule.sources),
                )
            )


class _Computed:
    """The rules declared `computed = true` in data/rules/computed.toml."""

    def __init__(self, loaded: LoadedProfile, facts: Facts, closure: Closure | None = None):
        self.loaded = loaded
        self.closure = closure
        self.p = loaded.profile
        self.facts = facts
        self.rules = rules_by_id()
        self.gpu = catalog.gpus().find(self.p.gpu.type)
        self.out: list[Finding] = []

    def emit(self, rule_id: str, keys: list[str] | None = None, **values: Any) -> None:
        rule = self.rules[rule_id]
        self.out.append(
            Finding(
                rule=rule.id,
                severity=rule.severity,
                summary=fill(rule.summary, self.facts, values),
                why=fill(rule.why, self.facts, values),
                fix=fill(rule.fix, self.facts, values),
                keys=list(keys if keys is not None else rule.keys),
                sources=list(rule.sources),
            )
        )

    def run(self) -> list[Finding]:
        self.engine_package()
        image_findings(self.loaded, self.closure, self.emit)
        from kit import release_rules

        release_rules.run(self)
        self.attention_backend()
        self.structured_output_backend()
        self.pins_against_metadata()
        self.pin_versions()
        self.built_from_source()
        self.gpu_count()
        ModelChecks(self).run()
        self.secrets()
        return self.out

    def secrets(self) -> None:
        """image.env and engine.args values that look like credentials (kit/data/rules/secrets.toml)."""
        from kit.secrets import find

        for found in find({"image": {"env": self.p.image.env}, "engine": {"args": self.p.engine.args}}):
            self.emit("secret-in-profile", keys=[found.key], key=found.key, name=found.name, reason=found.reason)

    # -- packages -------------------------------------------------------------------------------

    def engine_package(self) -> None:
        pkg = ENGINE_PACKAGE[self.p.engine.name]
        if pkg not in self.p.packages and not self.p.engine_from_image:
            self.emit("engine-not-pinned", keys=["packages", "engine.name"], package=pkg)

    def attention_backend(self) -> None:
        """engine.attention_backend against the [[attention]] table and the backend names the pinned release defines."""
        from kit.rules import attention_backends, attention_row, attention_table

        name = self.p.engine.attention_backend
        engine = self.p.engine.name
        pkg = ENGINE_PACKAGE[engine]
        version = self.p.version(pkg)
        if not name or version is None:  # unpinned: engine-not-pinned says so
            return
        row = attention_row(engine, version)
        if row is None:
            covered = ", ".join(r["versions"] for r in attention_table() if r["engine"] == engine) or "none"
            self.emit("attention-backend-unverified", package=pkg, version=version, covered=covered)
            return
        from kit import release_facts

        derived = release_facts.attention_names(engine, version)
        recorded = attention_backends().get(pkg)
        entry = derived or (recorded or {}).get(str(version))
        if entry is None:
            if recorded is not None:  # kit records backend names for vLLM only
                self.emit("attention-backend-names-unrecorded", package=pkg, version=version, backend=name, recorded=", ".join(sorted(recorded, key=Version)))
            return
        if (name if row["case_sensitive"] else name.upper()) not in entry["names"]:
            raises = release_facts.unknown_attention_raises(engine, version)
            self.emit(
                "attention-backend-unknown" if (row["unknown_fails"] if raises is None else raises) else "attention-backend-unknown-ignored",
                package=pkg,
                version=version,
                backend=name,
                cls=entry["class"],
                file=entry["file"],
                names=", ".join(entry["names"]),
                effect=row["on_unknown"],
                match="exactly" if row["case_sensitive"] else "ignoring case",
            )

    def pin_versions(self) -> None:
        """Each pin against the releases the store recorded (kit/pins.py)."""
        from kit.pins import problems

        for problem in problems(self.p.packages):
            self.emit(problem.rule, keys=[f"packages.{problem.package}"], **problem.values)

    def structured_output_backend(self) -> None:
        """structured_output.backend against what kit measured for the pinned release (kit.structured_output)."""
        from kit.structured_output import measured_finding

        if {"structured_outputs_config", "guided_decoding_backend", "grammar_backend"} & set(self.p.engine.args):
            return  # engine.args chooses the backend itself: kit renders that, not structured_output.backend
        pkg = ENGINE_PACKAGE[self.p.engine.name]
        values = measured_finding(self.p.engine.name, self.p.version(pkg), self.p.structured_output.backend)
        if values is not None:
            self.emit("structured-output-backend-measured", package=pkg, version=self.p.version(pkg), **values)

    def pins_against_metadata(self) -> None:
        """Each pin against the Requires-Dist and Requires-Python its fellow pins declare."""
        from kit.release_facts import marker_env

        env = marker_env(self.p.image.python)
        engine_pkg = ENGINE_PACKAGE[self.p.engine.name]
        for name, version in sorted(self.p.packages.items()):
            entry = knowledge.release(name, version)
            if entry is None or entry.requires_dist is None:
                if name == engine_pkg:
                    self.emit("metadata-not-recorded", keys=[f"packages.{name}"], package=name, version=version)
                continue
            rp = entry.requires_python
            if rp:
                if not SpecifierSet(rp).contains(Version(f"{self.p.image.python}.0")):
                    self.emit("pin-requires-python", keys=["image.python", f"packages.{name}"], package=name, version=version, requires_python=rp)
            for raw in entry.requires_dist:
                # Most requirements name packages the profile does not pin: skip them before parsing.
                head = _REQ_NAME.match(raw)
                if head is None or canonicalize_name(head.group(0)) not in self.p.packages:
                    continue
                try:
                    req = Requirement(raw)
                except InvalidRequirement:
                    continue
                if req.marker is not None and not req.marker.evaluate({**env, "extra": ""}):
                    continue
                other = canonicalize_name(req.name)
                if other not in self.p.packages or other == name:
                    continue
                pinned = Version(self.p.packages[other])
                if req.specifier and not req.specifier.contains(pinned, prereleases=True):
                    self.emit(
                        "pin-conflict",
                        keys=[f"packages.{other}", f"packages.{name}"],
                        package=name,
                        version=version,
                        requirement=str(req),
                        other=other,
                        other_version=str(pinned),
                    )

    def built_from_source(self) -> None:
        """Packages the lock takes as sdists (kit/data/sdists.toml): the image builds them."""
        kinds = self.closure.sdist_kinds if self.closure else {}
        for item in self.closure.build_from_source if self.closure else []:
            if item in kinds:  # classified by kit.sdist: kit.image_checks reports it
                continue
            name, _, version = item.partition("==")
            self.emit("lock-builds-from-source", keys=[f"packages.{name}"], package=name, version=version)

    # -- hardware -------------------------------------------------------------------------------

    def gpu_count(self) -> None:
        if self.gpu and self.p.gpu.count > self.gpu.max_count:
            self.emit("gpu-count-exceeds-modal", count=self.p.gpu.count, max_count=self.gpu.max_count)


def rule_ids() -> list[str]:
    return [r.id for r in all_rules()]
