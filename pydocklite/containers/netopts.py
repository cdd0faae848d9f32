"""`run`/`create` network flags -> one frozen NetworkOptions, checked as the Docker CLI and
dockerd check them (pure: no I/O; the networks are resolved by the networks service).

    --network NAME | bridge | host | none | container:NAME   (repeatable for bridge networks;
              the long form name=NET,alias=A,ip=IP,mac-address=MAC too)
    --network-alias, --ip, --mac-address    for the first network
    --dns, --dns-search, --dns-option, --add-host NAME:IP|host-gateway,
    --hostname, --domainname
"""
from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:     # annotations only: importing typing costs ~2 ms per start
    from typing import List, Sequence, Tuple

from pydocklite.errors import UsageError
from pydocklite.runtime.record import record

HOST_GATEWAY = "host-gateway"
SPECIAL = ("host", "none")


@record
class NetworkChoice:
    """One network a container asks for (by name or id), with its endpoint settings."""
    name: str
    aliases: Tuple[str, ...] = ()
    ip: str = ""
    mac: str = ""


@record
class NetworkOptions:
    mode: str = "bridge"                        # bridge (any bridge network) | host | none |
                                                # container
    networks: Tuple[NetworkChoice, ...] = ()    # mode bridge: in order (default: bridge)
    container: str = ""                         # mode container: the other container's ref
    dns: Tuple[str, ...] = ()
    dns_search: Tuple[str, ...] = ()
    dns_options: Tuple[str, ...] = ()
    extra_hosts: Tuple[Tuple[str, str], ...] = ()   # (name, ip or "host-gateway")
    hostname: str = ""
    domainname: str = ""

    @property
    def host_gateway(self) -> bool:
        return any(ip == HOST_GATEWAY for _, ip in self.extra_hosts)


def _long_form(text: str) -> NetworkChoice:
    fields = {}
    aliases: List[str] = []
    for part in text.split(","):
        key, eq, value = part.partition("=")
        if not eq or key not in ("name", "alias", "ip", "mac-address", "driver-opt",
                                 "gw-priority", "link-local-ip", "ip6"):
            raise UsageError(f"invalid --network '{text}': use NAME or "
                             "name=NET[,alias=A][,ip=IP][,mac-address=MAC]")
        if key == "alias":
            aliases.append(value)
        elif key in ("ip6", "link-local-ip"):
            raise UsageError(f"invalid --network '{text}': IPv6 is not supported")
        else:
            fields[key] = value
    if not fields.get("name"):
        raise UsageError(f"invalid --network '{text}': name= is missing")
    return NetworkChoice(fields["name"], tuple(aliases), fields.get("ip", ""),
                         fields.get("mac-address", ""))


def _check_ip(ip: str, flag: str) -> str:
    from pydocklite.nshost.ipam import ip_to_int
    try:
        ip_to_int(ip)
    except UsageError:
        raise UsageError(f"invalid {flag} {ip!r}: use an IPv4 address, e.g. 172.20.0.5"
                         ) from None
    return ip


def _check_hostname(name: str, flag: str) -> str:
    labels = name.split(".")
    ok = 0 < len(name) <= 253 and all(
        0 < len(lb) <= 63 and lb[0] != "-" and lb[-1] != "-" and
        all(c.isalnum() or c in "-_" for c in lb) for lb in labels)
    if not ok:
        raise UsageError(f"invalid {flag} {name!r}: use letters, digits, '-', '_' and '.' "
                         "(labels of at most 63 characters)")
    return name


