"""The command line: the only module that knows about terminals, colours and exit codes."""

from __future__ import annotations

import sys
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer
from typer.core import TyperCommand, TyperGroup

from kit.errors import EXIT_FINDINGS, EXIT_OK, EXIT_USAGE, KitError, OperationError, UsageError

EXIT_CODES = """\
Exit codes: 0 clean; 1 findings of severity error (warnings too with --strict), or an operation
that failed; 2 bad input or usage (a profile that does not parse or validate, a missing file).
"""

def _plain_types(command) -> None:  # type: ignore[no-untyped-def]
    """Help shows a parameter's metavar and its choices, never a Python type (`<list[Path]>`, `<int range>`)."""
    for param in command.params:
        display = getattr(param, "display_type", None)  # typer >= 0.17 prints types in help
        descriptor = getattr(param, "type_descriptor", None)
        if display is not None and not (descriptor is not None and descriptor.is_choice):
            param.display_type = lambda ctx: ""


class _KitGroup(TyperGroup):
    """The one place a KitError becomes a message and an exit code, for every command."""

    def get_command(self, ctx, cmd_name):  # type: ignore[no-untyped-def]
        from kit.cli_examples import EXAMPLES

        command = super().get_command(ctx, cmd_name)
        if command is not None and cmd_name in EXAMPLES and not command.epilog:
            # \b keeps click from re-wrapping the example lines into one paragraph.
            command.epilog = "Examples:\n\n\b\n" + EXAMPLES[cmd_name]
            _plain_types(command)
        return command

    def invoke(self, ctx):  # type: ignore[no-untyped-def]
        try:
            return super().invoke(ctx)
        except KitError as exc:
            from kit.output import print_error

            print_error(exc)
            ctx.exit(exc.exit_code)


app = typer.Typer(
    cls=_KitGroup,
    name="kit",
    help="Known-good LLM inference stacks on Modal: validated profiles, lockfiles, rendered apps, deploys.\n\n" + EXIT_CODES,
    no_args_is_help=True,
    add_completion=True,  # --install-completion / --show-completion for bash, zsh, fish, PowerShell
    context_settings={"help_option_names": ["-h", "--help"]},
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


def _version(value: bool) -> None:
    if value:
        from kit import __version__

        sys.stdout.write(f"kit {__version__}\n")
        raise typer.Exit(EXIT_OK)


@app.callback()
def _root(
    version: Annotated[Optional[bool], typer.Option("--version", "-V", callback=_version, is_eager=True, help="Print kit's version and exit.")] = None,
) -> None:
    """Known-good LLM inference stacks on Modal: validated profiles, lockfiles, rendered apps, deploys."""


class Format(str, Enum):
    text = "text"
    json = "json"
    github = "github"


class TextOrJson(str, Enum):
    text = "text"
    json = "json"


ProfilesArg = Annotated[
    Optional[list[Path]],
    typer.Argument(metavar="PROFILE", help="Profile files; default: every profiles/*.toml under the current directory.", show_default=False),
]


def _json_out(doc: dict) -> None:
    import json

    sys.stdout.write(json.dumps(doc, indent=2) + "\n")


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
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Show why, fix and sources of info findings too.")] = False,
) -> None:
    """Validate profiles: versions, APIs, image and hardware, before anything is built."""
    from kit import output
    from kit.check import check as run_check
    from kit.load import load

    paths = _profiles(profiles)
    reports, bad = [], []
    for path in paths:
        try:
            loaded = load(path)
            from kit.lockfile import closure_for, closure_note

            reports.append(run_check(loaded, closure_for(loaded), closure_note(loaded)))
        except KitError as exc:
            bad.append(exc)
    output.print_reports(reports, bad, format.value, strict=strict, verbose=verbose)
    if bad:
        raise typer.Exit(EXIT_USAGE)
    raise typer.Exit(EXIT_FINDINGS if any(r.failed(strict) for r in reports) else EXIT_OK)


