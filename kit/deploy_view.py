"""Plans, outcomes, history and status for people (rich text) and machines (json)."""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING

from rich.markup import escape

if TYPE_CHECKING:
    from kit.deploy import AppStatus, Outcome
    from kit.history import BenchRun, Revision
    from kit.plan import Fleet, Plan

JSON_VERSION = 1
_STATUS_STYLE = {"deployed": "bold green", "pending": "yellow", "failed": "bold red", "superseded": "dim", "rolled_back": "magenta"}


def console(stderr: bool = False):
    from rich.console import Console

    from kit.output import no_color

    return Console(stderr=stderr, highlight=False, soft_wrap=True, color_system=None if no_color() else "auto")


def _money(x: float | None) -> str:
    return "-" if x is None else f"${x:,.2f}/h"


def _fleet_line(f: Fleet | None) -> str:
    if f is None:
        return "unknown (GPU not in kit's catalog)"
    c = f.cost
    gpus = f"{c.count}x {c.gpu}" if c.count > 1 else c.gpu
    ceiling = f", up to {_money(f.ceiling)} at max_containers={f.max_containers}" if f.ceiling is not None else ", no max_containers ceiling"
    return f"{_money(c.price_per_hour)} per running container ({gpus}); idle floor {_money(f.floor)} (min_containers={f.min_containers}){ceiling}"


def _count(n: int, what: str, after: str = "") -> str | None:
    return f"{n} {what}{'' if n == 1 else 's'}{after}" if n else None


def _changes_line(plan: Plan) -> str:
    d, cur = plan.diff, plan.current
    assert cur is not None
    if d.status == "unchanged":
        return "none in the resolved profile or lockfile" + (" (same bundle)" if plan.same_bundle else " (the rendered bundle differs: kit or its templates changed)")
    counts = [
        _count(len(d.settings), "setting"),
        _count(len(d.packages), "package"),
        _count(len(d.locked), "locked package"),
        _count(len(d.files), "file"),
        _count(len(d.introduced), "finding", " introduced"),
        _count(len(d.fixed), "finding", " fixed"),
    ]
    since = f"since r{cur.number}" + (f" ({d.old_path})" if d.old_path else "")
    return f"{since}: " + (", ".join(c for c in counts if c) or "see the notes")


def print_plan(plan: Plan, *, dry_run: bool) -> None:
    from kit.diff_format import headroom_line, per_request_line, text_lines

    con = console()
    cur, d = plan.current, plan.diff
    env = plan.environment or "the workspace default"
    con.print(f"[bold]Plan:[/] deploy [bold]{escape(plan.profile)}[/] to Modal app [bold]{escape(plan.app)}[/] (environment {escape(env)})")
    row = "  {:<9} {}"
    con.print(row.format("check", escape(plan.check)))
    con.print(row.format("lock", escape(plan.lock)))
    con.print(row.format("bundle", f"{plan.bundle_hash[:12]}  ({escape(', '.join(plan.bundle_files))})"))
    if cur is None:
        con.print(row.format("current", "none: this is the first deploy kit records for this app"))
    else:
        modal = f", Modal {cur.modal_version}" if cur.modal_version else ""
        con.print(row.format("current", f"r{cur.number} deployed {cur.created_at} by {escape(cur.created_by)} (bundle {cur.bundle_hash[:12]}{modal})"))
    if plan.compared:
        con.print(row.format("changes", escape(_changes_line(plan))))
        if d.status != "unchanged":
            for line in text_lines(d):  # kit diff's wording: packages, lockfile, settings, cost, memory, findings
                con.print(f"  {escape(line)}")
        if plan.fleet_before == plan.fleet_after:
            con.print(row.format("cost", escape(_fleet_line(plan.fleet_after)) + " [dim](unchanged)[/]"))
        else:
            con.print(row.format("cost now", escape(_fleet_line(plan.fleet_before))))
            con.print(row.format("cost then", escape(_fleet_line(plan.fleet_after))))
    else:
        if cur is not None:
            con.print(row.format("changes", f"unknown: r{cur.number}'s stored profile does not load in this kit (see the note below)"))
        con.print(row.format("cost", escape(_fleet_line(plan.fleet_after))))
        if d.cost_after is not None:
            con.print(row.format("", escape("per 1,000 requests: " + per_request_line(None, d.cost_after))))
        con.print(row.format("memory", escape(f"headroom {headroom_line(d)}")))
    con.print(row.format("smoke", escape(plan.smoke)))
    next_n = (cur.number + 1) if cur else None
    tag = f"kit-r<N>-{plan.bundle_hash[:12]}"
    con.print(row.format("record", f"a new revision{f' (r{next_n} or later)' if next_n else ''} in kit's history, Modal tag {tag}"))
    for note in plan.notes:
        con.print(f"  [dim]note: {escape(note)}[/]")
    for b in plan.blockers:
        con.print(f"  [bold red]blocker:[/] {escape(b)}")
    if dry_run:
        verdict = "[bold red]a deploy would stop here[/]" if plan.blockers else "[green]ready to deploy[/]"
        con.print(f"dry run: nothing was deployed or recorded; {verdict}")


