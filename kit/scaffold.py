"""`kit init`: a new profile from one of the example profiles shipped with kit, for a GPU and a model."""

from __future__ import annotations

import os
import re
import tempfile
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from kit.errors import OperationError, UsageError

DEFAULT_EXAMPLE = "qwen25-h200-vllm020"


def examples_dir() -> Path:
    """The example profiles: shipped inside the wheel as kit/examples, or the repository's profiles/."""
    shipped = resources.files("kit").joinpath("examples")
    if shipped.is_dir():
        return Path(str(shipped))
    return Path(__file__).resolve().parent.parent / "profiles"


def examples() -> dict[str, str]:
    """name -> description of every example that stands alone (no `extends`)."""
    import tomllib

    out = {}
    for path in sorted(examples_dir().glob("*.toml")):
        data = tomllib.loads(path.read_text(encoding="utf-8"))
        if "extends" not in data:
            out[path.stem] = data.get("description", "")
    return out


@dataclass
class Created:
    path: Path
    example: str
    copied: list[Path]


def _slug(stem: str) -> str:
    """A Modal app name from the file name: lowercase letters, digits and dashes."""
    return re.sub(r"-+", "-", re.sub(r"[^a-z0-9-]", "-", stem.lower())).strip("-")[:60] or "kit-app"


def create(path: Path, *, example: str | None = None, gpu: str | None = None, model: str | None = None, force: bool = False) -> Created:
    """Write a profile at `path` from an example; refuse to overwrite unless `force`."""
    import tomlkit

    from kit.catalog import gpus

    if path.suffix != ".toml":
        raise UsageError(f"{path} does not end in .toml", fix="name the new profile like profiles/my-app.toml")
    if path.exists() and not force:
        raise UsageError(f"{path} exists", fix="choose another name, or pass --force to overwrite it")
    known = examples()
    chosen = example
    if chosen is None and gpu is not None:
        spec = gpus().find(gpu)
        chosen = next((n for n in known if _gpu_of(n) == (spec.name if spec else None)), None)
    chosen = chosen or DEFAULT_EXAMPLE
    if chosen not in known:
        raise UsageError(f"no example named {chosen!r}", key="--example", fix=f"one of: {', '.join(known)} (kit init --list)")
    source = examples_dir() / f"{chosen}.toml"
    doc = tomlkit.parse(source.read_text(encoding="utf-8"))
    header = f"# Made by `kit init` from the example {chosen!r}. Pin, check and lock it: kit check {path.as_posix()} && kit lock {path.as_posix()}\n"
    body = tomlkit.dumps(doc).split("\nname = ", 1)[1]
    doc = tomlkit.parse(header + "name = " + body)
    doc["name"] = path.stem
    doc["app"]["name"] = _slug(path.stem)
    if gpu is not None:
        spec = gpus().find(gpu)
        if spec is None:
            raise UsageError(f"unknown GPU type {gpu!r}", key="--gpu", fix=f"known types: {', '.join(gpus().canonical_names())}")
        doc["gpu"]["type"] = spec.name
    if model is not None:
        if not re.fullmatch(r"[A-Za-z0-9][\w.-]*/[\w.-]+", model):
            raise UsageError(f"--model {model!r} is not a Hugging Face model id", key="--model", fix="write it as org/name, e.g. Qwen/Qwen2.5-Coder-7B-Instruct")
        if model != doc["model"]["id"]:
            doc["model"]["id"] = model
            doc["model"].pop("revision", None)  # the example's commit belongs to the example's model
    if gpu is not None or model is not None:
        engine = doc["engine"]["name"]
        doc["description"] = f"{doc['model']['id']} on {doc['gpu']['type']}, {engine} {doc['packages'].get(engine, '')} (from kit's example {chosen})".replace(" )", ")")
    path.parent.mkdir(parents=True, exist_ok=True)
    copied = _copy_schemas(doc, path.parent)
    _write_atomic(path, tomlkit.dumps(doc))
    return Created(path, chosen, copied)


def _gpu_of(example: str) -> str | None:
    import tomllib

    data = tomllib.loads((examples_dir() / f"{example}.toml").read_text(encoding="utf-8"))
    return data.get("gpu", {}).get("type")


def _copy_schemas(doc, dest: Path) -> list[Path]:
    copied = []
    for section in ("structured_output", "smoke"):
        rel = doc.get(section, {}).get("schema")
        if not rel:
            continue
        target = dest / rel
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            _write_atomic(target, (examples_dir() / rel).read_text(encoding="utf-8"))
            copied.append(target)
    return copied


def _write_atomic(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise OperationError(f"cannot write {path}: {exc.strerror}", fix="check the directory is writable and the disk has room") from None


def undo(created: Created) -> None:
    """Remove what `create` wrote (a profile that does not pass check is not left behind)."""
    for p in [created.path, *created.copied]:
        p.unlink(missing_ok=True)