@app.command()
def lock(
    profiles: ProfilesArg = None,
    check_only: Annotated[bool, typer.Option("--check", help="Only say whether each lockfile exists and is fresh (exit 1 if not); no network.")] = False,
    upgrade_package: Annotated[
        Optional[list[str]], typer.Option("--upgrade-package", "-P", help="Move this package to its newest allowed version, keeping every other one (repeatable).")
    ] = None,
    upgrade: Annotated[bool, typer.Option("--upgrade", "-U", help="Resolve from scratch instead of starting from the existing lockfile.")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Show uv's own output.")] = False,
    format: Annotated[TextOrJson, typer.Option("--format", "-f", help="text, or json (with --check): one object per lockfile.")] = TextOrJson.text,
) -> None:
    """Resolve each profile's whole dependency closure with uv into profiles/<name>.lock (hashes, deterministic)."""
    from kit.load import load

    if check_only and (upgrade_package or upgrade):
        raise UsageError("--check only reads lockfiles; it cannot be combined with --upgrade or --upgrade-package")
    paths = _profiles(profiles)
    if check_only:
        from kit.lockfile import status

        bad, rows = 0, []
        for path in paths:
            try:
                loaded = load(path)
            except KitError as exc:
                from kit.output import print_error

                print_error(exc)
                raise typer.Exit(EXIT_USAGE) from None
            st = status(loaded)
            rel = loaded.rel(st.path)
            fix = None if st.state == "fresh" else f"kit lock {loaded.display}"
            rows.append({"profile": loaded.display, "lockfile": rel, "state": st.state, "reason": st.reason or None, "fix": fix})
            if st.state == "fresh":
                text = f"{rel}: fresh\n"
            else:
                bad += 1
                text = f"{rel}: {st.state}: {st.reason} (run `{fix}`)\n"
            if format is TextOrJson.text:
                sys.stdout.write(text)
        if format is TextOrJson.json:
            _json_out({"version": 1, "fresh": len(rows) - bad, "not_fresh": bad, "lockfiles": rows})
        raise typer.Exit(EXIT_FINDINGS if bad else EXIT_OK)
    if format is TextOrJson.json:
        raise UsageError("--format json goes with --check", fix="kit lock --check --format json")

    from kit.output import print_error
    from kit.resolve import IndexUnreachable, lock_profile

    code = EXIT_OK
    progress = sys.stderr.isatty() and len(paths) > 1
    for i, path in enumerate(paths, 1):
        if progress:
            sys.stderr.write(f"[{i}/{len(paths)}] locking {path} ...\n")
            sys.stderr.flush()
        try:
            loaded = load(path)
            result = lock_profile(loaded, upgrade=upgrade_package or (), upgrade_all=upgrade, verbose=verbose)
        except IndexUnreachable as exc:
            print_error(exc)
            raise typer.Exit(exc.exit_code) from None
        except KitError as exc:
            print_error(exc)
            code = max(code, exc.exit_code)
            continue
        verb = "written" if result.written else "unchanged"
        extra = f"; builds from source: {', '.join(result.build_from_source)}" if result.build_from_source else ""
        sys.stdout.write(f"{result.display}: {verb} ({result.packages} packages{extra})\n")
        for change in result.changes:
            sys.stdout.write(f"  {change}\n")
        for note in result.notes:
            sys.stdout.write(f"  note: {note}\n")
    raise typer.Exit(code)


@app.command()
def init(
    path: Annotated[Optional[Path], typer.Argument(metavar="PATH", help="The new profile, e.g. profiles/my-app.toml.", show_default=False)] = None,
    gpu: Annotated[Optional[str], typer.Option("--gpu", help="GPU type (kit check lists the known ones); default: the example's.")] = None,
    model: Annotated[Optional[str], typer.Option("--model", help="Hugging Face model id (org/name); default: the example's.")] = None,
    example: Annotated[Optional[str], typer.Option("--example", "-e", help="The bundled example to start from (--list shows them); default: one for the GPU, else the newest vLLM stack.")] = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite PATH, and keep it even when kit check finds errors.")] = False,
    list_: Annotated[bool, typer.Option("--list", help="List the bundled examples and exit.")] = False,
) -> None:
    """Create a profile from a bundled example, for a GPU and a model, and check it (exit 1: it has errors and was not kept)."""
    from kit import output, scaffold

    if list_:
        for name, desc in scaffold.examples().items():
            sys.stdout.write(f"{name:<28} {desc}\n")
        raise typer.Exit(EXIT_OK)
    if path is None:
        raise UsageError("name the new profile", fix="kit init profiles/my-app.toml")
    created = scaffold.create(path, example=example, gpu=gpu, model=model, force=force)
    from kit.check import check as run_check
    from kit.load import load

    try:
        report = run_check(load(created.path))
    except KitError:
        scaffold.undo(created)
        raise
    output.print_reports([report], [], "text")
    if report.failed(False) and not force:
        scaffold.undo(created)
        sys.stderr.write(f"{created.path} not written: kit check finds errors for this combination (above); choose another GPU or model, or pass --force to keep it\n")
        raise typer.Exit(EXIT_FINDINGS)
    extra = f" and {', '.join(str(p) for p in created.copied)}" if created.copied else ""
    sys.stdout.write(f"wrote {created.path}{extra} from the example {created.example!r}; next: kit lock {created.path}\n")


@app.command()
def schema() -> None:
    """Print the profile's JSON Schema (for taplo, VS Code and other editors)."""
    import json

    from kit.docs import profile_json_schema

    sys.stdout.write(json.dumps(profile_json_schema(), indent=2) + "\n")


@app.command()
def rules(
    # No github format: annotations point at a profile's line, and a rule list has none.
    format: Annotated[TextOrJson, typer.Option("--format", "-f", help="text or json.")] = TextOrJson.text,
) -> None:
    """List every compatibility rule: id, severity, what it catches."""
    from kit import output
    from kit.rules import all_rules

    output.print_rules(list(all_rules()), format.value)


@app.command()
def render(
    profile: Annotated[Path, typer.Argument(metavar="PROFILE", help="The profile file to render.", show_default=False)],
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Directory to write into; default: build/<profile name>.")] = None,
    format: Annotated[TextOrJson, typer.Option("--format", "-f", help="text, or json: the directory, files, bundle hash and lock state.")] = TextOrJson.text,
) -> None:
    """Render a profile into a Modal app bundle: app.py, requirements.txt, manifest.json (+ schema.json).

    Exit 1 when kit cannot render the profile's engine version (no structured-output API data for it).
    """
    from kit.load import load
    from kit.render import default_out_dir, render as render_bundle, write

    loaded = load(profile)
    bundle = render_bundle(loaded)
    target = out if out is not None else default_out_dir(loaded)
    write(bundle, target)
    locked = bundle.manifest["lock_hash"] is not None
    if not locked:
        sys.stderr.write(f"warning: {loaded.display} has no lockfile, so the image is not locked: it installs the pins and resolves the rest at build time\n  fix: run `kit lock {loaded.display}`\n")
    if format is TextOrJson.json:
        _json_out({"version": 1, "profile": loaded.display, "out": str(target), "files": list(bundle.files), "bundle_hash": bundle.hash, "locked": locked})
    else:
        sys.stdout.write(f"{target}: {', '.join(bundle.files)} (bundle {bundle.hash[:12]})\n")


class DiffFormat(str, Enum):
    text = "text"
    markdown = "markdown"
    json = "json"


# click's UsageError, whether typer vendors click or not (BadParameter derives from it).
_ClickUsageError = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "UsageError")


