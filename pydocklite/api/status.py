"""Engine exceptions -> dockerd's HTTP statuses: the one table is pydocklite/errors.py's
STATUS_TABLE (errors.classify), shared with the CLI's exit codes; an HttpError carries its
own status (the API's own checks of a request)."""
from __future__ import annotations


def status_of(exc: BaseException) -> int:
    status = getattr(exc, "status", None)
    if type(exc).__name__ == "HttpError" and isinstance(status, int):
        return status
    from pydocklite.errors import classify
    outcome = classify(exc)
    return outcome.http_status if outcome is not None else 500


def is_ours(exc: BaseException) -> bool:
    """A failure the engine reports (else a bug: the service logs its traceback)."""
    from pydocklite.errors import classify
    return type(exc).__name__ == "HttpError" or classify(exc) is not None


def message_of(exc: BaseException) -> str:
    if hasattr(exc, "message") and isinstance(exc.message, str):
        return exc.message
    text = str(exc) or type(exc).__name__
    if isinstance(exc, OSError) and getattr(exc, "filename", None) and exc.strerror:
        text = f"{exc.strerror}: {exc.filename}"
    return text
