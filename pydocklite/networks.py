"""The networks service: Docker's networks, kept in the store, served by the namespace host.

The CLI's `network` verbs and the Engine API's /networks endpoints both call
NetworkService; nothing else writes networks.json (StoreLayout.networks_db, replaced
atomically under StoreLayout.networks_lock).

Docker's three predefined networks exist from the first use: `bridge` (driver bridge,
172.17.0.0/16, every container's network unless told otherwise; reachable by address, no
names), `host` (the host's network namespace) and `none` (loopback only). User networks
(`network create`, driver bridge) get a subnet from Docker's default pools (or --subnet),
a bridge `br-<id[:12]>` in the namespace host, and DNS for the names of their containers.
Which containers are attached right now (addresses, endpoints) is the namespace host's
knowledge: `inspect` asks it when it runs, and a stopped host means no live endpoints.
"""
from __future__ import annotations

import contextlib
import json
import os

TYPE_CHECKING = False
if TYPE_CHECKING:     # annotations only: importing typing costs ~2 ms per start
    from typing import Dict, Iterator, List, Optional, Sequence, Tuple

from pydocklite.errors import PydockliteError, UsageError
from pydocklite.filters import labels_pass
from pydocklite.naming import check_network_name
from pydocklite.nshost import ipam
from pydocklite.nshost.state import NetworkConfig
from pydocklite.runtime.record import record

BUILTIN = ("bridge", "host", "none")
DRIVERS = {"bridge": "bridge", "host": "host", "none": "null"}
MTU_OPTION = "com.docker.network.driver.mtu"
BRIDGE_NAME_OPTION = "com.docker.network.bridge.name"
KNOWN_OPTIONS = (MTU_OPTION, BRIDGE_NAME_OPTION, "com.docker.network.bridge.enable_icc",
                 "com.docker.network.bridge.enable_ip_masquerade",
                 "com.docker.network.bridge.host_binding_ipv4",
                 "com.docker.network.bridge.default_bridge", "com.docker.network.internal")
DEFAULT_BRIDGE_OPTIONS = (("com.docker.network.bridge.default_bridge", "true"),
                          ("com.docker.network.bridge.enable_icc", "true"),
                          ("com.docker.network.bridge.enable_ip_masquerade", "true"),
                          ("com.docker.network.bridge.host_binding_ipv4", "0.0.0.0"),
                          (BRIDGE_NAME_OPTION, "docker0"), (MTU_OPTION, "1500"))
FILTER_KEYS = ("name", "id", "label", "label!", "driver", "type", "scope", "dangling")


class NetworkError(PydockliteError):
    pass


class NetworkNotFoundError(NetworkError):
    """No such network (Docker: 404)."""


class NetworkConflictError(NetworkError):
    """A name taken, a network still in use, a predefined network (Docker: 409 / 403)."""


@record
class Network:
    id: str
    name: str
    driver: str                   # bridge | host | null
    created: str
    subnet: str = ""
    gateway: str = ""
    ip_range: str = ""
    internal: bool = False
    attachable: bool = False
    labels: Tuple[Tuple[str, str], ...] = ()
    options: Tuple[Tuple[str, str], ...] = ()
    builtin: bool = False

    @property
    def short_id(self) -> str:
        return self.id[:12]

    @property
    def bridge(self) -> str:
        """The bridge's interface name in the namespace host."""
        return dict(self.options).get(BRIDGE_NAME_OPTION) or f"br-{self.id[:12]}"

    @property
    def named(self) -> bool:
        """Names resolve on it: on every bridge network but Docker's default one."""
        return not self.builtin

    def config(self) -> NetworkConfig:
        """What the namespace host needs to make and serve it."""
        mtu = dict(self.options).get(MTU_OPTION, "")
        return NetworkConfig(self.id, self.name, self.bridge, self.subnet, self.gateway,
                             self.ip_range, self.internal, self.named,
                             int(mtu) if mtu.isdigit() else 0)

    def to_json(self) -> dict:
        d = self._asdict()
        d["labels"] = [list(x) for x in self.labels]
        d["options"] = [list(x) for x in self.options]
        return d

    @classmethod
    def from_json(cls, data: dict) -> "Network":
        data = {k: data[k] for k in cls._fields if k in data}
        data["labels"] = tuple(tuple(x) for x in data.get("labels", ()))
        data["options"] = tuple(tuple(x) for x in data.get("options", ()))
        return cls(**data)


