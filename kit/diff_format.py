"""ProfileDiff -> text (terminal), markdown (pull-request comment) or json. Plain strings, no terminal codes."""

from __future__ import annotations

import json
from typing import Any

from kit.catalog import GIB
from kit.diff import HOURS_PER_MONTH, Cost, PackageChange, ProfileDiff, show
from kit.rules import Finding

JSON_VERSION = 1
_MARK = {"changed": "~", "added": "+", "removed": "-", "unchanged": "="}
_CELL_PACKAGES = 3  # packages named in a summary cell before "+N more"


def render(diffs: list[ProfileDiff], fmt: str, title: str) -> str:
    if fmt == "json":
        return as_json(diffs, title)
    if fmt == "markdown":
        return as_markdown(diffs, title)
    return as_text(diffs, title)


# -- shared wording -----------------------------------------------------------------------------


def _money(x: float) -> str:
    return f"${x:,.2f}"


def _delta_money(x: float) -> str:
    return ("+" if x >= 0 else "-") + _money(abs(x))


def _gib(n: int) -> str:
    return f"{n / GIB:.1f} GiB"


def package_change(p: PackageChange) -> str:
    if p.kind == "added":
        return f"added {p.new}"
    if p.kind == "removed":
        return f"removed (was {p.old})"
    return f"{p.old} -> {p.new}  {p.kind}, {p.level}"


def gpu_line(b: Cost | None, a: Cost | None) -> str:
    def one(c: Cost) -> str:
        n = f"{c.count}x " if c.count > 1 else ""
        return f"{n}{c.gpu} {_money(c.price_per_hour)}/h"

    if b and a:
        d = a.price_per_hour - b.price_per_hour
        pct = f", {d / b.price_per_hour:+.0%}" if b.price_per_hour else ""
        return f"{one(b)} -> {one(a)} ({_delta_money(d)}/h{pct})"
    return one(a or b)  # type: ignore[arg-type]


def fleet_line(b: Cost | None, a: Cost | None) -> str:
    """Always-on floor (min_containers) and ceiling (max_containers), per hour and per month."""

    def one(c: Cost) -> str:
        floor = f"idle floor {_money(c.floor_per_hour)}/h ({_money(c.floor_per_hour * HOURS_PER_MONTH)}/month, min_containers={c.min_containers})"
        if c.ceiling_per_hour is None:
            return f"{floor}; no ceiling (max_containers unset)"
        return f"{floor}; ceiling {_money(c.ceiling_per_hour)}/h ({_money(c.ceiling_per_hour * HOURS_PER_MONTH)}/month, max_containers={c.max_containers})"

    if b and a and (b.floor_per_hour, b.ceiling_per_hour, b.min_containers, b.max_containers) != (a.floor_per_hour, a.ceiling_per_hour, a.min_containers, a.max_containers):
        return f"{one(b)} -> {one(a)}"
    return one(a or b)  # type: ignore[arg-type]


def per_request_line(b: Cost | None, a: Cost | None) -> str:
    def at(c: Cost) -> str:
        return f"{c.latency_s:g} s per request ({c.latency_source})"

    if b and a:
        lat = f"at {at(b)}" if (b.latency_s, b.latency_source) == (a.latency_s, a.latency_source) else f"at {at(b)} before, {at(a)} after"
        return f"{_money(b.per_1k_requests)} -> {_money(a.per_1k_requests)} ({_delta_money(a.per_1k_requests - b.per_1k_requests)}) {lat}"
    c = a or b
    assert c is not None
    return f"{_money(c.per_1k_requests)} at {at(c)}"


def headroom_line(d: ProfileDiff) -> str:
    b, a = d.headroom_before, d.headroom_after

    def one(n: int | None) -> str:
        if n is None:
            return "unknown"
        return _gib(n) + (" (does not fit)" if n < 0 else "")

    if d.status != "changed":
        return one(a if d.status == "added" else b)
    if b is not None and a is not None:
        return f"{one(b)} -> {one(a)} ({'+' if a >= b else '-'}{_gib(abs(a - b))})"
    return f"{one(b)} -> {one(a)}"


def _show_cost(d: ProfileDiff) -> bool:
    return d.status != "changed" or d.gpu_changed or d.cost_changed


def _show_headroom(d: ProfileDiff) -> bool:
    return d.headroom_before != d.headroom_after


