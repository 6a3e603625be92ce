"""`kit lock`: resolve a profile's whole closure with uv and write profiles/<name>.lock.

uv runs as `uv pip compile` with the profile's pins (plus the engine's extra, see
lockfile.engine_extras, and the extras the profile names), the image's Python and platform tag,
wheels first, hashes, and the existing lock as the starting point (so re-locking moves nothing that
need not move). A package with no wheel is retried as an sdist (kit.sdist reads and classifies it)
unless image.sdists = "none". With the engine from the image, the image's packages are uv
constraints, and the lock keeps only what the profile adds (see lock_profile). uv's own configuration
files are ignored (`--no-config`) and so are UV_* variables that change what gets resolved; the ones
kept are transport settings (cache, mirror of the default index, TLS, timeouts, retries). A mirror
set with UV_DEFAULT_INDEX is recorded in the lock header as the index uv reports.
"""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

from packaging.utils import canonicalize_name
from packaging.version import Version

from kit import lockfile
from kit.errors import EXIT_USAGE, KitError, OperationError, UsageError
from kit.files import write_atomic
from kit.load import LoadedProfile

INPUT_NAME = "profile"  # the requirements file uv reads; its `# via -r profile` names the profile's pins
OUTPUT_NAME = "lock.txt"
CONSTRAINTS_NAME = "image-constraints"  # what the base image holds, when the engine comes from it
ENGINE_NAME = "image-engine"  # the engine requirement alone: what the image provides
# UV_* variables passed through to uv: how to reach the index, never what to resolve.
UV_TRANSPORT = {
    "UV_CACHE_DIR",
    "UV_NO_CACHE",
    "UV_DEFAULT_INDEX",
    "UV_INDEX_URL",
    "UV_NATIVE_TLS",
    "UV_HTTP_TIMEOUT",
    "UV_HTTP_RETRIES",
    "UV_CONCURRENT_DOWNLOADS",
    "UV_OFFLINE",
    "UV_INSECURE_HOST",
    "UV_KEYRING_PROVIDER",
}
MAX_EXPLANATION_LINES = 14

_NO_WHEELS = re.compile(r"([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+?) has no usable wheels")
_NETWORK = re.compile(
    r"Failed to fetch|error sending request|tcp connect error|Connection refused|dns error|failed to lookup address|"
    r"timed out|Could not connect|Network is unreachable|No route to host|certificate|Failed to download",
    re.IGNORECASE,
)


class IndexUnreachable(KitError):
    """The package index could not be reached: nothing was resolved, nothing written (exit 2)."""

    exit_code = EXIT_USAGE


@dataclass
class LockResult:
    profile: str  # display path of the profile
    path: Path
    display: str  # display path of the lockfile
    written: bool  # False when the new bytes equal the old ones
    packages: int
    changes: list[str] = field(default_factory=list)  # "transformers 4.53.0 -> 4.53.1", "+ foo 1.0", "- bar 2.0"
    build_from_source: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def uv_bin() -> str:
    from uv import find_uv_bin

    return find_uv_bin()


@cache
def uv_version() -> str:
    out = subprocess.run([uv_bin(), "--version"], capture_output=True, text=True, env=uv_env(), check=False).stdout
    parts = out.split()
    return parts[1] if len(parts) > 1 else out.strip()


def uv_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("UV_") or k in UV_TRANSPORT}
    env.update(UV_PYTHON_DOWNLOADS="never", NO_COLOR="1", UV_NO_PROGRESS="1")
    return env


def compile_args(inputs: lockfile.Inputs, no_binary: Sequence[str]) -> list[str]:
    """uv pip compile arguments (after the input file) for these inputs."""
    args = [
        "--output-file",
        OUTPUT_NAME,
        "--generate-hashes",
        "--no-header",
        "--emit-index-url",
        "--no-config",
        "--quiet",
        "--python-version",
        inputs.python,
        "--python-platform",
        inputs.platform,
        *lockfile.RESOLVER_OPTIONS,
    ]
    if inputs.index_url:
        args += ["--default-index", inputs.index_url]
    for url in inputs.extra_index_urls:
        args += ["--index", url]
    for name in sorted(no_binary):
        args += ["--no-binary", name]
    return args


