"""Secret-looking values of a profile (image.env, engine.args) kept out of what the history stores.

What is secret-looking is kit.secrets' one definition (the [[secret]] rows of
kit/data/rules/secrets.toml), the same that `kit check` warns about and every output masks. Every stored copy of
such a value (the resolved profile, the profile's files, the rendered bundle, the manifest) holds
`MASK` instead, and the revision lists the keys it masked: its stored bundle cannot be redeployed as
it is, and kit says so rather than deploy a masked value. Secrets belong in Modal secrets
(`model.hf_secret`), which kit never sees.
"""

from __future__ import annotations

import json
from typing import Any

MASK = "***masked***"
MIN_LENGTH = 4  # shorter values ("1", "on") are masked in the profile but not hunted through texts


def secret_values(profile: dict[str, Any]) -> dict[str, str]:
    """dotted key -> value, for each value of image.env and engine.args that kit.secrets calls secret-looking."""
    from kit.secrets import find

    found: dict[str, str] = {}
    for secret in find(profile):
        section, table, key = secret.key.split(".", 2)
        value = profile[section][table][key]
        if isinstance(value, str):
            found[secret.key] = value
    return found


def _spellings(value: str) -> list[str]:
    """How a value can appear in a stored text: as written, as a JSON or Python literal's inside, TOML-escaped."""
    forms = {value, json.dumps(value)[1:-1], repr(value)[1:-1], value.replace("\\", "\\\\").replace('"', '\\"')}
    return sorted((f for f in forms if len(f) >= MIN_LENGTH), key=len, reverse=True)


def _mask_text(text: str, values: list[str]) -> str:
    for value in values:
        for form in _spellings(value):
            text = text.replace(form, MASK)
    return text


def _mask_json(data: Any, values: list[str]) -> Any:
    return json.loads(_mask_text(json.dumps(data), values)) if values else data


def redact(profile: dict[str, Any], texts: dict[str, str], bundle: dict[str, str], manifest: dict[str, Any]) -> tuple[list[str], dict[str, Any], dict[str, str], dict[str, str], dict[str, Any]]:
    """(masked keys, profile, texts, bundle files, manifest) with every secret-looking value masked."""
    secrets = secret_values(profile)
    if not secrets:
        return [], profile, texts, bundle, manifest
    values = list(secrets.values())
    masked_profile = json.loads(json.dumps(profile))
    for dotted in secrets:
        section, table, key = dotted.split(".", 2)
        masked_profile[section][table][key] = MASK
    masked_profile = _mask_json(masked_profile, values)
    return (
        sorted(secrets),
        masked_profile,
        {k: _mask_text(v, values) for k, v in texts.items()},
        {k: _mask_text(v, values) for k, v in bundle.items()},
        _mask_json(manifest, values),
    )