def _summary(diffs: list[ProfileDiff]) -> str:
    n = len(diffs)
    if not n:
        return "no profile changes"
    new_errors = sum(1 for d in diffs if any(f.severity == "error" for f in d.introduced))
    fixed = sum(len(d.fixed) for d in diffs)
    parts = [f"{n} profile{'s' if n != 1 else ''} changed"]
    if new_errors:
        parts.append(f"{new_errors} with new errors")
    if fixed:
        parts.append(f"{fixed} finding{'s' if fixed != 1 else ''} fixed")
    return ", ".join(parts)


# -- text ---------------------------------------------------------------------------------------


def as_text(diffs: list[ProfileDiff], title: str) -> str:
    out = [f"kit diff: {title}", ""]
    for d in diffs:
        label = f"{d.old_path} -> {d.path}" if d.old_path else d.path
        out.append(f"{_MARK[d.status]} {label} ({d.name}){'' if d.status == 'changed' else ': ' + d.status}")
        out += text_lines(d)
        out.append("")
    out.append(_summary(diffs))
    return "\n".join(out) + "\n"


def text_lines(d: ProfileDiff) -> list[str]:
    """One profile's changes as indented lines (headings at 2 spaces, items at 4); `kit deploy`'s plan shows them too."""
    out: list[str] = []
    if d.packages:
        out.append("  packages")
        out += [f"    {p.name:<22} {package_change(p)}" for p in d.packages]
    if d.locked:
        out.append("  locked (transitive, from the lockfiles)")
        out += [f"    {p.name:<22} {package_change(p)}" for p in d.locked]
    if d.settings and d.status == "changed":
        out.append("  settings")
        out += [f"    {c.key:<22} {show(c.old)} -> {show(c.new)}" + (f"  (via {c.via})" if c.via else "") for c in d.settings]
    if d.files:
        out.append("  files changed")
        out += [f"    {f}" for f in d.files]
    rows: list[tuple[str, str]] = []
    if _show_cost(d):
        rows.append(("gpu", gpu_line(d.cost_before, d.cost_after)))
        rows.append(("fleet", fleet_line(d.cost_before, d.cost_after)))
        rows.append(("per 1,000 requests", per_request_line(d.cost_before, d.cost_after)))
    if _show_headroom(d):
        rows.append(("memory headroom", headroom_line(d)))
    if rows:
        out.append("  cost and memory")
        out += [f"    {k:<22} {v}" for k, v in rows]
    for heading, found, sign in (("findings introduced", d.introduced, "+"), ("findings fixed", d.fixed, "-")):
        if found:
            out.append(f"  {heading}")
            for f in found:
                out.append(f"    {sign} {f.severity:<7} {f.rule}: {f.summary}")
                if sign == "+":
                    out.append(f"              fix: {f.fix}")
    if d.notes:
        out.append("  notes")
        out += [f"    {n}" for n in d.notes]
    if d.rendered:
        out.append("  rendered app")
        out += [f"    {line}" for line in d.rendered.rstrip("\n").splitlines()]
    return out


# -- markdown -----------------------------------------------------------------------------------


def _cell(text: str) -> str:
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def _code(text: str) -> str:
    return f"`{text}`" if "`" not in text else text


def _packages_cell(d: ProfileDiff) -> str:
    items = []
    for p in d.packages:
        if p.kind in ("added", "removed"):
            items.append(f"{p.name} {p.kind}")
        else:
            arrow = "↑" if p.kind == "upgrade" else "↓"
            items.append(f"{p.name} {p.old} → {p.new} ({p.level} {arrow})")
    if d.locked:
        items.append(f"{len(d.locked)} transitive")
    if len(items) > _CELL_PACKAGES:
        items = [*items[:_CELL_PACKAGES], f"+{len(items) - _CELL_PACKAGES} more"]
    return "<br>".join(_cell(i) for i in items) or "—"


def _findings_cell(d: ProfileDiff) -> str:
    parts = []
    for sev in ("error", "warning", "info"):
        n = sum(1 for f in d.introduced if f.severity == sev)
        if n:
            parts.append(f"+{n} {sev}{'s' if n > 1 and sev != 'info' else ''}")
    if d.fixed:
        parts.append(f"{len(d.fixed)} fixed")
    return ", ".join(parts) or "—"


def _short_gpu(c: Cost | None) -> str:
    if c is None:
        return "?"
    return f"{c.count}x {c.gpu}" if c.count > 1 else c.gpu