def print_plan_json(plan: Plan) -> None:
    sys.stdout.write(json.dumps({"version": JSON_VERSION, "plan": plan.as_dict()}, indent=2, default=str) + "\n")


def echo(line: str) -> None:
    console(stderr=True).print(f"[cyan]kit:[/] {escape(line)}")


def build_output(line: str) -> None:
    console(stderr=True).print(f"  [dim]| {escape(line)}[/]")


def print_outcome(outcome: Outcome) -> None:
    con = console()
    style = "bold green" if outcome.ok else "bold red"
    rev = outcome.revision
    con.print(f"[{style}]{'deployed' if outcome.ok else 'FAILED'}[/] {escape(rev.app)} r{rev.number} ({rev.status}" + (f", Modal {rev.modal_version}" if rev.modal_version else "") + ")")
    for m in outcome.messages:
        con.print(f"  {escape(m)}")
    if rev.smoke:
        for c in rev.smoke.get("checks", []):
            mark = "[green]ok[/]  " if c["ok"] else "[red]FAIL[/]"
            con.print(f"    {mark} {escape(c['name']):<10} {escape(c['detail'])}")
    for name, url in sorted(rev.urls.items()):
        con.print(f"  [dim]{escape(name)}: {escape(url)}[/]")


def _revision_line(r: Revision) -> list[str]:
    source = f"rollback to r{r.rollback_of}" if r.kind == "rollback" else "deploy"
    commit = (r.git_commit or "")[:10] + ("*" if r.git_dirty else "") if r.git_commit else "-"
    return [f"r{r.number}", r.status, source, _when(r.created_at), r.created_by, r.bundle_hash[:12], r.modal_version or "-", commit]


def _when(at: str) -> str:
    return at.replace("T", " ").replace("+00:00", "Z")


def bench_line(run: BenchRun) -> str:
    """A bench run in one line: best req/s; p50 and tokens/s at concurrency 1; strict-JSON share; failures."""
    parts = []
    if run.best_requests_per_s is not None:
        parts.append(f"{_short(run.best_requests_per_s)} req/s best")
    c1 = [f"p50 {_short(run.latency_p50_s_c1)} s"] if run.latency_p50_s_c1 is not None else []
    c1 += [f"{_short(run.output_tokens_per_s_c1)} tok/s"] if run.output_tokens_per_s_c1 is not None else []
    if c1:
        parts.append("c1 " + ", ".join(c1))
    if run.strict_json_share is not None:
        parts.append(f"strict JSON {run.strict_json_share:.0%}")
    if run.errors:
        parts.append(f"{run.errors}/{run.requests} failed")
    return "; ".join(parts)


def _cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def print_history(revs: list[Revision], fmt: str, bench: dict[tuple[str, int], BenchRun] | None = None) -> None:
    """The revisions; `bench` gives each revision's latest bench run, where it has one."""
    bench = bench or {}
    if fmt == "json":
        rows = []
        for r in revs:
            run = bench.get((r.app, r.number))
            rows.append({**r.summary(), "bench": run.summary() if run else None})
        sys.stdout.write(json.dumps({"version": JSON_VERSION, "revisions": rows}, indent=2) + "\n")
        return
    from rich.table import Table

    con = console()
    if not revs:
        con.print("no revisions recorded")
        return
    headers = ("rev", "status", "kind", "when (UTC)", "by", "bundle", "modal", "commit", "bench (latest)", "note")
    for app in dict.fromkeys(r.app for r in revs):
        # One line per revision (--format json has every cell whole): who is cut to a width with an
        # ellipsis, and the note takes what the terminal has left.
        rows = []
        for r in revs:
            if r.app != app:
                continue
            cells = _revision_line(r)
            cells[4] = _cut(cells[4], 20)
            run = bench.get((r.app, r.number))
            cells.append(bench_line(run) if run else "-")
            rows.append((r, cells, " ".join((r.error or ("smoke ok" if r.smoke and r.smoke.get("ok") else "")).split())))
        widths = [max(len(h), *(len(c[i]) for _, c, _ in rows)) for i, h in enumerate(headers[:-1])]
        room = max(12, con.width - sum(widths) - 2 * len(headers))
        table = Table(title=f"{app}", title_justify="left", box=None, pad_edge=False, header_style="bold")
        for col in headers:
            table.add_column(col, no_wrap=True, overflow="ellipsis")
        for r, cells, note in rows:
            cells[1] = f"[{_STATUS_STYLE.get(r.status, '')}]{r.status}[/]"
            table.add_row(*[c if i == 1 else escape(c) for i, c in enumerate(cells)], escape(_cut(note, room)))
        con.print(table)
        con.print()


