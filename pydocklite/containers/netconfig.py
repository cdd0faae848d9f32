"""A container's network, as the container service records it.

At create (plan()): the --network choices resolved to networks (the networks service),
what Docker records (HostConfig.NetworkMode, Dns..., ExtraHosts; the configured endpoints
under config["Networks"]: NetworkID, Aliases, IPAMConfig, MacAddress), what the shim gets
in its frozen configuration (the endpoints as the namespace host needs them, the
container it joins with --network container:NAME), and the initial /etc files.
At each start (refresh()): the networks read again (one removed since is an error, one
changed is passed on as it is now), and a joined container checked to be running.
inspect (settings_json()): Docker's NetworkSettings from the record and the endpoints the
shim wrote when the namespace host attached the container.
"""
from __future__ import annotations

import os
from pathlib import Path

TYPE_CHECKING = False
if TYPE_CHECKING:     # annotations only: importing typing costs ~2 ms per start
    from typing import List, Optional, Tuple

from pydocklite.errors import ContainerStateError, UsageError
from pydocklite.nshost.state import EndpointRequest
from pydocklite.runtime.record import record


@record
class NetPlan:
    mode: str                           # bridge | host | none | container
    network_mode: str                   # HostConfig.NetworkMode (Docker's words)
    endpoints: Tuple[EndpointRequest, ...] = ()
    networks: Optional[dict] = None     # config["Networks"]
    join: str = ""                      # container mode: the other container's id
    join_files: Optional[object] = None     # ... and its files (layout.ContainerFiles)


def plan(settings, store, opts) -> NetPlan:
    from pydocklite.containers.netopts import parse
    # (the builder's RUN gives a mode only: "private"/"default" is the default bridge)
    net = opts.net or parse([opts.network] if opts.network in ("host", "none") else [])
    if net.mode == "container":
        other = store.get(net.container)
        if other.id and other.config.get("HostConfig", {}).get("NetworkMode", ""
                                                              ).startswith("container:"):
            raise UsageError(f"cannot join the network of container {other.name}: it shares "
                             "another container's network itself; join that one")
        return NetPlan("container", f"container:{other.id}", join=other.id,
                       join_files=store.files(other.id))
    if net.mode in ("host", "none"):
        return NetPlan(net.mode, net.mode, networks={net.mode: _configured(None, None)})
    from pydocklite.networks import NetworkService
    resolved = NetworkService(settings).resolve(net.networks)
    endpoints, networks = [], {}
    for network, choice in resolved:
        endpoints.append(EndpointRequest(network.config(), choice.ip, choice.mac,
                                         tuple(choice.aliases)))
        networks[network.name] = _configured(network, choice)
    first = resolved[0][0]
    return NetPlan("bridge", "bridge" if first.builtin else first.name, tuple(endpoints),
                   networks)


def _configured(network, choice) -> dict:
    """A configured endpoint (Docker's EndpointSettings before the container runs)."""
    return {"IPAMConfig": {"IPv4Address": choice.ip} if choice is not None and choice.ip
            else None, "Links": None,
            "Aliases": list(choice.aliases) if choice is not None and choice.aliases else None,
            "MacAddress": choice.mac if choice is not None else "",
            "NetworkID": network.id if network is not None else "", "DriverOpts": None}


def hostname_for(opts, cid: str, plan_: NetPlan) -> str:
    if plan_.mode == "host" and not opts.hostname:
        import socket
        return socket.gethostname()
    return opts.hostname or cid[:12]


def etc_mounts(files, plan_: NetPlan, hostname: str, opts) -> list:
    """Write the container's hostname, hosts and resolv.conf (the namespace host's
    addresses are added by the shim at start) and return their bind mounts; with
    --network container:NAME, hosts and resolv.conf are that container's."""
    from pydocklite.atomic import atomic_write_text
    from pydocklite.nshost import etcfiles
    from pydocklite.nshost.dns import host_resolvers
    net = opts.net
    texts = {"hostname": hostname + "\n"}
    if plan_.mode != "container":
        host_hosts = _read("/etc/hosts") if plan_.mode == "host" else ""
        extra = [(n, ip) for n, ip in (net.extra_hosts if net else ())
                 if ip != "host-gateway"]
        texts["hosts"] = etcfiles.hosts_file(hostname, net.domainname if net else "", [],
                                             extra, host_hosts)
        texts["resolv.conf"] = etcfiles.resolv_conf(
            "host" if plan_.mode == "host" else "bridge", host_resolvers(),
            net.dns if net else (), net.dns_search if net else (),
            net.dns_options if net else (), host_text=_read("/etc/resolv.conf"))
    out = []
    mode = ["rbind", "ro"] if opts.read_only else ["rbind", "rw"]
    for name in ("hostname", "hosts", "resolv.conf"):
        if name in texts:
            path = files.etc_file(name)
            atomic_write_text(path, texts[name], mode=0o644, durable=False)
        else:
            path = plan_.join_files.etc_file(name)
        out.append({"destination": f"/etc/{name}", "type": "bind", "source": str(path),
                    "options": list(mode)})
    return out


