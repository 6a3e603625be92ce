"""Profile x Profile -> ProfileDiff: what a change to a profile means, not only which lines moved.

Compares the resolved profiles (after `extends` and defaults), so a change to a parent shows in every
child it reaches. Besides the settings that moved it works out what they mean: package upgrades and
downgrades, transitive packages that moved in the lockfiles, GPU cost per hour and per 1,000
requests (at the latency `kit bench` measured on a deployed revision when kit's local history has
one, else at the assumed smoke latency budget), memory headroom, the `kit check` findings the change introduces or fixes, and on request
the rendered app's unified diff. Formatting lives in kit.diff_format; reading a git ref in kit.gitref.
`kit deploy`'s plan (kit.plan) is this diff against the app's current revision.
"""

from __future__ import annotations

import difflib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

from packaging.version import Version

from kit import catalog
from kit.errors import KitError, UsageError
from kit.load import LoadedProfile
from kit.rules import Finding
from kit.secrets import mask_text, mask_value

# A month of an always-on container, as cloud price sheets count it (365 x 24 / 12).
HOURS_PER_MONTH = 730

# When a profile has no [smoke] section, cost per request assumes the Smoke model's default budget.
DEFAULT_LATENCY_S = 30.0

Status = Literal["changed", "added", "removed", "unchanged"]


@dataclass(frozen=True)
class ValueChange:
    """One resolved setting (dotted key) that differs; None means unset."""

    key: str
    old: Any
    new: Any
    via: str | None = None  # the parent file that set it, when not the profile itself (an `extends` change)


@dataclass(frozen=True)
class PackageChange:
    name: str
    old: str | None
    new: str | None

    @property
    def kind(self) -> str:
        """added, removed, upgrade or downgrade."""
        if self.old is None:
            return "added"
        if self.new is None:
            return "removed"
        return "upgrade" if Version(self.new) > Version(self.old) else "downgrade"

    @property
    def level(self) -> str | None:
        """major, minor or patch by the first release number that moved; pre/post for the rest."""
        if self.old is None or self.new is None:
            return None
        a, b = Version(self.old), Version(self.new)
        ra, rb = (a.release + (0, 0, 0))[:3], (b.release + (0, 0, 0))[:3]
        for name, x, y in zip(("major", "minor", "patch"), ra, rb):
            if x != y:
                return name
        return "pre/post"


@dataclass(frozen=True)
class Measured:
    """p50 latency one request at a time, as `kit bench` measured it on a deployed revision of an app."""

    app: str
    number: int
    run: int
    at: str
    latency_s: float
    gpu: str | None
    gpu_count: int
    model: str | None

    def fits(self, gpu: str, count: int, model: str) -> bool:
        """Measured on this GPU type (kit's catalog name) and count, serving this model: else it says nothing of them."""
        spec = catalog.gpus().find(self.gpu) if self.gpu else None
        return spec is not None and spec.name == gpu and self.gpu_count == count and self.model == model

    def describe(self) -> str:
        return f"r{self.number} ({self.gpu} x{self.gpu_count}, {self.model})"


class Measurements(Protocol):
    """Where kit diff finds measured latencies (LocalBench: kit's history)."""

    error: str | None  # why none could be read, for a note

    def __call__(self, app: str) -> list[Measured]:
        """The app's measurements, the one to prefer first."""
        ...


@dataclass(frozen=True)
class Cost:
    """What one side costs to run: GPU price, and per 1,000 requests at a stated latency."""

    gpu: str
    count: int
    price_per_hour: float  # all of the container's GPUs, USD
    latency_s: float
    latency_source: str  # "--latency", "measured by kit bench on r3", or "assumed: ..."
    measured: Measured | None = None
    min_containers: int = 0  # always-on containers: what the app costs idle
    max_containers: int | None = None  # the ceiling at full scale; None: no limit set

    @property
    def floor_per_hour(self) -> float:
        return self.price_per_hour * self.min_containers

    @property
    def ceiling_per_hour(self) -> float | None:
        return None if self.max_containers is None else self.price_per_hour * self.max_containers

    @property
    def per_1k_requests(self) -> float:
        # One request at a time per container: GPU-seconds per request = latency. Batching
        # (serving.max_inputs > 1) lowers it; idle scaledown time and cold starts raise it.
        return self.price_per_hour * self.latency_s / 3600 * 1000


