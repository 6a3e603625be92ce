"""profiles/x.toml -> Profile: parse, follow `extends`, apply environment overrides, validate.

Every failure is a ProfileError naming the file, the key and the fix.
"""

from __future__ import annotations

import json

import difflib
import hashlib
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from kit.errors import ProfileError, UsageError
from kit.profile import SECTIONS, Profile

ENV_PREFIX = "KIT_"
# Settings that are not profile overrides (they configure kit itself).
_NOT_OVERRIDES = {"KIT_STATE_DIR", "KIT_CACHE_DIR", "KIT_NO_COLOR"}
# JSON Schemas nest objects in properties in items...; 64 levels is far beyond any real one, and far
# below where json, jsonschema and xgrammar run out of recursion.
MAX_SCHEMA_DEPTH = 64
# Keys whose value is a path, resolved relative to the file that sets them.
_PATH_KEYS = (("structured_output", "schema"), ("smoke", "schema"))


@dataclass
class LoadedProfile:
    """A validated profile and where each of its pieces came from."""

    profile: Profile
    path: Path  # the profile file itself
    root: Path  # repository root: nothing may be read outside it
    chain: list[Path]  # the file and its ancestors, child first
    origin: dict[str, Path] = field(default_factory=dict)  # dotted key -> file that set it
    overrides: dict[str, str] = field(default_factory=dict)  # dotted key -> environment variable that set it
    texts: dict[str, str] = field(default_factory=dict)  # root-relative path -> file text (profile chain and schemas)

    @property
    def display(self) -> str:
        return self.rel(self.path)

    def rel(self, path: Path) -> str:
        try:
            return path.resolve().relative_to(self.root).as_posix()
        except ValueError:
            return str(path)

    def override_notes(self) -> list[str]:
        """One line per KIT_* override in force: `gpu.type = T4 (from KIT_GPU__TYPE)`."""
        from kit.secrets import mask_value

        out = []
        for key, var in sorted(self.overrides.items()):
            value: Any = self.profile.model_dump(mode="json", by_alias=True)
            for part in key.split("."):
                value = value.get(part) if isinstance(value, dict) else None
            value = mask_value(key, value)  # a secret set through the environment is never echoed
            out.append(f"{key} = {json.dumps(value) if not isinstance(value, str) else value} (from {var})")
        return out

    def file_of(self, key: str) -> str:
        """The file that set `key` (or its nearest parent key), for error messages and findings."""
        probe = key
        while probe:
            if probe in self.origin:
                return self.rel(self.origin[probe])
            probe = probe.rpartition(".")[0]
        return self.display

    def schema_path(self, which: str = "structured_output") -> Path | None:
        section = self.profile.smoke if which == "smoke" else self.profile.structured_output
        value = getattr(section, "schema_file", None) if section else None
        if which == "smoke" and value is None:
            value = self.profile.structured_output.schema_file
        return (self.root / value) if value else None

    def content_hash(self) -> str:
        """sha256 over the resolved profile and every file it reads: changes when anything that matters does."""
        h = hashlib.sha256()
        h.update(self.profile.model_dump_json(by_alias=True).encode())
        for name in sorted(self.texts):
            h.update(name.encode() + b"\0" + self.texts[name].encode() + b"\0")
        return h.hexdigest()


def find_root(path: Path) -> Path:
    """The repository root of `path`: the nearest ancestor holding `.git`, else the file's own folder.

    Found from where the file is named, not where a symlink points: a link to a file elsewhere must not
    move the root there (load refuses such a file, as it refuses a parent that leaves the root).
    """
    start = Path(os.path.abspath(path)).parent.resolve()
    for candidate in (start, *start.parents):
        if (candidate / ".git").exists():
            return candidate
    return start


def discover(root: Path) -> list[Path]:
    """Every profile under `root/profiles` (or in `root` itself when it is a profiles folder)."""
    base = root / "profiles" if (root / "profiles").is_dir() else root
    if not base.is_dir():
        raise UsageError(f"{base} is not a directory", fix="run kit from the repository root, or name profile files")
    found = sorted(p for p in base.glob("*.toml") if p.is_file())
    if not found:
        raise UsageError(f"no profiles (*.toml) in {base}", fix="create one from a bundled example: kit init profiles/my-app.toml (kit init --list shows them)")
    return found


