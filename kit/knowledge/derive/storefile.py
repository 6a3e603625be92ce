"""The store's file format: JSON, one release per line, keys sorted, written atomically.

One line per release keeps a refresh's git diff to the releases it added or changed, and lets
kit.knowledge.query parse only the lines of the releases it is asked about:

    {
    "floor":"0.2.0",            header keys, one per line, sorted
    "strings":[                 (index files) the Requires-Dist table, one string per line
    "aiohttp",
    "torch==2.7.1"
    ],
    "releases":{
    "0.9.1":{...},              one release per line, in version order
    "0.9.2":{...}
    }
    }
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any


def dumps(doc: dict[str, Any]) -> str:
    def one(value: Any) -> str:
        return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)

    lines = ["{"]
    keys = [k for k in sorted(doc) if k not in ("strings", "releases")]
    for k in keys:
        lines.append(f"{one(k)}:{one(doc[k])},")
    if "strings" in doc:
        lines += ['"strings":[', ",\n".join(one(x) for x in doc["strings"]), "],"]
    body = ",\n".join(f"{one(v)}:{one(r)}" for v, r in doc.get("releases", {}).items())
    lines += ['"releases":{', body, "}", "}"]
    lines = [line for line in lines if line != ""]
    return "\n".join(lines) + "\n"


def write_doc(path: Path, doc: dict[str, Any]) -> None:
    """Write doc to path atomically: a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(dumps(doc))
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def read_doc(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8"))