@dataclass
class ProfileDiff:
    """Everything that differs between two resolved versions of one profile."""

    path: str
    name: str
    status: Status
    old_path: str | None = None  # when the two sides are different files (`kit diff OLD NEW`)
    settings: list[ValueChange] = field(default_factory=list)
    packages: list[PackageChange] = field(default_factory=list)
    locked: list[PackageChange] = field(default_factory=list)  # transitive: in the lockfiles, not pinned
    notes: list[str] = field(default_factory=list)
    files: list[str] = field(default_factory=list)  # files the profile reads (schemas) whose text changed
    cost_before: Cost | None = None
    cost_after: Cost | None = None
    headroom_before: int | None = None  # bytes; see kit.memory.MemoryFit.headroom
    headroom_after: int | None = None
    introduced: list[Finding] = field(default_factory=list)
    fixed: list[Finding] = field(default_factory=list)
    rendered: str | None = None  # unified diff of the rendered app, with --rendered

    @property
    def changed(self) -> bool:
        return self.status != "unchanged"

    @property
    def gpu_changed(self) -> bool:
        return any(c.key in ("gpu.type", "gpu.count") for c in self.settings)

    @property
    def cost_changed(self) -> bool:
        b, a = self.cost_before, self.cost_after
        if (b is None) != (a is None):
            return True
        if b is None or a is None:
            return False
        return round(b.per_1k_requests, 4) != round(a.per_1k_requests, 4) or (b.floor_per_hour, b.ceiling_per_hour) != (a.floor_per_hour, a.ceiling_per_hour)

    def as_dict(self) -> dict[str, Any]:
        def cost(c: Cost | None) -> dict[str, Any] | None:
            if c is None:
                return None
            return {
                "gpu": c.gpu,
                "count": c.count,
                "price_per_hour_usd": round(c.price_per_hour, 4),
                "latency_s": c.latency_s,
                "latency_source": c.latency_source,
                "min_containers": c.min_containers,
                "max_containers": c.max_containers,
                "idle_floor_per_hour_usd": round(c.floor_per_hour, 4),
                "idle_floor_per_month_usd": round(c.floor_per_hour * HOURS_PER_MONTH, 2),
                "ceiling_per_hour_usd": None if c.ceiling_per_hour is None else round(c.ceiling_per_hour, 4),
                "ceiling_per_month_usd": None if c.ceiling_per_hour is None else round(c.ceiling_per_hour * HOURS_PER_MONTH, 2),
                "latency_measured": None if c.measured is None else {"app": c.measured.app, "revision": c.measured.number, "bench_run": c.measured.run, "at": c.measured.at},
                "per_1k_requests_usd": round(c.per_1k_requests, 4),
            }

        def pkg(p: PackageChange) -> dict[str, Any]:
            return {"name": p.name, "old": p.old, "new": p.new, "kind": p.kind, "level": p.level}

        def finding(f: Finding) -> dict[str, Any]:
            return {"rule": f.rule, "severity": f.severity, "summary": f.summary, "keys": f.keys, "fix": f.fix}

        return {
            "path": self.path,
            "old_path": self.old_path,
            "name": self.name,
            "status": self.status,
            "settings": [{"key": c.key, "old": c.old, "new": c.new, "via": c.via} for c in self.settings],
            "packages": [pkg(p) for p in self.packages],
            "locked": [pkg(p) for p in self.locked],
            "files": self.files,
            "cost": {"before": cost(self.cost_before), "after": cost(self.cost_after)},
            "memory_headroom_bytes": {"before": self.headroom_before, "after": self.headroom_after},
            "findings": {"introduced": [finding(f) for f in self.introduced], "fixed": [finding(f) for f in self.fixed]},
            "notes": self.notes,
            "rendered": self.rendered,
        }


