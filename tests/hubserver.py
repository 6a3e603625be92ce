"""A local stand-in for the Hugging Face Hub, at the narrowest boundary: the HTTP endpoints the real
`huggingface_hub` client calls for `hf_hub_download` and `HfApi.model_info`, answering from real
recorded files (tests/data/hub/models.json names each file's provenance).

Endpoints, as the Hub answers them (huggingface_hub 2.x reads these headers and error codes):
  HEAD/GET /{repo}/resolve/{revision}/{file}    X-Repo-Commit, ETag, Content-Length (LFS: X-Linked-Etag, X-Linked-Size)
  GET      /api/models/{repo}[/revision/{rev}]  model info; ?blobs=true adds sizes and LFS metadata
  errors   401 X-Error-Code: GatedRepo (gated, no token) | RepoNotFound; 404 RevisionNotFound | EntryNotFound
"""

from __future__ import annotations

import hashlib
import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

HUB_DATA = Path(__file__).resolve().parent / "data" / "hub"
TOKEN = "hf_kit_test_token"


@dataclass
class Repo:
    id: str
    commit: str
    files: dict[str, bytes]
    lfs: dict[str, int] = field(default_factory=dict)  # weight files: name -> size (content never served)
    gated: bool = False
    refs: dict[str, str] = field(default_factory=dict)  # branch/tag -> commit

    def resolve(self, revision: str) -> str | None:
        if revision == self.commit:
            return self.commit
        return self.refs.get(revision)


def load_repos(manifest: Path = HUB_DATA / "models.json") -> dict[str, Repo]:
    doc = json.loads(manifest.read_text(encoding="utf-8"))
    repos = {}
    for entry in doc["models"]:
        files = {name: (HUB_DATA / rel).read_bytes() for name, rel in entry["files"].items()}
        lfs = {}
        weights = entry.get("weights")
        if weights and "model.safetensors.index.json" not in files:
            shards = weights.get("shards", 1)
            per, rest = divmod(weights["total_bytes"], shards)
            for i in range(shards):
                lfs[f"model-{i + 1:05d}-of-{shards:05d}.safetensors"] = per + (rest if i == shards - 1 else 0)
        repos[entry["id"]] = Repo(
            id=entry["id"], commit=entry["commit"], files=files, lfs=lfs, gated=entry.get("gated", False), refs={"main": entry["commit"], **entry.get("tags", {})}
        )
    return repos


class _Handler(BaseHTTPRequestHandler):
    server: HubServer  # type: ignore[assignment]

    def log_message(self, *args) -> None:  # quiet
        self.server.requests.append(f"{self.command} {self.path}")

    def _error(self, status: int, code: str, message: str) -> None:
        body = json.dumps({"error": message}).encode()
        self.send_response(status)
        self.send_header("X-Error-Code", code)
        self.send_header("X-Error-Message", message)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _repo(self, repo_id: str) -> Repo | None:
        repo = self.server.repos.get(repo_id)
        if repo is None:
            self._error(401, "RepoNotFound", "Repository not found")
            return None
        if repo.gated and self.headers.get("Authorization") != f"Bearer {TOKEN}":
            self._error(401, "GatedRepo", f"Access to model {repo_id} is restricted. You must have access to it and be authenticated to access it.")
            return None
        return repo

    def do_HEAD(self) -> None:
        self._serve()

    def do_GET(self) -> None:
        self._serve()

    def _serve(self) -> None:
        url = urlsplit(self.path)
        parts = [unquote(p) for p in url.path.strip("/").split("/")]
        if len(parts) >= 4 and parts[0] == "api" and parts[1] == "models":
            return self._model_info(parts[2:], "blobs=true" in url.query)
        if len(parts) >= 5 and parts[2] == "resolve":
            return self._resolve("/".join(parts[:2]), parts[3], "/".join(parts[4:]))
        self._error(404, "EntryNotFound", f"no route for {url.path}")

    def _model_info(self, parts: list[str], blobs: bool) -> None:
        repo_id = "/".join(parts[:2])
        repo = self._repo(repo_id)
        if repo is None:
            return
        revision = parts[3] if len(parts) >= 4 and parts[2] == "revision" else "main"
        commit = repo.resolve(revision)
        if commit is None:
            return self._error(404, "RevisionNotFound", f"Invalid rev id: {revision}")
        siblings = []
        for name, data in sorted(repo.files.items()):
            entry: dict = {"rfilename": name}
            if blobs:
                entry.update(size=len(data), blobId=hashlib.sha1(data).hexdigest())
            siblings.append(entry)
        for name, size in sorted(repo.lfs.items()):
            entry = {"rfilename": name}
            if blobs:
                digest = hashlib.sha256(f"{repo.id}/{name}".encode()).hexdigest()
                entry.update(size=size, blobId=digest[:40], lfs={"sha256": digest, "size": size, "pointerSize": 135})
            siblings.append(entry)
        body = json.dumps(
            {"_id": commit[:24], "id": repo.id, "modelId": repo.id, "sha": commit, "private": False, "gated": "manual" if repo.gated else False, "disabled": False, "siblings": siblings, "tags": []}
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _resolve(self, repo_id: str, revision: str, name: str) -> None:
        repo = self._repo(repo_id)
        if repo is None:
            return
        commit = repo.resolve(revision)
        if commit is None:
            return self._error(404, "RevisionNotFound", f"Invalid rev id: {revision}")
        if name in repo.lfs:
            digest = hashlib.sha256(f"{repo.id}/{name}".encode()).hexdigest()
            self.send_response(200)
            self.send_header("X-Repo-Commit", commit)
            self.send_header("X-Linked-Etag", f'"{digest}"')
            self.send_header("X-Linked-Size", str(repo.lfs[name]))
            self.send_header("ETag", f'"{digest}"')
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        data = repo.files.get(name)
        if data is None:
            return self._error(404, "EntryNotFound", f"{name} does not exist on {revision}")
        self.send_response(200)
        self.send_header("X-Repo-Commit", commit)
        self.send_header("ETag", f'"{hashlib.sha1(data).hexdigest()}"')
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)


class HubServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, repos: dict[str, Repo] | None = None, port: int = 0):
        super().__init__(("127.0.0.1", port), _Handler)
        self.repos = load_repos() if repos is None else repos
        self.requests: list[str] = []
        self._thread = threading.Thread(target=self.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def __enter__(self) -> HubServer:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.shutdown()
        self.server_close()


if __name__ == "__main__":  # a demo Hub: python tests/hubserver.py PORT, then HF_ENDPOINT=http://127.0.0.1:PORT
    import sys

    server = HubServer(port=int(sys.argv[1]) if len(sys.argv) > 1 else 8765)
    print(f"test Hub at {server.url} ({len(server.repos)} models)", flush=True)
    server.serve_forever()