def load(path: str | Path, *, root: Path | None = None, environ: dict[str, str] | None = None) -> LoadedProfile:
    """Load and validate one profile file."""
    path = Path(path)
    if "\0" in str(path):
        raise UsageError("the profile path contains a NUL character", fix="name the profile file without control characters")
    try:
        if path.is_dir():
            raise UsageError(f"{path} is a directory", fix="name a profile file, or run `kit check` with no argument for every profile")
        if not path.exists():
            if path.is_symlink():
                raise ProfileError("is a symlink that leads nowhere (broken, or a loop)", file=str(path), fix="point the link at a profile file, or replace it with the file")
            raise ProfileError("file not found", file=str(path), fix="check the path; profiles live in profiles/*.toml")
        resolved = path.resolve()
    except OSError as exc:  # a symlink loop, a path too long
        raise ProfileError(f"cannot open: {exc.strerror or exc}", file=str(path), fix="check the path") from None
    root = (root or find_root(path)).resolve()
    if not _inside(resolved, root):
        raise ProfileError(
            f"is a symlink to {resolved}, outside the repository root {root}",
            file=str(path),
            fix="copy the profile into the repository (kit reads nothing outside it, as with `extends`)",
        )
    chain, merged, origin, texts = _read_chain(resolved, root)
    environ = os.environ if environ is None else environ
    overrides = _apply_env(merged, environ)
    for dotted in overrides:
        origin[dotted] = Path("<environment>")
    loaded = LoadedProfile(profile=_placeholder(), path=path.resolve(), root=root, chain=chain, origin=origin, overrides=overrides, texts=texts)
    loaded.profile = _validate(merged, loaded)
    _check_gpu(loaded)
    _read_schemas(loaded)
    return loaded


def _placeholder() -> Profile:
    return Profile.model_construct()


def _read_toml(path: Path, root: Path) -> tuple[dict[str, Any], str]:
    from kit.files import read_text

    rel = _rel(path, root)
    text = read_text(path, display=rel)
    if not text.strip():
        raise ProfileError("the file is empty", file=rel, fix="a profile needs at least name, [app], [model], [gpu], [image], [packages] and [engine]; see docs/profile.md")
    try:
        data = tomllib.loads(text)
    except RecursionError:
        raise ProfileError("arrays or tables nested too deeply to read", file=rel, fix="flatten the nesting; no profile key needs more than a few levels") from None
    except tomllib.TOMLDecodeError as exc:
        msg = str(exc)
        # tomllib says "... (at line L, column C)": put the position where editors look for it.
        line = col = None
        if "(at line " in msg:
            msg, _, tail = msg.partition(" (at line ")
            line_s, _, col_s = tail.rstrip(")").partition(", column ")
            line, col = int(line_s), int(col_s)
        raise ProfileError(f"invalid TOML: {msg}", file=rel, line=line, column=col, fix="fix the syntax at that position (a TOML linter such as taplo shows it as you type)") from None
    return data, text


def _rel(path: Path, root: Path) -> str:
    try:
        return path.resolve().relative_to(root).as_posix()
    except ValueError:
        return str(path)


def _inside(path: Path, root: Path) -> bool:
    try:
        path.resolve().relative_to(root)
        return True
    except ValueError:
        return False


def _read_chain(path: Path, root: Path) -> tuple[list[Path], dict[str, Any], dict[str, Path], dict[str, str]]:
    chain: list[Path] = []
    docs: list[dict[str, Any]] = []
    texts: dict[str, str] = {}
    current = path
    while True:
        if current in chain:
            cycle = " -> ".join(_rel(p, root) for p in [*chain[chain.index(current):], current])
            raise ProfileError(f"`extends` forms a cycle: {cycle}", file=_rel(chain[-1], root), key="extends", fix="remove one of the `extends` keys in that cycle")
        if not _inside(current, root):
            raise ProfileError(
                f"`extends` points outside the repository root ({current})",
                file=_rel(chain[-1], root) if chain else str(current),
                key="extends",
                fix=f"keep parent profiles inside {root}",
            )
        if not current.exists():
            raise ProfileError(
                f"`extends` names {_rel(current, root)}, which does not exist",
                file=_rel(chain[-1], root) if chain else str(current),
                key="extends",
                fix="fix the path; it is relative to the file that contains `extends`",
            )
        if chain and not current.is_file():
            raise ProfileError(
                f"`extends` names {_rel(current, root)}, which is not a profile file",
                file=_rel(chain[-1], root),
                key="extends",
                fix="name the parent profile's .toml file; the path is relative to the file that contains `extends`",
            )
        data, text = _read_toml(current, root)
        chain.append(current)
        docs.append(data)
        texts[_rel(current, root)] = text
        _resolve_paths(data, current, root)
        parent = data.get("extends")
        if parent is None:
            break
        if not isinstance(parent, str) or not parent.strip():
            raise ProfileError("`extends` must name a parent profile file", file=_rel(current, root), key="extends", fix='write extends = "parent.toml"')
        if _control(parent):
            raise ProfileError(f"`extends` contains the control character {_control(parent)}", file=_rel(current, root), key="extends", fix='write extends = "parent.toml"')
        try:
            current = (current.parent / parent).resolve()
        except OSError as exc:  # a symlink loop
            raise ProfileError(f"`extends` names {parent!r}, which cannot be opened: {exc.strerror or exc}", file=_rel(current, root), key="extends", fix="fix the path") from None

    merged: dict[str, Any] = {}
    origin: dict[str, Path] = {}
    for file, data in zip(reversed(chain), reversed(docs)):
        _merge(merged, data, file, origin, "")
    merged.pop("extends", None)
    if len(chain) > 1:
        merged["extends"] = docs[0].get("extends")
    return chain, merged, origin, texts