class _DiffCommand(TyperCommand):
    """`kit diff` keeps terraform's exit codes, so a usage error (click's 2) must exit 1 there."""

    def make_context(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        try:
            return super().make_context(*args, **kwargs)
        except _ClickUsageError as exc:
            exc.exit_code = EXIT_FINDINGS
            raise

    def invoke(self, ctx):  # type: ignore[no-untyped-def]
        try:
            return super().invoke(ctx)
        except _ClickUsageError as exc:  # values typer converts late (enums)
            exc.exit_code = EXIT_FINDINGS
            raise


DIFF_EXIT_CODES = """\
Exit codes: 0 success, changes or not; 1 error, bad input included (a profile that does not load,
an unknown git ref). With --detailed-exitcode (terraform plan's): 0 no change, 2 changes, 1 error.
"""


@app.command(cls=_DiffCommand, help="Show what a profile change means: packages, lockfile, GPU cost, memory headroom, findings.\n\n"
             "Compares resolved profiles (after `extends` and defaults): `kit diff OLD NEW` for two files, or "
             "`kit diff --git BASE` for every profile whose resolved form or lockfile differs between a git ref "
             "and the working tree (no checkout; a parent's change shows in every child). Cost per 1,000 requests "
             "is GPU price x latency, one request at a time: the p50 latency at concurrency 1 that `kit bench APP@rN` "
             "measured on a deployed revision of the profile's app with the same GPU and model (kit's local history, "
             "read only), else the assumed smoke.latency_budget_s; --latency overrides both.\n\n" + DIFF_EXIT_CODES)
def diff(
    files: Annotated[Optional[list[Path]], typer.Argument(metavar="OLD NEW", help="OLD NEW: two profile files.", show_default=False)] = None,
    git: Annotated[Optional[str], typer.Option("--git", metavar="BASE", help="Compare the working tree with this git ref (e.g. origin/main).")] = None,
    format: Annotated[DiffFormat, typer.Option("--format", "-f", help="text, markdown (a PR comment) or json.")] = DiffFormat.text,
    rendered: Annotated[bool, typer.Option("--rendered", help="Include the rendered app's unified diff.")] = False,
    latency: Annotated[Optional[float], typer.Option("--latency", metavar="SECONDS", min=0.001, help="Latency per request for the cost figures, instead of the measured or assumed one.")] = None,
    detailed_exitcode: Annotated[bool, typer.Option("--detailed-exitcode", "--exit-code", help="Exit 2 when something changed, 0 when nothing did (as terraform plan -detailed-exitcode).")] = False,
) -> None:
    from kit.errors import EXIT_FINDINGS as EXIT_ERROR
    from kit.output import print_error

    measured = None
    try:
        from kit.diff import LocalBench, diff_files, diff_ref
        from kit.diff_format import render

        if git is not None and files:
            raise UsageError("give either OLD NEW or --git BASE, not both", fix="kit diff --git origin/main, or kit diff old.toml new.toml")
        if latency is None:
            from kit.settings import Settings

            measured = LocalBench(Settings().state_dir)
        if git is not None:
            diffs, title = diff_ref(Path.cwd(), git, rendered=rendered, latency_s=latency, measured=measured), f"{git} -> working tree"
        elif files and len(files) == 2:
            diffs, title = diff_files(files[0], files[1], rendered=rendered, latency_s=latency, measured=measured), f"{files[0]} -> {files[1]}"
            diffs = [d for d in diffs if d.changed]
        else:
            raise UsageError("kit diff needs two profile files, or --git BASE", fix="kit diff old.toml new.toml, or kit diff --git origin/main")
        report = render(diffs, format.value, title)
        if format is DiffFormat.text:
            from kit.output import printable

            report = printable(report)  # file names and values reach a terminal here
        sys.stdout.write(report)
    except KitError as exc:
        print_error(exc)
        raise typer.Exit(EXIT_ERROR) from None
    finally:
        if measured is not None:
            measured.close()
    raise typer.Exit(2 if diffs and detailed_exitcode else EXIT_OK)


@app.command()
def fmt(
    profiles: ProfilesArg = None,
    check: Annotated[bool, typer.Option("--check", help="Change nothing; exit 1 when a file is not in canonical layout, and name it.")] = False,
    show_diff: Annotated[bool, typer.Option("--diff", help="Print what would change, as a unified diff (implies --check).")] = False,
    format: Annotated[TextOrJson, typer.Option("--format", "-f", help="text, or json: the files that changed (or would), and the invalid ones.")] = TextOrJson.text,
) -> None:
    """Rewrite profiles in kit's one canonical layout (key order, spacing, quoting), keeping comments."""
    import difflib

    from kit.fmt import format_file

    paths = _profiles(profiles)
    check = check or show_diff
    changed, bad = [], []
    for path in paths:
        try:
            old, new = format_file(path, write=not check)
        except KitError as exc:
            bad.append(exc)
            continue
        if old != new:
            try:
                path = path.resolve().relative_to(Path.cwd().resolve())
            except ValueError:
                pass
            changed.append(path)
            if format is TextOrJson.json:
                continue
            if show_diff:
                sys.stdout.writelines(difflib.unified_diff(old.splitlines(keepends=True), new.splitlines(keepends=True), f"{path}", f"{path} (kit fmt)"))
            sys.stdout.write(f"{'would reformat' if check else 'reformatted'} {path}\n")
    if format is TextOrJson.json:
        from kit.output import error_dict

        key = "would_reformat" if check else "reformatted"
        _json_out({"version": 1, key: [str(p) for p in changed], "canonical": len(paths) - len(changed) - len(bad), "invalid": [error_dict(e) for e in bad]})
    else:
        for exc in bad:
            from kit.output import print_error

            print_error(exc)
        if not check:
            sys.stdout.write(f"{len(changed)} reformatted, {len(paths) - len(changed) - len(bad)} already canonical\n")
    if bad:
        raise typer.Exit(max(exc.exit_code for exc in bad))  # 2 bad input; 1 a write that failed
    raise typer.Exit(EXIT_FINDINGS if check and changed else EXIT_OK)


# --- deploy, history, status, rollback (kit/deploy.py; Modal only through kit/target.py) ---------


def _history(readonly: bool):
    """The deploy history in the configured store (kit.state); None for a read-only look when none exists yet."""
    from kit.state import open_history

    return open_history(readonly=readonly)


def _damaged(hist) -> bool:
    """Name on stderr each stored revision kit could not read (the others were shown); True if any."""
    for bad in hist.damaged if hist is not None else []:
        sys.stderr.write(f"warning: {bad}; the other revisions are shown\n")
    return bool(hist is not None and hist.damaged)


def _app_name(app_arg: Optional[str], history) -> str:
    from kit.errors import UsageError

    if app_arg and app_arg.endswith(".toml") and Path(app_arg).is_file():
        from kit.load import load

        return load(Path(app_arg)).profile.app.name
    if app_arg:
        return app_arg
    apps = history.apps() if history is not None else []
    if len(apps) == 1:
        return apps[0]
    raise UsageError(
        "name the app" + (f": kit's history has {', '.join(apps)}" if apps else ": kit's history has no revisions yet"),
        fix="pass the Modal app name (or its profile file) as the argument",
    )


def _rev_number(value: Optional[str]) -> Optional[int]:
    from kit.errors import UsageError

    if value is None:
        return None
    raw = value.lower().removeprefix("r")
    # ASCII digits only, and no larger than a SQLite integer (a larger one overflowed the query).
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 19 or int(raw) > 2**63 - 1:
        raise UsageError(f"--to {value!r} is not a revision number", fix="write --to 3 or --to r3 (see `kit history`)")
    return int(raw)


def _context(history):
    from kit import deploy_view as view
    from kit.deploy import Context
    from kit.settings import Settings
    from kit.target import get_target

    settings = Settings()
    return Context(history=history, target=get_target(), deploy_timeout=settings.deploy_timeout_s, modal_timeout=settings.modal_timeout_s, echo=view.echo, on_output=view.build_output)


@app.command()
def deploy(
    profile: Annotated[Path, typer.Argument(metavar="PROFILE", help="The profile to deploy.", show_default=False)],
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Check, verify the lock, render and print the plan; deploy nothing. Needs no Modal account.")] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Deploy without asking (required when there is no terminal).")] = False,
    atomic: Annotated[Optional[bool], typer.Option("--atomic/--no-atomic", help="Roll back to the last good revision automatically when the smoke test fails. Default: on without a terminal, off with one.", show_default=False)] = None,
    break_lock: Annotated[bool, typer.Option("--break-lock", help="Break the app's deploy lock left by a process that no longer runs (its pending revision is marked failed).")] = False,
    format: Annotated[TextOrJson, typer.Option("--format", "-f", help="Plan as text or json (json with --dry-run).")] = TextOrJson.text,
) -> None:
    """Deploy a profile to Modal: check, lock, render, plan, deploy, smoke-test, record (exit 1: failed)."""
    from kit import deploy_view as view
    from kit.deploy import plan as make_plan
    from kit.deploy import prepare, require_credentials
    from kit.deploy import deploy as run_deploy
    from kit.errors import OperationError, UsageError
    from kit.load import load

    interactive = sys.stdin.isatty()
    history = None
    if not dry_run:
        # Both before any work that takes time: a deploy that cannot happen says so at once.
        from kit.target import get_target

        require_credentials(get_target())
        if not yes and not interactive:
            raise UsageError("no terminal to confirm the deploy on", fix="pass --yes to deploy without a question (CI), or --dry-run to only see the plan")
    loaded = load(profile)
    prep = prepare(loaded)
    history = _history(readonly=dry_run)
    plan = make_plan(prep, history)
    if format is TextOrJson.json:
        view.print_plan_json(plan)
    else:
        view.print_plan(plan, dry_run=dry_run)
    if dry_run:
        raise typer.Exit(EXIT_FINDINGS if plan.blockers else EXIT_OK)
    if plan.blockers:
        raise OperationError(f"{len(plan.blockers)} blocker(s) stop this deploy (listed above); nothing was deployed", fix="fix them, then run `kit deploy` again")
    if not yes and not typer.confirm(f"Deploy {loaded.display} to {plan.app}?", default=False):
        sys.stderr.write("not deployed\n")
        raise typer.Exit(EXIT_OK)
    outcome = run_deploy(prep, _context(history), atomic=(not interactive) if atomic is None else atomic, break_lock=break_lock)
    view.print_outcome(outcome)
    raise typer.Exit(EXIT_OK if outcome.ok else EXIT_FINDINGS)


