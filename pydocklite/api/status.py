"""The one mapping from an engine exception to dockerd's HTTP status.

The services raise pydocklite's (and registry's, snapshotter's) exceptions; the CLI turns
them into exit codes, the API into these statuses. Matched by class name along the
exception's MRO, so the API needs no import of the packages that define them (an import
here would load registry/ and snapshotter/ before any request needs them).
"""
from __future__ import annotations

# class name -> status; the first class of the exception's MRO found here wins
STATUS_BY_CLASS = {
    "HttpError": None,                      # carries its own status
    "ContainerNotFoundError": 404, "ImageNotFoundError": 404, "ContainerNotFound": 404,
    "NotFoundError": 404, "SnapshotNotFoundError": 404, "PlatformNotFound": 404,
    "VolumeNotFoundError": 404, "NetworkNotFoundError": 404, "ContainerPathNotFoundError": 404,
    "ContainerPathError": 400, "UnsafeArchiveError": 400,
    "NameConflictError": 409, "ContainerStateError": 409, "ImageInUseError": 409,
    "VolumeInUseError": 409, "ContainerExists": 409, "SnapshotExistsError": 409,
    "InvalidNameError": 400, "AmbiguousReferenceError": 400, "UsageError": 400,
    "InvalidReferenceError": 400, "PortError": 400, "DockerfileError": 400,
    "ContextError": 400, "ArchiveError": 400, "UnsafeLayerEntryError": 400,
    "AuthError": 401,
    "HostFeatureError": 500,
}


def status_of(exc: BaseException) -> int:
    for cls in type(exc).__mro__:
        if cls.__name__ in STATUS_BY_CLASS:
            status = STATUS_BY_CLASS[cls.__name__]
            return getattr(exc, "status", 500) if status is None else status
    return 500


def message_of(exc: BaseException) -> str:
    if hasattr(exc, "message") and isinstance(exc.message, str):
        return exc.message
    text = str(exc) or type(exc).__name__
    if isinstance(exc, OSError) and getattr(exc, "filename", None) and exc.strerror:
        text = f"{exc.strerror}: {exc.filename}"
    return text