def parse(networks: Sequence[str] = (), aliases: Sequence[str] = (), ip: str = "",
          mac: str = "", dns: Sequence[str] = (), dns_search: Sequence[str] = (),
          dns_options: Sequence[str] = (), add_hosts: Sequence[str] = (),
          hostname: str = "", domainname: str = "") -> NetworkOptions:
    from pydocklite.nshost.ipam import check_mac
    choices: List[NetworkChoice] = []
    mode, container = "bridge", ""
    for text in networks or ("bridge",):
        if text in ("default", ""):
            text = "bridge"
        if "=" in text and not text.startswith("container:"):
            choices.append(_long_form(text))
        elif text.startswith("container:"):
            container = text.partition(":")[2]
            if not container:
                raise UsageError("invalid --network 'container:': name the container, e.g. "
                                 "container:web")
            mode = "container"
        elif text in SPECIAL:
            mode = text
        else:
            choices.append(NetworkChoice(text))
    if mode != "bridge" and (choices or len(networks) > 1):
        raise UsageError(f"conflicting options: --network {networks[0]} can't be combined "
                         "with other networks")
    if mode == "container" and (dns or dns_search or dns_options or add_hosts or hostname
                                or mac or aliases or ip):
        raise UsageError("conflicting options: --dns, --dns-search, --dns-option, --add-host, "
                         "--hostname, --mac-address, --network-alias and --ip can't be used "
                         "with --network container:NAME (it shares that container's)")
    if (aliases or ip or mac) and mode != "bridge":
        raise UsageError(f"conflicting options: --network-alias, --ip and --mac-address need "
                         f"a bridge network, not --network {mode}")
    if choices and (aliases or ip or mac):
        first = choices[0]
        choices[0] = first._replace(aliases=first.aliases + tuple(aliases),
                                    ip=ip or first.ip, mac=mac or first.mac)
    names = [c.name for c in choices]
    if len(set(names)) != len(names):
        raise UsageError("the same network was given twice with --network")
    for c in choices:
        if c.ip:
            _check_ip(c.ip, "--ip")
        if c.mac:
            check_mac(c.mac)
        for a in c.aliases:
            _check_hostname(a, "--network-alias")
    extra = []
    for text in add_hosts:
        name, sep, target = text.partition(":")
        if not sep and "=" in text:
            name, _, target = text.partition("=")
        if not name or not target:
            raise UsageError(f"invalid --add-host '{text}': use NAME:IP or NAME:host-gateway")
        if target != HOST_GATEWAY:
            if ":" in target:
                raise UsageError(f"invalid --add-host '{text}': IPv6 is not supported")
            _check_ip(target, "--add-host address")
        extra.append((_check_hostname(name, "--add-host name"), target))
    for server in dns:
        _check_ip(server, "--dns")
    for domain in dns_search:
        if domain != ".":
            _check_hostname(domain, "--dns-search")
    return NetworkOptions(
        mode=mode, networks=tuple(choices), container=container, dns=tuple(dns),
        dns_search=tuple(dns_search), dns_options=tuple(dns_options), extra_hosts=tuple(extra),
        hostname=_check_hostname(hostname, "--hostname") if hostname else "",
        domainname=_check_hostname(domainname, "--domainname") if domainname else "")


def from_api(host_config: dict, networking_config: dict, config: dict) -> NetworkOptions:
    """The Engine API's create body -> NetworkOptions: HostConfig.NetworkMode ("default",
    "bridge", "host", "none", "container:ID" or a network's name), Dns, DnsSearch,
    DnsOptions, ExtraHosts; NetworkingConfig.EndpointsConfig ({network: {Aliases,
    IPAMConfig: {IPv4Address}, MacAddress}}: the mode's network first, then the others, as
    API >= 1.44 allows); Config.Hostname, Domainname, MacAddress."""
    host_config = host_config if isinstance(host_config, dict) else {}
    endpoints = (networking_config or {}).get("EndpointsConfig") \
        if isinstance(networking_config, dict) else None
    endpoints = endpoints if isinstance(endpoints, dict) else {}
    config = config if isinstance(config, dict) else {}
    mode = host_config.get("NetworkMode") or "default"
    if not isinstance(mode, str):
        raise UsageError("invalid HostConfig.NetworkMode: expected a string")
    names = [mode] + [n for n in endpoints if n != mode and
                      not (mode in ("default", "bridge") and n in ("default", "bridge"))]
    choices = []
    for name in names:
        ep = endpoints.get(name) or endpoints.get("bridge" if name == "default" else name) or {}
        if not isinstance(ep, dict):
            raise UsageError(f"invalid NetworkingConfig.EndpointsConfig[{name!r}]")
        ipam = ep.get("IPAMConfig") if isinstance(ep.get("IPAMConfig"), dict) else {}
        aliases = [a for a in (ep.get("Aliases") or ()) if isinstance(a, str)]
        fields = [f"name={name}"] + [f"alias={a}" for a in aliases]
        if ipam.get("IPv4Address"):
            fields.append(f"ip={ipam['IPv4Address']}")
        mac = ep.get("MacAddress") or (config.get("MacAddress") if name == mode else "")
        if mac:
            fields.append(f"mac-address={mac}")
        choices.append(",".join(fields) if len(fields) > 1 and
                       not name.startswith("container:") and name not in SPECIAL else name)

    def strings(value, what: str) -> list:
        if value is None:
            return []
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise UsageError(f"invalid HostConfig.{what}: expected a list of strings")
        return value
    return parse(choices, dns=strings(host_config.get("Dns"), "Dns"),
                 dns_search=strings(host_config.get("DnsSearch"), "DnsSearch"),
                 dns_options=strings(host_config.get("DnsOptions"), "DnsOptions"),
                 add_hosts=strings(host_config.get("ExtraHosts"), "ExtraHosts"),
                 hostname=config.get("Hostname") or "" if isinstance(
                     config.get("Hostname"), (str, type(None))) else "",
                 domainname=config.get("Domainname") or "" if isinstance(
                     config.get("Domainname"), (str, type(None))) else "")