@app.command()
def history(
    app_name: Annotated[Optional[str], typer.Argument(metavar="[APP]", help="Modal app name (or its profile file); default: every app.", show_default=False)] = None,
    format: Annotated[TextOrJson, typer.Option("--format", "-f", help="text (a table) or json.")] = TextOrJson.text,
    bench: Annotated[bool, typer.Option("--bench", help="List every `kit bench` run stored with the revisions, with its levels, instead of the revisions.")] = False,
) -> None:
    """List the revisions kit deployed: status, who, when, bundle, Modal version, smoke result, latest bench figures."""
    from kit import deploy_view as view

    hist = _history(readonly=True)
    app_filter = _app_name(app_name, hist) if app_name else None
    if bench:
        view.print_bench_runs(hist.bench_runs(app_filter) if hist is not None else [], format.value)
    else:
        revs = hist.revisions(app_filter) if hist is not None else []
        view.print_history(revs, format.value, bench=hist.latest_bench(app_filter) if hist is not None else {})
    if _damaged(hist):
        raise typer.Exit(EXIT_FINDINGS)


@app.command()
def status(
    app_name: Annotated[Optional[str], typer.Argument(metavar="[APP]", help="Modal app name (or its profile file); default: every app.", show_default=False)] = None,
    format: Annotated[TextOrJson, typer.Option("--format", "-f", help="text or json.")] = TextOrJson.text,
) -> None:
    """Show each app's current revision and whether Modal's history agrees (exit 1: drift)."""
    from kit import deploy_view as view
    from kit.deploy import status as app_status
    from kit.settings import Settings
    from kit.target import get_target

    hist = _history(readonly=True)
    if hist is None:
        from kit.errors import UsageError
        from kit.state import locate

        raise UsageError(f"kit has no deploy history yet ({locate().shown})", fix="deploy with `kit deploy PROFILE`, or point KIT_STATE_URL / KIT_STATE_DIR at where the history is (`kit state`)")
    apps = [_app_name(app_name, hist)] if app_name else hist.apps()
    statuses = [app_status(a, hist, get_target(), Settings().modal_timeout_s) for a in apps]
    view.print_status(statuses, format.value)
    raise typer.Exit(EXIT_FINDINGS if any(s.drift for s in statuses) or _damaged(hist) else EXIT_OK)


