"""Test doubles for the knowledge recorders: a package index on 127.0.0.1 and a real shared library.

FakeIndex serves PEP 691 JSON pages, PEP 658 `.metadata` files and file bytes honouring HTTP Range,
counting requests, so the recorders run their real code with only the host swapped. from_store()
rebuilds one package's index from the committed store: the same file names, sha256 and sizes, and
each release's metadata served the way it was read (a `.metadata` file, or a wheel-shaped zip of the
recorded size whose METADATA member says the same).
"""

from __future__ import annotations

import io
import json
import re
import shutil
import subprocess
import threading
import zipfile
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

JSON_SIMPLE = "application/vnd.pypi.simple.v1+json"


def metadata_text(name: str, version: str, requires_python: str | None, requires_dist: list[str]) -> bytes:
    lines = ["Metadata-Version: 2.1", f"Name: {name}", f"Version: {version}"]
    if requires_python:
        lines.append(f"Requires-Python: {requires_python}")
    lines += [f"Requires-Dist: {r}" for r in requires_dist]
    return ("\n".join(lines) + "\n\n").encode()


def wheel_of_size(dist_info: str, metadata: bytes, size: int) -> bytes:
    """A zip exactly size bytes long: a stored filler member, then <dist_info>/METADATA."""

    def build(filler: int) -> bytes:
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as zf:
            zf.writestr(zipfile.ZipInfo("filler.bin"), b"\0" * filler, compress_type=zipfile.ZIP_STORED)
            zf.writestr(f"{dist_info}/METADATA", metadata, compress_type=zipfile.ZIP_DEFLATED)
        return buf.getvalue()

    first = build(0)
    data = build(size - len(first))
    assert len(data) == size, (len(data), size)
    return data


class FakeIndex:
    def __init__(self, content: dict):
        self.projects: dict[str, dict] = content.get("projects", {})
        self.files: dict[str, bytes] = content.get("files", {})
        self.metadata: dict[str, bytes] = content.get("metadata", {})
        self.requests = self.range_requests = self.whole_downloads = 0
        self._lock = threading.Lock()

    @classmethod
    def from_store(cls, pkg: str, store: Path, tmp: Path) -> FakeIndex:
        index = json.loads((store / "index" / f"{pkg}.json").read_text())
        files = json.loads((store / "files" / f"{pkg}.json").read_text())["releases"]
        fake = cls({})
        fake.projects[pkg] = {"meta": {"api-version": "1.1"}, "name": pkg, "files": [], "versions": list(files)}
        for version, rows in files.items():
            rel = index["releases"][version]
            rd = [index["strings"][i] for i in rel["requires_dist"]] if rel.get("requires_dist") is not None else None
            for row in rows:
                fake.projects[pkg]["files"].append(
                    {
                        "filename": row["name"],
                        "hashes": {"sha256": row["sha256"]},
                        "size": row["size"],
                        "yanked": row.get("yanked", False),
                        "url": f"/files/{row['name']}",
                        "requires-python": rel.get("requires_python"),
                    }
                )
            meta = rel.get("metadata")
            if meta:
                text = metadata_text(pkg, version, rel.get("requires_python"), rd)
                if meta["via"] == "pep658":
                    fake.metadata[meta["file"]] = text
                else:
                    size = next(r["size"] for r in rows if r["name"] == meta["file"])
                    dist = meta["file"].split("-")[0] + "-" + meta["file"].split("-")[1] + ".dist-info"
                    fake.files[meta["file"]] = wheel_of_size(dist, text, size)
        return fake

    def add_release(self, pkg: str, version: str, requires_dist: list[str]) -> None:
        name = f"{pkg.replace('-', '_')}-{version}-cp312-cp312-manylinux_2_17_x86_64.whl"
        self.projects[pkg]["files"].append({"filename": name, "hashes": {"sha256": "ab" * 32}, "size": 1000, "yanked": False, "url": f"/files/{name}"})
        self.metadata[name] = metadata_text(pkg, version, ">=3.8", requires_dist)

    # -- the server --------------------------------------------------------------------------------

    def __enter__(self) -> FakeIndex:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                with fake._lock:
                    fake.requests += 1
                m = re.match(r"^/simple/([^/]+)/$", self.path)
                if m and m.group(1) in fake.projects:
                    page = dict(fake.projects[m.group(1)])
                    page["files"] = [{**f, "url": fake.url + f["url"]} for f in page["files"]]
                    return self._send(200, json.dumps(page).encode(), JSON_SIMPLE)
                name = self.path.removeprefix("/files/")
                if name.endswith(".metadata") and name[: -len(".metadata")] in fake.metadata:
                    return self._send(200, fake.metadata[name[: -len(".metadata")]], "text/plain")
                if name in fake.files:
                    return self._send_file(fake.files[name])
                self._send(404, b"not found", "text/plain")

            def _send_file(self, data: bytes):
                rng = self.headers.get("Range")
                m = re.match(r"^bytes=(\d+)-(\d+)$", rng or "")
                if not m:
                    with fake._lock:
                        fake.whole_downloads += 1
                    return self._send(200, data, "application/octet-stream")
                with fake._lock:
                    fake.range_requests += 1
                start, end = int(m.group(1)), min(int(m.group(2)), len(data) - 1)
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{end}/{len(data)}")
                self.send_header("Content-Length", str(end - start + 1))
                self.end_headers()
                self.wfile.write(data[start : end + 1])

            def _send(self, code: int, body: bytes, ctype: str):
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()


@dataclass
class SharedLibrary:
    path: Path
    needed: list[str]  # as `readelf -d` lists them


LIBNUMA = Path("/usr/lib/x86_64-linux-gnu/libnuma.so.1")


def build_shared_library(tmp: Path) -> SharedLibrary:
    """A real .so from gcc, linked against libm (and libnuma where the machine has it)."""
    if not shutil.which("gcc") or not shutil.which("readelf"):
        pytest.skip("gcc and readelf are needed to build a real shared library")
    src = tmp / "kernel.c"
    src.write_text(
        "#include <math.h>\n"
        + ("extern int numa_available(void);\n" if LIBNUMA.exists() else "")
        + "double kernel(double x) { return cos(x)"
        + (" + numa_available()" if LIBNUMA.exists() else "")
        + "; }\n"
    )
    out = tmp / "_C.so"
    cmd = ["gcc", "-shared", "-fPIC", "-O1", "-o", str(out), str(src), "-Wl,--no-as-needed", "-lm"]
    if LIBNUMA.exists():
        cmd.append(str(LIBNUMA))
    subprocess.run(cmd, check=True, capture_output=True)
    dyn = subprocess.run(["readelf", "-d", str(out)], check=True, capture_output=True, text=True).stdout
    needed = re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]", dyn)
    assert "libm.so.6" in needed
    return SharedLibrary(out, needed)
