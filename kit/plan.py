"""Profile + current Revision -> Plan: what `kit deploy` would change, shown before anything happens.

The changes are `kit diff`'s (kit.diff): the revision stores every file its profile read and its
lockfile, so they are written into a temporary repository (kit.tree), loaded as they were, and
diffed against the profile being deployed: settings, package upgrades by major/minor/patch, lockfile
moves, cost per hour and per 1,000 requests, memory headroom, findings introduced and fixed. The plan
adds what a deploy needs besides: the fleet's cost (idle floor, ceiling), check, lock and smoke
summaries, the bundle, and the blockers. kit.deploy.plan fills those in.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Any

from kit.errors import KitError
from kit.history import Revision
from kit.load import LoadedProfile

if TYPE_CHECKING:  # kit.diff is imported when a plan is made: `kit status` and `kit rollback` need none
    from kit.diff import Cost, ProfileDiff


@dataclass(frozen=True)
class Fleet:
    """Per hour, USD: one container (all its GPUs), the always-on floor and the ceiling (kit.diff.Cost's figures)."""

    cost: Cost

    @classmethod
    def of(cls, cost: Cost | None, loaded: LoadedProfile | None) -> Fleet | None:
        return None if cost is None or loaded is None else cls(cost)

    @property
    def min_containers(self) -> int:
        return self.cost.min_containers

    @property
    def max_containers(self) -> int | None:
        return self.cost.max_containers

    @property
    def floor(self) -> float:
        return self.cost.floor_per_hour

    @property
    def ceiling(self) -> float | None:
        return self.cost.ceiling_per_hour

    def as_dict(self) -> dict[str, Any]:
        return {
            "gpu": self.cost.gpu,
            "count": self.cost.count,
            "per_container_per_hour_usd": round(self.cost.price_per_hour, 4),
            "idle_floor_per_hour_usd": round(self.floor, 4),
            "ceiling_per_hour_usd": None if self.ceiling is None else round(self.ceiling, 4),
            "min_containers": self.min_containers,
            "max_containers": self.max_containers,
        }


@dataclass
class Plan:
    app: str
    environment: str | None
    profile: str  # display path
    bundle_hash: str
    bundle_files: list[str]
    current: Revision | None
    diff: ProfileDiff  # against the current revision; status "added" when there is none, or it could not be loaded
    compared: bool = False  # whether `diff` compares against the current revision's profile
    fleet_before: Fleet | None = None
    fleet_after: Fleet | None = None
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
            "compared": self.compared,
            "diff": self.diff.as_dict(),
            "fleet": {"before": self.fleet_before and self.fleet_before.as_dict(), "after": self.fleet_after and self.fleet_after.as_dict()},
            "check": self.check,
            "lock": self.lock,
            "smoke": self.smoke,
            "blockers": self.blockers,
            "notes": self.notes,
        }


def make(*, loaded: LoadedProfile, bundle_hash: str, bundle_files: list[str], current: Revision | None) -> Plan:
    """The plan's comparison part: `kit diff` of the current revision's stored profile and `loaded`."""
    from kit.diff import diff

    notes: list[str] = [f"override: {line}" for line in loaded.override_notes()]
    compared = _compare(current, loaded, notes) if current is not None else None
    changes, old = compared or (diff(None, loaded), None)
    app = loaded.profile.app
    return Plan(
        app=app.name,
        environment=app.environment,
        profile=loaded.display,
        bundle_hash=bundle_hash,
        bundle_files=bundle_files,
        current=current,
        diff=changes,
        compared=old is not None,
        fleet_before=Fleet.of(changes.cost_before, old),
        fleet_after=Fleet.of(changes.cost_after, loaded),
        notes=notes,
    )


def _compare(current: Revision, loaded: LoadedProfile, notes: list[str]) -> tuple[ProfileDiff, LoadedProfile] | None:
    """diff(the revision's stored profile, loaded); None, with a note saying why, when the stored profile does not load."""
    from kit.diff import diff
    from kit.tree import Tree

    files = dict(current.profile_texts)
    if current.lock_text is not None:
        files[PurePosixPath(current.profile_path).with_suffix(".lock").as_posix()] = current.lock_text
    try:
        with Tree(files, prefix="kit-plan-") as tree:
            old = tree.load(current.profile_path)
            changes = diff(old, loaded)  # inside the tree: the old side's lockfile is read from it
    except (KitError, OSError, ValueError) as exc:  # e.g. a profile that this kit's models no longer accept
        why = ((f"{exc.file}: " if exc.file else "") + exc.message) if isinstance(exc, KitError) else f"{type(exc).__name__}: {exc}"
        why = " ".join(line.strip() for line in why.splitlines())  # one line: the fix a KitError names is for the working tree
        notes.append(f"r{current.number}'s stored profile ({current.profile_path}, deployed with kit {current.kit_version}) does not load in this kit, so the plan cannot say what changes: {why}")
        return None
    if old.profile.model_dump(mode="json", by_alias=True) != current.profile:
        notes.append(
            f"r{current.number}'s stored resolved profile differs from what its files give now (KIT_* overrides when it was deployed,"
            " or defaults that changed with kit): the changes shown are against its files"
        )
    return changes, old
