"""The pydocklite exception tree. Library code raises these; only the CLI prints them.

    PydockliteError                 base; `exit_code` is what the CLI exits with
    ├── UsageError                  bad flags or arguments (exit 125, like docker)
    ├── ImageError                  image database problems
    │   ├── ImageNotFoundError      no such image in the local store
    │   └── ImageInUseError         rmi of an image a container uses
    ├── ContainerError              container lifecycle problems
    │   ├── ContainerNotFoundError
    │   ├── ContainerStateError     e.g. start of a running container
    │   └── ContainerPathError      a path in a container: missing, not a directory...
    │       └── ContainerPathNotFoundError
    ├── UnsafeArchiveError          a tar stream tried to leave its destination
    └── HostFeatureError            a host feature is missing; the message names the fix

Errors from registry/ and snapshotter/ keep their own trees; the CLI maps all of them to
one line on stderr and exit code 125.
"""
from __future__ import annotations


class PydockliteError(Exception):
    exit_code = 125


class UsageError(PydockliteError):
    pass


class ImageError(PydockliteError):
    pass


class ImageNotFoundError(ImageError):
    pass


class ImageInUseError(ImageError):
    pass


class ContainerError(PydockliteError):
    pass


class ContainerNotFoundError(ContainerError):
    pass


class ContainerStateError(ContainerError):
    pass


class ContainerPathError(ContainerError):
    pass


class ContainerPathNotFoundError(ContainerPathError):
    pass


class UnsafeArchiveError(PydockliteError):
    pass


class HostFeatureError(PydockliteError):
    pass
