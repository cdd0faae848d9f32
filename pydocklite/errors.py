"""The pydocklite exception tree, and the ONE table that turns any error into what each
face reports: the CLI's exit code and the Engine API's HTTP status (dockerd's errdefs).
Library code raises; only the faces print (cli/main.py, the API's error handler).

    PydockliteError                     base (500 / exit 125 unless a category says more)
    ├── UsageError                      bad flags, arguments or request fields    400
    ├── NotFoundError                   the object named does not exist           404
    ├── ConflictError                   not possible in the object's state        409
    ├── NotModifiedError                already so (start a running container)    304
    ├── NotImplementedError_            a Docker feature pydocklite lacks         501
    ├── ImageError                      image database problems
    │   ├── ImageNotFoundError          (also a NotFoundError)
    │   └── ImageInUseError             rmi of an image a container uses (Conflict)
    ├── ContainerError                  container lifecycle problems
    │   ├── ContainerNotFoundError      (NotFound)
    │   ├── ContainerStateError         e.g. kill of a stopped container (Conflict)
    │   ├── ContainerNotModifiedError   start of a running one, stop of a stopped one
    │   └── ContainerPathError          a path in a container: not a directory... 400
    │       └── ContainerPathNotFoundError                                        404
    ├── UnsafeArchiveError              a tar stream tried to leave its destination 400
    └── HostFeatureError                a host feature is missing; the message names the fix

The categories are mixins (as dockerd's errdefs interfaces): a package's own error may be
a NotFoundError and its package's base at once. Errors of registry/, snapshotter/ and
pydocklite/runtime/ keep their own trees (those packages can't import this one); the table
names their classes by module path so this module imports nothing.

`classify(exc)` -> Outcome(exit_code, http_status) walks the exception's class hierarchy and
takes the most specific row of STATUS_TABLE; None for exceptions that are not ours (a bug:
the faces print a traceback / answer 500). An instance may carry its own `exit_code`
(a build step's failure, a container's 126/127) that wins over the table's.
"""
from __future__ import annotations

from collections import namedtuple

Outcome = namedtuple("Outcome", "exit_code http_status")


class PydockliteError(Exception):
    pass


class UsageError(PydockliteError):
    pass


class NotFoundError(PydockliteError):
    pass


class ConflictError(PydockliteError):
    pass


class NotModifiedError(PydockliteError):
    pass


class NotImplementedError_(PydockliteError):
    pass


class ImageError(PydockliteError):
    pass


class ImageNotFoundError(ImageError, NotFoundError):
    pass


class ImageInUseError(ImageError, ConflictError):
    pass


class ContainerError(PydockliteError):
    pass


class ContainerNotFoundError(ContainerError, NotFoundError):
    pass


class ContainerStateError(ContainerError, ConflictError):
    pass


class ContainerNotModifiedError(ContainerError, NotModifiedError):
    pass


class ContainerPathError(ContainerError):
    pass


class ContainerPathNotFoundError(ContainerPathError):
    pass


class UnsafeArchiveError(PydockliteError):
    pass


class HostFeatureError(PydockliteError):
    pass


# class (by "module.QualName": no imports) -> (CLI exit code, HTTP status). The most
# specific class in an exception's MRO wins. Docker's CLI exits 125 when the tool itself
# fails; `docker build` exits 1; a 304 is no failure for the docker CLI (start of a running
# container prints its name and exits 0).
STATUS_TABLE = {
    "pydocklite.errors.PydockliteError": (125, 500),
    "pydocklite.errors.UsageError": (125, 400),
    "pydocklite.errors.NotFoundError": (125, 404),
    "pydocklite.errors.ConflictError": (125, 409),
    "pydocklite.errors.NotModifiedError": (0, 304),
    "pydocklite.errors.NotImplementedError_": (125, 501),
    "pydocklite.errors.ContainerPathError": (125, 400),
    "pydocklite.errors.ContainerPathNotFoundError": (125, 404),
    "pydocklite.errors.UnsafeArchiveError": (125, 400),
    "pydocklite.builder.errors.BuildError": (1, 500),
    "pydocklite.builder.errors.DockerfileError": (1, 400),
    "pydocklite.builder.errors.ContextError": (1, 400),
    "pydocklite.distribution.errors.ChangeError": (125, 400),
    "pydocklite.distribution.errors.ArchiveError": (125, 400),
    "pydocklite.gotemplate_funcs.TemplateError": (125, 400),
    "pydocklite.runtime.errors.RuntimeErr": (125, 500),
    "pydocklite.runtime.errors.SpecError": (125, 400),
    "pydocklite.runtime.errors.ContainerNotFound": (125, 404),
    "pydocklite.runtime.errors.ContainerExists": (125, 409),
    "pydocklite.runtime.errors.StateError": (125, 409),
    # a signature policy refusing an image is dockerd's errdefs.Forbidden; a policy file
    # that can't be used is the daemon's own configuration (500); a signing key the caller
    # named that can't be read is the request's fault
    "pydocklite.trust.errors.SignatureRefused": (125, 403),
    "pydocklite.trust.errors.PolicyError": (125, 500),
    "pydocklite.trust.errors.KeyFileError": (125, 400),
    # the volume and network services' own errors (their modules are leaves of the services)
    "pydocklite.volumes.VolumeNotFoundError": (125, 404),
    "pydocklite.volumes.VolumeInUseError": (125, 409),
    "pydocklite.networks.NetworkNotFoundError": (125, 404),
    "pydocklite.networks.NetworkConflictError": (125, 409),
    "registry.errors.RegistryError": (125, 500),
    "registry.errors.InvalidReferenceError": (125, 400),
    "registry.errors.AuthError": (125, 401),
    "registry.errors.NotFoundError": (125, 404),
    "registry.errors.PlatformNotFound": (125, 404),
    "snapshotter.errors.SnapshotterError": (125, 500),
    "snapshotter.errors.SnapshotNotFoundError": (125, 404),
    "snapshotter.errors.SnapshotExistsError": (125, 409),
}


def classify(exc: BaseException):
    """The Outcome for `exc` (see the module's docstring), or None if it is not ours."""
    for cls in type(exc).__mro__:
        row = STATUS_TABLE.get(f"{cls.__module__}.{cls.__qualname__}")
        if row is not None:
            own = getattr(exc, "__dict__", {}).get("exit_code")
            return Outcome(own if isinstance(own, int) else row[0], row[1])
    return None
