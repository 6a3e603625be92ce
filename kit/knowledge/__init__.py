"""kit's knowledge of releases: derived from their artifacts, stored in the package, queried by rules.

    derive/  the recorders: read the package index, wheels (by range requests), sources at tags
    store/   what they write: compact JSON committed with kit and shipped in its wheel
    query    what rules ask (see kit/knowledge/query.py for the API)

Rebuild or extend the store with `python -m kit.knowledge refresh`; `verify` checks it offline.
"""

from __future__ import annotations

from pathlib import Path

STORE_DIR = Path(__file__).resolve().parent / "store"
