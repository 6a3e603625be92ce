"""kit's settings and the profile overrides read from the environment (pydantic-settings).

Imported only when needed: pydantic-settings is slow to import, and `kit check` is on every save.
"""

from __future__ import annotations

import difflib
import tomllib
from pathlib import Path
from typing import Any

import platformdirs
from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from kit.errors import ProfileError, UsageError
from kit.profile import SECTIONS


class _Overrides(BaseSettings):
    """KIT_<SECTION>__<KEY>=value overrides one profile key, e.g. KIT_GPU__TYPE=A100-40GB."""

    model_config = SettingsConfigDict(env_prefix="KIT_", env_nested_delimiter="__", extra="ignore", case_sensitive=False)

    app: dict[str, Any] | None = None
    model: dict[str, Any] | None = None
    gpu: dict[str, Any] | None = None
    image: dict[str, Any] | None = None
    packages: dict[str, Any] | None = None
    engine: dict[str, Any] | None = None
    structured_output: dict[str, Any] | None = None
    serving: dict[str, Any] | None = None
    smoke: dict[str, Any] | None = None


class Settings(BaseSettings):
    """Where kit keeps its own state (deploy history, locks)."""

    model_config = SettingsConfigDict(env_prefix="KIT_", extra="ignore")

    # platformdirs: $XDG_STATE_HOME/kit, ~/.local/state/kit when unset (Linux), the platform's place elsewhere.
    state_dir: Path = Field(default_factory=lambda: platformdirs.user_state_path("kit"))
    # An image build of a CUDA stack takes minutes; an unreachable Modal otherwise blocks ~1 minute per call.
    deploy_timeout_s: float = Field(2400.0, gt=0, description="Longest a `modal deploy` (build included) may run (KIT_DEPLOY_TIMEOUT_S).")
    modal_timeout_s: float = Field(60.0, gt=0, description="Longest any other call to Modal may take (KIT_MODAL_TIMEOUT_S).")

    def __init__(self, **values: Any) -> None:
        # A bad KIT_* variable is bad input like a bad profile key: name it, exit 2, no traceback.
        try:
            super().__init__(**values)
        except ValidationError as exc:
            raise _settings_error(exc, "KIT_") from None

    @field_validator("state_dir")
    @classmethod
    def _plain_path(cls, v: Path) -> Path:
        if any(ord(c) < 32 for c in str(v)):
            raise ValueError("must be a plain path (no control characters)")
        return v


def _settings_error(exc: ValidationError, prefix: str) -> UsageError:
    lines = []
    for err in exc.errors():
        var = prefix + "__".join(str(p).upper() for p in err["loc"])
        msg = err["msg"].removeprefix("Value error, ")
        lines.append(f"{var}: {msg} (got {err.get('input')!r})" if not isinstance(err.get("input"), dict) else f"{var}: {msg}")
    return UsageError("invalid kit setting in the environment:\n  " + "\n  ".join(lines), fix="correct or unset the variable(s) above")


def _literal(raw: str) -> Any:
    """A TOML literal when the value is one (2, 0.85, true, ["a"]), else the string itself."""
    try:
        return tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        return raw


def read_overrides(names: dict[str, str]) -> dict[str, tuple[str, Any]]:
    """dotted key -> (variable, value) for every KIT_SECTION__KEY variable in the environment."""
    sections = (set(SECTIONS) | {"packages"}) - {"allow"}
    for var in names:
        section = var[len("KIT_") :].split("__", 1)[0].lower()
        if section not in sections:
            guess = difflib.get_close_matches(section, sorted(sections), n=1)
            hint = f"did you mean KIT_{guess[0].upper()}__...? " if guess else ""
            raise ProfileError(f"environment variable {var} names no profile section {section!r}", key=var, fix=f"{hint}sections: {', '.join(sorted(sections))}")
    try:
        found = _Overrides().model_dump(exclude_none=True)
    except (ValidationError, ValueError) as exc:  # e.g. KIT_GPU__TYPE and KIT_GPU__TYPE__X together
        detail = _settings_error(exc, "KIT_").message if isinstance(exc, ValidationError) else str(exc)
        raise ProfileError(f"cannot read the KIT_ overrides: {detail}", fix="correct or unset the KIT_<SECTION>__<KEY> variables") from None
    out: dict[str, tuple[str, Any]] = {}

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                walk(f"{prefix}.{k}" if prefix else k, v)
        else:
            var = "KIT_" + "__".join(p.upper() for p in prefix.split("."))
            out[prefix] = (var, _literal(value) if isinstance(value, str) else value)

    walk("", found)
    return out
