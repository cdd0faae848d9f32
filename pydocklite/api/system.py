"""/_ping, /version, /info, /events, /system/df, /auth."""
from __future__ import annotations

import os
import platform
import time

from pydocklite.api.http import HttpError


def ping(ctx, req, resp):
    resp.send(200, b"OK", content_type="text/plain; charset=utf-8",
              headers=[("Builder-Version", "1"), ("Cache-Control", "no-cache, no-store, "
                                                                   "must-revalidate"),
                       ("Pragma", "no-cache")])


def version(ctx, req, resp):
    from pydocklite import __version__
    from pydocklite.api.server import API_VERSION, MIN_API_VERSION
    kernel = platform.release()
    arch = {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine())
    engine = {"Version": __version__, "ApiVersion": API_VERSION,
              "MinAPIVersion": MIN_API_VERSION, "GitCommit": "", "GoVersion": "",
              "Os": "linux", "Arch": arch, "KernelVersion": kernel, "Experimental": "false",
              "BuildTime": "", "PythonVersion": platform.python_version()}
    return {"Platform": {"Name": "pydocklite"},
            "Components": [{"Name": "Engine", "Version": __version__, "Details": engine}],
            "Version": __version__, "ApiVersion": API_VERSION, "MinAPIVersion": MIN_API_VERSION,
            "GitCommit": "", "GoVersion": "", "Os": "linux", "Arch": arch,
            "KernelVersion": kernel, "BuildTime": ""}


def info(ctx, req, resp):
    from pydocklite import __version__
    from pydocklite.hostinfo import collect
    host = collect(ctx.settings)
    states = ctx.containers.store.list()
    running = paused = stopped = 0
    for s in states:
        st = s.status().state
        if st == "running":
            running += 1
        elif st == "paused":
            paused += 1
        else:
            stopped += 1
    images = len(ctx.images.db.load().images)
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    arch = platform.machine()
    return {
        "ID": _host_id(ctx), "Containers": len(states), "ContainersRunning": running,
        "ContainersPaused": paused, "ContainersStopped": stopped, "Images": images,
        "Driver": (host.get("Storage") or {}).get("driver", "pydocklite"),
        "DriverStatus": [], "Plugins": {"Volume": ["local"], "Network": ["bridge", "host",
                                                                          "null"],
                                        "Log": ["json-file"]},
        "MemoryLimit": True, "SwapLimit": True, "CpuCfsPeriod": True, "CpuCfsQuota": True,
        "IPv4Forwarding": True, "Debug": False, "NFd": len(os.listdir("/proc/self/fd")),
        "NGoroutines": 0, "SystemTime": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "LoggingDriver": "json-file", "CgroupDriver": "cgroupfs",
        "CgroupVersion": "2" if os.path.exists("/sys/fs/cgroup/cgroup.controllers") else "1",
        "KernelVersion": platform.release(), "OperatingSystem": host["OperatingSystem"], "OSType": "linux",
        "Architecture": arch, "NCPU": os.cpu_count() or 1, "MemTotal": mem,
        "IndexServerAddress": "https://index.docker.io/v1/",
        "RegistryConfig": {"InsecureRegistryCIDRs": ["127.0.0.0/8"],
                           "IndexConfigs": {}, "Mirrors": []},
        "DockerRootDir": str(ctx.settings.data_root), "HttpProxy": "", "HttpsProxy": "",
        "NoProxy": "", "Name": platform.node(), "Labels": [], "ExperimentalBuild": False,
        "ServerVersion": __version__, "Runtimes": {"pydocklite": {"path": "pydocklite"}},
        "DefaultRuntime": "pydocklite", "LiveRestoreEnabled": True, "Isolation": "",
        "InitBinary": "", "SecurityOptions": host.get("SecurityOptions", []),
        "Swarm": {"NodeID": "", "NodeAddr": "", "LocalNodeState": "inactive",
                  "ControlAvailable": False, "Error": "", "RemoteManagers": None},
        "Warnings": [f"WARNING: {m['Feature']}: {m['Effect']} ({m['Fix']})"
                     for m in host.get("Missing", [])],
        "Pydocklite": host,
    }


def _host_id(ctx) -> str:
    import hashlib
    return hashlib.sha256(str(ctx.settings.data_root).encode()).hexdigest()[:36]


def df(ctx, req, resp):
    from pydocklite.api.containers import summary
    from pydocklite.api.images import image_summaries
    images = image_summaries(ctx)
    used = ctx.images.images_in_use()
    for img in images:
        img["Containers"] = 1 if img["Id"] in used else 0
    containers = []
    for s in ctx.containers.store.list():
        item = summary(s)
        item["SizeRw"] = _upper_size(ctx, s.id)
        item["SizeRootFs"] = item["SizeRw"]
        containers.append(item)
    total = sum(i["Size"] for i in images)
    return {"LayersSize": total, "Images": images, "Containers": containers,
            "Volumes": [], "BuildCache": []}


def _upper_size(ctx, cid: str) -> int:
    size = 0
    for root, _dirs, files in os.walk(ctx.settings.layout.containers_dir / cid / "upper"):
        for name in files:
            try:
                size += os.lstat(os.path.join(root, name)).st_size
            except OSError:
                pass
    return size


def auth(ctx, req, resp):
    """Check credentials against the registry (as `login` does) without storing them:
    clients keep their own credentials and send them with each pull and push."""
    body = req.read_json(default={})
    server = body.get("serveraddress") or "docker.io"
    user, password = body.get("username"), body.get("password")
    if not isinstance(user, str) or not isinstance(password, str):
        raise HttpError(400, "auth needs username and password strings")
    from pydocklite.registry_access import make_client
    from registry.credentials import Credentials, normalize_host
    host = normalize_host(server)
    with make_client(ctx.settings, insecure_host=host) as client:
        client.login(host, Credentials(username=user, password=password))
    return {"Status": "Login Succeeded", "IdentityToken": ""}


def events(ctx, req, resp):
    """Streamed events (JSON lines) as the engine's journal records them."""
    from pydocklite.api.events import stream_events
    stream_events(ctx, req, resp)
    return None
