"""The build exception tree (all are PydockliteErrors, so the CLI prints one line).

    BuildError                  a build could not complete (exit 1, like `docker build`: the
                                exit codes and HTTP statuses are in pydocklite.errors'
                                STATUS_TABLE)
    ├── DockerfileError         the Dockerfile is malformed: names file:line and the instruction
    ├── ContextError            a COPY/ADD source is missing, excluded or outside the context
    └── StepFailedError         a RUN exited non-zero: carries the exit code
"""
from __future__ import annotations

from pydocklite.errors import PydockliteError


class BuildError(PydockliteError):
    pass


class DockerfileError(BuildError):
    def __init__(self, message: str, filename: str = "Dockerfile", line: int = 0,
                 instruction: str = "") -> None:
        self.filename, self.line, self.instruction = filename, line, instruction
        where = f"{filename}:{line}: " if line else f"{filename}: "
        text = f"{where}{message}"
        if instruction:
            text += f" (in: {instruction.strip()[:120]})"
        super().__init__(text)


class ContextError(BuildError):
    pass


class StepFailedError(BuildError):
    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code
