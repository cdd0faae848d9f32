"""Creating a container (ContainerService.create): the record, the snapshot of its image,
the OCI spec (config.json), the shim's frozen configuration (shim.json), its /etc files
and volumes. Files written here are atomic but not durable (atomic.py): the record is
written last, durably."""
from __future__ import annotations

import os

TYPE_CHECKING = False
if TYPE_CHECKING:     # annotations only: importing typing costs ~2 ms per start
    from typing import List

from pydocklite.atomic import atomic_write_json
from pydocklite.containers.options import RunOptions
from pydocklite.errors import UsageError
from pydocklite.runtime.record import asdict
from pydocklite.state.container import ContainerState


def create(service, opts: RunOptions, image_record, image_config: dict,
           ports: list) -> ContainerState:
    """The container's record, snapshot, OCI spec, shim configuration and /etc files; on
    any failure the one teardown undoes what was made (nothing half-made stays)."""
    from pydocklite.containers.image_files import image_user_files
    from pydocklite.containers.spec_builder import build_spec
    from snapshotter.snapshots import Snapshotter
    service.layout.ensure()
    cfg = image_config.get("config") or {}
    restart = _restart_policy(opts.restart)
    if opts.remove and restart["Name"] != "no":
        raise UsageError("conflicting options: --restart and --rm")
    labels = dict(cfg.get("Labels") or {})
    labels.update(dict(opts.labels))
    health = None
    if cfg.get("Healthcheck") or opts.health_test or any(
            v is not None for v in (opts.health_interval, opts.health_timeout,
                                    opts.health_start_period, opts.health_start_interval,
                                    opts.health_retries)):
        from pydocklite.containers import healthcheck
        health = healthcheck.merge(cfg.get("Healthcheck"), opts)
    stop_signal = opts.stop_signal or cfg.get("StopSignal") or "SIGTERM"
    from pydocklite.containers.container import signal_number
    signal_number(stop_signal)
    _check_lsm(opts)
    state = service.store.create(ContainerState(
        id="", name=opts.name or "", image=opts.image, image_id=image_record.id))
    cid = state.id
    files = service.store.files(cid)
    volumes: List[tuple] = []          # (name, target) of the volumes it was recorded using
    try:
        snap = Snapshotter(service.layout, service.settings.storage_driver)
        snap.prepare(cid, list(image_record.diff_ids))
        etc = image_user_files(service.layout, image_record.id, image_record.diff_ids)
        passwd, group = etc["/etc/passwd"], etc["/etc/group"]
        from pydocklite.containers import netconfig
        net = netconfig.plan(service.settings, service.store, opts)
        hostname = netconfig.hostname_for(opts, cid, net)
        extra = netconfig.etc_mounts(files, net, hostname, opts)
        if opts.init:
            from pydocklite.embedded_init import INIT_PATH_IN_CONTAINER, init_binary
            try:
                init = init_binary(service.run_layout)
            except FileNotFoundError as e:
                raise UsageError(str(e)) from None
            extra.append({"destination": INIT_PATH_IN_CONTAINER, "type": "bind",
                          "source": str(init), "options": ["rbind", "ro", "nosuid",
                                                           "nodev"]})
        mounts = _volume_mounts(service, opts, cid, volumes)
        rootfs = str(service.run_layout.rootfs(cid))
        spec = build_spec(cfg, opts._replace(mounts=tuple(mounts)),
                          container_id=cid, rootfs=rootfs, passwd=passwd, group=group,
                          hostname=hostname, extra_mounts=extra)
        spec["linux"]["namespaces"].append({"type": "user"})
        if opts.net is not None and opts.net.domainname:
            spec["domainname"] = opts.net.domainname
        spec["process"]["oomScoreAdj"] = 0
        atomic_write_json(files.spec, spec, durable=False)    # see atomic.py
        from pydocklite.shim import config as shim_config
        shim_config.write(files.shim_config, durable=False, config=shim_config.ShimConfig(
            id=cid, name=state.name, bundle=str(files.dir), rootfs=rootfs,
            storage_driver=snap.driver, log_path=str(files.log), restart=restart["Name"],
            restart_max=restart["MaximumRetryCount"], auto_remove=opts.remove,
            network=net.mode, endpoints=net.endpoints, join=net.join,
            hostname=hostname, domainname=opts.net.domainname if opts.net else "",
            extra_hosts=opts.net.extra_hosts if opts.net else (),
            dns=opts.net.dns if opts.net else (),
            dns_search=opts.net.dns_search if opts.net else (),
            dns_options=opts.net.dns_options if opts.net else (),
            ports=tuple(ports), tty=opts.tty,
            open_stdin=opts.interactive, image=opts.image, labels=tuple(labels.items()),
            stdin_once=opts.interactive and (not opts.detach if opts.stdin_once is None
                                             else opts.stdin_once),
            healthcheck=healthcheck.shim_config(health) if health else None,
            # where the runtime puts the container's cgroup (a delegated subtree)
            cgroup_base=":".join(service.settings.cgroup_base)
            if spec["linux"].get("resources") else ""))
        config = {
            "Config": {
                "Hostname": hostname, "Domainname": opts.net.domainname if opts.net else "",
                "User": opts.user if opts.user is not None else cfg.get("User", ""),
                "Env": spec["process"]["env"], "Cmd": list(opts.command) or cfg.get("Cmd"),
                "Entrypoint": ([opts.entrypoint] if opts.entrypoint else None)
                if opts.entrypoint is not None else cfg.get("Entrypoint"),
                "Image": opts.image, "WorkingDir": spec["process"]["cwd"],
                "Labels": labels, "StopSignal": stop_signal, "OpenStdin": opts.interactive,
                "Tty": opts.tty, "ExposedPorts": cfg.get("ExposedPorts") or {},
                "StopTimeout": opts.stop_timeout,
                **({"Healthcheck": health} if health else {}),
            },
            "HostConfig": {
                "AutoRemove": opts.remove, "RestartPolicy": restart,
                **netconfig.host_config(opts, net),
                "Binds": [f"{m.source}:{m.target}{':ro' if m.readonly else ''}"
                          for m in opts.mounts if m.kind in ("bind", "volume")],
                "Memory": opts.memory or 0, "MemorySwap": opts.memory_swap or 0,
                "NanoCpus": int((opts.cpus or 0) * 1e9), "PidsLimit": opts.pids_limit,
                "CapAdd": list(opts.cap_add), "CapDrop": list(opts.cap_drop),
                "ReadonlyRootfs": opts.read_only, "Init": opts.init,
                "LogConfig": {"Type": "json-file", "Config": {}},
            },
            "PortBindings": [asdict(p) for p in ports],
            "Args": spec["process"]["args"],
            # a volume's mount names it ("name"): inspect shows it as Type "volume"
            "Mounts": [dict(asdict(m), **{"name": n for n, t in volumes if t == m.target})
                       for m in mounts],
            "Volumes": [n for n, _ in volumes],
            "Networks": net.networks or {},
            "StorageDriver": snap.driver,
            "diff_ids": list(image_record.diff_ids),
            "Platform": image_record.os or "linux",
        }
        state = service.store.update(cid, lambda s: s._replace(
            config=config, log_path=str(files.log), shim_log_path=str(files.shim_log)))
    except BaseException:
        from pydocklite.shim import teardown
        teardown.remove(service.settings, service.store, cid, event=False,
                        volumes=[n for n, _ in volumes], remove_anonymous=True)
        raise
    service.event(state, "create")
    return state


