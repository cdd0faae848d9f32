"""The namespace host's state and operations (the event loop is serve.py).

boot() makes or adopts the namespaces (pause.py), starts the outbound helper, enters the
namespaces and restores what a killed predecessor left (state.py's file, checked against
the links and processes that really exist). The operations are what clients ask for over
the control socket: attach/detach a container's network namespace, hold/release a shared
lower, remove a network's bridge, report status.
"""
from __future__ import annotations

import os
import time

TYPE_CHECKING = False
if TYPE_CHECKING:     # annotations only: importing typing costs ~2 ms per start
    from typing import List, Optional

from pydocklite.nshost import ipam, lowers, nft
from pydocklite.nshost.netlink import Netlink, NetlinkError, set_sysctl
from pydocklite.nshost.pause import alive, join, make_pause, start_outbound
from pydocklite.nshost.state import (Endpoint, EndpointRequest, HostFiles, HostState,
                                     NetworkConfig, endpoint_key, read_state, write_state)
from pydocklite.runtime.state import proc_start_time


class HostError(Exception):
    """A request the host refuses: the message goes back to the client as is."""


def _random_hex(n: int) -> str:
    return os.urandom((n + 1) // 2).hex()[:n]


class Host:
    def __init__(self, files: HostFiles, log) -> None:
        self.files, self.log = files, log
        self.state = HostState()
        self.nl: Optional[Netlink] = None
        self.home_net = -1           # an fd of our network namespace (setns back to it)
        self.exit_w = -1             # our copy of the outbound helper's exit pipe
        self.upstream: List[str] = []
        self.on_networks_changed = lambda: None     # serve.py: rebind DNS sockets
        self.on_names_changed = lambda: None
        self.linger = lowers.linger()

    # --- start --------------------------------------------------------------------------
    def boot(self) -> None:
        """Make or adopt the namespaces, start (or keep) the outbound helper, enter the
        namespaces, restore what a killed predecessor left."""
        from pydocklite.nshost.dns import host_resolvers
        old = read_state(self.files)
        self.upstream = list(host_resolvers()[0])
        exit_r, self.exit_w = os.pipe()
        st, adopted = self._namespaces(old)
        st = self._outbound(st, old, adopted, exit_r)
        os.close(exit_r)
        join(st.pause_pid)
        self.home_net = os.open("/proc/self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        self.nl = Netlink()
        lo = self.nl.link("lo")
        if lo is not None:
            self.nl.set_up(lo.index, "lo")
        set_sysctl("net.ipv4.ip_forward", "1")
        # frames bridged within one network skip netfilter (the kernel's default sends them
        # through the IP hooks: conntrack on every packet between two containers)
        for name in ("iptables", "ip6tables", "arptables"):
            try:
                set_sysctl(f"net.bridge.bridge-nf-call-{name}", "0")
            except OSError:
                pass              # no br_netfilter here: nothing to turn off
        if st.outbound == "pasta":
            gw, index = self.nl.default_gateway()
            name = next((ln.name for ln in self.nl.links() if ln.index == index), "")
            st = st._replace(outbound_if=name, host_gateway=gw)
        self.state = st._replace(lost=old.lost if old is not None else ())
        if adopted:
            self._restore(old)
        elif old is not None and old.endpoints:
            self._lose(old.endpoints.values(), "its namespaces are gone")
        self.apply_rules()
        self.save()

    def _namespaces(self, old: Optional[HostState]):
        """(state with the pause process, whether the old namespaces were adopted): the old
        pause kept, or a new one made in the namespaces of a survivor (a shared lower's
        FUSE server), or made afresh."""
        st = HostState(pid=os.getpid(), start_time=proc_start_time(os.getpid()) or 0)
        if old is not None and alive(old.pause_pid, old.pause_start):
            self.log(f"adopting the namespaces of pause process {old.pause_pid}")
            return st._replace(pause_pid=old.pause_pid, pause_start=old.pause_start,
                               idmap=old.idmap, idmap_warning=old.idmap_warning), True
        anchor = next((lw.pid for lw in old.lowers.values() if alive(lw.pid, lw.start_time)),
                      0) if old is not None else 0
        if anchor:
            self.log(f"the pause process is gone: adopting the namespaces of {anchor}")
        pid, warning = make_pause(str(self.files.dir.parent), (self.exit_w,), anchor)
        if anchor:
            idmap, warning = old.idmap, old.idmap_warning
        else:
            idmap = "single-id" if warning else "subuid"
        return st._replace(pause_pid=pid, pause_start=proc_start_time(pid) or 0, idmap=idmap,
                           idmap_warning=warning), bool(anchor)

    def _outbound(self, st: HostState, old: Optional[HostState], adopted: bool,
                  exit_r: int) -> HostState:
        """Keep the old outbound helper when it still serves the adopted namespaces, else
        start one (an old one serving namespaces no longer used is killed: pasta outlives
        its namespace unless that is bound to a file)."""
        if old is not None and old.outbound and alive(old.outbound_pid, old.outbound_start):
            if adopted:
                return st._replace(outbound=old.outbound, outbound_pid=old.outbound_pid,
                                   outbound_start=old.outbound_start,
                                   outbound_if=old.outbound_if, host_gateway=old.host_gateway,
                                   outbound_why=old.outbound_why)
            _kill(old.outbound_pid)
        out = start_outbound(st.pause_pid, exit_r, str(self.files.dir / "pasta.pid"), self.log)
        return st._replace(outbound=out.tool, outbound_why=out.why, outbound_pid=out.pid,
                           outbound_start=(proc_start_time(out.pid) or 0) if out.pid else 0,
                           outbound_if=out.ifname, host_gateway=out.gateway)

    def _restore(self, old: HostState) -> None:
        links = {ln.name: ln for ln in self.nl.links()}
        networks = {k: n for k, n in old.networks.items() if n.bridge in links}
        kept, lost = {}, []
        for key, ep in old.endpoints.items():
            (kept.__setitem__(key, ep) if ep.host_if in links and ep.network in networks
             else lost.append(ep))
        kept_lowers = {}
        for key, lw in old.lowers.items():
            if alive(lw.pid, lw.start_time) and lowers.is_mounted(lw.path):
                kept_lowers[key] = lw
            else:
                lowers.unmount(lw, self.log)
        self.state = self.state._replace(networks=networks, endpoints=kept, lowers=kept_lowers,
                                         last_ip=dict(old.last_ip))
        self.log(f"restored {len(networks)} network(s), {len(kept)} endpoint(s), "
                 f"{len(kept_lowers)} lower(s)")
        if lost:
            self._lose(lost, "their veth is gone")
        if networks:
            self.on_networks_changed()

    def _lose(self, endpoints, why: str) -> None:
        lost = {}
        for ep in endpoints:
            lost.setdefault(ep.cid, {"id": ep.cid, "name": ep.names[0] if ep.names else "",
                                     "networks": []})["networks"].append(ep.network)
        self.log(f"lost the network of {len(lost)} container(s) ({why}): "
                 + ", ".join(v["name"] or k[:12] for k, v in lost.items()))
        self.state = self.state._replace(lost=self.state.lost + tuple(lost.values()))

    # --- helpers ------------------------------------------------------------------------
    def save(self) -> None:
        write_state(self.files, self.state)

    def apply_rules(self) -> None:
        """The packet rules for the networks and endpoints now. Where the kernel has no
        nf_tables (or refuses it in a user namespace), nothing is forwarded at all: the
        networks stay apart and containers reach only their own bridge (no way out, no
        host-gateway), said once in the log and by `info`."""
        st = self.state
        if st.firewall:
            return
        networks = [(n.bridge, n.subnet, n.internal) for n in st.networks.values()]
        allowed = sorted({ep.ip for ep in st.endpoints.values() if ep.host_gateway})
        try:
            nft.apply(networks, st.outbound_if, st.host_gateway, allowed)
        except OSError as e:
            why = f"no packet rules ({e.strerror or e}): nothing is forwarded between " \
                  "networks or out of them"
            self.log(why)
            set_sysctl("net.ipv4.ip_forward", "0")
            self.state = self.state._replace(firewall=why)

    def busy(self) -> bool:
        return bool(self.state.endpoints or self.state.lowers)

    def _taken(self, network_id: str) -> set:
        return {ep.ip for ep in self.state.endpoints.values() if ep.network == network_id}

    # --- networks -----------------------------------------------------------------------
    def ensure_network(self, cfg: NetworkConfig) -> int:
        """The bridge of `cfg` (made now if missing); its link index."""
        link = self.nl.link(cfg.bridge)
        known = self.state.networks.get(cfg.id)
        if link is not None and known is not None:
            return link.index
        if link is None:
            mac = "02:42:" + ":".join(_random_hex(2) for _ in range(4))
            self.nl.add_bridge(cfg.bridge, mac, cfg.mtu)
            link = self.nl.link(cfg.bridge)
            self.nl.add_address(link.index, cfg.gateway, ipam.prefix_of(cfg.subnet),
                                ipam.broadcast(cfg.subnet))
            self.log(f"network {cfg.name}: bridge {cfg.bridge} {cfg.subnet}")
        networks = dict(self.state.networks)
        networks[cfg.id] = cfg
        self.state = self.state._replace(networks=networks)
        self.apply_rules()
        self.on_networks_changed()
        return link.index

    def remove_network(self, network_id: str) -> dict:
        users = [ep for ep in self.state.endpoints.values() if ep.network == network_id]
        cfg = self.state.networks.get(network_id)
        if users:
            raise HostError(f"network {cfg.name if cfg else network_id} has active endpoints")
        if cfg is None:
            return {"removed": False}
        self.nl.delete_link(name=cfg.bridge)
        networks = {k: v for k, v in self.state.networks.items() if k != network_id}
        last = {k: v for k, v in self.state.last_ip.items() if k != network_id}
        self.state = self.state._replace(networks=networks, last_ip=last)
        self.apply_rules()
        self.on_networks_changed()
        self.save()
        self.log(f"network {cfg.name}: bridge {cfg.bridge} removed")
        return {"removed": True}

    # --- endpoints ----------------------------------------------------------------------
    def attach(self, cid: str, name: str, netns: int, requests: List[EndpointRequest],
               host_gateway: bool = False, upstream=()) -> List[dict]:
        """Attach the network namespace `netns` (an fd the client passed) to each requested
        network: addresses planned first (a taken or exhausted one fails before anything
        is made), then the veths; a failure undoes what was made."""
        made: List[Endpoint] = []
        inner = None
        try:
            inner = Netlink.in_netns(netns, self.home_net)
            taken_names = {ln.name for ln in inner.links()}
            planned = self._plan(cid, name, requests, taken_names, host_gateway, upstream)
            has_route = bool(inner.default_gateway()[0])
            for ep, req in planned:
                index = self.ensure_network(req.network)
                self.nl.add_veth(ep.host_if, index, ep.if_name, netns, ep.mac, req.network.mtu)
                made.append(ep)
                link = inner.link(ep.if_name)
                inner.add_address(link.index, ep.ip, ep.prefix, ipam.broadcast(req.network.subnet))
                inner.set_up(link.index, ep.if_name)
                if not has_route and not req.network.internal:
                    inner.add_default_route(ep.gateway, link.index)
                    has_route = True
                endpoints = dict(self.state.endpoints)
                endpoints[endpoint_key(cid, ep.network)] = ep
                last = dict(self.state.last_ip)
                last[ep.network] = ep.ip
                self.state = self.state._replace(endpoints=endpoints, last_ip=last)
        except BaseException as e:
            for ep in made:
                self._forget(ep)
            if isinstance(e, NetlinkError):
                raise HostError(f"container {name}: {e}") from None
            raise
        finally:
            if inner is not None:
                inner.close()
        if host_gateway:
            self.apply_rules()
        self.on_names_changed()
        self.save()
        return [ep.to_json() for ep in made]

    def _plan(self, cid, name, requests, taken_names, host_gateway, upstream):
        planned = []
        short = cid[:12]
        n = 0
        for req in requests:
            net = req.network
            if endpoint_key(cid, net.id) in self.state.endpoints:
                raise HostError(f"container {name} is already attached to network {net.name}")
            taken = self._taken(net.id) | {ep.ip for ep, _ in planned if ep.network == net.id}
            if req.ip:
                ipam.check_static(net.subnet, net.gateway, req.ip, taken, net.name)
                ip = req.ip
            else:
                ip = ipam.allocate(net.subnet, net.ip_range, net.gateway, taken,
                                   self.state.last_ip.get(net.id, ""), net.name)
            while f"eth{n}" in taken_names:
                n += 1
            if_name = f"eth{n}"
            taken_names.add(if_name)
            names = tuple(dict.fromkeys([name] + list(req.aliases) + [short])) if net.named \
                else ()
            ep = Endpoint(cid=cid, network=net.id, ip=ip, prefix=ipam.prefix_of(net.subnet),
                          gateway=net.gateway, mac=req.mac or ipam.mac_for(ip),
                          host_if="veth" + _random_hex(7), if_name=if_name, names=names,
                          aliases=tuple(req.aliases), host_gateway=host_gateway,
                          upstream=tuple(upstream), id=_random_hex(64))
            planned.append((ep, req))
        return planned

    def _forget(self, ep: Endpoint, delete_link: bool = True) -> None:
        if delete_link:
            try:
                self.nl.delete_link(name=ep.host_if)
            except NetlinkError as e:
                self.log(f"delete {ep.host_if}: {e}")
        endpoints = {k: v for k, v in self.state.endpoints.items() if v is not ep and
                     v.host_if != ep.host_if}
        self.state = self.state._replace(endpoints=endpoints)

    def detach(self, cid: str, network_id: str = "", dying: bool = False) -> int:
        """Forget a container's endpoints (on one network, or all). dying: its network
        namespace is going away with its last process, which takes the veths along (the
        kernel deletes them in a batch, where one deletion here costs an RCU grace
        period, ~20-100 ms); else (a disconnect from a running container) deleted now."""
        gone = [ep for ep in self.state.endpoints.values()
                if ep.cid == cid and (not network_id or ep.network == network_id)]
        for ep in gone:
            self._forget(ep, delete_link=not dying)
        if gone:
            if any(ep.host_gateway for ep in gone):
                self.apply_rules()
            self.on_names_changed()
            self.save()
        return len(gone)

    def forget(self, cid: str) -> None:
        """A container removed (its shim may have died without telling): its endpoints and
        its holds on shared lowers go."""
        self.detach(cid, dying=True)
        for lw in list(self.state.lowers.values()):
            if cid in lw.holders:
                self._set_lower(lw, {k: v for k, v in lw.holders.items() if k != cid})

    def link_gone(self, name: str) -> None:
        """A host-side veth vanished (its container's namespace died): forget it."""
        gone = [ep for ep in self.state.endpoints.values() if ep.host_if == name]
        if not gone:
            return
        endpoints = {k: v for k, v in self.state.endpoints.items() if v.host_if != name}
        self.state = self.state._replace(endpoints=endpoints)
        if any(ep.host_gateway for ep in gone):
            self.apply_rules()
        self.on_names_changed()
        self.save()

    def rename(self, cid: str, name: str) -> None:
        endpoints = {}
        for k, ep in self.state.endpoints.items():
            if ep.cid == cid and ep.names:
                ep = ep._replace(names=tuple(dict.fromkeys((name,) + ep.names[1:])))
            endpoints[k] = ep
        self.state = self.state._replace(endpoints=endpoints)
        self.on_names_changed()
        self.save()

    # --- lowers -------------------------------------------------------------------------
    def hold_lower(self, key: str, layers: List[str], cache: str, cid: str,
                   pids: List[int]) -> dict:
        current = self.state.lowers.get(key)
        if current is not None and not alive(current.pid, current.start_time):
            lowers.unmount(current, self.log)
            current = None
        if current is None:
            try:
                current = lowers.mount(key, self.files.lower(key), layers, cache, self.log)
            except Exception as e:  # noqa: BLE001 - MountError and friends: to the client
                raise HostError(f"the shared image mount failed: {e}") from None
        holders = dict(current.holders)
        holders[cid] = holders.get(cid, []) + lowers.watch_list(pids)
        table = dict(self.state.lowers)
        table[key] = current._replace(holders=holders, unused_since=0.0)
        self.state = self.state._replace(lowers=table)
        self.save()
        return {"path": current.path, "pid": current.pid, "start_time": current.start_time}

    def watch(self, cid: str, pids: List[int]) -> None:
        table = {}
        for key, lw in self.state.lowers.items():
            if cid in lw.holders:
                holders = dict(lw.holders)
                holders[cid] = holders[cid] + lowers.watch_list(pids)
                lw = lw._replace(holders=holders)
            table[key] = lw
        self.state = self.state._replace(lowers=table)
        self.save()

    def release_lower(self, key: str, cid: str) -> None:
        lw = self.state.lowers.get(key)
        if lw is None:
            return
        holders = {k: v for k, v in lw.holders.items() if k != cid}
        self._set_lower(lw, holders)

    def _set_lower(self, lw, holders: dict, drop: bool = False) -> None:
        """New holders of a lower; with none it lingers (lowers.LINGER), unless `drop`."""
        table = dict(self.state.lowers)
        if holders:
            table[lw.key] = lw._replace(holders=holders)
        elif self.linger > 0 and not drop:
            table[lw.key] = lw._replace(holders={},
                                        unused_since=lw.unused_since or time.monotonic())
        else:
            lowers.unmount(lw, self.log)
            del table[lw.key]
        self.state = self.state._replace(lowers=table)
        self.save()

    def sweep(self) -> None:
        """Drop holds whose processes are all dead, lowers whose server died, and lowers
        unused for longer than the linger."""
        now = time.monotonic()
        for lw in list(self.state.lowers.values()):
            if not alive(lw.pid, lw.start_time):
                self.log(f"lower {lw.key}: its FUSE server {lw.pid} died")
                self._set_lower(lw, {}, drop=True)
                continue
            if not lw.holders and lw.unused_since and now - lw.unused_since >= self.linger:
                self._set_lower(lw, {}, drop=True)
                continue
            live = lowers.live_holders(lw)
            if live != lw.holders:
                self._set_lower(lw, live)

    # --- reports ------------------------------------------------------------------------
    def ack_lost(self) -> None:
        """The lost containers were reported to the user: don't tell again."""
        if self.state.lost:
            self.state = self.state._replace(lost=())
            self.save()

    def hello(self) -> dict:
        st = self.state
        lost = st.lost
        return {"pid": os.getpid(), "pause": st.pause_pid,
                "userns": f"/proc/{st.pause_pid}/ns/user",
                "mntns": f"/proc/{st.pause_pid}/ns/mnt", "log": str(self.files.log),
                "idmap": st.idmap, "idmap_warning": st.idmap_warning,
                "outbound": st.outbound, "outbound_why": st.outbound_why,
                "firewall": st.firewall, "host_gateway": st.host_gateway, "lost": list(lost)}

    def status(self) -> dict:
        data = self.state.to_json()
        data["log"] = str(self.files.log)
        data["links"] = [ln.name for ln in self.nl.links()]
        data["time"] = time.time()
        return data

    def shutdown(self) -> None:
        """Idle: everything goes (the pause takes the namespaces, bridges and the outbound
        helper's network with it)."""
        for lw in list(self.state.lowers.values()):
            lowers.unmount(lw, self.log)
        _kill(self.state.pause_pid)
        if self.state.outbound == "pasta" and alive(self.state.outbound_pid,
                                                     self.state.outbound_start):
            # pasta quits with its namespace only when that is bound to a file (slirp4netns
            # quits when its exit pipe closes, below)
            _kill(self.state.outbound_pid)
        if self.exit_w >= 0:
            os.close(self.exit_w)
            self.exit_w = -1
        for path in (self.files.state, self.files.socket):
            try:
                os.unlink(path)
            except OSError:
                pass
        self.log("idle: exiting")


def _kill(pid: int) -> None:
    import signal
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