def _table(head: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(" --- " for _ in head) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return lines


def as_markdown(diffs: list[ProfileDiff], title: str) -> str:
    out = [f"### kit diff: {_cell(title)}", ""]
    if not diffs:
        out.append("No profile changes.")
        return "\n".join(out) + "\n"
    out.append(_summary(diffs) + ".")
    out.append("")
    rows = []
    for d in diffs:
        b, a = d.cost_before, d.cost_after
        gpu = f"{_short_gpu(b)} → {_short_gpu(a)}" if d.status == "changed" and d.gpu_changed else _short_gpu(a or b)
        if _show_cost(d) and b and a:
            cost = f"{_money(b.per_1k_requests)} → {_money(a.per_1k_requests)}"
        elif _show_cost(d):
            cost = _money((a or b).per_1k_requests) if (a or b) else "?"  # type: ignore[union-attr]
        else:
            cost = "—"
        head = d.headroom_after if d.headroom_after is not None else d.headroom_before
        memory = "—"
        if _show_headroom(d):
            memory = headroom_line(d).replace(" -> ", " → ")
        elif head is not None:
            memory = _gib(head)
        status = "" if d.status == "changed" else f" ({d.status})"
        rows.append([f"{_code(d.path)}{status}", _packages_cell(d), _cell(gpu), _cell(cost), _cell(memory), _findings_cell(d)])
    out += _table(["Profile", "Packages", "GPU", "Cost / 1k requests", "Memory headroom", "Findings"], rows)
    out.append("")
    for d in diffs:
        out += _markdown_details(d)
    return "\n".join(out) + "\n"


def _markdown_details(d: ProfileDiff) -> list[str]:
    label = f"{d.old_path} → {d.path}" if d.old_path else d.path
    out = ["<details>", f"<summary><code>{_html(label)}</code> ({_html(d.name)}): {d.status}</summary>", ""]
    if d.packages or d.locked:
        rows = [[_code(p.name), p.old or "—", p.new or "—", _kind(p)] for p in d.packages]
        rows += [[_code(p.name) + " (transitive)", p.old or "—", p.new or "—", _kind(p)] for p in d.locked]
        out += ["**Packages**", "", *_table(["Package", "Before", "After", "Change"], rows), ""]
    if d.settings and d.status == "changed":
        rows = [[_code(c.key), _cell(_code(show(c.old))), _cell(_code(show(c.new)))] for c in d.settings]
        if any(c.via for c in d.settings):
            rows = [[*r, _code(c.via) if c.via else "this file"] for r, c in zip(rows, d.settings)]
        out += ["**Settings**", "", *_table(["Key", "Before", "After", *(["Set in"] if any(c.via for c in d.settings) else [])], rows), ""]
    if d.files:
        out += ["**Files changed**", "", *[f"- {_code(f)}" for f in d.files], ""]
    rows = []
    if _show_cost(d):
        rows.append(["GPU", _cell(gpu_line(d.cost_before, d.cost_after).replace(" -> ", " → "))])
        rows.append(["Fleet", _cell(fleet_line(d.cost_before, d.cost_after).replace(" -> ", " → "))])
        rows.append(["Per 1,000 requests", _cell(per_request_line(d.cost_before, d.cost_after).replace(" -> ", " → "))])
    if _show_headroom(d):
        rows.append(["Memory headroom", _cell(headroom_line(d).replace(" -> ", " → "))])
    if rows:
        out += ["**Cost and memory**", "", *_table(["", "Change"], rows), ""]
    for heading, found in (("Findings introduced", d.introduced), ("Findings fixed", d.fixed)):
        if found:
            out += [f"**{heading}**", "", *[_finding_item(f, fix=heading.endswith("introduced")) for f in found], ""]
    if d.notes:
        out += ["**Notes**", "", *[f"- {n}" for n in d.notes], ""]
    if d.rendered:
        fence = "````" if "```" in d.rendered else "```"
        out += ["**Rendered app**", "", f"{fence}diff", d.rendered.rstrip("\n"), fence, ""]
    out += ["</details>", ""]
    return out


def _kind(p: PackageChange) -> str:
    return p.kind if p.level is None else f"{p.kind} ({p.level})"


def _finding_item(f: Finding, *, fix: bool) -> str:
    text = f"- **{f.severity}** `{f.rule}`: {f.summary}"
    if fix:
        text += f"<br>fix: {f.fix}"
    return text


def _html(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


# -- json ---------------------------------------------------------------------------------------


def as_json(diffs: list[ProfileDiff], title: str) -> str:
    doc: dict[str, Any] = {"version": JSON_VERSION, "title": title, "changed": len(diffs), "profiles": [d.as_dict() for d in diffs]}
    return json.dumps(doc, indent=2) + "\n"