def _resolve_paths(data: dict[str, Any], file: Path, root: Path) -> None:
    """Rewrite path keys to root-relative POSIX paths, so that children and parents agree on what they name."""
    for section, key in _PATH_KEYS:
        table = data.get(section)
        if isinstance(table, dict) and isinstance(table.get(key), str):
            if _control(table[key]) or not table[key].strip():
                raise ProfileError("must name a file, in plain text", file=_rel(file, root), key=f"{section}.{key}", fix='write e.g. schema = "schemas/x.json"')
            try:
                target = (file.parent / table[key]).resolve()
            except OSError as exc:
                raise ProfileError(f"cannot open {table[key]!r}: {exc.strerror or exc}", file=_rel(file, root), key=f"{section}.{key}", fix="fix the path") from None
            if not _inside(target, root):
                raise ProfileError(f"path {table[key]!r} leaves the repository root", file=_rel(file, root), key=f"{section}.{key}", fix="keep schema files inside the repository")
            table[key] = target.relative_to(root).as_posix()


def _merge(dst: dict[str, Any], src: dict[str, Any], file: Path, origin: dict[str, Path], prefix: str) -> None:
    for key, value in src.items():
        dotted = f"{prefix}{key}"
        if key == "allow" and not prefix and isinstance(value, list) and isinstance(dst.get("allow"), list):
            dst["allow"] = [*dst["allow"], *value]  # suppressions accumulate down the chain
        elif isinstance(value, dict) and isinstance(dst.get(key), dict) and key not in ("env",):
            _merge(dst[key], value, file, origin, dotted + ".")
            continue
        elif isinstance(value, dict) and isinstance(dst.get(key), dict):
            dst[key] = {**dst[key], **value}
        else:
            dst[key] = value
        origin[dotted] = file
        if isinstance(value, dict):
            for sub in value:
                origin.setdefault(f"{dotted}.{sub}", file)
                origin[f"{dotted}.{sub}"] = file


def _apply_env(merged: dict[str, Any], environ: Any) -> dict[str, str]:
    """Apply KIT_SECTION__KEY=value overrides (for CI), read with pydantic-settings.

    pydantic-settings costs ~150-300 ms to import, so it is only imported when such a variable exists.
    """
    names = [k for k in environ if k.startswith(ENV_PREFIX) and k not in _NOT_OVERRIDES and "__" in k]
    if not names:
        return {}
    from kit.settings import read_overrides

    applied: dict[str, str] = {}
    for dotted, (var, value) in read_overrides({k: environ[k] for k in names}).items():
        parts = dotted.split(".")
        table = merged
        for part in parts[:-1]:
            nxt = table.setdefault(part, {})
            if not isinstance(nxt, dict):
                raise ProfileError(f"{var} overrides {dotted}, but {'.'.join(parts[:-1])} is not a table", key=dotted, fix=f"unset {var}")
            table = nxt
        table[parts[-1]] = value
        applied[dotted] = var
    return applied


def _validate(merged: dict[str, Any], loaded: LoadedProfile) -> Profile:
    try:
        return Profile.model_validate(merged)
    except ValidationError as exc:
        raise _explain(exc, loaded) from None


