"""Offline checks and figures for the committed store: `python -m kit.knowledge verify | stats`.

verify recomputes what can be recomputed without the network: every wheel's tags and glibc floor from
its file name, the release each file name belongs to, the torch CUDA from the Requires-Dist it cites,
the Requires-Dist string table, and that each recorded kernel names a file of that release with the
same sha256. A store that fails is not shipped (tests/test_knowledge_store.py runs it).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from packaging.version import InvalidVersion, Version

_SHA = re.compile(r"^[0-9a-f]{64}$")


def _load(path: Path, problems: list[str]) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        problems.append(f"{path}: not readable JSON ({exc})")
        return None


def _verify_release(where: str, pkg: str, version: str, rel: dict[str, Any], strings: list[str], problems: list[str]) -> None:
    from .derive.index import cuda_runtime, file_facts

    def bad(msg: str) -> None:
        problems.append(f"{where} {version}: {msg}")

    if not rel.get("files"):
        bad("no files")
    names = set()
    for f in rel.get("files", []):
        names.add(f["name"])
        if not _SHA.match(f.get("sha256") or ""):
            bad(f"{f['name']}: sha256 missing or malformed")
        parsed = file_facts(f["name"])
        if parsed is None:
            bad(f"{f['name']}: not a wheel or sdist file name")
            continue
        file_version, facts = parsed
        if str(file_version) != version:
            bad(f"{f['name']}: belongs to {file_version}, not {version}")
        for key in ("python", "abi", "platform", "glibc", "sdist"):
            if facts.get(key) != f.get(key):
                bad(f"{f['name']}: {key} {f.get(key)!r} but the file name says {facts.get(key)!r}")
    rd = rel.get("requires_dist")
    meta = rel.get("metadata")
    if rd is not None:
        if not all(isinstance(i, int) and 0 <= i < len(strings) for i in rd):
            bad("requires_dist index out of the string table")
        if not meta:
            bad("requires_dist without the file it was read from")
    if meta:
        if meta.get("file") not in names:
            bad(f"metadata read from {meta.get('file')}, which is not one of the release's files")
        if not _SHA.match(meta.get("sha256") or "") or meta.get("via") not in ("pep658", "wheel-range"):
            bad("metadata provenance incomplete")
    elif any(not f.get("sdist") for f in rel.get("files", [])):
        bad("has wheels but no recorded metadata")
    if pkg == "torch" and rd is not None:
        expect = cuda_runtime([strings[i] for i in rd])
        if rel.get("cuda") != expect:
            bad(f"cuda {rel.get('cuda')!r} but its Requires-Dist says {expect!r}")


def verify_package(store: Path, name: str) -> list[str]:
    """The inconsistencies of one package's index and files under `store`."""
    return verify(store, [name])


def verify(store: Path, packages: list[str] | None = None) -> list[str]:
    """Every inconsistency found in the store under `store` (empty: consistent)."""
    from .derive.index import PACKAGES

    problems: list[str] = []
    index_docs: dict[str, dict[str, Any]] = {}
    for name in sorted(packages or PACKAGES):
        path = store / "index" / f"{name}.json"
        if not path.exists():
            problems.append(f"{path}: missing (run `python -m kit.knowledge refresh --package {name}`)")
            continue
        doc = _load(path, problems)
        if doc is None:
            continue
        index_docs[name] = doc
        if doc.get("package") != name:
            problems.append(f"{path}: names package {doc.get('package')!r}")
        strings = doc.get("strings", [])
        if strings != sorted(set(strings)):
            problems.append(f"{path}: the Requires-Dist table is not sorted and unique")
        try:
            versions = [Version(v) for v in doc["releases"]]
        except InvalidVersion as exc:
            problems.append(f"{path}: {exc}")
            continue
        if versions != sorted(versions) or [str(v) for v in versions] != list(doc["releases"]):
            problems.append(f"{path}: releases not in version order or not normalized")
        floor = doc.get("floor")
        if floor and versions and min(versions) < Version(floor):
            problems.append(f"{path}: a release below the floor {floor}")
        files_doc = _load(store / "files" / f"{name}.json", problems) or {"releases": {}}
        if list(files_doc["releases"]) != list(doc["releases"]):
            problems.append(f"{path}: the releases in files/{name}.json are not the same")
        for version, rel in doc["releases"].items():
            rel = {**rel, "files": files_doc["releases"].get(version, [])}
            doc["releases"][version] = rel
            _verify_release(str(path), name, version, rel, strings, problems)
    for path in sorted((store / "needed").glob("*.json")):
        doc = _load(path, problems)
        if doc is None or (packages and doc.get("package") not in packages):
            continue
        index = index_docs.get(doc.get("package"), {}).get("releases", {})
        for version, rec in doc["releases"].items():
            files = {f["name"]: f["sha256"] for f in index.get(version, {}).get("files", [])}
            if files.get(rec.get("file")) != rec.get("sha256"):
                problems.append(f"{path} {version}: {rec.get('file')} is not a file of that release with that sha256")
            for member, found in rec.get("members", {}).items():
                if found.get("method") not in ("dynamic", "section-scan", "segment-scan") or not isinstance(found.get("needed"), list):
                    problems.append(f"{path} {version} {member}: method or list missing")
    archs = store / "archs" / "torch.json"
    if archs.exists() and (not packages or "torch" in packages):
        doc = _load(archs, problems) or {"releases": {}}
        files = index_docs.get("torch", {}).get("releases", {})
        for version, rec in doc["releases"].items():
            shas = {f["name"]: f["sha256"] for f in files.get(version, {}).get("files", [])}
            if shas.get(rec.get("file")) != rec.get("sha256"):
                problems.append(f"{archs} {version}: {rec.get('file')} is not a file of that release with that sha256")
            if rec.get("archs") is not None and sorted(rec["archs"]) != sorted(set((rec.get("string") or "").split())):
                problems.append(f"{archs} {version}: archs {rec['archs']} are not the string it cites")
            if not all(re.match(r"^(sm|compute)_\d+a?$", a) for a in rec.get("archs") or []):
                problems.append(f"{archs} {version}: malformed arch")
    return problems


