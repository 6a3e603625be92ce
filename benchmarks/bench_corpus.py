"""Precision and recall of `kit check` on the corpus of real stacks (tests/cases/*.toml).

    python benchmarks/bench_corpus.py [--cases DIR] [--markdown]

Each case is checked without a lockfile, the way a first `kit check` runs. Prints the contract
figures (working stacks blocked by an error, working stacks warned, broken stacks whose real cause
kit names) and a table per rule. The figures are recorded in docs/knowledge.md.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.corpus import CASES, figures, load_cases, run_case  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cases", type=Path, default=CASES)
    parser.add_argument("--verbose", "-v", action="store_true", help="one line per case")
    args = parser.parse_args()
    cases = load_cases(args.cases)
    with tempfile.TemporaryDirectory() as tmp:
        outcomes = [run_case(c, Path(tmp)) for c in cases]
    f = figures(outcomes)
    kinds = Counter((c.kind, c.source_type) for c in cases)
    print(f"cases: {len(cases)} ({f.working} working, {f.broken} broken; {f.in_scope} broken in scope, {f.broken - f.in_scope} out of scope)")
    print("by source: " + ", ".join(f"{k} {s}: {n}" for (k, s), n in sorted(kinds.items())))
    print(f"precision (stacks with an error or warning that are broken): {f.precision:.2f}")
    print(f"recall (in-scope broken stacks whose expected rule fires as error or warning): {f.caught}/{f.in_scope} = {f.recall:.2f}")
    print(f"working stacks blocked (an error): {f.working_blocked}/{f.working}")
    print(f"working stacks warned (a warning): {f.working_warned}/{f.working}")
    print(f"broken stacks flagged at all (error or warning): {f.flagged_broken}/{f.broken}")
    print()
    print(f"{'rule':48} {'caught':>7} {'other-broken':>13} {'working-err':>12} {'working-warn':>13} {'info':>5}")
    for rule, c in sorted(f.per_rule.items()):
        caught = c["caught_error"] + c["caught_warning"]
        other = c["broken_other_error"] + c["broken_other_warning"]
        info = c["caught_info"] + c["broken_other_info"] + c["working_info"]
        print(f"{rule:48} {caught:>7} {other:>13} {c['working_error']:>12} {c['working_warning']:>13} {info:>5}")
    if args.verbose:
        print()
        for o in outcomes:
            c = o.case
            flags = sorted(f"{r}:{s[0]}" for r, s in o.findings if s != "info")
            verdict = ("caught" if o.caught else "MISSED") if c.in_scope else ("out of scope" if c.kind == "broken" else ("BLOCKED" if o.blocked else "ok"))
            print(f"{c.kind:8} {verdict:12} {c.id:44} {' '.join(flags)}")


if __name__ == "__main__":
    main()
