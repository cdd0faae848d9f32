"""Exceptions of the runtime package.

RuntimeError_ (base, exported as RuntimeErr)
  SpecError            config.json is invalid (names the field)
  ContainerNotFound    no state for that id under --root
  ContainerExists      id already used
  StateError           operation not allowed in the current status
  IdMapError           uid/gid mapping impossible (newuidmap refused, no range...)
  SetupError           the container init failed while setting up (message from the child)
"""
from __future__ import annotations


class RuntimeErr(Exception):
    """Base of every error raised by pydocklite.runtime."""


class SpecError(RuntimeErr):
    pass


class ContainerNotFound(RuntimeErr):
    pass


class ContainerExists(RuntimeErr):
    pass


class StateError(RuntimeErr):
    pass


class IdMapError(RuntimeErr):
    pass


class SetupError(RuntimeErr):
    pass
