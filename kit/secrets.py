"""Secret-looking values in a profile: found for `kit check`, masked in every output kit prints.

What looks like a secret is data (`[[secret]]` rows in kit/data/rules/secrets.toml); this module
evaluates it. Only image.env and engine.args carry free values that reach the image and app.py.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from typing import Any

MASK = "********"
SECRET_PREFIXES = ("image.env.", "engine.args.")  # dotted keys whose values may be secrets


@dataclass(frozen=True)
class SecretKey:
    key: str  # dotted: image.env.HF_TOKEN, engine.args.api_key
    name: str  # the variable or argument name itself
    reason: str


@cache
def _patterns() -> tuple[frozenset[str], tuple[tuple[str, ...], ...], tuple[tuple[re.Pattern[str], str], ...]]:
    """(name words, name word pairs, value patterns with what they are) from the [[secret]] rows."""
    from kit.rules import secret_table

    words: set[str] = set()
    pairs: list[tuple[str, ...]] = []
    values: list[tuple[re.Pattern[str], str]] = []
    for row in secret_table():
        if row["kind"] == "name":
            words |= {w.upper() for w in row.get("words", [])}
            pairs += [tuple(p.upper() for p in pair) for pair in row.get("pairs", [])]
        else:
            values.append((re.compile(row["pattern"]), row["what"]))
    return frozenset(words), tuple(pairs), tuple(values)


def _name_reason(name: str) -> str | None:
    words, pairs, _ = _patterns()
    parts = [p for p in re.split(r"[_\-.]+", name.upper()) if p]
    if any(p in words for p in parts):
        return "its name says it is a credential"
    for pair in pairs:
        if any(tuple(parts[i : i + len(pair)]) == pair for i in range(len(parts))):
            return "its name says it is a key"
    return None


def _value_reason(value: Any) -> str | None:
    if not isinstance(value, str):
        return None
    for pattern, what in _patterns()[2]:
        if pattern.search(value):
            return f"its value looks like {what}"
    return None


def is_secret(name: str, value: Any) -> str | None:
    """Why `name = value` looks like a secret, or None. An empty value is no secret."""
    if value in (None, "", False) or isinstance(value, dict | list):
        return None
    return _name_reason(name) or _value_reason(value)


def find(profile: dict[str, Any]) -> list[SecretKey]:
    """Every secret-looking key in a profile's image.env and engine.args (top level of each)."""
    out: list[SecretKey] = []
    for section, table in (("image", "env"), ("engine", "args")):
        values = (profile.get(section) or {}).get(table) or {}
        for name, value in values.items():
            reason = is_secret(str(name), value)
            if reason:
                out.append(SecretKey(f"{section}.{table}.{name}", str(name), reason))
    return out


def mask_value(dotted: str, value: Any) -> Any:
    """`value`, or MASK when `dotted` (image.env.X, engine.args.y) names a secret-looking value."""
    if dotted.startswith(SECRET_PREFIXES) and is_secret(dotted.rsplit(".", 1)[1], value):
        return MASK
    return value


def mask_text(text: str, profiles: list[dict[str, Any]]) -> str:
    """`text` with every secret value of `profiles` replaced by MASK, in the forms code and JSON quote it."""
    import json

    for profile in profiles:
        for found in find(profile):
            section, table, name = found.key.split(".", 2)
            value = str(profile[section][table][name])
            if len(value) < 4:  # too short to replace without hitting unrelated text
                continue
            for form in {value, repr(value)[1:-1], json.dumps(value)[1:-1]}:
                text = text.replace(form, MASK)
    return text