@app.command()
def rollback(
    app_name: Annotated[Optional[str], typer.Argument(metavar="[APP]", help="Modal app name (or its profile file); default: the only app in the history.", show_default=False)] = None,
    to: Annotated[Optional[str], typer.Option("--to", help="Revision to return to (3 or r3); default: the previous good one.", show_default=False)] = None,
    break_lock: Annotated[bool, typer.Option("--break-lock", help="Break a deploy lock left by a process that no longer runs.")] = False,
) -> None:
    """Redeploy a stored revision's bundle (never the working copy), recorded as a new revision (exit 1: failed)."""
    from kit import deploy_view as view
    from kit.deploy import require_credentials
    from kit.deploy import rollback as run_rollback
    from kit.target import get_target

    number = _rev_number(to)
    require_credentials(get_target())
    hist = _history(readonly=False)
    outcome = run_rollback(_app_name(app_name, hist), _context(hist), to=number, break_lock=break_lock)
    view.print_outcome(outcome)
    raise typer.Exit(EXIT_OK if outcome.ok else EXIT_FINDINGS)


# --- bench (kit/bench.py) ------------------------------------------------------------------------


@app.command()
def bench(
    target: Annotated[str, typer.Argument(metavar="TARGET", help="A URL (kit's /generate + /health, or OpenAI-compatible with --openai), or a deployed app: APP or APP@r3 (its results are stored with that revision in kit's history).", show_default=False)],
    openai: Annotated[bool, typer.Option("--openai", help="The URL is an OpenAI-compatible server: POST /v1/chat/completions (streamed), GET /v1/models.")] = False,
    model: Annotated[Optional[str], typer.Option("--model", help="OpenAI: the served model name; default: the first of GET /v1/models.")] = None,
    concurrency: Annotated[str, typer.Option("--concurrency", "-c", help="Comma-separated levels of requests in flight at once.")] = "1,4,16,32",
    requests: Annotated[Optional[int], typer.Option("--requests", "-n", min=1, help="Requests per level; default: max(8, 2 x concurrency).")] = None,
    profile: Annotated[Optional[Path], typer.Option("--profile", help="Take the prompt, max_tokens, schema and GPU from this profile's [smoke] and [gpu].")] = None,
    prompt: Annotated[Optional[str], typer.Option("--prompt", help="Prompt text (overrides the profile's).")] = None,
    schema: Annotated[Optional[Path], typer.Option("--schema", help="JSON schema file the output is constrained to and validated against.")] = None,
    max_tokens: Annotated[Optional[int], typer.Option("--max-tokens", min=1, help="Output token limit per request; default: the profile's, else 256.")] = None,
    temperature: Annotated[Optional[float], typer.Option("--temperature", min=0.0, max=2.0, help="Sampling temperature; default: the server's.")] = None,
    gpu: Annotated[Optional[str], typer.Option("--gpu", help="GPU type serving the target, for the cost column (e.g. H200); default: the profile's.")] = None,
    gpu_count: Annotated[Optional[int], typer.Option("--gpu-count", min=1, help="GPUs per container; default: the profile's, else 1.")] = None,
    timeout: Annotated[float, typer.Option("--timeout", min=1.0, max=3600.0, help="Seconds one request may take.")] = 120.0,
    warmup_timeout: Annotated[float, typer.Option("--warmup-timeout", min=1.0, max=3600.0, help="Seconds the health check and the warm-up request may take (a cold start).")] = 900.0,
    warmup: Annotated[bool, typer.Option("--warmup/--no-warmup", help="Send one request before the sweep, not counted.")] = True,
    format: Annotated[TextOrJson, typer.Option("--format", "-f", help="text (a table) or json.")] = TextOrJson.text,
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="Also write the JSON report to this file.")] = None,
) -> None:
    """Measure a served model: a sweep over concurrency with latency, tokens/s, requests/s, strict-JSON share and cost (exit 1: requests failed; 2: the results of a deployed revision could not be stored, though printed)."""
    import json

    from kit import bench as b

    try:
        levels = tuple(int(v) for v in concurrency.split(",") if v.strip())
    except ValueError:
        raise UsageError(f"--concurrency {concurrency!r} is not a list of numbers", fix="write e.g. --concurrency 1,4,16,32")
    if output is not None:
        _check_writable(output)  # now, not after a sweep of many minutes whose figures would then be lost
    revision = None  # (app, number) when the target is a kit deployment: the results are stored with it
    url, app_name, number = b.split_target(target)
    work = b.Workload()
    if url is not None:
        ep = b.Endpoint(base_url=url, protocol="openai" if openai else "kit", model=model)
    else:
        hist = _history(readonly=True)
        try:
            rev = (hist.get(app_name, number) if number is not None else hist.current(app_name)) if hist is not None else None
        finally:
            if hist is not None:
                hist.close()  # not held during the sweep: the run is stored through a new, writable open
        if rev is None:
            which = f"r{number}" if number is not None else "a deployed revision"
            raise UsageError(f"kit's history has no {which} of {app_name!r}", fix="see `kit history`, or pass the endpoint's URL")
        revision = (rev.app, rev.number)
        ep = b.endpoint_from_revision(rev)
        ep.model = model or ep.model
        work = b.workload_from_profile(rev.profile, rev.profile_texts)
    if profile is not None:
        from kit.load import load

        loaded = load(profile)
        work = b.workload_from_profile(loaded.profile.model_dump(mode="json", by_alias=True), loaded.texts)
        ep.gpu = ep.gpu or loaded.profile.gpu.type
        ep.gpu_count = loaded.profile.gpu.count if gpu_count is None else ep.gpu_count
    if prompt is not None:
        work.prompt = prompt
    if schema is not None:
        from kit.files import read_text

        text = read_text(schema, error=UsageError)
        try:
            work.schema = json.loads(text)
        except (ValueError, RecursionError) as exc:
            raise UsageError(f"cannot read the schema {schema}: {exc or 'nested too deeply'}", key="--schema", fix="pass a JSON schema file") from None
    work.max_tokens = max_tokens or work.max_tokens
    work.temperature = temperature
    ep.gpu = gpu or ep.gpu
    ep.gpu_count = gpu_count or ep.gpu_count
    price = b.gpu_price(ep.gpu)
    report = _run_bench(b, ep, work, levels, requests, timeout, warmup_timeout, warmup, price, show=format == TextOrJson.text)
    if format == TextOrJson.text:
        sys.stdout.write(b.format_text(report))  # first: whatever happens to the history, the figures are out
        sys.stdout.flush()
    stored, store_error = _store_bench(b, report, revision, target)
    data = json.dumps({**report.as_dict(), "history": stored}, indent=2)
    write_error = None
    if output is not None:
        try:
            from kit.files import write_atomic

            write_atomic(output, data + "\n")
        except OSError as exc:
            write_error = OperationError(f"cannot write {output}: {exc.strerror or exc}", key="--output", fix="the report is printed above as JSON; save it from there")
    if format == TextOrJson.json or write_error is not None:
        sys.stdout.write(data + "\n")  # with -o unwritable, the report still reaches the terminal
    if format != TextOrJson.json:
        sys.stdout.write(f"\n{stored['note']}\n")
    if store_error is not None:
        raise store_error
    if write_error is not None:
        raise write_error
    raise typer.Exit(EXIT_FINDINGS if report.errors else EXIT_OK)