def _volume_mounts(service, opts: RunOptions, cid: str, volumes: List[tuple]) -> list:
    """The container's mounts with host paths: a volume (named, or anonymous for
    `-v /dst`) becomes a bind of its _data, and (name, target) is added to `volumes` once
    the volume service has recorded this container as its user."""
    from pydocklite.containers.options import Mapping
    from pydocklite.naming import check_volume_name
    out = []
    for m in opts.mounts:
        if m.kind == "volume" and m.source:
            check_volume_name(m.source)     # before anything is made of it
    for m in opts.mounts:
        if m.kind == "bind":
            src = os.path.abspath(m.source)
            if not os.path.exists(src):
                raise UsageError(f"invalid mount config: bind source path does not exist: "
                                 f"{src}: create it first")
            out.append(m._replace(source=src))
        elif m.kind == "volume":
            from pydocklite.volumes import VolumeService
            vol = VolumeService(service.settings).attach(m.source, cid)
            volumes.append((vol.name, m.target))
            out.append(Mapping("bind", vol.mountpoint, m.target, m.readonly, m.options))
        else:
            out.append(m)
    return out


def _check_lsm(opts: RunOptions) -> None:
    """Refuse --security-opt apparmor=/label= on a host whose LSM can't apply them, before
    anything is made (the runtime refuses them too: a container asked to be confined never
    runs unconfined)."""
    from pydocklite.containers.spec_builder import lsm_settings
    profile, label, _mount = lsm_settings(opts)
    if not profile and not label:
        return
    from pydocklite.runtime import lsm
    host = lsm.detect()
    if profile and not host.apparmor:
        raise UsageError(f"--security-opt apparmor={profile}: AppArmor is disabled or not "
                         f"supported on this host: refusing to run the container unconfined "
                         f"(drop the option, or use a host with AppArmor enabled)")
    if label and not host.selinux:
        raise UsageError(f"--security-opt label=...: SELinux is disabled or not supported on "
                         f"this host, so the label {label} can't be applied: refusing to run "
                         f"the container unlabelled (drop the option or use label=disable)")


def _restart_policy(text: str) -> dict:
    name, _, count = (text or "no").partition(":")
    if name not in ("no", "always", "on-failure", "unless-stopped"):
        raise UsageError(f"invalid restart policy '{text}': use no, always, unless-stopped or "
                         "on-failure[:max-retries]")
    if count and name != "on-failure":
        raise UsageError(f"maximum retry count cannot be used with restart policy '{name}'")
    try:
        n = int(count) if count else 0
    except ValueError:
        raise UsageError(f"invalid restart policy '{text}': max-retries must be a number") from None
    return {"Name": name, "MaximumRetryCount": n}
