"""The exceptions raised by registry/.

    RegistryError
     ├── InvalidReferenceError   a string that is not an image reference
     ├── AuthError               missing, wrong or refused credentials
     │    └── CredentialHelperError   a docker-credential-* helper failed
     ├── NotFoundError           manifest, blob or repository unknown to the registry
     ├── ManifestError           unparsable / unsupported / mismatching manifest or index
     │    ├── ManifestVerifyError  manifest bytes do not match the digest asked for
     │    └── ImageConfigError   image config invalid or inconsistent with its manifest
     ├── BlobVerifyError         blob bytes do not match the descriptor (size or digest)
     ├── PlatformNotFound        an index has no manifest for the wanted platform
     └── TransportError          network, TLS or server failure after retries
          ├── RateLimitError     the registry kept answering 429
          └── ResponseTooLargeError  a document read into memory passed its cap

Library code raises these; it never prints or exits. Messages name the object and the fix.
"""
from __future__ import annotations


class RegistryError(Exception):
    """Base class of every error raised by registry/."""


class InvalidReferenceError(RegistryError, ValueError):
    """The string is not a valid image reference."""


class AuthError(RegistryError):
    """Authentication failed or was refused."""


class CredentialHelperError(AuthError):
    """A docker-credential-<name> helper failed."""


class NotFoundError(RegistryError):
    """The registry does not know the manifest, blob or repository."""


class ManifestError(RegistryError):
    """A manifest or index is invalid, unsupported or does not match its digest."""


class ManifestVerifyError(ManifestError):
    """Manifest bytes do not match the digest they were fetched by (or that was announced)."""


class ImageConfigError(ManifestError):
    """An image config is invalid or inconsistent with its manifest."""


class BlobVerifyError(RegistryError):
    """A blob did not match its descriptor's size or digest."""


class PlatformNotFound(RegistryError):
    """An image index has no manifest for the requested platform."""


class TransportError(RegistryError):
    """Network/TLS failure, or the registry kept failing after all retries."""

    def __init__(self, message: str, status: "int | None" = None) -> None:
        super().__init__(message)
        self.status = status


class RateLimitError(TransportError):
    """The registry kept answering 429 Too Many Requests."""


class ResponseTooLargeError(TransportError):
    """A document read whole (manifest, index, config, token, error body) passed its cap."""
