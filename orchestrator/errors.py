"""The errors a user can meet. The CLI turns each into one line and an exit code."""

from __future__ import annotations


class QuantsweepError(Exception):
    """Base class: a failure with a message a user can act on."""

    exit_code = 1


class RecipeError(QuantsweepError):
    """A recipe that cannot be used: names the file, the field and what is allowed."""

    exit_code = 2

    def __init__(self, path: str, field: str, message: str):
        self.path, self.field, self.detail = path, field, message
        where = f"{path}: {field}: " if field else f"{path}: "
        super().__init__(where + message)


class UsageError(QuantsweepError):
    """Bad command-line input (a missing file, an unknown format)."""

    exit_code = 2


class EnvironmentProblem(QuantsweepError):
    """Not the recipe and not a cell: the machine or the workspace (busy, read-only, a full disk, a
    download that failed, tools that do not build). Exit code 3."""

    exit_code = 3


class ToolchainError(EnvironmentProblem):
    """The llama.cpp tools cannot be found, built or identified."""


class FetchError(EnvironmentProblem):
    """A model or corpus could not be obtained (a download, a package)."""


class InputFileError(QuantsweepError):
    """A local file the user named is missing or is not what it must be (a text file as a GGUF,
    a directory as a corpus). Bad input: nothing is started."""

    exit_code = 2


class DiskSpaceError(EnvironmentProblem):
    """A run would not fit on the disk, or a write found it full."""


class HostMemoryError(EnvironmentProblem):
    """A run whose tool would hold more of this machine's memory than it has."""


class WorkspaceBusy(EnvironmentProblem):
    """Another quantsweep process holds the workspace lock."""


class WorkspaceError(EnvironmentProblem):
    """The workspace cannot be used: read-only, not writable."""


class ToolFailed(QuantsweepError):
    """A llama.cpp tool ran but did not produce a valid result (judged from its output)."""

    def __init__(self, reason: str, *, stderr_tail: str = "", machine: bool = False, bad_input: str = ""):
        self.reason, self.stderr_tail = reason, stderr_tail
        self.machine, self.bad_input = machine, bad_input  # see jobs.spec.Outcome
        self.wall_s, self.argv = 0.0, ""  # the tool's, once it ran
        super().__init__(reason)


class PipeClosed(Exception):
    """The reader of our standard output went away (`quantsweep … | head`): not an error."""