def diff(old: LoadedProfile | None, new: LoadedProfile | None, *, rendered: bool = False, latency_s: float | None = None, measured: Measurements | None = None) -> ProfileDiff:
    """What changed from `old` to `new` (either may be None: a profile added or removed).

    `measured` (see LocalBench) gives the latencies `kit bench` measured; without it, or without one
    that fits a side, cost per request is at the assumed latency.
    """
    if old is None and new is None:
        raise UsageError("nothing to compare")
    some = new or old
    assert some is not None
    out = ProfileDiff(path=some.display, name=some.profile.name, status="changed")
    if old is not None and new is not None and old.display != new.display:
        out.old_path = old.display
    if old is None:
        out.status = "added"
    elif new is None:
        out.status = "removed"
    old_flat = _flatten(old.profile.model_dump(by_alias=True)) if old else {}
    new_flat = _flatten(new.profile.model_dump(by_alias=True)) if new else {}
    for key in _keys(old_flat, new_flat):
        if key.startswith("packages."):
            continue
        if old_flat.get(key) != new_flat.get(key):
            # Compared as they are, shown masked: a secret in image.env or engine.args never reaches the output.
            before, after = mask_value(key, old_flat.get(key)), mask_value(key, new_flat.get(key))
            out.settings.append(ValueChange(key, before, after, _via(new if key in new_flat else old, key)))
    old_pins = _pins(old) if old else {}
    new_pins = _pins(new) if new else {}
    out.packages = _package_changes(old_pins, new_pins)
    out.files = _file_changes(old, new)
    _lock_changes(out, old, new, set(old_pins) | set(new_pins))
    out.cost_before, out.cost_after = (_cost(p, latency_s, measured, out.notes) if p else None for p in (old, new))
    out.headroom_before, out.headroom_after = (_headroom(p) if p else None for p in (old, new))
    _finding_changes(out, old, new)
    if rendered:
        out.rendered = _rendered_diff(old, new)
    if out.status == "changed" and not (out.settings or out.packages or out.locked or out.files or out.introduced or out.fixed or out.rendered):
        out.status = "unchanged"
        out.notes = [n for n in out.notes if not n.startswith("lockfile is stale")]
    return out


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """Nested tables to dotted keys; lists stay whole values."""
    out: dict[str, Any] = {}
    for key, val in value.items():
        dotted = f"{prefix}{key}"
        if isinstance(val, dict) and val:
            out.update(_flatten(val, dotted + "."))
        else:
            out[dotted] = val
    return out


def _via(loaded: LoadedProfile | None, key: str) -> str | None:
    if loaded is None:
        return None
    where = loaded.file_of(key)
    return None if where == loaded.display else where


