"""Record the derivable image facts into kit/data/images.recorded.json.

    python kit/data/record_images.py

Two kinds of fact, each with its provenance:

- `debian_slim`: the Debian release of Modal's debian_slim for each image builder version, read from
  the installed modal wheel's `modal/builder/base-images.json` (the file Modal's image builder reads),
  and the glibc of that release from images.toml's [[os]] rows.
- `python_series`: the Python series Modal's image builder accepts per builder version, read from
  the modal wheel's `modal/_image.py` (SUPPORTED_PYTHON_SERIES).
- `engine_images`: the packages inside each official engine image of images.toml: the Dockerfile's
  own pins (`dockerfile_pins`, read at the engine repository's revision, cited in the row) plus the
  exact (`==`) requirements that the engine release declares (Requires-Dist, with the extra the
  Dockerfile installs, for the image's Python on linux x86_64), read from the package index with
  `pip install --dry-run --no-deps --report` (the index's PEP 658 metadata; no wheel downloaded).
"""

from __future__ import annotations

import fnmatch
import importlib.metadata
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
OUT = HERE / "images.recorded.json"


def modal_base_images() -> tuple[dict, str]:
    """modal/builder/base-images.json of the installed modal wheel (read as a file: modal is not imported)."""
    spec = importlib.util.find_spec("modal")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("modal is not installed: pip install -e '.[test]'")
    path = Path(next(iter(spec.submodule_search_locations))) / "builder" / "base-images.json"
    return json.loads(path.read_text()), f"modal {importlib.metadata.version('modal')} wheel, modal/builder/base-images.json"


def modal_python_series() -> dict:
    """SUPPORTED_PYTHON_SERIES of the installed modal wheel's modal/_image.py, read with ast (not imported)."""
    import ast

    spec = importlib.util.find_spec("modal")
    path = Path(next(iter(spec.submodule_search_locations))) / "_image.py"
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.AnnAssign) and getattr(node.target, "id", "") == "SUPPORTED_PYTHON_SERIES":
            return {
                "series": ast.literal_eval(node.value),
                "source": f"modal {importlib.metadata.version('modal')} wheel, modal/_image.py SUPPORTED_PYTHON_SERIES "
                "(debian_slim(python_version=...) and add_python raise InvalidError 'Unsupported Python version' outside it)",
            }
    raise SystemExit(f"{path}: no SUPPORTED_PYTHON_SERIES")


def debian_slim_rows(images: dict) -> dict[str, dict]:
    data, source = modal_base_images()
    rows = {}
    for version, release in sorted(data["debian"].items()):
        os_row = next((r for r in images["os"] if fnmatch.fnmatch(release, r["match"])), None)
        if os_row is None:
            raise SystemExit(f"images.toml has no [[os]] row for Debian {release} (builder version {version})")
        rows[version] = {
            "os": os_row["os"],
            "glibc": os_row["glibc"],
            "pythons": data.get("python", {}).get(version, []),
            "sources": [f"{source}: debian[{version!r}] = {release!r}", *os_row["sources"]],
        }
    return rows


def metadata(req: str) -> dict:
    """Requires-Dist of one release, as the index's PEP 658 metadata says (pip --report; no wheel downloaded)."""
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.json"
        platforms = [a for tag in ("manylinux1", "manylinux2014", "manylinux_2_28", "manylinux_2_31", "manylinux_2_35")
                     for a in ("--platform", f"{tag}_x86_64")]
        cmd = [sys.executable, "-m", "pip", "install", "--quiet", "--dry-run", "--no-deps", "--ignore-installed",
               "--only-binary", ":all:", "--python-version", "3.12", *platforms,
               "--target", str(Path(tmp) / "t"), "--report", str(report), req]
        proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "PIP_CONSTRAINT": ""})
        if proc.returncode != 0:
            return {"error": f"pip could not read its metadata: {proc.stderr.strip()[-300:]}"}
        item = json.loads(report.read_text())["install"][0]
        return {"requires_dist": item["metadata"].get("requires_dist", []), "source": item["download_info"]["url"].rsplit("/", 1)[-1]}


def engine_image_packages(row: dict) -> dict:
    engine = row["engine"]
    pins = {canonicalize_name(k): v for k, v in row.get("dockerfile_pins", {}).items()}
    version = pins[engine]
    meta = metadata(f"{engine}=={version}")
    if "error" in meta:
        raise SystemExit(f"{engine}=={version}: {meta['error']}")
    env = default_environment()
    env.update(python_version=row["python"], python_full_version=f"{row['python']}.0", sys_platform="linux",
               platform_system="Linux", platform_machine="x86_64", extra=row.get("engine_extra", ""))
    packages = {}
    for raw in meta["requires_dist"]:
        req = Requirement(raw)
        if req.marker is not None and not req.marker.evaluate(env):
            continue
        exact = [s.version for s in req.specifier if s.operator == "=="]
        if len(exact) == 1:
            packages[canonicalize_name(req.name)] = exact[0]
    packages.update(pins)  # the Dockerfile's own installs win (sgl-kernel, nccl force-reinstalled)
    extra = f"[{row['engine_extra']}]" if row.get("engine_extra") else ""
    return {
        "engine": engine,
        "packages": dict(sorted(packages.items())),
        "no_deps": sorted(canonicalize_name(n) for n in row.get("no_deps", [])),
        "sources": [
            *row["sources"][:1],
            f"{engine}{extra}=={version} Requires-Dist `==` pins for Python {row['python']} linux x86_64 ({meta['source']}, recorded by pip --report)",
        ],
    }


def main() -> None:
    images = tomllib.loads((HERE / "images.toml").read_text())
    doc = {
        "how": "python kit/data/record_images.py (see its docstring)",
        "debian_slim": debian_slim_rows(images),
        "python_series": modal_python_series(),
        "engine_images": {row["match"]: engine_image_packages(row) for row in images["image"] if row.get("engine")},
    }
    OUT.write_text(json.dumps(doc, indent=1) + "\n")
    print(f"wrote {OUT.relative_to(ROOT)}: {len(doc['debian_slim'])} builder versions, {len(doc['engine_images'])} engine images")


if __name__ == "__main__":
    main()
