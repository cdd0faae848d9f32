"""Errors of image distribution (push, save/load, import, commit).

    PydockliteError (pydocklite.errors)
    └── DistributionError         base of this package
        ├── PushError             a push could not complete (the message names the layer)
        ├── ArchiveError          an archive to load is not in a known format or is corrupt
        └── ChangeError           a --change instruction is not understood
"""
from __future__ import annotations

from pydocklite.errors import PydockliteError


class DistributionError(PydockliteError):
    pass


class PushError(DistributionError):
    pass


class ArchiveError(DistributionError):
    pass


class ChangeError(DistributionError):
    pass
