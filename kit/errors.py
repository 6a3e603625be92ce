"""One error family for everything a user can get wrong; the CLI maps it to messages and exit codes."""

from __future__ import annotations

# Exit codes, documented in the README and `kit --help`.
EXIT_OK = 0
EXIT_FINDINGS = 1  # findings of severity error (or warnings under --strict); also: operation failed
EXIT_USAGE = 2  # bad input or usage: the file, the key, the fix


class KitError(Exception):
    """An error the user can act on. `str()` is the whole diagnosis: what, where, and what to do."""

    exit_code = EXIT_USAGE

    def __init__(self, message: str, *, file: str | None = None, key: str | None = None, fix: str | None = None, line: int | None = None, column: int | None = None):
        self.message = message
        self.file = file  # a path; the position, when known, is in line and column
        self.key = key
        self.fix = fix
        self.line = line
        self.column = column
        super().__init__(self.render())

    def render(self) -> str:
        where = ""
        file = self.file
        if file and self.line is not None:
            file = f"{file}:{self.line}" + (f":{self.column}" if self.column is not None else "")
        if file and self.key:
            where = f"{file}: {self.key}: "
        elif file:
            where = f"{file}: "
        elif self.key:
            where = f"{self.key}: "
        text = f"{where}{self.message}"
        if self.fix:
            text += f"\n  fix: {self.fix}"
        return text


class ProfileError(KitError):
    """A profile file that cannot be read, parsed or validated."""


class UsageError(KitError):
    """Arguments that do not make sense together, or name nothing."""


class LockStale(KitError):
    """A lockfile that no longer matches its profile: every command that would use it stops with exit 1."""

    exit_code = EXIT_FINDINGS


class DataError(KitError):
    """kit's own data files are inconsistent: a bug in kit, reported as such."""

    exit_code = EXIT_FINDINGS


class OperationError(KitError):
    """An operation (resolve, deploy, ...) that was attempted and failed for a reason outside the input."""

    exit_code = EXIT_FINDINGS
