"""The shim's frozen configuration: what a container's shim needs, decided at create.

The container service writes it once (containers/<id>/shim.json, atomically) next to the
OCI spec; the shim reads it and nothing else of the service's (no Docker-shaped dicts, no
spec annotations). `update --restart` replaces the file; the shim reads the restart policy
again each time the container exits.
"""
from __future__ import annotations

import json

TYPE_CHECKING = False
if TYPE_CHECKING:     # annotations only: importing typing costs ~2 ms per start
    from typing import Optional, Tuple

    from pydocklite.shim.port_spec import PortMapping

from pydocklite.nshost.state import EndpointRequest
from pydocklite.runtime.record import record

RESTART_POLICIES = ("no", "always", "on-failure", "unless-stopped")


@record
class HealthConfig:
    """A container's health check (Docker's HEALTHCHECK / --health-*): durations in ns."""
    test: Tuple[str, ...]           # ("CMD", args...) or ("CMD-SHELL", "command")
    interval: int = 30_000_000_000
    timeout: int = 30_000_000_000
    start_period: int = 0
    start_interval: int = 5_000_000_000
    retries: int = 3


@record
class ShimConfig:
    id: str
    name: str
    bundle: str                     # the OCI bundle: the container's dir (config.json)
    rootfs: str                     # where the runtime mounts the rootfs (the run dir's)
    storage_driver: str             # the snapshotter driver the snapshot was prepared with
    log_path: str
    log_max_size: int = 0           # json-file rotation (0 = none)
    log_max_files: int = 1
    restart: str = "no"             # RESTART_POLICIES
    restart_max: int = 0            # on-failure:N (0 = no limit)
    auto_remove: bool = False       # --rm
    network: str = "bridge"         # bridge (any bridge network) | host | none | container
    ports: Tuple[PortMapping, ...] = ()       # (port_spec imported only when there are some)
    tty: bool = False
    open_stdin: bool = False        # -i: the container's stdin stays open for attaching
    stdin_once: bool = False        # an attached client's EOF closes the container's stdin
    cgroup_base: str = ""           # delegated cgroup dir(s), "a:b" ("" = let the runtime look)
    default_idmap: bool = True      # the spec asks for the default id maps (a user namespace
                                    # made ahead by the shim fits it)
    healthcheck: Optional[HealthConfig] = None
    image: str = ""                 # for the events the shim writes (start, die, health)
    labels: Tuple[Tuple[str, str], ...] = ()
    # the network: its endpoints (network bridge: the networks, in order, as the namespace
    # host needs them; refreshed by the service at each start), the container whose
    # network namespace it shares (network container), and what goes into /etc/hosts and
    # /etc/resolv.conf
    endpoints: Tuple[EndpointRequest, ...] = ()
    join: str = ""
    hostname: str = ""
    domainname: str = ""
    extra_hosts: Tuple[Tuple[str, str], ...] = ()   # (name, ip or "host-gateway")
    dns: Tuple[str, ...] = ()
    dns_search: Tuple[str, ...] = ()
    dns_options: Tuple[str, ...] = ()

    def event(self, events_dir, action: str, **extra) -> None:
        """A container event about this container in the user's journal."""
        from pydocklite import events
        events.container(events_dir, action, self.id, self.image, self.name,
                         dict(self.labels), **extra)

    def should_restart(self, code: int, restarts: int) -> bool:
        """Docker's restart policies, after an exit with `code` and `restarts` so far."""
        if self.restart in ("always", "unless-stopped"):
            return True
        if self.restart == "on-failure":
            return code != 0 and (self.restart_max == 0 or restarts < self.restart_max)
        return False

    def to_json(self) -> dict:
        data = self._asdict()
        data["ports"] = [p._asdict() for p in self.ports]
        data["healthcheck"] = self.healthcheck._asdict() if self.healthcheck else None
        data["endpoints"] = [e.to_json() for e in self.endpoints]
        return data

    @classmethod
    def from_json(cls, data: dict) -> "ShimConfig":
        data = {k: v for k, v in data.items() if k in cls._fields}
        if data.get("ports"):                  # port_spec only when there are ports
            from pydocklite.shim.port_spec import PortMapping
            data["ports"] = tuple(PortMapping(**p) for p in data["ports"])
        else:
            data["ports"] = ()
        data["labels"] = tuple(tuple(kv) for kv in data.get("labels") or ())
        data["endpoints"] = tuple(EndpointRequest.from_json(e)
                                  for e in data.get("endpoints") or ())
        data["extra_hosts"] = tuple(tuple(kv) for kv in data.get("extra_hosts") or ())
        for key in ("dns", "dns_search", "dns_options"):
            data[key] = tuple(data.get(key) or ())
        health = data.get("healthcheck")
        if health:
            health["test"] = tuple(health["test"])
            data["healthcheck"] = HealthConfig(**health)
        return cls(**data)


def read(path) -> ShimConfig:
    with open(path) as f:
        return ShimConfig.from_json(json.load(f))


def write(path, config: ShimConfig, durable: bool = True) -> None:
    from pydocklite.atomic import atomic_write_json
    atomic_write_json(path, config.to_json(), durable=durable)
