"""Profile + current Revision -> Plan: what `kit deploy` would change, shown before anything happens.

A plan compares the resolved profile being deployed with the one stored in the app's current
revision (so a change to a parent profile shows), the lockfiles' pins, the bundle hash, and what
the GPUs cost per hour before and after (prices from kit/data/gpus.toml, each with its source).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from kit.history import Revision

_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?==([^\s;\\]+)", re.MULTILINE)


@dataclass(frozen=True)
class Change:
    key: str
    old: Any
    new: Any

    @property
    def kind(self) -> str:
        return "added" if self.old is None else "removed" if self.new is None else "changed"


@dataclass(frozen=True)
class Cost:
    """Per hour, USD: one container (all its GPUs), the always-on floor, and the ceiling."""

    gpu: str
    count: int
    per_container: float
    min_containers: int
    max_containers: int | None

    @property
    def floor(self) -> float:
        return self.per_container * self.min_containers

    @property
    def ceiling(self) -> float | None:
        return None if self.max_containers is None else self.per_container * self.max_containers

    def as_dict(self) -> dict[str, Any]:
        return {
            "gpu": self.gpu,
            "count": self.count,
            "per_container_per_hour_usd": round(self.per_container, 4),
            "idle_floor_per_hour_usd": round(self.floor, 4),
            "ceiling_per_hour_usd": None if self.ceiling is None else round(self.ceiling, 4),
        }


@dataclass
class Plan:
    app: str
    environment: str | None
    profile: str  # display path
    bundle_hash: str
    bundle_files: list[str]
    current: Revision | None
    changes: list[Change] = field(default_factory=list)
    locked: list[Change] = field(default_factory=list)  # pins in the lockfile that moved
    files: list[str] = field(default_factory=list)  # profile files (chain, schemas) whose text changed
    cost_before: Cost | None = None
    cost_after: Cost | None = None
    check: str = ""  # one-line check summary
    lock: str = ""  # one-line lock summary
    smoke: str = ""  # what the smoke test will do
    blockers: list[str] = field(default_factory=list)  # why a deploy would stop now
    notes: list[str] = field(default_factory=list)

    @property
    def same_bundle(self) -> bool:
        return self.current is not None and self.current.bundle_hash == self.bundle_hash

    def as_dict(self) -> dict[str, Any]:
        cur = self.current
        return {
            "app": self.app,
            "environment": self.environment,
            "profile": self.profile,
            "bundle_hash": self.bundle_hash,
            "bundle_files": self.bundle_files,
            "current": None if cur is None else {"number": cur.number, "bundle_hash": cur.bundle_hash, "modal_version": cur.modal_version, "created_at": cur.created_at},
            "same_bundle": self.same_bundle,
            "changes": [{"key": c.key, "old": c.old, "new": c.new} for c in self.changes],
            "locked": [{"package": c.key, "old": c.old, "new": c.new} for c in self.locked],
            "files": self.files,
            "cost": {"before": self.cost_before and self.cost_before.as_dict(), "after": self.cost_after and self.cost_after.as_dict()},
            "check": self.check,
            "lock": self.lock,
            "smoke": self.smoke,
            "blockers": self.blockers,
            "notes": self.notes,
        }


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for k, v in value.items():
            out.update(flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    return {prefix: value}


def changes(old: dict[str, Any] | None, new: dict[str, Any]) -> list[Change]:
    """Key-by-key differences of two resolved profiles (a list or table is compared as a whole below its key)."""
    a, b = flatten(old or {}), flatten(new)
    keys = sorted(set(a) | set(b))
    return [Change(k, a.get(k), b.get(k)) for k in keys if a.get(k) != b.get(k)]


def pins(lock_text: str | None) -> dict[str, str]:
    if not lock_text:
        return {}
    return {m.group(1).lower().replace("_", "-"): m.group(2) for m in _PIN.finditer(lock_text)}


def cost(profile: dict[str, Any]) -> Cost | None:
    from kit.catalog import gpus

    gpu = profile.get("gpu") or {}
    spec = gpus().find(str(gpu.get("type", "")))
    if spec is None:
        return None
    count = int(gpu.get("count", 1))
    serving = profile.get("serving") or {}
    return Cost(spec.name, count, spec.price_per_hour_usd * count, int(serving.get("min_containers", 0)), serving.get("max_containers"))


def make(
    *,
    app: str,
    environment: str | None,
    profile_display: str,
    profile: dict[str, Any],
    texts: dict[str, str],
    lock_text: str | None,
    bundle_hash: str,
    bundle_files: list[str],
    current: Revision | None,
) -> Plan:
    plan = Plan(app=app, environment=environment, profile=profile_display, bundle_hash=bundle_hash, bundle_files=bundle_files, current=current)
    plan.cost_after = cost(profile)
    if current is not None:
        plan.changes = changes(current.profile, profile)
        old_pins, new_pins = pins(current.lock_text), pins(lock_text)
        direct = {k.split(".", 1)[1] for k in flatten(profile) if k.startswith("packages.")}
        plan.locked = [Change(n, old_pins.get(n), new_pins.get(n)) for n in sorted(set(old_pins) | set(new_pins)) if old_pins.get(n) != new_pins.get(n) and n not in direct]
        plan.files = sorted(p for p in set(current.profile_texts) | set(texts) if current.profile_texts.get(p) != texts.get(p))
        plan.cost_before = cost(current.profile)
    return plan
