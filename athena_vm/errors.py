"""The VM's one exception hierarchy.

`ProgramError` is raised when code cannot be loaded at all (a malformed ELF, say); the
caller sees it before anything runs. `Fault` aborts a running execution: `execute` catches
it in one place and turns it into a result with its status and reason.
"""

from athena_vm.status import StatusCode


class VmError(Exception):
    """Root of every error the VM raises."""


class ProgramError(VmError):
    """The bytes are not a loadable Athena program."""


class Fault(VmError):
    """An execution stops: the status the result carries and a reason naming the fault."""

    def __init__(self, status: StatusCode, reason: str) -> None:
        super().__init__(f"{status.name}: {reason}")
        self.status = status
        self.reason = reason


def failure(reason: str) -> Fault:
    """A fault that Athena's runner reports as FAILURE (memory, instruction, exit code...)."""
    return Fault(StatusCode.FAILURE, reason)