def _check_writable(output: Path) -> None:
    """Refuse an --output that cannot be written, before any work: a missing or read-only folder, a directory."""
    import os

    folder = output.parent if str(output.parent) else Path(".")
    if "\0" in str(output) or output.is_dir():
        raise UsageError(f"--output {str(output)!r} is not a file name", key="--output", fix="name a file, e.g. -o bench.json")
    if not folder.is_dir():
        raise UsageError(f"--output: the folder {folder} does not exist", key="--output", fix=f"create it (mkdir -p {folder}) or choose another path")
    if not os.access(folder, os.W_OK | os.X_OK) or (output.exists() and not os.access(output, os.W_OK)):
        raise UsageError(f"--output: {output} cannot be written (permissions)", key="--output", fix="choose a writable path")


def _store_bench(b, report, revision, target: str):
    """Record the report with its revision in kit's history: ({recorded, note, ...}, the error that stopped it or None)."""
    import sqlite3

    from kit.history import HistoryError
    from kit.state import open_history

    if revision is None:
        return {"recorded": False, "note": f"not recorded: {target} is a URL, not a kit deployment (bench APP or APP@rN to keep the results in kit's history)"}, None
    app_name, number = revision
    try:
        hist = open_history()
        try:
            run = hist.record_bench(b.bench_run(report, app_name, number))
        finally:
            hist.close()
    except sqlite3.Error as exc:  # not one kit explains: still never a traceback over the figures
        error = HistoryError(f"cannot store the bench run in kit's history: {type(exc).__name__}: {exc}", fix="the figures above are complete; rerun with --output FILE to keep them")
    except KitError as exc:
        error = exc
    else:
        note = f"recorded in kit's history with {app_name}@r{number} (bench run {run.id}; `kit history {app_name} --bench` lists them)"
        return {"recorded": True, "app": app_name, "revision": number, "run": run.id, "note": note}, None
    return {"recorded": False, "app": app_name, "revision": number, "note": f"NOT recorded in kit's history: {error.message}"}, error


