"""The one error table: every row names a real class, every error class of every package
gets an exit code and an HTTP status, and the categories land where dockerd puts them."""
from __future__ import annotations

import importlib
import inspect

import pytest

from pydocklite import errors
from pydocklite.errors import STATUS_TABLE, classify

ERROR_MODULES = ("pydocklite.errors", "pydocklite.builder.errors",
                 "pydocklite.distribution.errors", "pydocklite.runtime.errors",
                 "pydocklite.state.store", "pydocklite.gotemplate_funcs", "registry.errors",
                 "snapshotter.errors", "pydocklite.shim.port_spec", "pydocklite.trust.errors")


def _resolve(qualified: str):
    module, _, name = qualified.rpartition(".")
    return getattr(importlib.import_module(module), name)


@pytest.mark.parametrize("qualified", sorted(STATUS_TABLE))
def test_every_row_names_a_real_exception_class(qualified):
    cls = _resolve(qualified)
    assert inspect.isclass(cls) and issubclass(cls, Exception), qualified
    exit_code, status = STATUS_TABLE[qualified]
    assert 0 <= exit_code <= 125 and 300 <= status <= 599


def _error_classes():
    for name in ERROR_MODULES:
        module = importlib.import_module(name)
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if issubclass(cls, Exception) and cls.__module__ == name:
                yield cls


@pytest.mark.parametrize("cls", list(_error_classes()), ids=lambda c: c.__qualname__)
def test_every_error_class_is_classified(cls):
    exc = cls.__new__(cls)           # no __init__: some take extra arguments
    assert classify(exc) is not None, f"{cls.__module__}.{cls.__qualname__} has no row"


@pytest.mark.parametrize("exc, exit_code, status", [
    (errors.ContainerNotFoundError("No such container: x"), 125, 404),
    (errors.ImageNotFoundError("No such image: x"), 125, 404),
    (errors.ImageInUseError("in use"), 125, 409),
    (errors.ContainerStateError("is running"), 125, 409),
    (errors.ContainerNotModifiedError("already started"), 0, 304),
    (errors.UsageError("bad flag"), 125, 400),
    (errors.HostFeatureError("no cgroup"), 125, 500),
])
def test_categories(exc, exit_code, status):
    assert classify(exc) == (exit_code, status)


def test_signature_errors():
    from pydocklite.trust.errors import KeyFileError, PolicyError, SignatureRefused
    assert classify(SignatureRefused("refused by signature policy")) == (125, 403)
    assert classify(PolicyError("bad policy file")) == (125, 500)
    assert classify(KeyFileError("wrong passphrase")) == (125, 400)


def test_foreign_errors_are_not_ours():
    assert classify(ValueError("x")) is None
    assert classify(KeyError("x")) is None


def test_other_packages_map_through_the_same_table():
    from registry.errors import InvalidReferenceError, NotFoundError, TransportError
    from snapshotter.errors import SnapshotNotFoundError, StoreFullError
    from pydocklite.builder.errors import DockerfileError, StepFailedError
    from pydocklite.state.store import NameConflictError
    from pydocklite.runtime.errors import ContainerExists
    assert classify(InvalidReferenceError("x")).http_status == 400
    assert classify(NotFoundError("x")).http_status == 404
    assert classify(TransportError("x", 502)).http_status == 500
    assert classify(SnapshotNotFoundError("x")).http_status == 404
    assert classify(StoreFullError("x")).http_status == 500
    assert classify(DockerfileError("bad")) == (1, 400)
    assert classify(StepFailedError("failed", 2)).exit_code == 1
    assert classify(NameConflictError("taken")).http_status == 409
    assert classify(ContainerExists("x")).http_status == 409


def test_an_instance_exit_code_wins():
    exc = errors.ContainerError("not executable")
    exc.exit_code = 126
    assert classify(exc) == (126, 500)
