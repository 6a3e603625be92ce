"""python -m kit.knowledge refresh [--package NAME ...] | verify | stats

refresh  bring the store up to date with the package index (network; incremental: a release already
         recorded is not fetched again). Runs each recorder in RECORDERS whose module exists.
verify   check the committed store offline: every file parses, every fact names its artifact, facts
         agree with what their file names say (exit 1 with the problems listed, else 0).
stats    size on disk, releases and facts per package.

Exit codes: 0 ok, 1 verify found problems or a refresh failed, 2 bad arguments.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time
from pathlib import Path

from . import STORE_DIR

# Each recorder is a module with `refresh(store_dir, packages, ...)` (it gets `fetcher=` and `log=` if it
# takes them), optionally a PACKAGES table of the names it records and `verify(store_dir) -> list[str]`.
# A recorder whose module is absent on this branch is skipped. Adding one is one line here.
RECORDERS = [
    "kit.knowledge.derive.index",  # Requires-*, files, tags, glibc floors, torch CUDA (PEP 691/658)
    "kit.knowledge.derive.elf",  # DT_NEEDED of compiled kernels (range requests on wheels)
    "kit.knowledge.derive.torch_arch",  # the sm_XX list compiled into each torch build
    "kit.knowledge.derive.source",  # facts from engine sources at their tags
]


def _recorders() -> list:
    found = []
    for name in RECORDERS:
        try:
            found.append(importlib.import_module(name))
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise
    return found


def _call(fn, *args, **optional):
    """fn(*args, **the optional keywords fn accepts): a recorder may take no fetcher or log."""
    import inspect

    params = inspect.signature(fn).parameters
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    return fn(*args, **{k: v for k, v in optional.items() if takes_any or k in params})


def refresh(store_dir: Path, packages: list[str] | None, index: str | None = None) -> int:
    from .derive.fetch import Fetcher, index_url

    from packaging.utils import canonicalize_name

    recorders = _recorders()
    if packages:
        packages = [canonicalize_name(p) for p in packages]
        # A recorder without a PACKAGES table takes any name (and raises ValueError for one it lacks).
        unknown = [p for p in packages if not any(p in getattr(m, "PACKAGES", {p}) for m in recorders)]
        if unknown:
            print(f"error: not recorded by kit: {', '.join(unknown)} (see PACKAGES in kit/knowledge/derive/)", file=sys.stderr)
            return 2
    fetcher = Fetcher(index=index_url(index))
    start = time.monotonic()
    try:
        for module in recorders:
            wanted = packages
            if packages and hasattr(module, "PACKAGES"):
                wanted = [p for p in packages if p in module.PACKAGES]
                if not wanted:
                    continue
            _call(module.refresh, store_dir, wanted, fetcher=fetcher, log=print)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except (OSError, RuntimeError) as exc:  # the index unreachable, or answering errors: what was written stays consistent
        print(f"error: refresh stopped: {exc}\n(files already written are complete; run the refresh again to go on)", file=sys.stderr)
        return 1
    finally:
        fetcher.close()
    print(f"refresh: {fetcher.requests} requests, {fetcher.bytes / 1e6:.1f} MB downloaded, {time.monotonic() - start:.1f} s")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m kit.knowledge", description=__doc__.split("\n\n")[0])
    parser.add_argument("--store", type=Path, default=STORE_DIR, help="store directory (default: the package's own)")
    sub = parser.add_subparsers(dest="command", required=True)
    ref = sub.add_parser("refresh", help="bring the store up to date with the package index")
    ref.add_argument("--package", action="append", dest="packages", metavar="NAME", help="only this package (repeatable)")
    ref.add_argument("--index", help="simple-API index URL (default: $KIT_KNOWLEDGE_INDEX_URL or PyPI)")
    sub.add_parser("verify", help="check the committed store offline")
    sub.add_parser("stats", help="size, releases and facts per package")
    args = parser.parse_args(argv)
    if args.command == "refresh":
        return refresh(args.store, args.packages, args.index)
    from . import audit

    if args.command == "verify":
        problems = audit.verify(args.store)
        # A recorder that checks its own part of the store offers `verify(store_dir) -> list[str]`.
        for module in _recorders():
            if hasattr(module, "verify"):
                problems += module.verify(args.store)
        for p in problems:
            print(p)
        print(f"verify: {len(problems)} problem(s) in {args.store}")
        return 1 if problems else 0
    print(audit.format_stats(audit.stats(args.store)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
