"""What both backends share: their error family, and the masking of a store URL's password."""

from __future__ import annotations

from urllib.parse import parse_qsl, quote, urlsplit, urlunsplit

from kit.errors import KitError

MASK = "***"


class StoreError(KitError):
    """The history store cannot be read or written. Nothing in it was changed."""

    exit_code = 2


class StoreBusy(StoreError):
    """Another process held the store's write lock past the wait: worth retrying."""


def url_password(url: str) -> str | None:
    """The password a URL carries, in its user part or as ?password=, if any."""
    try:
        parts = urlsplit(url)
        if parts.password:
            return parts.password
    except ValueError:
        pass
    for key, value in parse_qsl(url.partition("?")[2]):
        if key == "password" and value:
            return value
    return None


def mask_url(url: str) -> str:
    """The URL with its password (user part or ?password=) replaced by ***: safe to print or store."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return MASK  # unparseable: show nothing of it rather than risk the secret
    netloc = parts.netloc
    if parts.password is not None:
        user, _, host = netloc.rpartition("@")
        netloc = f"{user.partition(':')[0]}:{MASK}@{host}"
    query = "&".join(f"{k}={MASK if k == 'password' else quote(v, safe='=-_.,/')}" for k, v in parse_qsl(parts.query, keep_blank_values=True))
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def mask_text(text: str, url: str | None) -> str:
    """`text` (an error from the driver, say) with the URL's password removed wherever it appears."""
    secret = url_password(url) if url else None
    if secret:
        text = text.replace(secret, MASK)
        quoted = quote(secret, safe="")
        if quoted != secret:
            text = text.replace(quoted, MASK)
    return text
