"""The severity contract on real stacks (tests/cases/): no working stack gets an error, and every
broken stack whose cause a profile can express gets the rule that names that cause.

Cases whose cause kit cannot yet see carry a `known_gap` reason and are expected to be missed
(strict xfail): when kit learns the fact, the test says so and the gap is removed from the case.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from .corpus import CASES, load_cases, run_case

ALL = load_cases()
WORKING = [c for c in ALL if c.kind == "working"]
BROKEN = [c for c in ALL if c.in_scope]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("corpus")


def test_the_corpus_is_real_and_balanced():
    assert len(ALL) >= 60
    assert 0.4 <= len(WORKING) / len(ALL) <= 0.6
    for case in ALL:
        assert case.source.startswith(("https://github.com/", "/work/shared/reference/")) or "@" in case.source, case.id
    ids = [c.id for c in ALL]
    assert len(ids) == len(set(ids)) and all((CASES / f"{i}.toml").exists() for i in ids)


@pytest.mark.parametrize("case", WORKING, ids=[c.id for c in WORKING])
def test_no_working_stack_gets_an_error(case, workdir):
    outcome = run_case(case, workdir)
    assert not outcome.rules("error"), f"{case.source}: {sorted(outcome.rules('error'))}"


# Rules that read the derived knowledge store (kit/knowledge): without it they stay silent.
STORE_RULES = {"vllm-transformers-unpinned", "pin-conflict-transitive", "torch-cuda-lacks-gpu-arch", "sgl-kernel-libnuma", "sglang-kernel-libnuma", "sglang-libnuma-unlocked"}


def _has_store() -> bool:
    import importlib.util

    return importlib.util.find_spec("kit.knowledge.query") is not None


def _broken_params():
    for case in BROKEN:
        marks = [pytest.mark.xfail(strict=True, reason=case.known_gap)] if case.known_gap else []
        if case.expect_rule in STORE_RULES and not _has_store():
            marks = [pytest.mark.skip(reason="needs the knowledge store (kit/knowledge)")]
        yield pytest.param(case, id=case.id, marks=marks)


@pytest.mark.parametrize("case", list(_broken_params()))
def test_broken_stack_gets_the_rule_that_names_its_cause(case, workdir):
    from kit.rules import rules_by_id

    assert case.expect_rule in rules_by_id(), f"{case.id} expects a rule kit does not have: {case.expect_rule}"
    outcome = run_case(case, workdir)
    assert outcome.caught, f"{case.source} ({case.error[:80]}): got {sorted(r for r, s in outcome.findings if s != 'info')}"
