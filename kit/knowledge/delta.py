"""The stored form of per-release facts: each release holds what changed since the previous recorded one.

Sets are stored as {"+": added, "-": removed}, maps (name -> value) the same way key by key, any other value as
{"=": value}, and {"drop": true} marks a fact that is gone. Releases without an sdist (no facts) are skipped over.
Plain json only, so reading the store stays cheap.
"""

from __future__ import annotations

MAPS = frozenset({"architectures", "quant_min_capability"})  # dict-valued facts stored key by key


def _kind(name: str, value) -> str:
    return "map" if name in MAPS else "set" if isinstance(value, list) else "value"


def encode(rows: list[dict]) -> list[dict]:
    """Full rows (oldest first) -> rows whose facts and sources hold only what changed since the last recorded release."""
    out, prev_f, prev_s = [], {}, {}
    for row in rows:
        if not row.get("sdist"):
            out.append({k: v for k, v in row.items() if k in ("version", "sdist")})
            continue
        facts = {k: sorted(set(v)) if _kind(k, v) == "set" else v for k, v in row["facts"].items()}
        out.append(
            {
                **{k: v for k, v in row.items() if k not in ("facts", "sources")},
                "facts": _delta(prev_f, facts),
                "sources": _delta(prev_s, row["sources"], all_values=True),
            }
        )
        prev_f, prev_s = facts, row["sources"]
    return out


def decode(rows: list[dict]) -> list[dict]:
    """Stored rows -> full rows (the inverse of encode)."""
    out, facts, sources = [], {}, {}
    for row in rows:
        if not row.get("sdist"):
            out.append(dict(row))
            continue
        facts = _apply(facts, row["facts"])
        sources = _apply(sources, row["sources"], all_values=True)
        out.append({**row, "facts": facts, "sources": sources})
    return out


def _delta(prev: dict, cur: dict, all_values: bool = False) -> dict:
    out: dict = {}
    for k in sorted(set(prev) | set(cur)):
        if k not in cur:
            out[k] = {"drop": True}
            continue
        old, new = prev.get(k), cur[k]
        if k in prev and old == new:
            continue
        kind = "value" if all_values else _kind(k, new)
        if kind == "set" and isinstance(old, list):
            d = {"+": sorted(set(new) - set(old)), "-": sorted(set(old) - set(new))}
        elif kind == "map" and isinstance(old, dict):
            d = {"+": {n: v for n, v in sorted(new.items()) if old.get(n, object()) != v}, "-": sorted(set(old) - set(new))}
        else:
            d = {"=": new}
        out[k] = {op: v for op, v in d.items() if v or op == "="}  # an empty side is left out
    return out


def _apply(prev: dict, delta: dict, all_values: bool = False) -> dict:
    cur = dict(prev)
    for k, d in delta.items():
        if d.get("drop"):
            cur.pop(k, None)
        elif "=" in d:
            cur[k] = d["="]
        elif isinstance(cur[k], dict):
            gone = set(d.get("-", []))
            cur[k] = dict(sorted(({n: v for n, v in cur[k].items() if n not in gone} | d.get("+", {})).items()))
        else:
            cur[k] = sorted((set(cur[k]) - set(d.get("-", []))) | set(d.get("+", [])))
    return cur
