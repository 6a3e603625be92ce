"""`kit lock` reads a model's own files from the Hugging Face Hub: config.json, the safetensors index
(or the weight files' sizes), tokenizer_config.json and a ModelOpt hf_quant_config.json.

Through the real `huggingface_hub` client, so HF_ENDPOINT (a mirror), HF_HUB_OFFLINE (the local
cache only), HF_HOME / HF_HUB_CACHE and HF_TOKEN mean what they mean to vLLM itself. A branch or tag
in model.revision is resolved to the commit it points at, and the lock records both. Only `kit lock`
imports this module: `kit check` reads what the lock recorded.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kit.errors import EXIT_USAGE, KitError
from kit.knowledge.model import MalformedConfig, ModelFacts, derive

OPTIONAL_FILES = ("tokenizer_config.json", "model.safetensors.index.json", "hf_quant_config.json")


class ModelAccessError(KitError):
    """The Hub answered, and the answer is no: gated without a token, no such model or revision (exit 2)."""

    exit_code = EXIT_USAGE


class HubUnreachable(KitError):
    """Neither the Hub (or HF_ENDPOINT) nor the local cache could answer: the lock is written without model facts."""

    exit_code = EXIT_USAGE


class ModelConfigError(KitError):
    """The model's config.json cannot be read as a model config (exit 2)."""

    exit_code = EXIT_USAGE


@dataclass
class ModelRecord:
    """What the lock's model section says: which files, at which commit, and what kit derived from them."""

    id: str
    revision: str  # as the profile asks ("main" when it names none)
    commit: str
    facts: ModelFacts
    files: dict[str, str] = field(default_factory=dict)  # name -> sha256 of the bytes read
    notes: list[str] = field(default_factory=list)

    def lock_lines(self) -> list[tuple[str, str]]:
        out = [("id", self.id), ("revision", self.revision), ("commit", self.commit)]
        out += [(f"file.{name}", f"sha256:{digest}") for name, digest in sorted(self.files.items())]
        for key, value in self.facts.to_record().items():
            if value in ("", 0, False) and key not in ("weight_bytes",):
                continue  # defaults stay implicit: a shorter, readable section
            out.append((f"facts.{key}", json.dumps(value) if isinstance(value, bool) else str(value)))
        out += [("note", n) for n in self.notes]
        return out


def _offline() -> bool:
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


def _endpoint() -> str:
    from huggingface_hub import constants

    return constants.ENDPOINT


def _commit_of(path: str) -> str:
    """hf_hub_download returns .../snapshots/<commit>/<file>: the commit the revision resolved to."""
    return Path(path).parent.name


def _gated_fix(model_id: str, hf_secret: str | None) -> str:
    secret = f"model.hf_secret = \"{hf_secret}\"" if hf_secret else "model.hf_secret = \"<Modal secret holding HF_TOKEN>\""
    return (
        f"accept the model's terms on the Hub with your account, then set HF_TOKEN (a token of that account) in the "
        f"environment of `kit lock`; the deployment needs the same token through {secret}"
    )


def _translate(exc: Exception, model_id: str, revision: str, file: str | None, hf_secret: str | None) -> KitError | None:
    """A huggingface_hub error as kit's own, or None when the Hub could not be reached at all."""
    from huggingface_hub import errors

    if isinstance(exc, errors.GatedRepoError):
        return ModelAccessError(
            f"{model_id} is a gated model and {'the token given has no access' if os.environ.get('HF_TOKEN') else 'no Hugging Face token is set'} ({_endpoint()})",
            file=file,
            key="model.id",
            fix=_gated_fix(model_id, hf_secret),
        )
    if isinstance(exc, errors.RevisionNotFoundError):
        return ModelAccessError(
            f"{model_id} has no revision {revision!r} ({_endpoint()})",
            file=file,
            key="model.revision",
            fix="name a commit, branch or tag of the model (the Hub's 'Files and versions' tab lists them)",
        )
    if isinstance(exc, errors.RepositoryNotFoundError):
        return ModelAccessError(
            f"{model_id} does not exist on {_endpoint()}, or it is private and no token with access is set",
            file=file,
            key="model.id",
            fix="check model.id; for a private model set HF_TOKEN for `kit lock`, or state its facts in [model.architecture]",
        )
    return None


def _download(model_id: str, name: str, revision: str) -> str | None:
    """Path of one file of the repository at `revision` in the local cache; None when the repository has no such file."""
    from huggingface_hub import errors, hf_hub_download

    try:
        return hf_hub_download(model_id, name, revision=revision)
    except errors.EntryNotFoundError:  # RemoteEntryNotFoundError: the repository has no such file
        return None
    except errors.LocalEntryNotFoundError:
        if _offline():
            return None  # offline and never downloaded: kit cannot tell absent from uncached
        raise