def _run_bench(b, ep, work, levels, requests, timeout, warmup_timeout, warmup, price, *, show: bool):
    """kit.bench.run with a progress bar on stderr (when it is a terminal and the output is text)."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    console = Console(stderr=True)
    kwargs = dict(concurrency=levels, requests=requests, timeout=timeout, warmup_timeout=warmup_timeout, warmup=warmup, price_per_hour=price)
    if not (show and console.is_terminal):
        return b.run(ep, work, **kwargs)
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=console, transient=True) as bar:
        task = bar.add_task("warming up", total=None)

        def on_level(c: int, n: int) -> None:
            bar.reset(task, total=n, description=f"concurrency {c}")

        return b.run(ep, work, on_level=on_level, on_sample=lambda c, s: bar.advance(task), **kwargs)


# --- state (kit/state/: where history and deploy locks are kept) ---------------------------------

state_app = typer.Typer(cls=_KitGroup, help="Where kit keeps its history and deploy locks: SQLite (default) or a team's PostgreSQL (docs/state.md).", no_args_is_help=False, invoke_without_command=True, rich_markup_mode=None)
app.add_typer(state_app, name="state")


@state_app.callback()
def state(ctx: typer.Context, format: Annotated[TextOrJson, typer.Option("--format", "-f", help="text or json.")] = TextOrJson.text) -> None:
    """Show the store in use (its password masked), its server, migrations, revisions per app and locks held."""
    if ctx.invoked_subcommand is not None:
        return
    import json

    from kit.state import locate, open_history

    where = locate()
    hist = open_history(where, readonly=True)
    info = {"backend": where.backend, "location": where.shown, "chosen_by": where.source, "exists": hist is not None}
    if hist is not None:
        from kit.deploylock import holder

        info.update(hist.db.describe(), location=where.shown, migrations=hist.applied_migrations())
        info["apps"] = {a: len(hist.revisions(a)) for a in hist.apps()}
        info["locks"] = {a: h.describe() + ("" if h.alive is not False else " (holder gone)") for a in hist.apps() if (h := holder(hist, a))}
    if format is TextOrJson.json:
        sys.stdout.write(json.dumps(info, indent=2) + "\n")
        return
    for key, value in info.items():
        if isinstance(value, dict):
            value = ", ".join(f"{k}: {v}" for k, v in value.items()) or "none"
        elif isinstance(value, list):
            value = ", ".join(value) or "none"
        sys.stdout.write(f"{key:<10} {value}\n")


@state_app.command("migrate")
def state_migrate(
    to: Annotated[str, typer.Option("--to", metavar="URL", help="The store to copy into: postgresql://USER@HOST/DB (password from PGPASSWORD or ~/.pgpass) or sqlite:///PATH.")],
    source: Annotated[Optional[str], typer.Option("--from", metavar="URL", help="The store to copy from; default: the local SQLite history (KIT_STATE_DIR).")] = None,
    format: Annotated[TextOrJson, typer.Option("--format", "-f", help="text or json.")] = TextOrJson.text,
) -> None:
    """Copy a history into another store, app by app: idempotent, verified by counts and SHA-256 (exit 1: a conflict)."""
    import json

    from kit.settings import Settings
    from kit.state import Location, open_history, parse
    from kit.state.migrate import migrate

    src_at = parse(source, "--from") if source else Location("sqlite", "KIT_STATE_DIR", path=Settings().state_dir / "history.db")
    dst_at = parse(to, "--to")
    if src_at.shown == dst_at.shown:
        raise UsageError(f"--from and --to name the same store ({dst_at.shown})", fix="name the shared store with --to")
    src = open_history(src_at, readonly=True)
    if src is None:
        raise UsageError(f"there is no history at {src_at.shown} to copy", fix="name it with --from, or set KIT_STATE_DIR")
    dst = open_history(dst_at)
    report = migrate(src, dst, src_at.shown, dst_at.shown)
    if format is TextOrJson.json:
        sys.stdout.write(json.dumps(report.as_dict(), indent=2) + "\n")
        return
    for a in report.apps:
        counts = ", ".join(f"{n} {t}" for t, n in a.counts.items())
        sys.stdout.write(f"{a.app}: {a.action} ({counts}); sha256 {a.sha256[:16]} equal on both sides\n")
    sys.stdout.write(f"{len(report.apps)} app(s) from {report.source} verified in {report.target}\n")


def main() -> None:
    # kit's models use no pydantic plugin, and discovering plugins scans the entry points of every
    # installed distribution when the first model is built: ~40 ms of each `kit check` (bench_check).
    # A user's own choice in the environment wins.
    import os

    os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")
    try:
        app()
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        sys.exit(130)
