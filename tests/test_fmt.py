"""kit fmt: one canonical layout, comments kept, idempotent; --check for CI."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from kit.errors import ProfileError
from kit.fmt import format_text

from .conftest import PROFILES, run_kit

MESSY = """\
# header: stays on top

description = 'the stack'   # why it exists
name = "x"
[engine]
name='vllm'
args = {max_num_seqs=8,   "odd key" = "x"}
[gpu]
count = 1
type = 'A10G'
# about the packages
[packages]
"flashinfer-python" = '0.2.6.post1'
vllm    =    "0.9.2"
[model.architecture]
head_dim = 128
num_hidden_layers = 28
[model]
# the model
id = "Qwen/Qwen2.5-Coder-7B-Instruct"
[image]
apt_packages = ['libnuma1',
  'git']
base = "nvidia/cuda:12.4.1-devel-ubuntu22.04"
[[allow]]
reason = "we know"
rule = "x"
[app]
name = "a"
# the end
"""

CANONICAL = """\
# header: stays on top
name = "x"
description = "the stack"  # why it exists

[app]
name = "a"

[model]
# the model
id = "Qwen/Qwen2.5-Coder-7B-Instruct"

[model.architecture]
num_hidden_layers = 28
head_dim = 128

[gpu]
type = "A10G"
count = 1

[image]
base = "nvidia/cuda:12.4.1-devel-ubuntu22.04"
apt_packages = ["libnuma1", "git"]

# about the packages
[packages]
flashinfer-python = "0.2.6.post1"
vllm = "0.9.2"

[engine]
name = "vllm"
args = { max_num_seqs = 8, "odd key" = "x" }

[[allow]]
rule = "x"
reason = "we know"

# the end
"""


def test_canonical_layout_keeps_comments():
    assert format_text(MESSY) == CANONICAL


def test_idempotent_and_meaning_preserving():
    once = format_text(MESSY)
    assert format_text(once) == once
    assert tomllib.loads(once) == tomllib.loads(MESSY)


@pytest.mark.parametrize("path", sorted(PROFILES.glob("*.toml")), ids=lambda p: p.name)
def test_library_is_canonical(path: Path):
    text = path.read_text(encoding="utf-8")
    assert format_text(text) == text, f"run `kit fmt {path.relative_to(PROFILES.parent)}`"


def test_strings_and_long_arrays():
    text = 'name = "x"\n[image]\nenv = { A = \'C:\\path\' }\napt_packages = [' + ", ".join(f'"package-{i}"' for i in range(12)) + "]\n"
    out = format_text(text)
    assert 'env = { A = "C:\\\\path" }' in out
    assert 'apt_packages = [\n    "package-0",\n' in out
    assert tomllib.loads(out) == tomllib.loads(text)
    multi = "name = \"x\"\ndescription = '''\nline one\nline \"two\"\n'''\n"
    assert tomllib.loads(format_text(multi)) == tomllib.loads(multi)
    assert format_text(format_text(multi)) == format_text(multi)


def test_invalid_toml_is_a_profile_error():
    with pytest.raises(ProfileError, match="invalid TOML"):
        format_text("name = \n", file="p.toml")


def test_cli_check_and_write(tmp_path: Path):
    (tmp_path / ".git").mkdir()
    (tmp_path / "profiles").mkdir()
    messy = tmp_path / "profiles" / "messy.toml"
    tidy = tmp_path / "profiles" / "tidy.toml"
    messy.write_text(MESSY)
    tidy.write_text(CANONICAL)
    result = run_kit("fmt", "--check", cwd=tmp_path)
    assert result.code == 1
    assert "would reformat profiles/messy.toml" in result.out and "tidy" not in result.out
    assert messy.read_text() == MESSY  # --check changes nothing
    diff = run_kit("fmt", "--diff", str(messy), cwd=tmp_path)
    assert diff.code == 1 and "+[app]" in diff.out
    assert run_kit("fmt", cwd=tmp_path).code == 0
    assert messy.read_text() == CANONICAL
    assert run_kit("fmt", "--check", cwd=tmp_path).code == 0
    (tmp_path / "profiles" / "bad.toml").write_text("name = \n")
    assert run_kit("fmt", "--check", cwd=tmp_path).code == 2
