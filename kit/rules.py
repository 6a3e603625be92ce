"""The rule engine: compatibility rules are data (kit/data/rules/*.toml); this module evaluates them.

A rule fires when every condition in its `when` table holds for the profile's facts. Rules whose
logic needs arithmetic (memory fit, tensor parallelism) are declared in data too, with
`computed = true`, and evaluated by kit.check; their text and sources still live in the data.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Any

from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import Version

from kit.catalog import data_file, data_files
from kit.errors import DataError

SEVERITIES = ("error", "warning", "info")
CONDITIONS = {
    "packages",
    "engine",
    "image_nvcc",
    "image_slim",
    "image_glibc",
    "apt_missing",
    "env_unset",
    "env_set",
    "gpu_cc",
    "serving_mode",
    "uses_field",
    "python",
    "extra_index",
    "engine_fact",
}


@dataclass(frozen=True)
class Rule:
    id: str
    severity: str
    summary: str
    why: str
    fix: str
    keys: tuple[str, ...]
    sources: tuple[str, ...]
    when: dict[str, Any]
    computed: bool = False
    file: str = ""


@dataclass
class Facts:
    """What the rules can see of one profile (and its lock, when there is one)."""

    engine: str
    packages: dict[str, Version]  # canonical name -> version: pins, overlaid on the lock's closure
    pinned: frozenset[str] = frozenset()
    via: dict[str, str] = field(default_factory=dict)  # closure package -> "vllm 0.11.0" that brought it
    closure_checked: bool = False
    image_nvcc: bool = False
    image_slim: bool = False
    image_glibc: Version | None = None
    image_known: bool = True  # False: kit/data/images.toml does not describe the base image
    apt: frozenset[str] = frozenset()
    env: dict[str, str] = field(default_factory=dict)
    gpu_cc: Version | None = None
    serving_mode: str = "class"
    uses_fields: frozenset[str] = frozenset()
    python: Version | None = None
    extra_index: bool = False  # the profile names extra package indexes (a variant build may come from one)
    placeholders: dict[str, str] = field(default_factory=dict)


@dataclass
class Finding:
    rule: str
    severity: str
    summary: str
    why: str
    fix: str
    keys: list[str]
    sources: list[str]
    file: str = ""
    allowed: str | None = None  # the `[[allow]]` reason when suppressed

    def as_dict(self) -> dict[str, Any]:
        return {
            "rule": self.rule,
            "severity": self.severity,
            "summary": self.summary,
            "why": self.why,
            "fix": self.fix,
            "keys": self.keys,
            "sources": self.sources,
            "file": self.file,
            "allowed": self.allowed,
        }


@cache
def all_rules() -> tuple[Rule, ...]:
    """Every rule, from every file under kit/data/rules, validated once."""
    rules: list[Rule] = []
    seen: dict[str, str] = {}
    for name in data_files("rules"):
        file = name.removeprefix("rules/")
        for row in data_file(name).get("rule", []):
            rule = _parse_rule(row, file)
            if rule.id in seen:
                raise DataError(f"rule id {rule.id!r} is defined in both {seen[rule.id]} and {file}", fix="this is a bug in kit")
            seen[rule.id] = file
            rules.append(rule)
    return tuple(rules)


def rules_by_id() -> dict[str, Rule]:
    return {r.id: r for r in all_rules()}


def _table(name: str) -> list[dict[str, Any]]:
    """The rows of the `[[name]]` data table, from every file under kit/data/rules."""
    rows: list[dict[str, Any]] = []
    for file in data_files("rules"):
        rows += data_file(file).get(name, [])
    return rows


def api_table() -> list[dict[str, Any]]:
    """The `[[api]]` rows (structured-output API per engine version) from the rules data."""
    return _table("api")


def secret_table() -> list[dict[str, Any]]:
    """The `[[secret]]` rows: what a secret-looking name or value is (kit.secrets evaluates them)."""
    return _table("secret")


ATTENTION_VIA = ("env", "engine_arg")


def attention_table() -> list[dict[str, Any]]:
    """The `[[attention]]` rows (how each engine version is told its attention backend), validated."""
    rows = _table("attention")
    for row in rows:
        where = f"data/rules [[attention]] row {row.get('engine')} {row.get('versions')}"
        if row.get("via") not in ATTENTION_VIA:
            raise DataError(f"{where}: via must be one of {ATTENTION_VIA}", fix="this is a bug in kit's data")
        needed = (("env",) if row["via"] == "env" else ("engine_arg", "cli_flag")) + ("on_unknown", "sources")
        missing = [k for k in needed if not row.get(k)] + [k for k in ("case_sensitive", "unknown_fails") if not isinstance(row.get(k), bool)]
        if missing:
            raise DataError(f"{where} lacks {', '.join(missing)}", fix="this is a bug in kit's data")
        try:
            SpecifierSet(row["versions"])
        except (KeyError, InvalidSpecifier):
            raise DataError(f"{where}: versions is not a version specifier", fix="this is a bug in kit's data") from None
    return rows


def attention_row(engine: str, version: Version) -> dict[str, Any] | None:
    """The one `[[attention]]` row covering this engine version, or None."""
    rows = [r for r in attention_table() if r["engine"] == engine and SpecifierSet(r["versions"]).contains(version, prereleases=True)]
    if len(rows) > 1:
        raise DataError(f"two [[attention]] rows cover {engine} {version}", fix="this is a bug in kit's data (kit/data/rules/attention.toml)")
    return rows[0] if rows else None


@cache
def attention_backends() -> dict[str, dict[str, dict[str, Any]]]:
    """engine -> release -> {file, class, names, source}: kit/data/attention_backends.json."""
    import json

    try:
        doc = json.loads(resources.files("kit").joinpath("data", "attention_backends.json").read_text(encoding="utf-8"))
    except (FileNotFoundError, ValueError) as exc:
        raise DataError(f"kit's data file data/attention_backends.json is missing or broken: {exc}", fix="reinstall kit; this is a bug in kit") from None
    return {k: v for k, v in doc.items() if isinstance(v, dict)}


def _parse_rule(row: dict[str, Any], file: str) -> Rule:
    where = f"data/rules/{file}: rule {row.get('id', '?')}"
    missing = [k for k in ("id", "severity", "summary", "why", "fix", "sources") if not row.get(k)]
    if missing:
        raise DataError(f"{where} lacks {', '.join(missing)}", fix="every rule needs id, severity, summary, why, fix and sources")
    if row["severity"] not in SEVERITIES:
        raise DataError(f"{where}: severity {row['severity']!r} is not one of {SEVERITIES}", fix="this is a bug in kit")
    when = dict(row.get("when", {}))
    unknown = set(when) - CONDITIONS
    if unknown:
        raise DataError(f"{where}: unknown condition(s) {sorted(unknown)}", fix=f"conditions: {sorted(CONDITIONS)}")
    for name, spec in when.get("packages", {}).items():
        for alt in spec if isinstance(spec, list) else [spec]:
            if alt != "absent":
                try:
                    SpecifierSet(alt)
                except InvalidSpecifier:
                    raise DataError(f"{where}: packages.{name} = {alt!r} is not a version specifier", fix="this is a bug in kit") from None
    if not when and not row.get("computed"):
        raise DataError(f"{where} has no conditions and is not computed: it would always fire", fix="add a `when` table")
    sources = row["sources"]
    return Rule(
        id=row["id"],
        severity=row["severity"],
        summary=row["summary"],
        why=row["why"],
        fix=row["fix"],
        keys=tuple(row.get("keys", ())),
        sources=tuple(sources if isinstance(sources, list) else [sources]),
        when=when,
        computed=bool(row.get("computed", False)),
        file=file,
    )


def _spec_holds(version: Version | None, spec: str | list[str]) -> bool:
    for alt in spec if isinstance(spec, list) else [spec]:
        if alt == "absent":
            if version is None:
                return True
        elif version is not None and SpecifierSet(alt).contains(version, prereleases=True):
            return True
    return False


def matches(rule: Rule, facts: Facts) -> bool:
    """Whether every condition of a (non-computed) rule holds."""
    w = rule.when
    for name, spec in w.get("packages", {}).items():
        if not _spec_holds(facts.packages.get(canonicalize_name(name)), spec):
            return False
    if "engine" in w and w["engine"] != facts.engine:
        return False
    # An image kit does not describe has unknown contents: no condition on them holds.
    if ("image_nvcc" in w or "image_slim" in w or "apt_missing" in w) and not facts.image_known:
        return False
    if "image_nvcc" in w and bool(w["image_nvcc"]) != facts.image_nvcc:
        return False
    if "image_slim" in w and bool(w["image_slim"]) != facts.image_slim:
        return False
    if "image_glibc" in w and (facts.image_glibc is None or not SpecifierSet(w["image_glibc"]).contains(facts.image_glibc)):
        return False
    if "apt_missing" in w and w["apt_missing"] in facts.apt:
        return False
    if "env_unset" in w and w["env_unset"] in facts.env:
        return False
    if "env_set" in w and w["env_set"] not in facts.env:
        return False
    if "gpu_cc" in w and (facts.gpu_cc is None or not SpecifierSet(w["gpu_cc"]).contains(facts.gpu_cc)):
        return False
    if "serving_mode" in w and w["serving_mode"] != facts.serving_mode:
        return False
    if "uses_field" in w and w["uses_field"] not in facts.uses_fields:
        return False
    if "python" in w and (facts.python is None or not SpecifierSet(w["python"]).contains(facts.python)):
        return False
    if "extra_index" in w and bool(w["extra_index"]) != facts.extra_index:
        return False
    if "engine_fact" in w and not engine_fact_holds(w["engine_fact"], facts):
        return False
    return True


ENGINE_PACKAGES = {"vllm": "vllm", "sglang": "sglang"}


def engine_fact_holds(path: str, facts: Facts) -> bool:
    """A fact the engine store derived from the pinned release's source (kit/knowledge/engines.py), by
    dotted path (`structured_output.request_backend_rejected_with_auto`); an unrecorded release: does not hold."""
    pkg = ENGINE_PACKAGES.get(facts.engine or "")
    version = facts.packages.get(pkg) if pkg else None
    if version is None:
        return False
    try:
        from kit.knowledge.engines import engine_facts
    except ImportError:
        return False
    value: Any = engine_facts(facts.engine, str(version))
    for part in path.split("."):
        if value is None:
            return False
        value = value.get(part) if isinstance(value, dict) else getattr(value, part, None)
    return bool(value)


class _Missing(dict):
    def __missing__(self, key: str) -> str:
        return "{" + key + "}"


def fill(text: str, facts: Facts, extra: dict[str, Any] | None = None) -> str:
    """Fill {package} and {gpu}-style placeholders; unknown ones stay as written."""
    values: dict[str, Any] = _Missing({name: str(v) for name, v in facts.packages.items()})
    values.update(facts.placeholders)
    if extra:
        values.update(extra)
    try:
        return text.format_map(values)
    except (ValueError, IndexError):
        return text


def evaluate(facts: Facts, rules: tuple[Rule, ...] | None = None) -> list[Finding]:
    """Findings of every data rule that fires for these facts."""
    found = []
    for rule in rules if rules is not None else all_rules():
        if rule.computed or not matches(rule, facts):
            continue
        keys = list(rule.keys)
        why = fill(rule.why, facts)
        # A package that fired the rule but is not pinned arrived through another package: say which.
        for name in rule.when.get("packages", {}):
            canon = canonicalize_name(name)
            if canon not in facts.pinned and canon in facts.packages and canon in facts.via:
                why += f" ({canon} {facts.packages[canon]} arrives through {facts.via[canon]}.)"
        found.append(
            Finding(rule=rule.id, severity=rule.severity, summary=fill(rule.summary, facts), why=why, fix=fill(rule.fix, facts), keys=keys, sources=list(rule.sources))
        )
    return found
