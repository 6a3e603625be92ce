"""Import a rendered bundle with the real `modal` package, recording what its decorators were given.

Importing needs no token and no network. Only the Modal cloud is out of reach: methods run
in-process through `.local()`, with a test double in place of the engine where one is needed.
"""

from __future__ import annotations

import asyncio
import importlib.util
import itertools
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import modal

from kit.render import APP_FILE, Bundle, write

_counter = itertools.count()


@dataclass
class Imported:
    module: ModuleType
    dir: Path
    # "cls" / "function" / "web_server" -> the arguments the app passed: Function.info() does not carry
    # scaledown_window, min_containers, max_containers or web_server's startup_timeout, so they are
    # read where Modal receives them.
    decorator_kwargs: dict[str, dict[str, Any]] = field(default_factory=dict)


def import_bundle(bundle: Bundle, where: Path, monkeypatch) -> Imported:
    """Write the bundle to `where` and import its app.py under a unique module name."""
    write(bundle, where)
    seen: dict[str, dict[str, Any]] = {}
    real_cls, real_function = modal.App.cls, modal.App.function

    def spy(kind: str, real):
        def wrapper(self, *args, **kwargs):
            decorate = real(self, *args, **kwargs)

            def apply(obj):
                seen[kind] = dict(kwargs)
                return decorate(obj)

            return apply

        return wrapper

    real_web_server = modal.web_server

    def web_server_spy(*args, **kwargs):
        seen["web_server"] = {"args": args, **kwargs}
        return real_web_server(*args, **kwargs)

    monkeypatch.setattr(modal.App, "cls", spy("cls", real_cls))
    monkeypatch.setattr(modal.App, "function", spy("function", real_function))
    monkeypatch.setattr(modal, "web_server", web_server_spy)
    name = f"kit_rendered_{next(_counter)}"
    spec = importlib.util.spec_from_file_location(name, where / APP_FILE)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    finally:
        monkeypatch.setattr(modal.App, "cls", real_cls)
        monkeypatch.setattr(modal.App, "function", real_function)
        monkeypatch.setattr(modal, "web_server", real_web_server)
    return Imported(module=module, dir=where, decorator_kwargs=seen)


def service_function(imported: Imported, class_name: str):
    """The Function Modal builds for a class (a Cls has no .info())."""
    cls = getattr(imported.module, class_name)
    return cls._get_class_service_function()


def local(method, *args, **kwargs):
    """Run a method in-process; Modal warns that volumes are not mounted locally, which is expected here."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*executing locally.*")
        return method.local(*args, **kwargs)


def enter(obj) -> None:
    """Run the object's @modal.enter hooks, as a container does before its first input. Modal's `.local()`
    runs them before synchronous methods only (modal 1.6.4 _Function.local: an async method gets `_aenter`,
    which calls __aenter__ / __enter__ but not the hooks)."""
    obj._enter()


def local_async(method, *args, **kwargs):
    """Run an async method in-process to completion, on an event loop of its own."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*executing locally.*")
        return asyncio.run(method.local(*args, **kwargs))
