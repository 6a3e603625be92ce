"""The corpus of real stacks (tests/cases/*.toml) and what `kit check` says about each.

A case is one stack seen in public: a deployed example or a repository that shows it running
(kind = "working"), or an issue thread that reports it failing (kind = "broken", with the error
text and the rule that names the real cause). Its `[profile]` table is the kit profile the stack
expresses, with unknown facts left out. Each case is checked without a lockfile (no network), the
way a user's first `kit check` runs. Used by tests/test_corpus.py and benchmarks/bench_corpus.py.
"""

from __future__ import annotations

import tomllib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CASES = Path(__file__).resolve().parent / "cases"
KINDS = ("working", "broken")
SOURCE_TYPES = ("example", "repository", "issue", "reference")
# Rules renamed since a figure was recorded: a finding under the old id counts as the new one, so
# BEFORE and AFTER figures compare the same causes.
RENAMED = {"vllm-request-backend-mismatch-0.8.4": "vllm-request-backend-mismatch"}


@dataclass
class Case:
    id: str
    kind: str
    source: str
    source_type: str
    profile: dict[str, Any]
    error: str = ""
    expect_rule: str = ""
    out_of_scope: str = ""
    known_gap: str = ""  # in scope, but kit lacks the fact that names the cause: the test expects a miss
    note: str = ""

    @property
    def in_scope(self) -> bool:
        return self.kind == "broken" and bool(self.expect_rule)


@dataclass
class Outcome:
    case: Case
    findings: list[tuple[str, str]] = field(default_factory=list)  # (rule, severity), active findings only

    def rules(self, *severities: str) -> set[str]:
        return {r for r, s in self.findings if s in severities}

    @property
    def blocked(self) -> bool:
        return bool(self.rules("error"))

    @property
    def warned(self) -> bool:
        return bool(self.rules("warning"))

    @property
    def caught(self) -> bool:
        """The expected rule fires at error or warning severity."""
        return self.case.expect_rule in self.rules("error", "warning")


def load_cases(directory: Path = CASES) -> list[Case]:
    cases = []
    for path in sorted(directory.glob("*.toml")):
        data = tomllib.loads(path.read_text(encoding="utf-8"))
        where = f"tests/cases/{path.name}"
        for key in ("kind", "source", "source_type", "profile"):
            if key not in data:
                raise ValueError(f"{where} lacks {key}")
        if data["kind"] not in KINDS or data["source_type"] not in SOURCE_TYPES:
            raise ValueError(f"{where}: kind must be one of {KINDS}, source_type one of {SOURCE_TYPES}")
        if data["kind"] == "broken" and not data.get("error"):
            raise ValueError(f"{where}: a broken case quotes the reported error")
        if data["kind"] == "broken" and not data.get("expect_rule") and not data.get("out_of_scope"):
            raise ValueError(f"{where}: a broken case names expect_rule, or says in out_of_scope why no rule can")
        cases.append(
            Case(
                id=path.stem,
                kind=data["kind"],
                source=data["source"],
                source_type=data["source_type"],
                profile=data["profile"],
                error=data.get("error", ""),
                expect_rule=data.get("expect_rule", ""),
                out_of_scope=data.get("out_of_scope", ""),
                known_gap=data.get("known_gap", ""),
                note=data.get("note", ""),
            )
        )
    return cases


def run_case(case: Case, workdir: Path) -> Outcome:
    """`kit check` (no lockfile) on the case's profile, written to workdir as a real file."""
    import tomlkit

    from kit.check import check
    from kit.load import load

    body = dict(case.profile)
    body.setdefault("name", case.id)
    body.setdefault("app", {"name": case.id[:64]})
    path = workdir / f"{case.id}.toml"
    path.write_text(tomlkit.dumps(body), encoding="utf-8")
    report = check(load(path, root=workdir, environ={}))
    return Outcome(case, [(RENAMED.get(f.rule, f.rule), f.severity) for f in report.active()])


@dataclass
class Figures:
    working: int
    broken: int
    in_scope: int
    working_blocked: int
    working_warned: int
    caught: int
    flagged_broken: int  # broken cases with any error or warning
    flagged_working: int  # working cases with any error or warning
    per_rule: dict[str, Counter]

    @property
    def recall(self) -> float:
        return self.caught / self.in_scope if self.in_scope else 0.0

    @property
    def precision(self) -> float:
        """Of the stacks kit raises an error or warning on, the share that are broken."""
        flagged = self.flagged_broken + self.flagged_working
        return self.flagged_broken / flagged if flagged else 0.0


def figures(outcomes: list[Outcome]) -> Figures:
    per_rule: dict[str, Counter] = {}
    for o in outcomes:
        for rule, severity in o.findings:
            c = per_rule.setdefault(rule, Counter())
            if o.case.kind == "working":
                c[f"working_{severity}"] += 1
            elif rule == o.case.expect_rule:
                c[f"caught_{severity}"] += 1
            else:
                c[f"broken_other_{severity}"] += 1
    working = [o for o in outcomes if o.case.kind == "working"]
    broken = [o for o in outcomes if o.case.kind == "broken"]
    return Figures(
        working=len(working),
        broken=len(broken),
        in_scope=sum(1 for o in broken if o.case.in_scope),
        working_blocked=sum(1 for o in working if o.blocked),
        working_warned=sum(1 for o in working if o.warned),
        caught=sum(1 for o in broken if o.case.in_scope and o.caught),
        flagged_broken=sum(1 for o in broken if o.blocked or o.warned),
        flagged_working=sum(1 for o in working if o.blocked or o.warned),
        per_rule=per_rule,
    )
