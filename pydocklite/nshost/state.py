"""What the namespace host knows, as frozen records, and where it keeps it.

The host writes its whole state to `state.json` (atomically) after every change, so a
host started after this one was killed can adopt what survived: the pause process and
its namespaces, the outbound helper, bridges, endpoints (checked against the links that
still exist) and shared lowers (checked against their FUSE servers).

$XDG_RUNTIME_DIR/pydocklite/nshost/   (HostFiles)
  ctl.sock      the control socket (JSON lines), 0700 directory: the user's only
  state.json    the state below
  host.log      the host's log (`info` names it)
  start.lock    taken while a host is being started (one starter at a time)
  lowers/<key>/ mount points of the shared image lowers (in the host's mount namespace)
"""
from __future__ import annotations

import json
import os
from pathlib import Path

TYPE_CHECKING = False
if TYPE_CHECKING:     # annotations only: importing typing costs ~2 ms per start
    from typing import Dict, Optional, Tuple

from pydocklite.runtime.record import Factory, record


class HostFiles:
    """Paths of the namespace host under the runtime directory."""
    __slots__ = ("dir",)

    def __init__(self, runtime_dir) -> None:
        self.dir = Path(runtime_dir) / "nshost"

    @property
    def socket(self) -> Path:
        return self.dir / "ctl.sock"

    @property
    def state(self) -> Path:
        return self.dir / "state.json"

    @property
    def log(self) -> Path:
        return self.dir / "host.log"

    @property
    def start_lock(self) -> Path:
        return self.dir / "start.lock"

    @property
    def lowers_dir(self) -> Path:
        return self.dir / "lowers"

    def lower(self, key: str) -> Path:
        return self.lowers_dir / key[:16]

    def ensure(self) -> "HostFiles":
        self.dir.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.dir.mkdir(exist_ok=True, mode=0o700)
        return self


@record
class NetworkConfig:
    """A network as the host needs it (the networks service's record, frozen, passed in
    each request: the host reads no store)."""
    id: str
    name: str
    bridge: str
    subnet: str
    gateway: str
    ip_range: str = ""
    internal: bool = False
    named: bool = True            # names resolve on it (all but the default bridge)
    mtu: int = 0

    @classmethod
    def from_json(cls, data: dict) -> "NetworkConfig":
        return cls(**{k: data[k] for k in cls._fields if k in data})


@record
class EndpointRequest:
    """One network a container asks to be attached to."""
    network: NetworkConfig
    ip: str = ""                  # --ip; "" = allocate
    mac: str = ""                 # --mac-address; "" = Docker's from the address
    aliases: Tuple[str, ...] = ()

    @classmethod
    def from_json(cls, data: dict) -> "EndpointRequest":
        return cls(NetworkConfig.from_json(data["network"]), data.get("ip", ""),
                   data.get("mac", ""), tuple(data.get("aliases", ())))

    def to_json(self) -> dict:
        d = self._asdict()
        d["network"] = self.network._asdict()
        d["aliases"] = list(self.aliases)
        return d


@record
class Endpoint:
    """A container attached to a network: its veth (host side `host_if`, `if_name`
    inside), address and the names DNS answers with."""
    cid: str
    network: str                  # network id
    ip: str
    prefix: int
    gateway: str
    mac: str
    host_if: str
    if_name: str
    names: Tuple[str, ...]        # container name, aliases, short id
    aliases: Tuple[str, ...] = ()
    host_gateway: bool = False    # may reach the host's loopback (--add-host X:host-gateway)
    upstream: Tuple[str, ...] = ()   # its --dns servers
    id: str = ""                  # Docker's EndpointID

    def to_json(self) -> dict:
        d = self._asdict()
        for k in ("names", "aliases", "upstream"):
            d[k] = list(d[k])
        return d

    @classmethod
    def from_json(cls, data: dict) -> "Endpoint":
        data = {k: data[k] for k in cls._fields if k in data}
        for k in ("names", "aliases", "upstream"):
            data[k] = tuple(data.get(k, ()))
        return cls(**data)


