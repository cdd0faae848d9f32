"""Build a registry client from Settings: credentials, insecure registries, CA dirs."""
from __future__ import annotations

from typing import Optional


def make_client(settings, *, tls_verify: Optional[bool] = None, insecure_host: str = "",
                auth=None):
    """`tls_verify=False` (podman's --tls-verify=false) marks `insecure_host` insecure:
    HTTPS without certificate checks, falling back to plain HTTP. `auth`: credentials a
    client sent (the API's X-Registry-Auth, a registry.credentials.Credentials) instead of
    the user's config.json."""
    from registry.client import RegistryClient
    from registry.credentials import DockerConfig
    insecure = set(settings.insecure_registries)
    if tls_verify is False and insecure_host:
        insecure.add(insecure_host)
    certs = [settings.config_dir / "certs.d", "/etc/docker/certs.d", "/etc/containers/certs.d"]
    if auth is None:
        auth = DockerConfig(settings.docker_config) if settings.docker_config else None
    return RegistryClient(auth=auth, insecure=insecure, certs_dirs=certs)