def network_json(net: Network, containers: Optional[dict] = None) -> dict:
    """Docker's shape (`network inspect`, GET /networks/ID); containers: {id: {Name,
    EndpointID, MacAddress, IPv4Address, IPv6Address}} of the live endpoints."""
    config = []
    if net.subnet:
        c = {"Subnet": net.subnet, "Gateway": net.gateway}
        if net.ip_range:
            c["IPRange"] = net.ip_range
        config.append(c)
    return {"Name": net.name, "Id": net.id, "Created": net.created, "Scope": "local",
            "Driver": net.driver, "EnableIPv4": True, "EnableIPv6": False,
            "IPAM": {"Driver": "default", "Options": None if net.builtin else {},
                     "Config": config},
            "Internal": net.internal, "Attachable": net.attachable, "Ingress": False,
            "ConfigFrom": {"Network": ""}, "ConfigOnly": False,
            "Containers": containers or {}, "Options": dict(net.options),
            "Labels": dict(net.labels)}


def parse_filters(pairs: Sequence[str]) -> Dict[str, List[str]]:
    """`--filter k=v` values -> {k: [v...]} (keys checked)."""
    from pydocklite.filters import parse_filters as parse
    return parse(pairs, FILTER_KEYS)


def matches(net: Network, filters: Dict[str, List[str]], used: bool = False) -> bool:
    labels = dict(net.labels)
    for key, values in filters.items():
        if key == "name" and not any(v in net.name for v in values):
            return False
        if key == "id" and not any(net.id.startswith(v) for v in values):
            return False
        if key == "driver" and net.driver not in values:
            return False
        if key == "scope" and "local" not in values:
            return False
        if key in ("label", "label!") and not labels_pass(labels, {key: values}):
            return False
        if key == "type":
            for v in values:
                if v not in ("custom", "builtin"):
                    raise UsageError(f"invalid filter 'type={v}': use custom or builtin")
            if ("builtin" if net.builtin else "custom") not in values:
                return False
        if key == "dangling":
            for v in values:
                if v.lower() not in ("true", "false", "1", "0"):
                    raise UsageError(f"invalid filter 'dangling={v}': use true or false")
                if (v.lower() in ("true", "1")) != (not used and not net.builtin):
                    return False
    return True


def _new_id() -> str:
    return os.urandom(32).hex()


def _now() -> str:
    import time
    ns = time.time_ns()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ns // 10 ** 9)) + \
        f".{ns % 10 ** 9:09d}Z"