def lock_profile(loaded: LoadedProfile, *, upgrade: Sequence[str] = (), upgrade_all: bool = False, verbose: bool = False) -> LockResult:
    """Resolve one profile and write its lockfile atomically; the old lockfile stays as it was on any failure."""
    inputs = lockfile.resolution_inputs(loaded)
    path = lockfile.lock_path(loaded)
    old: lockfile.Lock | None = None
    if path.exists():
        try:
            old = lockfile.parse(path)
        except KitError:
            old = None  # unreadable: resolve from scratch, replace it
    pins = dict(loaded.profile.packages)
    notes: list[str] = []
    # The model's facts first: a gated or missing model fails fast, before the slow resolve.
    model_lines = _model_lines(loaded, old, notes)
    wanted = [canonicalize_name(n) for n in upgrade]
    for name in wanted:
        if name in pins:
            notes.append(f"{name} is pinned by the profile ({pins[name]}): --upgrade-package cannot move it; change the pin instead")

    # Sdists the previous lock took: ask for them at once.
    no_binary: set[str] = set()
    if old is not None and inputs.sdists != "none":
        for item in old.build_from_source:
            no_binary.add(canonicalize_name(item.partition("==")[0]))
    kinds: dict[str, str] = {}  # name -> how kit classified its sdist (packages outside kit/data/sdists.toml)

    with tempfile.TemporaryDirectory(prefix="kit-lock-") as tmp:
        work = Path(tmp)
        (work / INPUT_NAME).write_text("".join(f"{r}\n" for r in _requested(inputs)), encoding="utf-8")
        if inputs.constraints:
            (work / CONSTRAINTS_NAME).write_text("".join(f"{c}\n" for c in inputs.constraints), encoding="utf-8")
        while True:
            prefer = {**old.provided, **old.packages} if old is not None and not upgrade_all else None
            proc = _compile(work, INPUT_NAME, inputs, no_binary, prefer, upgrade_all, wanted, verbose)
            if proc.returncode == 0:
                break
            retry = _sdists_to_allow(proc.stderr, inputs, pins, no_binary, kinds)
            if not retry:
                raise explain_failure(proc.stderr, loaded, inputs)
            no_binary |= retry
        raw = (work / OUTPUT_NAME).read_text(encoding="utf-8")
        provided: dict[str, str] = {}
        if inputs.engine_requirement:
            # What the image holds: the engine as the image installs it, under the same constraints.
            (work / ENGINE_NAME).write_text(inputs.engine_requirement + "\n", encoding="utf-8")
            # The whole resolution as the starting point: the engine's closure is the same versions.
            proc = _compile(work, ENGINE_NAME, inputs, no_binary, _pins(raw), False, [], verbose)
            if proc.returncode != 0:
                raise explain_failure(proc.stderr, loaded, inputs)
            provided = _pins((work / OUTPUT_NAME).read_text(encoding="utf-8"))
            # The profile's own pins are installed even where the engine's closure has the same version:
            # the image was built on another day, and kit knows only the versions images.toml records.
            raw = _without(raw, {n: v for n, v in provided.items() if n not in pins})

    body, index_urls = _split_index_lines(raw)
    versions = {**provided, **_pins(body)}
    sdists = sorted(f"{n}=={versions[n]}" for n in no_binary if n in versions)
    sdist_kinds = sorted(f"{n}=={versions[n]}:{kinds[n]}" for n in kinds if n in versions and n in no_binary)
    if provided:
        body += "\n# The base image holds these (resolved as its engine requires them; `kit check` reads them, the image does not install them):\n"
        body += "".join(f"{lockfile.PROVIDED}{n}=={v}\n" for n, v in sorted(provided.items()))
    text = render(loaded, inputs, body, index_urls, sdists, sdist_kinds, model_lines)
    new = lockfile.parse_text(text, path)
    for name in wanted:
        if name not in new.packages and name not in pins:
            raise UsageError(f"--upgrade-package {name}: {name} is not in the closure of {loaded.display}", fix="name a package that the lockfile lists")
    changes = _changes(old, new) if old is not None else []
    written = old is None or old.text != text
    if written and old is not None and not changes:
        changes = ["same versions; hashes, annotations or header changed"]
    if written:
        write_atomic(path, text)
    return LockResult(
        profile=loaded.display,
        path=path,
        display=loaded.rel(path),
        written=written,
        packages=len(new.packages),
        changes=changes,
        build_from_source=sdists,
        notes=notes,
    )


