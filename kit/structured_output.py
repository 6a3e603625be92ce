"""The structured-output backend a profile runs with, and how it measured, per engine release.

kit/data/structured_output_defaults.toml holds, per engine release measured on a GPU, the backend and
settings kit renders when the profile leaves structured_output.backend unset ([[default]]), and the
figures of every backend measured there ([[measured]]), each row with its source. `kit render` reads
the default; `kit check` compares the profile's explicit choice with the measured rows
(rule structured-output-backend-measured). A release without rows keeps kit's previous default,
xgrammar, with the engine's own settings: kit says nothing it has not measured.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.version import Version

from kit.catalog import data_file
from kit.errors import DataError

DATA = "structured_output_defaults.toml"
FALLBACK_BACKEND = "xgrammar"  # where nothing was measured: what kit rendered before it measured
# A measured row whose 32-concurrent constrained rate is below this share of the default's is "markedly slower".
MARKEDLY_SLOWER = 0.75


@dataclass(frozen=True)
class Choice:
    backend: str
    options: dict[str, Any]  # further keys of the engine's structured-output config (vLLM: StructuredOutputsConfig)
    source: str | None  # where the default came from; None: kit's fallback, nothing measured


def _rows(table: str, engine: str, version: Version | None) -> list[dict[str, Any]]:
    if version is None:
        return []
    out = []
    for row in data_file(DATA).get(table, []):
        try:
            spec = SpecifierSet(row["versions"])
        except (KeyError, InvalidSpecifier):
            raise DataError(f"data/{DATA} [[{table}]] row {row.get('engine')} {row.get('versions')}: versions is not a specifier", fix="this is a bug in kit's data") from None
        if row.get("engine") == engine and spec.contains(version, prereleases=True):
            out.append(row)
    return out


def default_for(engine: str, version: Version | None) -> dict[str, Any] | None:
    """The [[default]] row for this engine release, or None when nothing was measured."""
    rows = _rows("default", engine, version)
    if len(rows) > 1:
        raise DataError(f"two [[default]] rows of data/{DATA} cover {engine} {version}", fix="this is a bug in kit's data")
    return rows[0] if rows else None


def measured_for(engine: str, version: Version | None, backend: str, options: dict[str, Any]) -> dict[str, Any] | None:
    """The [[measured]] row of `backend` run with exactly `options` for this release, or None."""
    rows = [r for r in _rows("measured", engine, version) if r["backend"] == backend and r.get("options", {}) == options]
    return rows[0] if rows else None


def measured_finding(engine: str, version: Version | None, backend: str | None) -> dict[str, Any] | None:
    """Values for rule structured-output-backend-measured, or None.

    Said only of an explicit structured_output.backend other than the measured default of its release, and
    only from rows measured there: markedly slower when, with the default's options, its constrained rate at
    32 (bench.py's schema) is below MARKEDLY_SLOWER of the default's; not strict when a row of it says so.
    """
    default = default_for(engine, version)
    if backend is None or default is None:
        return None
    resolved = default.get("auto_resolves_to", backend) if backend == "auto" else backend
    if resolved == default["backend"]:
        return None
    options = dict(default.get("options", {}))
    base = measured_for(engine, version, default["backend"], options)
    same = measured_for(engine, version, resolved, options)
    not_strict = [r for r in _rows("measured", engine, version) if r["backend"] == resolved and not r.get("strict", True)]
    problems = []
    if base is not None and same is not None and same["obj_32"] < MARKEDLY_SLOWER * base["obj_32"]:
        problems.append(
            f"{same['obj_32'] / base['obj_32']:.2f}x the tokens/s of {default['backend']} at 32 concurrent requests "
            f"({same['obj_32']:,.0f} against {base['obj_32']:,.0f}; with a minLength-2000 string {same['long_32']:,.0f} against {base['long_32']:,.0f})"
        )
    if not_strict:
        row = next((r for r in not_strict if r.get("options", {}) == options), not_strict[0])  # like for like first
        problems.append(f"not strict JSON: {row['bounded_strict'][0]} of {row['bounded_strict'][1]} outputs with strings of bounded length parsed; {row['why_not_strict']}")
    if not problems:
        return None
    return {
        "backend": backend if backend == resolved else f"{backend} (resolved to {resolved})",
        "default": default["backend"],
        "options": ", ".join(f"{k} = {str(v).lower() if isinstance(v, bool) else v}" for k, v in options.items()) or "no further options",
        "measured": "; ".join(problems),
    }


def choice(engine: str, version: Version | None, backend: str | None) -> Choice:
    """What the app runs with: the profile's backend, else the measured default, else the fallback.

    The default's options (e.g. disable_any_whitespace) come with the default's backend only: they were
    measured with it. A profile that names that same backend gets them too.
    """
    row = default_for(engine, version)
    if row is None:
        return Choice(backend or FALLBACK_BACKEND, {}, None)
    if backend is None or backend == row["backend"]:
        return Choice(row["backend"], dict(row.get("options", {})), row["source"])
    return Choice(backend, {}, None)