@record
class Lower:
    """A shared read-only view of an image's layers: its FUSE server and who holds it
    (container id -> [pid, start time] pairs whose death releases the hold); unused_since:
    the monotonic time its last hold went (0 while held), the linger's start."""
    key: str
    path: str
    pid: int
    start_time: int
    holders: Dict[str, list] = Factory(dict)
    unused_since: float = 0.0


@record
class HostState:
    pid: int = 0                  # the host process
    start_time: int = 0
    pause_pid: int = 0            # holds the user, mount and network namespaces
    pause_start: int = 0
    idmap: str = ""               # "subuid" or "single-id"
    idmap_warning: str = ""
    outbound: str = ""            # slirp4netns | pasta | "" (none: why in outbound_why)
    outbound_why: str = ""
    outbound_pid: int = 0
    outbound_start: int = 0
    outbound_if: str = ""
    host_gateway: str = ""        # the address that reaches the host's loopback
    firewall: str = ""            # why there are no packet rules ("": they are applied)
    networks: Dict[str, NetworkConfig] = Factory(dict)
    last_ip: Dict[str, str] = Factory(dict)       # network id -> last address handed out
    endpoints: Dict[str, Endpoint] = Factory(dict)  # "cid/network id" -> endpoint
    lowers: Dict[str, Lower] = Factory(dict)
    lost: Tuple[dict, ...] = ()   # endpoints a dead host's namespaces took with them

    def to_json(self) -> dict:
        d = self._asdict()
        d["networks"] = {k: v._asdict() for k, v in self.networks.items()}
        d["endpoints"] = {k: v.to_json() for k, v in self.endpoints.items()}
        d["lowers"] = {k: v._asdict() for k, v in self.lowers.items()}
        d["lost"] = list(self.lost)
        return d

    @classmethod
    def from_json(cls, data: dict) -> "HostState":
        data = {k: data[k] for k in cls._fields if k in data}
        data["networks"] = {k: NetworkConfig.from_json(v)
                            for k, v in (data.get("networks") or {}).items()}
        data["endpoints"] = {k: Endpoint.from_json(v)
                             for k, v in (data.get("endpoints") or {}).items()}
        data["lowers"] = {k: Lower(**v) for k, v in (data.get("lowers") or {}).items()}
        data["lost"] = tuple(data.get("lost") or ())
        return cls(**data)


def docker_endpoint(e: dict) -> dict:
    """An endpoint the host made (Endpoint.to_json()) as a container's record keeps it:
    Docker's NetworkSettings.Networks fields."""
    return {"NetworkID": e["network"], "EndpointID": e["id"], "Gateway": e["gateway"],
            "IPAddress": e["ip"], "IPPrefixLen": e["prefix"], "MacAddress": e["mac"],
            "DNSNames": list(e["names"]) or None}


def endpoint_key(cid: str, network_id: str) -> str:
    return f"{cid}/{network_id}"


def host_died(runtime_dir) -> bool:
    """Had a host been running here, and is it gone without having said so (killed)? Or
    has its successor something to tell (containers that lost their network)? Cheap: a
    small file read and a look at /proc (the CLI asks before its container verbs)."""
    try:
        with open(HostFiles(runtime_dir).state) as f:
            data = json.load(f)
    except (OSError, ValueError):
        return False
    if data.get("lost"):
        return True
    from pydocklite.runtime.state import proc_start_time
    pid = data.get("pid") or 0
    return not pid or proc_start_time(pid) != data.get("start_time")


def read_state(files: HostFiles) -> Optional[HostState]:
    try:
        with open(files.state) as f:
            return HostState.from_json(json.load(f))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, TypeError, KeyError):
        return None       # torn or from another version: start afresh


def write_state(files: HostFiles, state: HostState) -> None:
    """Temp file + rename, without fsync: the file lives in the runtime directory (per
    boot) and is rewritten on every request, where an fsync would cost the start of a
    container up to tens of ms on a busy disk."""
    tmp = files.dir / f".state.{os.getpid()}.tmp"
    with open(tmp, "w") as f:
        json.dump(state.to_json(), f)
    os.replace(tmp, files.state)