def _requested(inputs: lockfile.Inputs) -> list[str]:
    return [*inputs.requirements, *([inputs.engine_requirement] if inputs.engine_requirement else [])]


def _compile(work: Path, input_name: str, inputs: lockfile.Inputs, no_binary: set[str], prefer: dict | None,
             upgrade_all: bool, wanted: list[str], verbose: bool) -> subprocess.CompletedProcess[str]:
    out = work / OUTPUT_NAME
    if prefer:
        # The starting point: uv keeps these versions where it can. Versions only: uv would copy
        # hashes from this file rather than read them from the index, so a hand-edited lock
        # would keep wrong hashes.
        out.write_text("".join(f"{n}=={v}\n" for n, v in sorted(prefer.items())), encoding="utf-8")
    elif out.exists():
        out.unlink()
    args = [uv_bin(), "pip", "compile", input_name, *compile_args(inputs, sorted(no_binary))]
    if inputs.constraints:
        args += ["--constraint", CONSTRAINTS_NAME]
    if upgrade_all:
        args.append("--upgrade")
    for name in wanted:
        args += ["--upgrade-package", name]
    import sys

    if not verbose and sys.stderr.isatty():
        return _run_with_progress(args, work)
    proc = subprocess.run(args, cwd=work, capture_output=True, text=True, env=uv_env(), check=False)
    if verbose and proc.stderr:
        sys.stderr.write(proc.stderr)
    return proc


_ESCAPE = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07")


def _run_with_progress(args: list[str], work: Path) -> subprocess.CompletedProcess[str]:
    """uv with its stderr on a pseudo-terminal, so its progress shows on kit's terminal as uv draws it;
    the same bytes are kept (escapes stripped, each line's last redraw) for kit's own diagnosis."""
    import pty
    import sys

    env = {k: v for k, v in uv_env().items() if k != "UV_NO_PROGRESS"}
    master, slave = pty.openpty()
    try:
        proc = subprocess.Popen(args, cwd=work, env=env, stdout=subprocess.PIPE, stderr=slave, stdin=subprocess.DEVNULL)
    finally:
        os.close(slave)
    chunks: list[bytes] = []
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:  # EIO: uv closed its end
            break
        if not data:
            break
        chunks.append(data)
        sys.stderr.buffer.write(data)
        sys.stderr.flush()
    os.close(master)
    stdout = proc.stdout.read().decode(errors="replace") if proc.stdout else ""
    rc = proc.wait()
    raw = _ESCAPE.sub("", b"".join(chunks).decode(errors="replace")).replace("\r\n", "\n")
    err = "\n".join(line.rsplit("\r", 1)[-1] for line in raw.split("\n"))
    return subprocess.CompletedProcess(args, rc, stdout, err)


def _sdists_to_allow(stderr: str, inputs: lockfile.Inputs, pins: dict[str, str], already: set[str], kinds: dict[str, str]) -> set[str]:
    """Packages uv found to have no wheel whose sdist the lock may take on the next try (image.sdists).

    A package kit/data/sdists.toml lists, pinned exactly, is taken as that file says; any other is
    read and classified (kit.sdist), unless the profile forbids sdists.
    """
    from kit.sdist import classify

    found = set()
    for name, version in _NO_WHEELS.findall(stderr):
        canon = canonicalize_name(name)
        if canon in already:
            continue
        if canon in inputs.sdist_allowed and pins.get(canon) == version:
            found.add(canon)
        elif inputs.sdists != "none" and canon not in lockfile.sdist_allowlist():
            kinds[canon] = classify(canon, version, inputs.index_url).describe()
            found.add(canon)
    return found


