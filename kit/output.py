"""Reports for people (rich), for machines (json) and for GitHub Actions (workflow annotations)."""

from __future__ import annotations

import json
import os
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


def no_color() -> bool:
    """NO_COLOR (https://no-color.org), set to anything but empty, removes every style, not only colours."""
    return bool(os.environ.get("NO_COLOR"))


def _console(stderr: bool = False):
    from rich.console import Console

    return Console(stderr=stderr, highlight=False, soft_wrap=True, color_system=None if no_color() else "auto")


Segment = str | tuple[str, str]  # text, or (text, rich style)

# Control characters other than newline and tab: an ESC in a file name or a value would otherwise
# drive the terminal (colours, cursor moves, a rewritten line) when kit prints it.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def printable(text: str) -> str:
    """`text` with every control character but newline and tab shown as an escape (\\x1b)."""
    return _CONTROL.sub(lambda m: repr(m.group())[1:-1], text)


class _Lines:
    """Styled lines: rendered by rich on a terminal, written as plain text otherwise.

    Off a terminal (pre-commit, editors' on-save hooks, CI) rich would strip the styles anyway;
    writing plain text there spares loading a terminal renderer on kit's fastest path.
    """

    def __init__(self, stderr: bool = False):
        self.stream = sys.stderr if stderr else sys.stdout
        self.console = None
        if (self.stream.isatty() or os.environ.get("FORCE_COLOR")) and not no_color():
            self.console = _console(stderr)

    def line(self, *segments: Segment) -> None:
        segments = tuple(printable(s) if isinstance(s, str) else (printable(s[0]), s[1]) for s in segments)
        if self.console is None:
            self.stream.write("".join(s if isinstance(s, str) else s[0] for s in segments) + "\n")
            return
        from rich.text import Text

        self.console.print(Text.assemble(*segments))


def print_error(exc: KitError) -> None:
    """One clear message on stderr, no traceback."""
    _Lines(stderr=True).line(("error:", "bold red"), " ", exc.render())


def print_reports(reports: list[Report], bad: list[KitError], fmt: str, *, strict: bool = False, verbose: bool = False) -> None:
    if fmt == "json":
        _json(reports, bad)
    elif fmt == "github":
        _github(reports, bad)
    else:
        _text(reports, bad, strict, verbose)


def _totals(reports: list[Report]) -> dict[str, int]:
    return {s: sum(r.count(s) for r in reports) for s in ("error", "warning", "info")}


def error_dict(e: KitError) -> dict:
    """An error as JSON: `file` is a path; its position, when known, is in `line` and `column`."""
    return {"file": e.file, "line": e.line, "column": e.column, "key": e.key, "message": e.render()}


def _json(reports: list[Report], bad: list[KitError]) -> None:
    doc = {
        "version": JSON_VERSION,
        "summary": {**_totals(reports), "profiles": len(reports) + len(bad), "invalid": len(bad)},
        "profiles": [r.as_dict() for r in reports],
        "invalid": [error_dict(e) for e in bad],
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
    """A workflow command's message, escaped as actions/toolkit's escapeData does."""
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _escape_gh_property(text: str) -> str:
    """A workflow command's property (file=, title=): escapeData plus `:` and `,`, which end a property.

    https://github.com/actions/toolkit/blob/main/packages/core/src/command.ts (escapeProperty)
    """
    return _escape_gh(text).replace(":", "%3A").replace(",", "%2C")


def _github(reports: list[Report], bad: list[KitError]) -> None:
    level = {"error": "error", "warning": "warning", "info": "notice"}
    out = []
    for exc in bad:
        file = exc.file or ""
        pos = (f",line={exc.line}" if exc.line is not None else "") + (f",col={exc.column}" if exc.column is not None else "")
        out.append(f"::error file={_escape_gh_property(file)}{pos},title={_escape_gh_property('kit: invalid profile')}::{_escape_gh(exc.render())}")
    for r in reports:
        for f in r.active():
            line = _line_of(f.file, f.keys[0]) if f.keys else None
            pos = f",line={line}" if line else ""
            body = f"{f.summary}\n{f.why}\nfix: {f.fix}\nsource: {'; '.join(f.sources)}"
            out.append(f"::{level[f.severity]} file={_escape_gh_property(f.file)}{pos},title={_escape_gh_property(f'kit {f.rule}')}::{_escape_gh(body)}")
    t = _totals(reports)
    out.append(f"kit check: {len(reports) + len(bad)} profile(s), {t['error']} error(s), {t['warning']} warning(s), {t['info']} info, {len(bad)} invalid")
    sys.stdout.write("\n".join(out) + "\n")


def _finding_lines(f: Finding, verbose: bool = False) -> list[list[Segment]]:
    pad = " " * 10
    head: list[Segment] = ["  ", (f"{f.severity:<7}", _STYLE[f.severity]), " ", (f.rule, "bold")]
    if f.keys:
        head += ["  ", (", ".join(f.keys), "dim")]
    lines: list[list[Segment]] = [head, [pad, f.summary]]
    if f.severity == "info" and not verbose and f.allowed is None:
        return lines  # info is context, not a problem: one line unless asked (-v)
    if f.allowed is not None:
        lines.append([pad, (f"allowed: {f.allowed}", "dim")])
        return lines
    lines.append([pad, ("why:", "dim"), "    ", f.why])
    lines.append([pad, ("fix:", "dim"), "    ", f.fix])
    lines += [[pad, (f"source: {src}", "dim")] for src in f.sources]
    return lines


def _text(reports: list[Report], bad: list[KitError], strict: bool, verbose: bool = False) -> None:
    out = _Lines()
    for r in reports:
        active = r.active()
        status = ("FAIL", "bold red") if r.failed(strict) else ("ok", "green")
        out.line(status, " ", (r.profile, "bold"), " ", (f"({r.name})", "dim"))
        for line in r.overrides:
            out.line("  ", (f"override: {line}", "magenta"))
        for f in r.findings:
            for segments in _finding_lines(f, verbose):
                out.line(*segments)
        for note in r.notes:
            out.line("  ", (f"note: {note}", "dim"))
        if not active:
            out.line("  ", ("no findings", "green"))
        out.line()
    for exc in bad:
        out.line(("INVALID", "bold red"), " ", exc.render())
        out.line()
    t = _totals(reports)
    tail: list[Segment] = [
        f"{len(reports) + len(bad)} profile(s): ",
        (f"{t['error']} error(s)", "bold red"),
        ", ",
        (f"{t['warning']} warning(s)", "yellow"),
        ", ",
        (f"{t['info']} info", "cyan"),
    ]
    if bad:
        tail += [", ", (f"{len(bad)} invalid", "bold red")]
    if t["info"] and not verbose:
        tail += [" ", ("(-v shows why, fix and source of info findings)", "dim")]
    out.line(*tail)


def print_rules(rules: list[Rule], fmt: str) -> None:
    if fmt == "json":
        doc = [
            {"id": r.id, "severity": r.severity, "summary": r.summary, "why": r.why, "fix": r.fix, "sources": list(r.sources), "when": r.when, "computed": r.computed, "file": r.file}
            for r in rules
        ]
        sys.stdout.write(json.dumps(doc, indent=2, default=str) + "\n")
        return
    out = _Lines()
    for r in rules:
        out.line((f"{r.severity:<7}", _STYLE[r.severity]), " ", (r.id, "bold"), "  ", r.summary)