def _probe(model_id: str, revision: str) -> None:
    """One request without retries: an unreachable Hub fails at once rather than after the client's
    backoff (about 23 s), and a gated, missing or misnamed model fails before anything is downloaded."""
    from huggingface_hub import get_hf_file_metadata, hf_hub_url

    get_hf_file_metadata(hf_hub_url(model_id, "config.json", revision=revision), timeout=10)


def _read_json(path: str, name: str, model_id: str, commit: str, file: str | None) -> tuple[Any, str]:
    raw = Path(path).read_bytes()
    try:
        return json.loads(raw), hashlib.sha256(raw).hexdigest()
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelConfigError(
            f"{name} of {model_id} at commit {commit} is not valid JSON: {exc}",
            file=file,
            key="model.id",
            fix="pin model.revision to a commit whose files load, or state the facts in [model.architecture]",
        ) from None


def _weight_file_bytes(model_id: str, commit: str, snapshot: Path) -> tuple[int, str | None]:
    """Sum of the weight files' sizes: from the Hub's file listing, or (offline) from the cached files."""
    if _offline():
        sizes = [p.stat().st_size for p in snapshot.glob("*.safetensors") if p.exists()]
        return sum(sizes), None if sizes else "offline and no weight file is in the cache: weight bytes unknown"
    from huggingface_hub import HfApi

    info = HfApi().model_info(model_id, revision=commit, files_metadata=True)
    top = [s for s in info.siblings or [] if "/" not in s.rfilename and s.size]
    # vLLM loads *.safetensors when there are any, else the PyTorch *.bin files.
    sizes = [s.size for s in top if s.rfilename.endswith(".safetensors")] or [s.size for s in top if s.rfilename.startswith("pytorch_model") and s.rfilename.endswith(".bin")]
    return sum(sizes), None if sizes else "the repository lists no *.safetensors or pytorch_model*.bin file: weight bytes unknown"


def read_model(model_id: str, revision: str | None, *, file: str | None = None, hf_secret: str | None = None) -> ModelRecord:
    """Read and derive one model's facts. Raises ModelAccessError / ModelConfigError for answers that
    are final, and HubUnreachable when neither the Hub (or mirror) nor the cache can answer."""
    from huggingface_hub import errors

    asked = revision or "main"
    import logging

    # huggingface_hub logs each retry on stderr; kit says what went wrong once, in its own words.
    logging.getLogger("huggingface_hub").setLevel(logging.ERROR)
    try:
        if not _offline():
            _probe(model_id, asked)
        config_path = _download(model_id, "config.json", asked)
        if config_path is None:
            if _offline():
                raise HubUnreachable(f"HF_HUB_OFFLINE is set and config.json of {model_id}@{asked} is not in the local cache", file=file)
            raise ModelConfigError(
                f"{model_id} has no config.json at {asked}: it is not a transformers checkpoint kit can read",
                file=file,
                key="model.id",
                fix="state the model's facts in [model.architecture]",
            )
        commit = _commit_of(config_path)
        config, digest = _read_json(config_path, "config.json", model_id, commit, file)
        files = {"config.json": digest}
        parsed: dict[str, Any] = {}
        for name in OPTIONAL_FILES:
            path = _download(model_id, name, commit)
            if path is not None:
                parsed[name], files[name] = _read_json(path, name, model_id, commit, file)
        notes: list[str] = []
        weight_file_bytes = 0
        if "model.safetensors.index.json" not in parsed:
            weight_file_bytes, note = _weight_file_bytes(model_id, commit, Path(config_path).parent)
            if note:
                notes.append(note)
    except KitError:
        raise
    except Exception as exc:  # huggingface_hub and its HTTP client raise many kinds
        translated = _translate(exc, model_id, asked, file, hf_secret)
        if translated is not None:
            raise translated from None
        transport = any(c.__module__.startswith(("httpx", "httpcore", "huggingface_hub")) for c in type(exc).__mro__)
        if transport or isinstance(exc, (errors.HfHubHTTPError, errors.LocalEntryNotFoundError, errors.OfflineModeIsEnabled, OSError)):
            raise HubUnreachable(f"{_endpoint()} could not be reached for {model_id}@{asked}: {type(exc).__name__}: {exc}".splitlines()[0], file=file) from None
        raise
    try:
        facts = derive(
            config,
            index=parsed.get("model.safetensors.index.json"),
            weight_file_bytes=weight_file_bytes or None,
            tokenizer_config=parsed.get("tokenizer_config.json"),
            hf_quant_config=parsed.get("hf_quant_config.json"),
        )
    except MalformedConfig as exc:
        raise ModelConfigError(
            f"config.json of {model_id} at commit {commit}: {exc}",
            file=file,
            key="model.id",
            fix="pin model.revision to a commit with a complete config, or state the facts in [model.architecture]",
        ) from None
    return ModelRecord(id=model_id, revision=asked, commit=commit, facts=facts, files=files, notes=notes)