def _pins(text: str) -> dict[str, str]:
    """name -> version of the `name==version` lines of a requirements file."""
    out = {}
    for line in text.splitlines():
        m = lockfile._PIN.match(line)
        if m:
            out[canonicalize_name(m.group(1))] = m.group(2)
    return out


def _without(raw: str, provided: dict[str, str]) -> str:
    """uv's output less the entries (with their hash and `# via` lines) the image already holds at that version."""
    keep: list[str] = []
    skipping = False
    for line in raw.splitlines():
        m = lockfile._PIN.match(line)
        if m:
            skipping = provided.get(canonicalize_name(m.group(1))) == m.group(2)
        elif line and not line[0].isspace():
            skipping = False
        if not skipping:
            keep.append(line)
    return "\n".join(keep) + "\n"


def _named_indexes(inputs: lockfile.Inputs, reported: list[str]) -> list[str]:
    """The indexes uv resolved against, as the header records them.

    uv's own default index is recorded as "(uv default index)": which one that is follows from the
    uv version recorded beside it, and the lockfile stays the same bytes wherever it is made. An
    index the profile or the environment (UV_DEFAULT_INDEX) chose is recorded by its URL.
    """
    chosen = inputs.index_url or os.environ.get("UV_DEFAULT_INDEX") or os.environ.get("UV_INDEX_URL")
    names = [url if chosen or i > 0 else "(uv default index)" for i, url in enumerate(reported)]
    return names or ["(uv default index)"]


def _split_index_lines(raw: str) -> tuple[str, list[str]]:
    """uv's `--index-url X` / `--extra-index-url Y` lines go to the header; the rest is the body."""
    urls: list[str] = []
    lines = []
    for line in raw.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0] in ("--index-url", "--extra-index-url", "-i"):
            urls.append(parts[1])
            continue
        lines.append(line)
    while lines and not lines[0].strip():
        lines.pop(0)
    while lines and not lines[-1].strip():
        lines.pop()
    return "\n".join(lines) + "\n", urls


def _model_lines(loaded: LoadedProfile, old: lockfile.Lock | None, notes: list[str]) -> list[tuple[str, str]]:
    """The lock's model section: read from the model's files (kit/hub.py), unless the profile states
    the facts itself. When neither the Hub nor the cache can answer, the previous lock's section is kept
    if it was for the same model and revision, else the lock records none (kit check says so)."""
    m = loaded.profile.model
    if m.architecture is not None:
        notes.append(f"model facts are stated in the profile ([model.architecture]); {m.id} was not read from the Hub")
        return []
    from kit.hub import HubUnreachable, read_model

    try:
        record = read_model(m.id, m.revision, file=loaded.file_of("model.id"), hf_secret=m.hf_secret)
    except HubUnreachable as exc:
        asked = m.revision or "main"
        if old is not None and old.model.get("id") == m.id and old.model.get("revision") == asked:
            notes.append(f"model facts kept from the previous lock: {exc.message}")
            return [(k, v) for k, vs in old.model.items() for v in vs.split("\n")]
        notes.append(f"no model facts recorded: {exc.message}")
        return []
    moved = "" if record.commit == record.revision else f" -> {record.commit}"
    notes.append(f"model {record.id}@{record.revision}{moved}: {', '.join(sorted(record.files))} read")
    return record.lock_lines()


