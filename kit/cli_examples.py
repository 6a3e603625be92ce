"""Examples shown at the end of each command's --help (kept beside the CLI, one block per command)."""

EXAMPLES: dict[str, str] = {
    "check": """\
kit check                                    every profiles/*.toml under this directory
kit check profiles/x.toml -v                 one profile, info findings in full
kit check --format json > report.json        stable JSON (docs/check-json.md)
kit check --format github --strict           CI annotations; warnings fail too
KIT_GPU__TYPE=A100-40GB kit check profiles/x.toml   try another GPU without editing the file""",
    "lock": """\
kit lock                                     resolve every profile into profiles/<name>.lock
kit lock profiles/x.toml -P huggingface-hub  move one package, keep the rest
kit lock --check                             CI: exit 1 when a lockfile is missing or stale (offline)
kit lock --check --format json               the same, for tools""",
    "schema": """\
kit schema > profile.schema.json             for taplo / VS Code (Even Better TOML)
#:schema ./profile.schema.json               first line of a profile, so the editor validates it""",
    "rules": """\
kit rules                                    every rule: id, severity, summary
kit rules --format json | jq '.[] | select(.severity == "error") | .id'""",
    "render": """\
kit render profiles/x.toml                   into build/<name>/
kit render profiles/x.toml -o /tmp/app       into another directory (created; must be empty or kit's own)
kit render profiles/x.toml --format json     the written files and bundle hash, for tools""",
    "diff": """\
kit diff old.toml new.toml                   two files
kit diff --git origin/main --format markdown the pull request's changes, as a comment
kit diff --git origin/main --detailed-exitcode   exit 2 when something changed (terraform's plan)""",
    "fmt": """\
kit fmt                                      rewrite every profile in the canonical layout
kit fmt --check                              CI: exit 1 and name the files that would change
kit fmt --diff profiles/x.toml               show what would change""",
    "init": """\
kit init profiles/mine.toml                  the default example (vLLM, Qwen2.5-Coder-7B, A10G)
kit init profiles/mine.toml --gpu L40S --model Qwen/Qwen2.5-Coder-7B-Instruct
kit init --list                              the bundled examples""",
    "deploy": """\
kit deploy profiles/x.toml --dry-run         check, lock, render and plan; no Modal account needed
kit deploy profiles/x.toml                   asks before deploying
kit deploy profiles/x.toml --yes --atomic    CI: no question; roll back when the smoke test fails""",
    "history": """\
kit history                                  every app's revisions
kit history my-app --format json             one app, for tools
kit history my-app --bench                   the stored `kit bench` runs""",
    "status": """\
kit status                                   every app: current revision, drift from Modal
kit status my-app --format json""",
    "rollback": """\
kit rollback my-app                          back to the previous good revision
kit rollback my-app --to r3                  back to revision 3, exactly as deployed""",
    "bench": """\
kit bench my-app@r3                          a deployed revision; results stored with it
kit bench https://x--serve.modal.run --profile profiles/x.toml
kit bench http://127.0.0.1:8000 --openai -c 1,8 -n 16""",
}
