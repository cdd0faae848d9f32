"""An image as Docker's JSON shows it (`image inspect`), shared by the CLI and the API."""
from __future__ import annotations


def inspect_image(service, record) -> dict:
    """Docker's `image inspect` JSON for one image."""
    from pydocklite.images import familiar
    config = service.config_json(record)
    db = service.db.load()
    cfg = config.get("config") or {}
    return {
        "Id": record.id,
        "RepoTags": [familiar(t) for t in db.tags_of(record.id)],
        "RepoDigests": [familiar(d) for d in record.repo_digests],
        "Parent": "",
        "Comment": _history_comment(config),
        "Created": config.get("created", ""),
        "DockerVersion": config.get("docker_version", ""),
        "Author": config.get("author", ""),
        "Config": {
            "Hostname": "", "Domainname": "", "User": cfg.get("User", ""),
            "AttachStdin": False, "AttachStdout": False, "AttachStderr": False,
            "ExposedPorts": cfg.get("ExposedPorts"), "Tty": False, "OpenStdin": False,
            "StdinOnce": False, "Env": cfg.get("Env"), "Cmd": cfg.get("Cmd"),
            "Healthcheck": cfg.get("Healthcheck"), "Image": "", "Volumes": cfg.get("Volumes"),
            "WorkingDir": cfg.get("WorkingDir", ""), "Entrypoint": cfg.get("Entrypoint"),
            "OnBuild": cfg.get("OnBuild"), "Labels": cfg.get("Labels"),
            "StopSignal": cfg.get("StopSignal"),
        },
        "Architecture": config.get("architecture", record.architecture),
        "Variant": config.get("variant"),
        "Os": config.get("os", record.os),
        "Size": record.size,
        "VirtualSize": record.size,
        "GraphDriver": {"Name": "pydocklite", "Data": {"ManifestDigest": record.manifest_digest}},
        "RootFS": {"Type": "layers", "Layers": list(record.diff_ids)},
        "Metadata": {"LastTagTime": ""},
        "Trust": trust_json(record.trust),
    }


def trust_json(verdict) -> dict:
    """`Trust`: what the signature policy concluded when the image was pulled; an object
    even when no policy applied, so that `{{.Trust.Verified}}` always has an answer."""
    if verdict is None:
        from pydocklite.trust.verdict import Verdict
        verdict = Verdict(policy="", entry="", requirements=())
    return verdict.to_json()


def _history_comment(config: dict) -> str:
    hist = config.get("history") or []
    return hist[-1].get("comment", "") if hist else ""