def render(
    loaded: LoadedProfile,
    inputs: lockfile.Inputs,
    body: str,
    index_urls: list[str],
    sdists: list[str],
    sdist_kinds: Sequence[str] = (),
    model_lines: Sequence[tuple[str, str]] = (),
) -> str:
    """Header + body. No timestamps, nothing that varies between two runs on the same index."""
    platform = inputs.platform
    if inputs.platform_assumed:
        platform += f" (assumed: kit does not know the glibc of {loaded.profile.image.base})"
    fields = [
        ("format", lockfile.FORMAT),
        ("profile", loaded.display),
        ("profile-hash", inputs.hash()),
        ("requirements", " ".join(inputs.requirements)),
        ("python", inputs.python),
        ("platform", platform),
        ("index-urls", " ".join(_named_indexes(inputs, index_urls))),
        ("resolver", "uv pip compile --generate-hashes " + " ".join(lockfile.RESOLVER_OPTIONS)),
        ("build-from-source", " ".join(sdists) or "none"),
        ("uv-version", uv_version()),
    ]
    # Issue 12's fields, present only where they say something (older locks keep their bytes).
    if sdist_kinds:
        fields.insert(-1, ("sdist-kinds", " ".join(sdist_kinds)))
    if inputs.from_image:
        fields.insert(3, ("engine-from-image", f"{inputs.from_image} ({inputs.engine_requirement or 'engine version unknown to kit'})"))
        if inputs.constraints:
            fields.insert(5, ("constraints", " ".join(inputs.constraints)))
    head = [f"{lockfile.HEADER}{k} = {v}" for k, v in fields]
    head += [f"{lockfile.MODEL_HEADER}{k} = {v}" for k, v in model_lines]
    head += [
        "#",
        f"# The whole dependency closure of {loaded.display}, resolved by uv. Do not edit: `kit lock` rewrites it,",
        "# `kit lock --upgrade-package NAME` moves one package, `kit lock --check` says whether it is fresh.",
        "",
    ]
    return "\n".join(head) + "\n" + body


def _changes(old: lockfile.Lock, new: lockfile.Lock) -> list[str]:
    out = []
    for name in sorted(set(old.packages) | set(new.packages)):
        a, b = old.packages.get(name), new.packages.get(name)
        if a == b:
            continue
        if a is None:
            out.append(f"+ {name} {b}")
        elif b is None:
            out.append(f"- {name} {a}")
        else:
            out.append(f"{name} {a} -> {b}")
    for key in sorted(set(old.model) | set(new.model)):
        a, b = old.model.get(key), new.model.get(key)
        if a != b and not key.startswith("note"):
            out.append(f"model {key}: {a if a is not None else '(none)'} -> {b if b is not None else '(none)'}")
    return out


# -- failures ------------------------------------------------------------------------------------


def _cause_lines(stderr: str) -> list[str]:
    """uv's message without `error:`/`cause:`/`hint:` scaffolding, one sentence per line."""
    lines = []
    for raw in stderr.splitlines():
        line = raw.strip()
        if not line or line.startswith("hint:") or line.startswith("warning:"):
            continue
        for prefix in ("error:", "cause:", "×", "╰─▶", "│"):
            if line.startswith(prefix):
                line = line[len(prefix) :].strip()
        if line:
            lines.append(line)
    return lines


_FAILED_URL = re.compile(r"(?:Failed to fetch:?|for url) \(?`?(https?://[^\s`)]+)")


def _failed_index(stderr: str, inputs: lockfile.Inputs) -> tuple[str, str | None]:
    """Which index uv failed to reach, as uv names it: (how to say it, the profile key that sets it or None).

    uv asks the extra indexes first, so an unreachable extra index fails a lock whose default index is fine.
    """
    default = inputs.index_url or os.environ.get("UV_DEFAULT_INDEX") or os.environ.get("UV_INDEX_URL")
    m = _FAILED_URL.search(stderr)
    if m is None:
        return (f"({default})" if default else "(the default index)"), ("image.index_url" if inputs.index_url else None)
    url = m.group(1)
    for i, extra in enumerate(inputs.extra_index_urls):
        if url.startswith(extra.rstrip("/")):
            return f"{extra} (image.extra_index_urls[{i}])", "image.extra_index_urls"
    if default and url.startswith(default.rstrip("/")):
        return f"({default})", ("image.index_url" if inputs.index_url else None)
    return f"at {url}", None


