"""The command line: the only module that knows about terminals, colours and exit codes."""

from __future__ import annotations

import sys
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer

from kit.errors import EXIT_FINDINGS, EXIT_OK, EXIT_USAGE, KitError

EXIT_CODES = """\
Exit codes: 0 clean; 1 findings of severity error (warnings too with --strict), or an operation
that failed; 2 bad input or usage (a profile that does not parse or validate, a missing file).
"""

app = typer.Typer(
    name="kit",
    help="Known-good LLM inference stacks on Modal: validated profiles, lockfiles, rendered apps, deploys.\n\n" + EXIT_CODES,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


class Format(str, Enum):
    text = "text"
    json = "json"
    github = "github"


ProfilesArg = Annotated[
    Optional[list[Path]],
    typer.Argument(help="Profile files; default: every profiles/*.toml under the current directory.", show_default=False),
]


def _fail(exc: KitError) -> None:
    from kit.output import print_error

    print_error(exc)
    raise typer.Exit(exc.exit_code)


def _profiles(paths: list[Path] | None) -> list[Path]:
    from kit.load import discover

    if paths:
        return list(paths)
    return discover(Path.cwd())


@app.command()
def check(
    profiles: ProfilesArg = None,
    format: Annotated[Format, typer.Option("--format", "-f", help="text for people, json (stable, see docs/check-json.md), github (workflow annotations).")] = Format.text,
    strict: Annotated[bool, typer.Option("--strict", help="Warnings fail too (exit 1).")] = False,
) -> None:
    """Validate profiles: versions, APIs, image and hardware, before anything is built."""
    from kit import output
    from kit.check import check as run_check
    from kit.load import load

    try:
        paths = _profiles(profiles)
    except KitError as exc:
        _fail(exc)
    reports, bad = [], []
    for path in paths:
        try:
            loaded = load(path)
            from kit.lockfile import closure_for

            reports.append(run_check(loaded, closure_for(loaded)))
        except KitError as exc:
            bad.append(exc)
    output.print_reports(reports, bad, format.value, strict=strict)
    if bad:
        raise typer.Exit(EXIT_USAGE)
    raise typer.Exit(EXIT_FINDINGS if any(r.failed(strict) for r in reports) else EXIT_OK)


@app.command()
def schema() -> None:
    """Print the profile's JSON Schema (for taplo, VS Code and other editors)."""
    import json

    from kit.docs import profile_json_schema

    sys.stdout.write(json.dumps(profile_json_schema(), indent=2) + "\n")


@app.command()
def rules(
    format: Annotated[Format, typer.Option("--format", "-f", help="text or json.")] = Format.text,
) -> None:
    """List every compatibility rule: id, severity, what it catches."""
    from kit import output
    from kit.rules import all_rules

    try:
        output.print_rules(list(all_rules()), format.value)
    except KitError as exc:
        _fail(exc)


def main() -> None:
    try:
        app()
    except KitError as exc:  # anything a command did not catch itself
        from kit.output import print_error

        print_error(exc)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        sys.exit(130)