def _read(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError:
        return ""


def host_config(opts, plan_: NetPlan) -> dict:
    net = opts.net
    return {"NetworkMode": plan_.network_mode,
            "Dns": list(net.dns) if net else [],
            "DnsSearch": list(net.dns_search) if net else [],
            "DnsOptions": list(net.dns_options) if net else [],
            "ExtraHosts": [f"{n}:{ip}" for n, ip in net.extra_hosts] if net else []}


def refresh(settings, store, state, config) -> object:
    """The shim's configuration for this start: the networks as they are now, and the
    joined container running (ContainerStateError / NetworkNotFoundError otherwise)."""
    if config.network == "container":
        other = store.load(config.join) if config.join else None
        if other is None or not other.status().running:
            name = other.name if other is not None else config.join[:12]
            raise ContainerStateError(f"cannot join network of a non running container: "
                                      f"{name}: start it first")
        return config
    if config.network not in ("bridge", "private"):
        return config
    from pydocklite.networks import NetworkService
    current = {n.id: n for n in NetworkService(settings).all()}
    if config.network == "private":
        # a container created before networks existed had a private network of its own:
        # it gets Docker's default bridge now
        bridge = next(n for n in current.values() if n.builtin and n.name == "bridge")
        return config._replace(network="bridge", endpoints=(EndpointRequest(bridge.config()),))
    endpoints: List[EndpointRequest] = []
    for ep in config.endpoints:
        net = current.get(ep.network.id)
        if net is None:
            from pydocklite.networks import NetworkNotFoundError
            raise NetworkNotFoundError(f"network {ep.network.name} not found: it was removed; "
                                       f"connect the container to another network "
                                       f"(network disconnect -f {ep.network.name} {state.name})")
        endpoints.append(ep._replace(network=net.config()))
    endpoints = tuple(endpoints)
    return config if endpoints == config.endpoints else config._replace(endpoints=endpoints)


def settings_json(state, ports) -> dict:
    """Docker's NetworkSettings: each configured network with what its endpoint has now
    (an address only while the container runs); the top-level fields are the default
    bridge's, as in dockerd."""
    running = state.status().running
    live = state.endpoints if running else {}
    networks = {}
    for name, conf in (state.config.get("Networks") or {}).items():
        now = live.get(name) or {}
        networks[name] = {
            "IPAMConfig": conf.get("IPAMConfig"), "Links": None,
            "Aliases": conf.get("Aliases"), "MacAddress": now.get("MacAddress", ""),
            "DriverOpts": None, "NetworkID": conf.get("NetworkID", ""),
            "EndpointID": now.get("EndpointID", ""), "Gateway": now.get("Gateway", ""),
            "IPAddress": now.get("IPAddress", ""), "IPPrefixLen": now.get("IPPrefixLen", 0),
            "IPv6Gateway": "", "GlobalIPv6Address": "", "GlobalIPv6PrefixLen": 0,
            "DNSNames": now.get("DNSNames")}
    bridge = networks.get("bridge", {})
    return {"Bridge": "", "SandboxID": "", "SandboxKey": "",
            "HairpinMode": False, "LinkLocalIPv6Address": "", "LinkLocalIPv6PrefixLen": 0,
            "Ports": ports, "SecondaryIPAddresses": None, "SecondaryIPv6Addresses": None,
            "EndpointID": bridge.get("EndpointID", ""), "Gateway": bridge.get("Gateway", ""),
            "GlobalIPv6Address": "", "GlobalIPv6PrefixLen": 0,
            "IPAddress": bridge.get("IPAddress", ""), "IPPrefixLen": bridge.get("IPPrefixLen", 0),
            "IPv6Gateway": "", "MacAddress": bridge.get("MacAddress", ""),
            "Networks": networks}


def _mode_refusal(state, network) -> str:
    mode = state.config.get("HostConfig", {}).get("NetworkMode", "")
    if mode.startswith("container:"):
        return ("container sharing network namespace with another container or host cannot "
                "be connected to any other network")
    if mode == "host" or network.driver == "host":
        return "container cannot be disconnected from host network or connected to host network"
    if mode == "none" or network.driver == "null":
        return ("container cannot be connected to multiple networks with one of the networks "
                "in private (none) mode")
    return ""


def connect(settings, network_ref: str, container_ref: str, aliases=(), ip: str = "",
            mac: str = "") -> None:
    """`network connect`: recorded in the container's configuration; a running container
    is attached at once (its namespace passed to the namespace host)."""
    from pydocklite.containers.netopts import NetworkChoice
    from pydocklite.networks import NetworkConflictError, NetworkService
    from pydocklite.shim import config as shim_config
    from pydocklite.state.store import ContainerStore
    service = NetworkService(settings)
    store = ContainerStore(settings.layout.containers_dir)
    with store.operation(container_ref) as state:
        network = service.inspect(network_ref)
        why = _mode_refusal(state, network)
        if why:
            raise UsageError(why)
        if network.name in (state.config.get("Networks") or {}):
            raise NetworkConflictError(f"endpoint with name {state.name} already exists in "
                                       f"network {network.name}")
        [(net, choice)] = service.resolve([NetworkChoice(network.id, tuple(aliases), ip, mac)])
        request = EndpointRequest(net.config(), choice.ip, choice.mac, choice.aliases)
        files = store.files(state.id)
        cfg = shim_config.read(files.shim_config)
        live = {}
        if state.status().running:
            live = _attach_live(settings, state, cfg, request)
        shim_config.write(files.shim_config,
                          cfg._replace(endpoints=cfg.endpoints + (request,)), durable=False)

        def change(s):
            config = dict(s.config)
            config["Networks"] = dict(config.get("Networks") or {}, **{
                net.name: _configured(net, choice)})
            return s._replace(config=config, endpoints=dict(s.endpoints, **live))
        store.update(state.id, change)


def _attach_live(settings, state, cfg, request) -> dict:
    from pydocklite.nshost.client import connect as host_connect
    fd = os.open(f"/proc/{state.init_pid}/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        with host_connect(settings.runtime_dir) as host:
            made = host.call("attach", fds=[fd], cid=state.id, name=state.name,
                             endpoints=[request.to_json()],
                             host_gateway=any(t == "host-gateway" for _, t in cfg.extra_hosts),
                             upstream=list(cfg.dns))
    finally:
        os.close(fd)
    from pydocklite.nshost.state import docker_endpoint
    return {request.network.name: docker_endpoint(e) for e in made}


def disconnect(settings, network_ref: str, container_ref: str, force: bool = False) -> None:
    """`network disconnect`: out of the container's configuration; a running container's
    endpoint goes at once (its veth deleted)."""
    from pydocklite.networks import NetworkNotFoundError, NetworkService
    from pydocklite.shim import config as shim_config
    from pydocklite.state.store import ContainerStore
    store = ContainerStore(settings.layout.containers_dir)
    with store.operation(container_ref) as state:
        configured = state.config.get("Networks") or {}
        try:
            network = NetworkService(settings).inspect(network_ref)
            name, net_id = network.name, network.id
        except NetworkNotFoundError:
            if not force:
                raise
            name = next((n for n, c in configured.items()
                         if n == network_ref or c.get("NetworkID", "").startswith(network_ref)),
                        network_ref)
            net_id = configured.get(name, {}).get("NetworkID", "")
        if name not in configured:
            raise UsageError(f"container {state.name} is not connected to network {name}")
        if network_ref in ("host", "none") or \
                state.config.get("HostConfig", {}).get("NetworkMode", "") in ("host", "none"):
            raise UsageError(_mode_refusal(state, network))
        if state.status().running and net_id:
            from pydocklite.nshost.client import connect as host_connect
            host = host_connect(settings.runtime_dir, start=False)
            if host is not None:
                with host:
                    host.call("detach", cid=state.id, network=net_id)
        files = store.files(state.id)
        cfg = shim_config.read(files.shim_config)
        shim_config.write(files.shim_config, cfg._replace(endpoints=tuple(
            e for e in cfg.endpoints if e.network.id != net_id)), durable=False)

        def change(s):
            config = dict(s.config)
            config["Networks"] = {k: v for k, v in configured.items() if k != name}
            return s._replace(config=config,
                              endpoints={k: v for k, v in s.endpoints.items() if k != name})
        store.update(state.id, change)
