"""Names a user or an API request gives to containers, volumes and networks, validated as
dockerd does: `[a-zA-Z0-9][a-zA-Z0-9_.-]+` (its RestrictedNamePattern), so a name is always
one path component under the store (no "/", no "..", no leading "."). Image references are
checked by registry.reference's distribution grammar, not here.
"""
from __future__ import annotations

import re

from pydocklite.errors import UsageError

RESTRICTED_CHARS = "[a-zA-Z0-9][a-zA-Z0-9_.-]"
RESTRICTED_NAME = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]+")     # fullmatch: "$" allows "\n"
# a name is one path component and one file name: keep it well below NAME_MAX (255)
MAX_NAME = 200


class InvalidNameError(UsageError):
    """A name that would not be a single, plain path component."""


def is_valid(name: str) -> bool:
    return isinstance(name, str) and len(name) <= MAX_NAME and \
        RESTRICTED_NAME.fullmatch(name) is not None


def check_volume_name(name: str) -> str:
    if len(name) == 1 and name.isalnum():
        raise InvalidNameError(f'volume name "{name}" is too short: names need at least two '
                               'alphanumeric characters')
    if not is_valid(name):
        raise InvalidNameError(
            f'"{name}" includes invalid characters for a local volume name, only '
            f'"{RESTRICTED_CHARS}" are allowed. If you intended to pass a host directory, '
            'use absolute path')
    return name


def check_network_name(name: str) -> str:
    if not is_valid(name):
        raise InvalidNameError(f'invalid network name "{name}": only "{RESTRICTED_CHARS}" '
                               'are allowed (at least two characters)')
    return name


def check_container_name(name: str) -> str:
    if not is_valid(name):
        raise InvalidNameError(f"Invalid container name ({name}), only {RESTRICTED_CHARS} are "
                               "allowed")
    return name
