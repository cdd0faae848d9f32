"""OCI distribution client and OCI image data model. Never imports pydocklite or snapshotter.

Modules (import the one you need; nothing here imports requests until a request is made):
    reference    Reference.parse("nginx") -> docker.io/library/nginx:latest
    model        Digest, Platform, Descriptor, Manifest, Index, ImageConfig, parse_manifest,
                 parse_image_config, build_manifest/build_index, host_platform
    errors       RegistryError and its subclasses
    credentials  Credentials, DockerConfig (~/.docker/config.json, credential helpers)
    auth         RegistryAuth: the requests auth flow (Basic, bearer tokens)
    transport    Transport: session, TLS/CA policy, HTTP for loopback/insecure, retries
    client       RegistryClient: resolve, get_manifest, stream_blob, login, push
"""
from __future__ import annotations
