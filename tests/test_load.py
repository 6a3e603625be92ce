"""Loading profiles: extends, overrides, and every kind of bad input (one clear message, exit 2)."""

from __future__ import annotations

import pytest

from kit.errors import ProfileError, UsageError
from kit.load import discover, load

from .conftest import BASE_PROFILE, run_kit


def test_extends_child_overrides_parent_and_tables_merge(tree):
    root = tree(
        {
            "profiles/base.toml": BASE_PROFILE,
            "profiles/child.toml": """\
            name = "child"
            extends = "base.toml"
            [gpu]
            type = "A100-40GB"
            [packages]
            flashinfer-python = "0.2.6.post1"
            """,
        }
    )
    loaded = load(root / "profiles/child.toml")
    p = loaded.profile
    assert p.name == "child"
    assert p.gpu.type == "A100-40GB" and p.gpu.count == 1  # table merged key by key
    assert p.packages == {"vllm": "0.9.2", "transformers": "4.53.0", "xgrammar": "0.1.19", "flashinfer-python": "0.2.6.post1"}
    assert loaded.file_of("gpu.type") == "profiles/child.toml"
    assert loaded.file_of("gpu.count") == "profiles/base.toml"
    assert [c.name for c in loaded.chain] == ["child.toml", "base.toml"]


def test_schema_paths_resolve_relative_to_the_file_that_sets_them(tree):
    root = tree(
        {
            "profiles/base.toml": BASE_PROFILE + '\n[structured_output]\nschema = "schemas/s.json"\n',
            "profiles/schemas/s.json": {"type": "object"},
            "profiles/nested/child.toml": 'name = "c"\nextends = "../base.toml"\n',
        }
    )
    loaded = load(root / "profiles/nested/child.toml")
    assert loaded.profile.structured_output.schema_file == "profiles/schemas/s.json"
    assert "profiles/schemas/s.json" in loaded.texts


def test_env_override_through_pydantic_settings(tree, monkeypatch):
    root = tree({"profiles/base.toml": BASE_PROFILE})
    monkeypatch.setenv("KIT_GPU__TYPE", "A100-40GB")
    monkeypatch.setenv("KIT_GPU__COUNT", "2")
    monkeypatch.setenv("KIT_ENGINE__GPU_MEMORY_UTILIZATION", "0.85")
    loaded = load(root / "profiles/base.toml")
    assert loaded.profile.gpu.type == "A100-40GB"
    assert loaded.profile.gpu.count == 2
    assert loaded.profile.engine.gpu_memory_utilization == 0.85
    assert loaded.overrides["gpu.type"] == "KIT_GPU__TYPE"
    assert loaded.file_of("gpu.type") == "<environment>"


def test_env_override_of_unknown_section_is_an_error(tree, monkeypatch):
    root = tree({"profiles/base.toml": BASE_PROFILE})
    monkeypatch.setenv("KIT_GPUU__TYPE", "H100")
    with pytest.raises(ProfileError, match=r"(?s)KIT_GPUU__TYPE.*did you mean KIT_GPU__"):
        load(root / "profiles/base.toml")


def test_env_override_with_a_bad_value_names_the_variable(tree, monkeypatch):
    root = tree({"profiles/base.toml": BASE_PROFILE})
    monkeypatch.setenv("KIT_GPU__COUNT", "two")
    with pytest.raises(ProfileError, match=r"gpu\.count.*set by KIT_GPU__COUNT"):
        load(root / "profiles/base.toml")


BAD_INPUTS = {
    "malformed TOML": ({"profiles/p.toml": 'name = "x"\n[app\nname = "y"\n'}, r"profiles/p.toml:2:\d+: invalid TOML"),
    "unknown key": ({"profiles/p.toml": BASE_PROFILE.replace("[gpu]\n", "[gpu]\ntyp = 'x'\n")}, r"gpu\.typ: unknown key; did you mean `gpu\.type`\?"),
    "unknown section": ({"profiles/p.toml": BASE_PROFILE + "\n[servng]\ntimeout = 3\n"}, r"servng: unknown key; did you mean `serving`\?"),
    "wrong type": ({"profiles/p.toml": BASE_PROFILE.replace("count = 1", 'count = "1"')}, r"gpu\.count: Input should be a valid integer"),
    "not a version": ({"profiles/p.toml": BASE_PROFILE.replace('vllm = "0.9.2"', 'vllm = "0.9.x"')}, r"packages\.vllm: '0\.9\.x' is not a version"),
    "missing extends": ({"profiles/p.toml": 'extends = "nope.toml"\n' + BASE_PROFILE}, r"`extends` names profiles/nope\.toml, which does not exist"),
    "cyclic extends": (
        {"profiles/a.toml": 'extends = "b.toml"\nname = "a"\n', "profiles/b.toml": 'extends = "a.toml"\nname = "b"\n', "profiles/p.toml": 'extends = "a.toml"\n'},
        r"`extends` forms a cycle: profiles/a\.toml -> profiles/b\.toml -> profiles/a\.toml",
    ),
    "extends escapes the repository": ({"profiles/p.toml": 'extends = "../../outside.toml"\n' + BASE_PROFILE}, r"`extends` points outside the repository root"),
    "unknown GPU": ({"profiles/p.toml": BASE_PROFILE.replace('type = "A10G"', 'type = "A100-40G"')}, r"unknown GPU type 'A100-40G'.*did you mean 'A100-40GB'"),
    "missing schema file": ({"profiles/p.toml": BASE_PROFILE + '\n[structured_output]\nschema = "missing.json"\n'}, r"schema file profiles/missing\.json does not exist"),
    "empty file": ({"profiles/p.toml": "\n  \n"}, r"profiles/p\.toml: the file is empty"),
    "missing required section": ({"profiles/p.toml": 'name = "x"\n'}, r"app: required key is missing"),
    "bad revision": ({"profiles/p.toml": BASE_PROFILE.replace('dtype = "bfloat16"', 'revision = "main branch"')}, r"model\.revision: must be a 40-character commit hash, or a branch or tag name"),
    "unknown allow rule": ({"profiles/p.toml": BASE_PROFILE + '\n[[allow]]\nrule = "gpu-memory-kvcache"\nreason = "x"\n'}, r"names rule 'gpu-memory-kvcache', which does not exist.*did you mean 'gpu-memory-kv-cache'"),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_is_one_clear_message_and_exit_2(tree, case):
    files, pattern = BAD_INPUTS[case]
    root = tree(files)
    result = run_kit("check", "profiles/p.toml", cwd=root)
    assert result.code == 2, result
    text = result.out + result.err
    assert "Traceback" not in text
    import re

    assert re.search(pattern, text, re.S), text


def test_directory_with_no_profiles_is_a_usage_error(tree):
    root = tree({"profiles/README": "nothing here"})
    with pytest.raises(UsageError, match="no profiles"):
        discover(root)
    result = run_kit("check", cwd=root)
    assert result.code == 2 and "no profiles (*.toml)" in result.err and "Traceback" not in result.err


def test_a_directory_given_as_a_profile_is_a_usage_error(tree):
    root = tree({"profiles/base.toml": BASE_PROFILE})
    result = run_kit("check", "profiles", cwd=root)
    assert result.code == 2 and "is a directory" in result.out + result.err


def test_one_bad_profile_does_not_hide_the_others(tree):
    root = tree({"profiles/good.toml": BASE_PROFILE, "profiles/bad.toml": "name = [\n"})
    result = run_kit("check", cwd=root)
    assert result.code == 2
    assert "INVALID" in result.out and "ok profiles/good.toml" in result.out