def _keys(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    """Keys of both, in the first one's order with the second's new keys after."""
    return list(dict.fromkeys([*a, *b]))


def _pins(loaded: LoadedProfile) -> dict[str, str]:
    """The profile's pins, with the engine version the base image holds when the engine comes from it."""
    pins = dict(loaded.profile.packages)
    engine = loaded.profile.engine.name
    if loaded.profile.engine_from_image and engine not in pins and loaded.profile.version(engine) is not None:
        pins[engine] = str(loaded.profile.version(engine))
    return pins


def _package_changes(old: dict[str, Any], new: dict[str, Any]) -> list[PackageChange]:
    changes = []
    for name in sorted(set(old) | set(new)):
        a, b = old.get(name), new.get(name)
        if a is None or b is None or Version(str(a)) != Version(str(b)):
            changes.append(PackageChange(name, None if a is None else str(a), None if b is None else str(b)))
    return changes


def _file_changes(old: LoadedProfile | None, new: LoadedProfile | None) -> list[str]:
    """Files the profile reads besides its own chain (schemas) whose text differs."""
    if old is None or new is None:
        return []
    chain = {old.rel(p) for p in old.chain} | {new.rel(p) for p in new.chain}
    names = (set(old.texts) | set(new.texts)) - chain
    return sorted(n for n in names if old.texts.get(n) != new.texts.get(n))


def _lock_changes(out: ProfileDiff, old: LoadedProfile | None, new: LoadedProfile | None, pinned: set[str]) -> None:
    from kit import lockfile

    def read(p: LoadedProfile | None):
        if p is None:
            return None
        path = lockfile.lock_path(p)
        return lockfile.parse(path) if path.exists() else None

    a, b = read(old), read(new)
    if b is not None and new is not None and b.header.get("profile-hash") != lockfile.resolution_hash(new):
        out.notes.append("lockfile is stale: it was resolved for another version of the profile (run `kit lock`)")
    if a is None and b is None:
        return
    if a is None or b is None:
        if old is not None and new is not None:
            out.notes.append("lockfile added" if a is None else "lockfile removed")
            out.files.append(out.path.removesuffix(".toml") + ".lock")
        return
    old_pkgs = {k: str(v) for k, v in {**a.provided, **a.packages}.items() if k not in pinned}  # provided: the base image holds it
    new_pkgs = {k: str(v) for k, v in {**b.provided, **b.packages}.items() if k not in pinned}
    out.locked = _package_changes(old_pkgs, new_pkgs)
    # What `kit lock` read from the model's own files (commit, weight bytes, layers, KV heads, ...).
    for key in sorted(set(a.model) | set(b.model)):
        if a.model.get(key) != b.model.get(key) and key != "note":
            out.settings.append(ValueChange(f"lock model {key.removeprefix('facts.')}", a.model.get(key), b.model.get(key)))
    if a.text != b.text and not out.locked and not out.packages:
        out.notes.append("lockfile text changed, but no package version moved (hashes or header)")
        out.files.append(out.path.removesuffix(".toml") + ".lock")


def _cost(loaded: LoadedProfile, latency_s: float | None, measured: Measurements | None = None, notes: list[str] | None = None) -> Cost | None:
    p = loaded.profile
    gpu = catalog.gpus().find(p.gpu.type)
    if gpu is None:
        return None
    found = None
    if latency_s is not None:
        latency, source = latency_s, "--latency"
    else:
        runs = measured(p.app.name) if measured is not None else []
        found = next((m for m in runs if m.fits(gpu.name, p.gpu.count, p.model.id)), None)
        if found is not None:
            latency, source = found.latency_s, f"measured by kit bench on r{found.number}"
        elif p.smoke is not None and "smoke.latency_budget_s" in loaded.origin:
            latency, source = p.smoke.latency_budget_s, "assumed: smoke.latency_budget_s"
        elif p.smoke is not None:
            latency, source = p.smoke.latency_budget_s, "assumed: default smoke.latency_budget_s"
        else:
            latency, source = DEFAULT_LATENCY_S, "assumed: kit's default (no [smoke])"
        why = None
        if runs and found is None:
            why = f"kit bench measured {p.app.name} on {runs[0].describe()}, not on what {loaded.display} runs ({gpu.name} x{p.gpu.count}, {p.model.id}): its latency is assumed"
        elif measured is not None and measured.error:
            why = measured.error
        if why and notes is not None and why not in notes:
            notes.append(why)
    return Cost(
        gpu=gpu.name, count=p.gpu.count, price_per_hour=gpu.price_per_hour_usd * p.gpu.count, latency_s=latency, latency_source=source,
        measured=found, min_containers=p.serving.min_containers, max_containers=p.serving.max_containers,
    )


class LocalBench:
    """Measurements from kit's local history (`kit bench APP@rN`), read-only and offline.

    No history file: no measurements. One that cannot be read: none either, and `error` says why (a
    note in the diff); kit diff never fails, or writes anything, because of the history.
    """

    def __init__(self, state_dir: Path):
        self.state_dir = state_dir
        self.error: str | None = None
        self._history = None
        self._opened = False
        self._cache: dict[str, list[Measured]] = {}

    def __call__(self, app: str) -> list[Measured]:
        if app not in self._cache:
            self._cache[app] = self._read(app)
        return self._cache[app]

    def _read(self, app: str) -> list[Measured]:
        from kit.history import History

        if not self._opened:
            self._opened = True
            if (self.state_dir / "history.db").exists():
                try:
                    self._history = History.open(self.state_dir, readonly=True)
                except KitError as exc:
                    self.error = f"latency assumed: kit's history could not be read ({exc.message})"
        if self._history is None:
            return []
        try:
            pairs = self._history.measured_runs(app)
        except KitError as exc:
            self.error = f"latency assumed: kit's history could not be read ({exc.message})"
            return []
        out = []
        for run, rev in pairs:
            gpu = rev.profile.get("gpu") or {}
            out.append(Measured(app=app, number=rev.number, run=run.id or 0, at=run.at, latency_s=run.latency_p50_s_c1 or 0.0,
                                gpu=gpu.get("type"), gpu_count=gpu.get("count", 1), model=(rev.profile.get("model") or {}).get("id")))
        return out

    def close(self) -> None:
        if self._history is not None:
            self._history.close()
            self._history = None


def _headroom(loaded: LoadedProfile) -> int | None:
    from kit.memory import memory_fit

    fit = memory_fit(loaded)
    return None if fit is None else fit.headroom


def _finding_changes(out: ProfileDiff, old: LoadedProfile | None, new: LoadedProfile | None) -> None:
    from kit.check import check
    from kit.lockfile import closure_for

    def active(p: LoadedProfile | None, closure) -> dict[tuple, Finding]:  # type: ignore[no-untyped-def]
        if p is None:
            return {}
        report = check(p, closure)
        return {(f.rule, tuple(f.keys)): f for f in report.active()}

    # A side whose lockfile is stale (or missing) is checked on its pins only; comparing that with a
    # side checked over its whole closure would report the closure's findings as "fixed". So when
    # both sides cannot be checked over a fresh closure, both are checked on their pins.
    closures = [closure_for(p) if p is not None else None for p in (old, new)]
    both = old is not None and new is not None
    if both and any(c is None for c in closures) and any(c is not None for c in closures):
        closures = [None, None]
        out.notes.append("findings compared on the pinned packages only: one side has no fresh lockfile (run `kit lock`)")
    a, b = active(old, closures[0]), active(new, closures[1])
    order = {"error": 0, "warning": 1, "info": 2}
    out.introduced = sorted((f for k, f in b.items() if k not in a), key=lambda f: (order[f.severity], f.rule))
    out.fixed = sorted((f for k, f in a.items() if k not in b), key=lambda f: (order[f.severity], f.rule))


def _rendered_diff(old: LoadedProfile | None, new: LoadedProfile | None) -> str:
    try:
        from kit.render import render
    except ImportError as exc:
        raise UsageError(f"--rendered needs kit's renderer (kit.render), which cannot be imported here: {exc}", fix="run without --rendered") from None

    def files(p: LoadedProfile | None) -> dict[str, str]:
        if p is None:
            return {}
        try:
            bundle = render(p)
        except KitError as exc:
            return {"(render failed)": exc.render() + "\n"}
        result = {}
        for name, content in sorted(bundle.files.items()):
            result[str(name)] = content.decode("utf-8", "replace") if isinstance(content, bytes) else str(content)
        return result

    a, b = files(old), files(new)
    chunks: list[str] = []
    for name in sorted(set(a) | set(b)):
        if a.get(name) == b.get(name):
            continue
        chunks += difflib.unified_diff(
            a.get(name, "").splitlines(keepends=True),
            b.get(name, "").splitlines(keepends=True),
            fromfile=f"a/{name}" if name in a else "/dev/null",
            tofile=f"b/{name}" if name in b else "/dev/null",
        )
    text = "".join(c if c.endswith("\n") else c + "\n" for c in chunks)
    return mask_text(text, [p.profile.model_dump(by_alias=True) for p in (old, new) if p is not None])


def show(value: Any) -> str:
    """A setting's value for people: `unset`, or compact JSON (strings quoted)."""
    if value is None:
        return "unset"
    return json.dumps(value, ensure_ascii=False, separators=(", ", ": "))


def diff_files(old: Path, new: Path, *, rendered: bool = False, latency_s: float | None = None, measured: Measurements | None = None) -> list[ProfileDiff]:
    """`kit diff OLD NEW`: two profile files. Environment overrides (KIT_*) are not applied: diff compares files."""
    from kit.load import load

    return [diff(load(old, environ={}), load(new, environ={}), rendered=rendered, latency_s=latency_s, measured=measured)]


def diff_ref(start: Path, ref: str, *, rendered: bool = False, latency_s: float | None = None, measured: Measurements | None = None, folder: str = "profiles") -> list[ProfileDiff]:
    """`kit diff --git REF`: every profile whose resolved form (or lockfile) differs between REF and the working tree.

    Every profile is compared, not only the files git lists as changed: a parent's change reaches its children.
    """
    from kit import gitref
    from kit.load import load
    from kit.tree import Tree

    root = gitref.repo_root(start)
    snapshot = gitref.Snapshot(root, gitref.resolve(root, ref))
    now = sorted(p.relative_to(root).as_posix() for p in (root / folder).glob("*.toml") if p.is_file())
    then = snapshot.profiles(folder)
    if not now and not then:
        raise UsageError(f"no profiles ({folder}/*.toml) in the working tree or at {ref}", fix="run kit from the repository that holds profiles/")
    diffs: list[ProfileDiff] = []
    with Tree(snapshot.files(folder), prefix="kit-diff-") as base:
        for rel in sorted(set(now) | set(then)):
            note = None
            old = None
            if rel in then:
                try:
                    old = base.load(rel)
                except KitError as exc:  # broken at the ref: show the new side whole, and say why
                    note = f"at {ref} this profile did not load: {exc.message}"
            new = load(root / rel, root=root, environ={}) if rel in now else None
            if old is None and new is None:
                continue
            d = diff(old, new, rendered=rendered, latency_s=latency_s, measured=measured)
            if note:
                d.notes.insert(0, note)
            if d.changed:
                diffs.append(d)
    return diffs