def _explain(exc: ValidationError, loaded: LoadedProfile) -> ProfileError:
    """Turn pydantic's errors into one message naming file, key and fix (all errors listed)."""
    lines: list[str] = []
    first_file = None
    for err in exc.errors():
        loc = [str(p) for p in err["loc"]]
        dotted = ".".join(loc)
        file = loaded.file_of(dotted) if err["type"] != "missing" else loaded.display
        first_file = first_file or file
        var = loaded.overrides.get(dotted)
        src = f" (set by {var})" if var else ""
        if err["type"] == "extra_forbidden":
            parent = loc[:-1]
            known = _known_keys(parent)
            guess = difflib.get_close_matches(loc[-1], known, n=1, cutoff=0.6)
            hint = f"did you mean `{'.'.join([*parent, guess[0]])}`?" if guess else f"known keys here: {', '.join(sorted(known))}"
            lines.append(f"{file}: {dotted}: unknown key{src}; {hint}")
        elif err["type"] == "missing":
            lines.append(f"{file}: {dotted}: required key is missing; add it (see docs/profile.md)")
        else:
            got = err.get("input")
            shown = f" (got {got!r})" if not isinstance(got, dict | list) and repr(got) not in _message(err) else ""
            lines.append(f"{file}: {dotted}: {_message(err)}{shown}{src}")
    body = "invalid profile:\n  " + "\n  ".join(lines)
    # file: the first file named above, so that a GitHub annotation has one to point at.
    error = ProfileError(body, fix="correct the keys above; `kit schema` prints the full format")
    error.file = first_file
    return error


def _message(err: dict[str, Any]) -> str:
    msg = err["msg"]
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, ") :]
    return msg


def _known_keys(parent: list[str]) -> list[str]:
    model: type[BaseModel] = Profile
    for part in parent:
        if part.isdigit():
            continue
        sub = SECTIONS.get(part)
        if sub is None:
            field_info = model.model_fields.get(part)
            ann = getattr(field_info, "annotation", None) if field_info else None
            if isinstance(ann, type) and issubclass(ann, BaseModel):
                sub = ann
        if sub is None:
            return []
        model = sub
    keys = []
    for name, info in model.model_fields.items():
        keys.append(info.alias or name)
    return keys


def _check_gpu(loaded: LoadedProfile) -> None:
    from kit.catalog import gpus

    catalog = gpus()
    wanted = loaded.profile.gpu.type
    if catalog.find(wanted) is None:
        names = catalog.all_names()
        guess = difflib.get_close_matches(wanted.upper(), [n.upper() for n in names], n=1, cutoff=0.5)
        hint = f"did you mean {next(n for n in names if n.upper() == guess[0])!r}? " if guess else ""
        raise ProfileError(
            f"unknown GPU type {wanted!r}",
            file=loaded.file_of("gpu.type"),
            key="gpu.type",
            fix=f"{hint}known types: {', '.join(catalog.canonical_names())}",
        )


def _depth(value: Any) -> int:
    """How deeply arrays and objects nest in a JSON document (iteratively: no recursion limit to hit)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict | list):
            deepest = max(deepest, level)
            stack += [(v, level + 1) for v in (item.values() if isinstance(item, dict) else item)]
    return deepest


def _control(text: str) -> str | None:
    from kit.profile import control_characters

    return control_characters(text)


def _read_schemas(loaded: LoadedProfile) -> None:
    import json

    from kit.files import read_text

    for section in ("structured_output", "smoke"):
        table = getattr(loaded.profile, section)
        value = getattr(table, "schema_file", None) if table else None
        if value is None:
            continue
        path = loaded.root / value
        key = f"{section}.schema"
        if not path.exists():
            raise ProfileError(f"schema file {value} does not exist", file=loaded.file_of(key), key=key, fix="fix the path (relative to the profile that sets it) or create the file")
        try:
            text = read_text(path, display=value)
        except ProfileError as exc:
            raise ProfileError(f"schema file {value}: {exc.message}", file=loaded.file_of(key), key=key, fix=exc.fix) from None
        try:
            doc = json.loads(text)
            depth = _depth(doc)
        except RecursionError:
            depth = MAX_SCHEMA_DEPTH + 1
        except json.JSONDecodeError as exc:
            raise ProfileError(f"schema file {value} is not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}", file=loaded.file_of(key), key=key, fix="fix the JSON") from None
        if depth > MAX_SCHEMA_DEPTH:
            raise ProfileError(f"schema file {value} is nested more than {MAX_SCHEMA_DEPTH} levels deep", file=loaded.file_of(key), key=key, fix="flatten the schema (use $defs and $ref for repeated parts)")
        if not isinstance(doc, dict):
            raise ProfileError(f"schema file {value} must hold a JSON object (a JSON Schema)", file=loaded.file_of(key), key=key, fix="wrap the schema in an object")
        loaded.texts[value] = text
