"""Errors of image trust (signature policy, signatures, keys).

    PydockliteError (pydocklite.errors)
    └── TrustError                base of this package
        ├── PolicyError           the policy file is unreadable, invalid, or asks for
        │                         something unsupported (the message names file and entry)
        ├── SignatureRefused      the policy refused an image (names the entry and reason)
        └── KeyFileError          a key file is unreadable, of the wrong type, or its
                                  passphrase is wrong
"""
from __future__ import annotations

from pydocklite.errors import PydockliteError


class TrustError(PydockliteError):
    pass


class PolicyError(TrustError):
    pass


class SignatureRefused(TrustError):
    pass


class KeyFileError(TrustError):
    pass