def print_bench_runs(runs: list[BenchRun], fmt: str) -> None:
    """`kit history --bench`: every stored bench run, oldest first (json: with its levels)."""
    if fmt == "json":
        sys.stdout.write(json.dumps({"version": JSON_VERSION, "bench_runs": [run.as_dict() for run in runs]}, indent=2) + "\n")
        return
    from rich.table import Table

    con = console()
    if not runs:
        con.print("no bench runs recorded (`kit bench APP@rN` measures a deployed revision and stores the results)")
        return
    cols = ("run", "rev", "when (UTC)", "by", "kit", "mode", "concurrency", "req/s best", "p50 s c1", "tok/s c1", "strict JSON", "failed", "target")
    for app in dict.fromkeys(run.app for run in runs):
        table = Table(title=f"{app}: kit bench runs", title_justify="left", box=None, pad_edge=False, header_style="bold")
        for col in cols:
            table.add_column(col, overflow="fold")
        for run in runs:
            if run.app != app:
                continue
            levels = ",".join(str(lv.get("concurrency")) for lv in run.levels)
            table.add_row(*map(escape, [
                str(run.id), f"r{run.number}", _when(run.at), run.created_by, run.kit_version, run.mode, levels,
                _num(run.best_requests_per_s, 2), _num(run.latency_p50_s_c1, 3), _num(run.output_tokens_per_s_c1, 1),
                "-" if run.strict_json_share is None else f"{run.strict_json_share:.0%}", f"{run.errors}/{run.requests}", run.target,
            ]))
        con.print(table)
        con.print()


def _short(x: float) -> str:
    """Three significant figures, never in exponent form: 207, 12.4, 0.413, 0.00312."""
    if abs(x) >= 100:
        return f"{x:.0f}"
    return f"{x:.3g}" if abs(x) >= 0.001 else f"{x:.2g}"


def _num(x: float | None, digits: int) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def print_status(statuses: list[AppStatus], fmt: str) -> None:
    if fmt == "json":
        doc = {"version": JSON_VERSION, "apps": [s.as_dict() for s in statuses]}
        sys.stdout.write(json.dumps(doc, indent=2, default=str) + "\n")
        return
    con = console()
    for s in statuses:
        cur = s.current
        con.print(f"[bold]{escape(s.app)}[/]")
        if cur:
            con.print(f"  current  r{cur.number} ({cur.kind}{f' of r{cur.rollback_of}' if cur.rollback_of else ''}) deployed {cur.finished_at or cur.created_at} by {escape(cur.created_by)}, bundle {cur.bundle_hash[:12]}, Modal {cur.modal_version or 'version unknown'}")
        else:
            con.print("  current  none (no revision passed deploy and smoke test)")
        if s.latest and s.latest is not cur and (cur is None or s.latest.number != cur.number):
            con.print(f"  latest   r{s.latest.number} {s.latest.status}" + (f": {escape(s.latest.error[:160])}" if s.latest.error else ""))
        if s.lock:
            con.print(f"  lock     held by {escape(s.lock.describe())}")
        if s.modal_error:
            con.print(f"  modal    [dim]{escape(s.modal_error)}[/]")
        elif s.modal is not None:
            from kit.target import latest_version

            live = latest_version(s.modal)
            con.print(f"  modal    {len(s.modal)} version(s); live {live.version if live else 'none'}" + (f" (tag {escape(live.tag)})" if live and live.tag else ""))
        if s.drift:
            for d in s.drift:
                con.print(f"  [bold yellow]drift[/]    {escape(d)}")
        elif s.modal is not None:
            con.print("  [green]in sync[/]  Modal's history agrees with kit's")
        con.print()