def explain_failure(stderr: str, loaded: LoadedProfile, inputs: lockfile.Inputs) -> KitError:
    lines = _cause_lines(stderr)
    if "No solution found" not in stderr and _NETWORK.search(stderr):
        where, key = _failed_index(stderr, inputs)
        detail = next((ln for ln in reversed(lines) if ln), "")
        return IndexUnreachable(
            f"the package index {where} could not be reached: {detail}",
            file=loaded.display,
            key=key,
            fix=f"check the network or the index URL ({key or 'image.index_url, UV_DEFAULT_INDEX'}); the existing lockfile was left as it was",
        )
    if "No solution found" in stderr:
        return OperationError(
            "these pins cannot all be installed together:\n  " + "\n  ".join(_trim_explanation(lines, inputs, loaded)),
            file=loaded.display,
            fix="change the pins named above in [packages]; no lockfile was written (an existing one is left as it was)",
        )
    tail = "\n  ".join(lines[-MAX_EXPLANATION_LINES:]) or "(no output)"
    return OperationError(f"uv pip compile failed:\n  {tail}", file=loaded.display, fix="run `kit lock -v` for uv's full output")


_DEPENDS = re.compile(r"([A-Za-z0-9][A-Za-z0-9._\[\]-]*)(==\S+|>=\S+|<\S+)? depends on ([A-Za-z0-9][A-Za-z0-9._\[\]-]*)([^,]*?)(?= and |,|\.$|$)")


def _trim_explanation(lines: list[str], inputs: lockfile.Inputs, loaded: LoadedProfile) -> list[str]:
    """Which pins conflict and why: the profile's pins against what another pin requires, then uv's derivation."""
    from packaging.specifiers import InvalidSpecifier, SpecifierSet

    pins = dict(loaded.profile.packages)
    text = " ".join(ln for ln in lines if ln != "No solution found when resolving dependencies:" and not ln.startswith("No solution found"))
    out: list[str] = []
    for who, who_ver, dep, spec in _DEPENDS.findall(text):
        dep_name = canonicalize_name(dep.split("[")[0])
        spec = spec.strip()
        if dep_name in pins and spec:
            try:
                ok = SpecifierSet(spec).contains(Version(pins[dep_name]), prereleases=True)
            except (InvalidSpecifier, ValueError):
                continue
            if not ok:
                line = f"{who}{who_ver} requires {dep_name}{spec}, but the profile pins {dep_name}=={pins[dep_name]}"
                if line not in out:
                    out.append(line)
    for name, version in _NO_WHEELS.findall(text):
        canon = canonicalize_name(name)
        requirers = sorted({f"{w}{v}" for w, v, d, _ in _DEPENDS.findall(text) if canonicalize_name(d.split("[")[0]) == canon})
        out.append(_no_wheel_advice(canon, version, inputs, pins, requirers))
    derivation = []
    for ln in lines:
        if ln.startswith("No solution found"):
            continue
        ln = ln.replace("you require", "the profile requires").replace("your requirements are unsatisfiable", "the profile's pins cannot all hold")
        ln = ln.replace("your requirements", "the profile's pins")
        derivation.append(ln)
    if out:
        out.append("resolver's derivation:")
    shown = derivation[:MAX_EXPLANATION_LINES]
    out += [f"  {ln}" if out else ln for ln in shown]
    if len(derivation) > len(shown):
        out.append(f"  ... {len(derivation) - len(shown)} more lines (`kit lock -v` shows uv's full output)")
    return out


def _no_wheel_advice(name: str, version: str, inputs: lockfile.Inputs, pins: dict[str, str], requirers: Sequence[str] = ()) -> str:
    """What the user can do about a package that has no wheel, depending on why kit did not build it."""
    head = f"{name}=={version} has no wheel for Python {inputs.python} on {inputs.platform}"
    if requirers:
        head += f" (required by {', '.join(requirers)})"
    if inputs.sdists == "none":
        other = (
            f"pin another {name} version that has wheels"
            if name in pins
            else "move the profile's pin that brings it in (the derivation below names it) to a release whose closure has wheels"
        )
        return (
            f"{head}, and image.sdists = \"none\" forbids building it from its source distribution: remove image.sdists "
            f"(kit then reads the sdist, locks it with its hash and `kit check` says what building it needs), or {other}"
        )
    if name in lockfile.sdist_allowlist() and pins.get(name) != version:
        return f"{head}; kit/data/sdists.toml lets the image build {name} only at the version the profile pins: pin {name} = \"{version}\" in [packages]"
    return f"{head}: pin a version with wheels"
