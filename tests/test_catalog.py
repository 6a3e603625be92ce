"""kit/data is read through a parse cache keyed by content: it must never change what kit knows."""

from __future__ import annotations

import tomllib
from importlib import resources

from kit import catalog


def _truth(name: str) -> dict:
    return tomllib.loads(resources.files("kit").joinpath("data", name).read_text(encoding="utf-8"))


def test_cache_returns_exactly_what_the_toml_says(tmp_path, monkeypatch):
    monkeypatch.setenv("KIT_CACHE_DIR", str(tmp_path))
    for name in ["gpus.toml", "models.toml", *catalog.data_files("rules")]:
        first = catalog._data_file(name)  # parsed, then written
        second = catalog._data_file(name)  # read back from the cache
        assert first == second == _truth(name), name
    assert len(list((tmp_path / "data").glob("*.json"))) >= 3


def test_a_corrupt_cache_entry_is_parsed_again(tmp_path, monkeypatch):
    monkeypatch.setenv("KIT_CACHE_DIR", str(tmp_path))
    catalog._data_file("gpus.toml")
    for entry in (tmp_path / "data").glob("*.json"):
        entry.write_text("{ not json")
    assert catalog._data_file("gpus.toml") == _truth("gpus.toml")


def test_an_unwritable_cache_only_costs_the_parse(tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    monkeypatch.setenv("KIT_CACHE_DIR", str(blocker))
    assert catalog._data_file("gpus.toml") == _truth("gpus.toml")


def test_a_data_file_is_read_once_per_process():
    assert catalog.data_file("gpus.toml") is catalog.data_file("gpus.toml") == _truth("gpus.toml")
