"""Reports for people (rich), for machines (json) and for GitHub Actions (workflow annotations)."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from kit.errors import KitError

if TYPE_CHECKING:
    from kit.check import Report
    from kit.rules import Finding, Rule

JSON_VERSION = 1
_STYLE = {"error": "bold red", "warning": "yellow", "info": "cyan"}


def _console(stderr: bool = False):
    from rich.console import Console

    return Console(stderr=stderr, highlight=False, soft_wrap=True)


def print_error(exc: KitError) -> None:
    """One clear message on stderr, no traceback."""
    from rich.markup import escape

    _console(stderr=True).print(f"[bold red]error:[/] {escape(exc.render())}")


def print_reports(reports: list[Report], bad: list[KitError], fmt: str, *, strict: bool = False, verbose: bool = False) -> None:
    if fmt == "json":
        _json(reports, bad)
    elif fmt == "github":
        _github(reports, bad)
    else:
        _text(reports, bad, strict, verbose)


def _totals(reports: list[Report]) -> dict[str, int]:
    return {s: sum(r.count(s) for r in reports) for s in ("error", "warning", "info")}


def _json(reports: list[Report], bad: list[KitError]) -> None:
    doc = {
        "version": JSON_VERSION,
        "summary": {**_totals(reports), "profiles": len(reports) + len(bad), "invalid": len(bad)},
        "profiles": [r.as_dict() for r in reports],
        "invalid": [{"file": e.file, "key": e.key, "message": e.render()} for e in bad],
    }
    sys.stdout.write(json.dumps(doc, indent=2) + "\n")


def _line_of(path: str, key: str) -> int | None:
    """Best-effort line of a dotted key in a TOML file, for annotations that point at the right line."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError:
        return None
    parts = key.split(".")
    section, leaf = (parts[0], parts[-1]) if len(parts) > 1 else ("", parts[0])
    in_section = section == ""
    header = None  # the section's own line: where a key that is absent (defaulted) belongs
    for i, line in enumerate(lines, 1):
        stripped = line.strip()
        if stripped.startswith("["):
            name = stripped.strip("[]").strip()
            in_section = name == section or bool(section and name.startswith(section + "."))
            if name in (section, leaf) and header is None:
                header = i
            continue
        if in_section and re.match(rf'^"?{re.escape(leaf)}"?\s*=', stripped):
            return i
    return header


def _escape_gh(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _github(reports: list[Report], bad: list[KitError]) -> None:
    level = {"error": "error", "warning": "warning", "info": "notice"}
    out = []
    for exc in bad:
        file = (exc.file or "").split(":")[0]
        m = re.match(r"^[^:]+:(\d+):(\d+)$", exc.file or "")
        pos = f",line={m.group(1)},col={m.group(2)}" if m else ""
        out.append(f"::error file={file}{pos},title=kit: invalid profile::{_escape_gh(exc.render())}")
    for r in reports:
        for f in r.active():
            line = _line_of(f.file, f.keys[0]) if f.keys else None
            pos = f",line={line}" if line else ""
            body = f"{f.summary}\n{f.why}\nfix: {f.fix}\nsource: {'; '.join(f.sources)}"
            out.append(f"::{level[f.severity]} file={f.file}{pos},title=kit {f.rule}::{_escape_gh(body)}")
    t = _totals(reports)
    out.append(f"kit check: {len(reports) + len(bad)} profile(s), {t['error']} error(s), {t['warning']} warning(s), {t['info']} info, {len(bad)} invalid")
    sys.stdout.write("\n".join(out) + "\n")


def _finding_lines(f: Finding, verbose: bool = False) -> list[str]:
    from rich.markup import escape

    style = _STYLE[f.severity]
    keys = f"  [dim]{escape(', '.join(f.keys))}[/]" if f.keys else ""
    head = f"  [{style}]{f.severity:<7}[/] [bold]{escape(f.rule)}[/]{keys}"
    lines = [head, f"          {escape(f.summary)}"]
    if f.severity == "info" and not verbose and f.allowed is None:
        return lines  # info is context, not a problem: one line unless asked (-v)
    if f.allowed is not None:
        lines.append(f"          [dim]allowed: {escape(f.allowed)}[/]")
        return lines
    lines.append(f"          [dim]why:[/]    {escape(f.why)}")
    lines.append(f"          [dim]fix:[/]    {escape(f.fix)}")
    for src in f.sources:
        lines.append(f"          [dim]source: {escape(src)}[/]")
    return lines


def _text(reports: list[Report], bad: list[KitError], strict: bool, verbose: bool = False) -> None:
    from rich.markup import escape

    con = _console()
    for r in reports:
        active = r.active()
        status = "[bold red]FAIL[/]" if r.failed(strict) else "[green]ok[/]"
        con.print(f"{status} [bold]{escape(r.profile)}[/] [dim]({escape(r.name)})[/]")
        for f in r.findings:
            for line in _finding_lines(f, verbose):
                con.print(line)
        for note in r.notes:
            con.print(f"  [dim]note: {escape(note)}[/]")
        if not active:
            con.print("  [green]no findings[/]")
        con.print()
    for exc in bad:
        con.print(f"[bold red]INVALID[/] {escape(exc.render())}")
        con.print()
    t = _totals(reports)
    con.print(
        f"{len(reports) + len(bad)} profile(s): [bold red]{t['error']} error(s)[/], [yellow]{t['warning']} warning(s)[/], "
        f"[cyan]{t['info']} info[/]" + (f", [bold red]{len(bad)} invalid[/]" if bad else "")
        + ("" if verbose or not t["info"] else " [dim](-v shows why, fix and source of info findings)[/]")
    )


def print_rules(rules: list[Rule], fmt: str) -> None:
    if fmt == "json":
        doc = [
            {"id": r.id, "severity": r.severity, "summary": r.summary, "why": r.why, "fix": r.fix, "sources": list(r.sources), "when": r.when, "computed": r.computed, "file": r.file}
            for r in rules
        ]
        sys.stdout.write(json.dumps(doc, indent=2, default=str) + "\n")
        return
    from rich.markup import escape

    con = _console()
    for r in rules:
        con.print(f"[{_STYLE[r.severity]}]{r.severity:<7}[/] [bold]{escape(r.id)}[/]  {escape(r.summary)}")
