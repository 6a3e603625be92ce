"""HTTP for the recorders: the package index's JSON pages, small files, and byte ranges of big ones.

One `Fetcher` per refresh counts every request and every byte it downloads, so a refresh can say what
it cost and a test can assert that an incremental refresh asked for nothing new. The index host is an
argument (or KIT_KNOWLEDGE_INDEX_URL), so tests serve recorded pages from a local http.server and the
same code path runs.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field

import httpx

DEFAULT_INDEX = "https://pypi.org/simple"
INDEX_ENV = "KIT_KNOWLEDGE_INDEX_URL"
JSON_SIMPLE = "application/vnd.pypi.simple.v1+json"


class NotFound(Exception):
    """The server answered 404 (a file without PEP 658 metadata, a package not on this index)."""


def index_url(explicit: str | None = None) -> str:
    return (explicit or os.environ.get(INDEX_ENV) or DEFAULT_INDEX).rstrip("/")


@dataclass
class Fetcher:
    index: str = field(default_factory=index_url)
    requests: int = 0
    bytes: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _client: httpx.Client | None = field(default=None, repr=False)
    _pages: dict[str, dict] = field(default_factory=dict, repr=False)

    def _http(self) -> httpx.Client:
        if self._client is None:
            self._client = httpx.Client(
                timeout=httpx.Timeout(60.0, connect=20.0),
                follow_redirects=True,
                limits=httpx.Limits(max_connections=16, max_keepalive_connections=16),
                headers={"User-Agent": "kit-knowledge-refresh (+https://github.com/)"},
            )
        return self._client

    def get(self, url: str, headers: dict[str, str] | None = None) -> bytes:
        last: Exception | None = None
        for attempt in range(4):
            try:
                resp = self._http().get(url, headers=headers or {})
            except httpx.TransportError as exc:
                last = exc
                time.sleep(1.5 * (attempt + 1))
                continue
            with self._lock:
                self.requests += 1
                self.bytes += len(resp.content)
            if resp.status_code == 404:
                raise NotFound(url)
            if resp.status_code in (429, 500, 502, 503, 504):
                last = httpx.HTTPStatusError(f"{resp.status_code} for {url}", request=resp.request, response=resp)
                time.sleep(1.5 * (attempt + 1))
                continue
            resp.raise_for_status()
            return resp.content
        raise RuntimeError(f"giving up on {url}: {last}")

    def project(self, name: str) -> dict:
        """The PEP 691 JSON page of one project (asked once per refresh, however many recorders read it)."""
        import json

        if name not in self._pages:
            self._pages[name] = json.loads(self.get(f"{self.index}/{name}/", headers={"Accept": JSON_SIMPLE}))
        return self._pages[name]

    def range(self, url: str, start: int, end: int) -> bytes:
        """Bytes start..end-1 of url (a server that ignores Range would send the whole file: refuse)."""
        data = self.get(url, headers={"Range": f"bytes={start}-{end - 1}"})
        if len(data) > end - start:
            raise RuntimeError(f"{url}: the server ignored the Range header; refusing a whole download")
        return data

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