def stats(store: Path) -> dict[str, Any]:
    """Size on disk, releases and facts per package. A fact: one Requires-Dist entry, one
    Requires-Python, one yank, one file's tags (with its glibc floor), one torch CUDA, one torch
    build's arch list, one kernel member's needed-library list."""
    rows: dict[str, dict[str, int]] = {}
    for path in sorted((store / "index").glob("*.json")):
        doc = json.loads(path.read_text(encoding="utf-8"))
        files_path = store / "files" / path.name
        files = json.loads(files_path.read_text(encoding="utf-8"))["releases"]
        n_files = sum(len(f) for f in files.values())
        facts = n_files
        for rel in doc["releases"].values():
            facts += len(rel.get("requires_dist") or []) + (rel.get("requires_python") is not None)
            facts += bool(rel.get("yanked")) + bool(rel.get("cuda"))
        size = path.stat().st_size + files_path.stat().st_size
        rows[doc["package"]] = {"releases": len(doc["releases"]), "files": n_files, "facts": facts, "bytes": size, "kernels": 0}
    for path in sorted((store / "needed").glob("*.json")):
        doc = json.loads(path.read_text(encoding="utf-8"))
        row = rows.setdefault(doc["package"], {"releases": 0, "files": 0, "facts": 0, "bytes": 0, "kernels": 0})
        row["kernels"] = sum(len(r["members"]) for r in doc["releases"].values())
        row["facts"] += row["kernels"]
        row["bytes"] += path.stat().st_size
    for path in sorted((store / "archs").glob("*.json")):
        doc = json.loads(path.read_text(encoding="utf-8"))
        row = rows.setdefault(doc["package"], {"releases": 0, "files": 0, "facts": 0, "bytes": 0, "kernels": 0})
        row["facts"] += sum(r.get("archs") is not None for r in doc["releases"].values())
        row["bytes"] += path.stat().st_size
    total = sum(p.stat().st_size for p in store.rglob("*") if p.is_file())
    return {"packages": rows, "total_bytes": total}


def format_stats(s: dict[str, Any]) -> str:
    lines = [f"{'package':22} {'releases':>8} {'files':>6} {'kernels':>7} {'facts':>7} {'bytes':>9}"]
    for name, r in s["packages"].items():
        lines.append(f"{name:22} {r['releases']:>8} {r['files']:>6} {r['kernels']:>7} {r['facts']:>7} {r['bytes']:>9}")
    tot = {k: sum(r[k] for r in s["packages"].values()) for k in ("releases", "files", "kernels", "facts")}
    lines.append(f"{'total':22} {tot['releases']:>8} {tot['files']:>6} {tot['kernels']:>7} {tot['facts']:>7} {s['total_bytes']:>9}")
    return "\n".join(lines)