class NetworkService:
    def __init__(self, settings) -> None:
        self.settings = settings
        self.layout = settings.layout

    # --- the store ----------------------------------------------------------------------
    @contextlib.contextmanager
    def _locked(self) -> Iterator[Dict[str, Network]]:
        """The networks, read under the lock; changes to the dict are written back."""
        import fcntl
        self.layout.ensure()
        fd = os.open(str(self.layout.networks_lock), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC,
                     0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            nets = self._read()
            before = dict(nets)
            if not any(n.builtin for n in nets.values()):
                nets.update(self._builtins())
            yield nets
            if nets != before:
                from pydocklite.atomic import atomic_write_json
                atomic_write_json(self.layout.networks_db,
                                  {"networks": [n.to_json() for n in nets.values()]})
        finally:
            os.close(fd)

    def _read(self) -> Dict[str, Network]:
        try:
            with open(self.layout.networks_db) as f:
                data = json.load(f)
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as e:
            raise NetworkError(f"the networks file {self.layout.networks_db} is unreadable "
                               f"({e}): fix or remove it") from None
        return {n["id"]: Network.from_json(n) for n in data.get("networks", ())}

    @staticmethod
    def _builtins() -> Dict[str, Network]:
        now = _now()
        nets = [Network(_new_id(), "bridge", "bridge", now, ipam.DEFAULT_BRIDGE_SUBNET,
                        ipam.default_gateway(ipam.DEFAULT_BRIDGE_SUBNET),
                        options=DEFAULT_BRIDGE_OPTIONS, builtin=True),
                Network(_new_id(), "host", "host", now, builtin=True),
                Network(_new_id(), "none", "null", now, builtin=True)]
        return {n.id: n for n in nets}

    def all(self) -> List[Network]:
        nets = self._read()
        if not any(n.builtin for n in nets.values()):
            with self._locked() as nets:
                pass
        return sorted(nets.values(), key=lambda n: n.name)

    @staticmethod
    def _find(nets: Dict[str, Network], ref: str) -> Network:
        """By full id, by name, then by a unique id prefix (Docker's order)."""
        if ref in nets:
            return nets[ref]
        for n in nets.values():
            if n.name == ref:
                return n
        found = [n for n in nets.values() if ref and n.id.startswith(ref)]
        if len(found) == 1:
            return found[0]
        if len(found) > 1:
            raise UsageError(f"network {ref} is ambiguous ({len(found)} matches): give more "
                             "of its id or its name")
        raise NetworkNotFoundError(f"network {ref} not found")

    def inspect(self, ref: str) -> Network:
        return self._find({n.id: n for n in self.all()}, ref)

    def list(self, filters: Optional[Dict[str, List[str]]] = None) -> List[Network]:
        filters = filters or {}
        used = self.used_networks() if "dangling" in filters else set()
        return [n for n in self.all() if matches(n, filters, n.id in used)]

    def resolve(self, choices) -> List[Tuple[Network, object]]:
        """The networks of a container's --network choices (netopts.NetworkChoice), checked
        as dockerd checks them: (network, choice) pairs, in order."""
        nets = {n.id: n for n in self.all()}
        out = []
        for c in choices:
            net = self._find(nets, c.name)
            if net.driver != "bridge":
                raise UsageError(f"container cannot be connected to network {net.name} "
                                 f"(driver {net.driver}) along with others: use --network "
                                 f"{net.name} alone")
            if net.builtin and c.aliases:
                raise UsageError("network-scoped alias is supported only for containers in "
                                 "user defined networks")
            if net.builtin and c.ip:
                raise UsageError("user specified IP address is supported on user defined "
                                 "networks only")
            if c.ip:
                ipam.check_in(net.subnet, c.ip, "address")
            out.append((net, c))
        return out

    # --- create / remove ------------------------------------------------------------------
    def create(self, name: str, driver: str = "bridge", subnet: str = "", gateway: str = "",
               ip_range: str = "", internal: bool = False, labels: Optional[dict] = None,
               options: Optional[dict] = None, attachable: bool = False,
               ipv6: bool = False) -> Network:
        """A new bridge network; nothing is written unless every check passes."""
        check_network_name(name)
        driver = driver or "bridge"
        if driver != "bridge":
            raise UsageError(f"network driver {driver!r} is not supported: rootless "
                             "networks use the bridge driver")
        if ipv6:
            raise UsageError("IPv6 networks are not supported (--ipv6): leave it out")
        options = dict(options or {})
        for key, value in options.items():
            if key not in KNOWN_OPTIONS:
                raise UsageError(f"unknown network option {key!r}: supported are "
                                 f"{', '.join(KNOWN_OPTIONS[:2])}")
            if key == MTU_OPTION and not (value.isdigit() and 68 <= int(value) <= 65535):
                raise UsageError(f"invalid {MTU_OPTION} {value!r}: a number of bytes from "
                                 "68 to 65535")
            if key == BRIDGE_NAME_OPTION and not (0 < len(value) < 16 and
                                                  value.replace("-", "").isalnum()):
                raise UsageError(f"invalid {BRIDGE_NAME_OPTION} {value!r}: an interface name "
                                 "of 1-15 letters, digits or dashes")
        if options.get("com.docker.network.internal", "") in ("true", "1"):
            internal = True
        if gateway and not subnet:
            raise UsageError("--gateway needs --subnet: give the subnet it belongs to")
        if ip_range and not subnet:
            raise UsageError("--ip-range needs --subnet: give the subnet it belongs to")
        if subnet:
            ipam.parse_cidr(subnet)
            if gateway:
                ipam.check_in(subnet, gateway, "gateway")
            if ip_range:
                ipam.check_range(subnet, ip_range)
        with self._locked() as nets:
            for n in nets.values():
                if n.name == name:
                    raise NetworkConflictError(f"network with name {name} already exists")
                wanted = options.get(BRIDGE_NAME_OPTION)
                if wanted and n.bridge == wanted:
                    raise NetworkConflictError(f"bridge name {wanted} is used by network "
                                               f"{n.name}: pick another")
            taken = [(n.name, n.subnet) for n in nets.values() if n.subnet]
            if subnet:
                ipam.check_subnet(subnet, taken)
            else:
                subnet = ipam.pick_subnet([c for _, c in taken],
                                          ipam.host_networks() + ["10.0.2.0/24"])
            net = Network(_new_id(), name, "bridge", _now(), subnet,
                          gateway or ipam.default_gateway(subnet), ip_range, internal,
                          attachable, tuple(sorted((labels or {}).items())),
                          tuple(sorted(options.items())))
            nets[net.id] = net
        return net

    def remove(self, ref: str) -> str:
        with self._locked() as nets:
            net = self._find(nets, ref)
            if net.builtin:
                raise NetworkConflictError(f"{net.name} is a pre-defined network and cannot "
                                           "be removed")
            live = self.live_endpoints().get(net.id)
            if live:
                names = ", ".join(sorted(e["Name"] for e in live.values()))
                raise NetworkConflictError(f"error while removing network: network {net.name} "
                                           f"id {net.id} has active endpoints ({names}): stop "
                                           "or disconnect them first")
            self._drop_bridge(net.id)
            del nets[net.id]
        return net.name

    def prune(self, filters: Optional[Dict[str, List[str]]] = None) -> List[str]:
        """Remove the user networks no container (running or not) refers to."""
        filters = dict(filters or {})
        for key in filters:
            if key not in ("label", "label!", "until"):
                raise UsageError(f"invalid filter '{key}': network prune takes label= and "
                                 "label!=")
        used = self.used_networks()
        removed = []
        with self._locked() as nets:
            live = self.live_endpoints()
            for net in sorted(nets.values(), key=lambda n: n.name):
                if net.builtin or net.id in used or net.id in live or \
                        not matches(net, filters):
                    continue
                self._drop_bridge(net.id)
                del nets[net.id]
                removed.append(net.name)
        return removed

    # --- what uses them ---------------------------------------------------------------------
    def used_networks(self) -> set:
        """Ids of the networks a container record refers to (stopped ones too)."""
        from pydocklite.state.store import ContainerStore
        used = set()
        store = ContainerStore(self.layout.containers_dir)
        for state in store.list():
            for ep in (state.config.get("Networks") or {}).values():
                if ep.get("NetworkID"):
                    used.add(ep["NetworkID"])
        return used

    def _host(self, start: bool = False):
        from pydocklite.nshost.client import connect
        return connect(self.settings.runtime_dir, start=start)

    def live_endpoints(self) -> Dict[str, dict]:
        """{network id: {container id: Docker's Containers entry}} of the endpoints
        attached now ({} when no namespace host runs)."""
        host = self._host()
        if host is None:
            return {}
        with host:
            st = host.call("status")
        out: Dict[str, dict] = {}
        for ep in st.get("endpoints", {}).values():
            out.setdefault(ep["network"], {})[ep["cid"]] = {
                "Name": ep["names"][0] if ep["names"] else "", "EndpointID": ep.get("id", ""),
                "MacAddress": ep["mac"], "IPv4Address": f"{ep['ip']}/{ep['prefix']}",
                "IPv6Address": ""}
        return out

    def _drop_bridge(self, network_id: str) -> None:
        host = self._host()
        if host is not None:
            with host:
                host.call("network_rm", network=network_id)

    def connect(self, ref: str, container: str, aliases=(), ip: str = "", mac: str = "") -> None:
        """`network connect` (a running container is attached at once)."""
        from pydocklite.containers.netconfig import connect
        connect(self.settings, ref, container, aliases, ip, mac)

    def disconnect(self, ref: str, container: str, force: bool = False) -> None:
        """`network disconnect` (a running container's endpoint goes at once)."""
        from pydocklite.containers.netconfig import disconnect
        disconnect(self.settings, ref, container, force)

    def inspect_json(self, ref: str) -> dict:
        net = self.inspect(ref)
        containers = self.live_endpoints().get(net.id, {}) if net.driver == "bridge" else {}
        if containers:
            from pydocklite.state.store import ContainerStore
            store = ContainerStore(self.layout.containers_dir)
            for cid, entry in containers.items():
                try:
                    entry["Name"] = store.load(cid).name or entry["Name"]
                except Exception:  # noqa: BLE001 - a record removed meanwhile
                    pass
        return network_json(net, containers)


def report_restart(settings, out) -> None:
    """After the namespace host was killed: start its successor (it adopts what survived)
    and say which running containers lost their network, and how to get it back."""
    from pydocklite.nshost.client import restarted
    from pydocklite.state.store import ContainerStore
    try:
        lost = restarted(settings.runtime_dir)
    except Exception as e:  # noqa: BLE001 - told; the verb goes on
        out.write(f"WARNING: the namespace host is gone and could not be restarted: {e}\n")
        return
    store = ContainerStore(settings.layout.containers_dir)
    names = []
    for entry in lost:
        try:
            state = store.load(entry["id"])
        except Exception:  # noqa: BLE001 - removed since
            continue
        if state.status().running:
            names.append(state.name)
    if names:
        out.write(f"WARNING: the namespace host was killed and its network namespace went "
                  f"with it: containers {', '.join(names)} lost their network (they still "
                  f"run); restart them to get it back: pydocklite restart "
                  f"{' '.join(names)}\n")
