"""The namespace host's process: one thread, one selector, no daemon framework.

It waits on: the control socket (JSON lines from shims and the CLI, one reply line per
request), DNS sockets on each network's gateway (UDP and TCP, port 53), the socket that
forwards other names to the host's resolvers (opened in the host's network namespace
before entering the pause's), and a netlink socket that reports links going away (a
container's namespace died: its endpoint is released at once). Once a second it sweeps
dead holds of shared lowers, releases lowers unused for PYDOCKLITE_LOWER_LINGER seconds
(default 10) and reaps their FUSE servers; after PYDOCKLITE_NSHOST_IDLE
seconds (default 60) with no endpoint, lower or client it takes everything down and exits.
"""
from __future__ import annotations

import json
import os
import selectors
import socket
import struct
import time

TYPE_CHECKING = False
if TYPE_CHECKING:     # annotations only: importing typing costs ~2 ms per start
    from typing import Dict, Tuple

from pydocklite.nshost import dns
from pydocklite.nshost.host import Host, HostError
from pydocklite.nshost.netlink import RTM_DELLINK, RTMGRP_LINK, Netlink
from pydocklite.nshost.state import EndpointRequest, HostFiles

DEFAULT_IDLE = 60.0
MAX_REQUEST = 1 << 20
MAX_DNS_TCP = 65535 + 2
MAX_DNS_CONNS, MAX_DNS_CONNS_PER_ASKER = 256, 16


def idle_timeout() -> float:
    from pydocklite.settings import env_seconds
    return env_seconds("PYDOCKLITE_NSHOST_IDLE", DEFAULT_IDLE)


class DnsSockets:
    """UDP + TCP listeners on each network's gateway, answering from the host's table."""

    def __init__(self, host: Host, sel: selectors.BaseSelector, forwarder: dns.Forwarder):
        self.host, self.sel, self.forwarder = host, sel, forwarder
        self.socks: Dict[str, Tuple[socket.socket, socket.socket]] = {}
        self.names = dns.Names()
        self.tcp: Dict[socket.socket, list] = {}

    def rebind(self) -> None:
        want = {k: n.gateway for k, n in self.host.state.networks.items()}
        for key in list(self.socks):
            if key not in want:
                for s in self.socks.pop(key):
                    self.sel.unregister(s)
                    s.close()
        for key, gateway in want.items():
            if key in self.socks:
                continue
            try:
                udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                udp.bind((gateway, 53))
                tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                tcp.bind((gateway, 53))
                tcp.listen(64)
            except OSError as e:
                self.host.log(f"dns: cannot listen on {gateway}:53: {e}")
                continue
            for s, kind in ((udp, "dns-udp"), (tcp, "dns-tcp")):
                s.setblocking(False)
                self.sel.register(s, selectors.EVENT_READ, kind)
            self.socks[key] = (udp, tcp)
        self.refresh()

    def refresh(self) -> None:
        st = self.host.state
        entries = [dns.Entry(ep.cid, ep.network, ep.ip, ep.names,
                             st.networks[ep.network].internal if ep.network in st.networks
                             else True, bool(ep.names), ep.upstream)
                   for ep in st.endpoints.values()]
        self.names = dns.Names(entries, {k: n.name for k, n in st.networks.items()})

    def on_udp(self, sock: socket.socket) -> None:
        for _ in range(64):
            try:
                data, addr = sock.recvfrom(4096)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return

            def reply(msg: bytes, sock=sock, addr=addr) -> None:
                try:
                    sock.sendto(msg, addr)
                except OSError:
                    pass
            self._query(data, addr[0], reply)

    def _query(self, data: bytes, asker: str, reply) -> None:
        answer, forward = dns.answer(self.names, asker, data)
        if answer is not None:
            if answer:
                reply(answer)
        else:
            self.forwarder.forward(data, forward[1], reply)

    def on_accept(self, sock: socket.socket) -> None:
        try:
            conn, addr = sock.accept()
        except OSError:
            return
        mine = sum(1 for entry in self.tcp.values() if entry[1] == addr[0])
        if len(self.tcp) >= MAX_DNS_CONNS or mine >= MAX_DNS_CONNS_PER_ASKER:
            conn.close()          # a container can't take the host's descriptors
            return
        conn.setblocking(False)
        self.tcp[conn] = [b"", addr[0], time.monotonic() + 10]
        self.sel.register(conn, selectors.EVENT_READ, "dns-conn")

    def on_conn(self, conn: socket.socket) -> None:
        entry = self.tcp.get(conn)
        try:
            chunk = conn.recv(4096)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            chunk = b""
        if entry is None or not chunk or len(entry[0]) + len(chunk) > MAX_DNS_TCP:
            self.close_conn(conn)
            return
        entry[0] += chunk
        while len(entry[0]) >= 2:
            size = struct.unpack_from(">H", entry[0])[0]
            if len(entry[0]) < 2 + size:
                break
            query, entry[0] = entry[0][2:2 + size], entry[0][2 + size:]

            def reply(msg: bytes, conn=conn) -> None:
                if conn in self.tcp:
                    try:
                        conn.setblocking(True)
                        conn.settimeout(2)
                        conn.sendall(struct.pack(">H", len(msg)) + msg)
                        conn.setblocking(False)
                    except OSError:
                        self.close_conn(conn)
            self._query(query, entry[1], reply)

    def close_conn(self, conn: socket.socket) -> None:
        if self.tcp.pop(conn, None) is not None:
            self.sel.unregister(conn)
        conn.close()

    def expire(self, now: float) -> None:
        for conn, entry in list(self.tcp.items()):
            if entry[2] < now:
                self.close_conn(conn)


class Server:
    def __init__(self, files: HostFiles, log) -> None:
        self.files, self.log = files, log
        self.host = Host(files, log)
        self.sel = selectors.DefaultSelector()
        self.clients: Dict[socket.socket, bytearray] = {}
        self.passed: Dict[socket.socket, list] = {}     # fds sent along, not used yet
        self.idle = idle_timeout()

    def start(self) -> None:
        # both opened in the host's namespaces, before entering the pause's: the socket
        # path stays reachable whatever the host's mount namespace gets later, and the
        # forwarder talks to the host's resolvers (even one on the host's loopback)
        path = str(self.files.socket)
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        self.ctl = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.ctl.bind(path)
        up = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        up.bind(("0.0.0.0", 0))
        up.setblocking(False)
        self.forwarder = dns.Forwarder(up, ())
        self.dns = DnsSockets(self.host, self.sel, self.forwarder)
        self.host.on_networks_changed = self.dns.rebind
        self.host.on_names_changed = self.dns.refresh
        self.host.boot()
        self.forwarder.servers = tuple(self.host.upstream)
        self.monitor = Netlink(groups=RTMGRP_LINK)
        self.monitor.sock.setblocking(False)
        self.ctl.listen(128)
        self.ctl.setblocking(False)
        self.sel.register(self.ctl, selectors.EVENT_READ, "ctl")
        self.sel.register(up, selectors.EVENT_READ, "dns-up")
        self.sel.register(self.monitor.sock, selectors.EVENT_READ, "links")
        self.dns.rebind()

    def loop(self) -> None:
        idle_since = 0.0
        next_sweep = 0.0
        while True:
            for key, _ in self.sel.select(timeout=0.5):
                kind, sock = key.data, key.fileobj
                try:
                    self._dispatch(kind, sock)
                except Exception as e:  # noqa: BLE001 - one bad event never stops the host
                    self.log(f"error handling {kind}: {type(e).__name__}: {e}")
            now = time.monotonic()
            self.forwarder.tick(now)
            if now >= next_sweep:
                next_sweep = now + 1.0
                self.dns.expire(now)
                self._reap()
                self.host.sweep()
                self._check_pause()
            if self.host.busy() or self.clients:
                idle_since = 0.0
            elif not idle_since:
                idle_since = now
            elif now - idle_since >= self.idle:
                self.host.shutdown()
                return

    def _dispatch(self, kind: str, sock) -> None:
        if kind == "ctl":
            conn, _ = sock.accept()
            conn.setblocking(False)
            self.clients[conn] = bytearray()
            self.sel.register(conn, selectors.EVENT_READ, "client")
        elif kind == "client":
            self._client(sock)
        elif kind == "dns-udp":
            self.dns.on_udp(sock)
        elif kind == "dns-tcp":
            self.dns.on_accept(sock)
        elif kind == "dns-conn":
            self.dns.on_conn(sock)
        elif kind == "dns-up":
            self.forwarder.on_reply()
        elif kind == "links":
            for mtype, link in self.monitor.events():
                if mtype == RTM_DELLINK:
                    self.host.link_gone(link.name)

    def _client(self, conn: socket.socket) -> None:
        buf, fds = self.clients[conn], self.passed.setdefault(conn, [])
        try:
            chunk, anc, _flags, _addr = conn.recvmsg(65536, socket.CMSG_SPACE(4 * 8))
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            chunk, anc = b"", []
        for level, kind, data in anc:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                fds.extend(struct.unpack(f"={len(data) // 4}i", data[:len(data) // 4 * 4]))
        if not chunk or len(buf) + len(chunk) > MAX_REQUEST or len(fds) > 64:
            self._drop(conn)
            return
        buf += chunk
        while b"\n" in buf:
            line, _, rest = bytes(buf).partition(b"\n")
            buf[:] = rest
            reply = self._handle(line, fds)
            if reply is None:
                continue                  # a request that asked for no reply
            try:
                conn.setblocking(True)
                conn.settimeout(5)
                conn.sendall(json.dumps(reply).encode() + b"\n")
                conn.setblocking(False)
            except OSError:
                self._drop(conn)
                return

    def _drop(self, conn: socket.socket) -> None:
        self.clients.pop(conn, None)
        for fd in self.passed.pop(conn, ()):
            os.close(fd)
        self.sel.unregister(conn)
        conn.close()

    def _handle(self, line: bytes, fds: list):
        req = {}
        mine = []
        try:
            req = json.loads(line)
            count = int(req.get("fds", 0))
            if count > len(fds):
                raise HostError("a request's file descriptors did not arrive")
            mine, fds[:count] = fds[:count], []
            op = req.get("op")
            result = self._op(op, req, mine)
            return None if req.get("noreply") else {"ok": True, "result": result}
        except HostError as e:
            if req.get("noreply"):
                self.log(f"{req.get('op')}: {e}")
                return None
            return {"ok": False, "error": str(e)}
        except Exception as e:  # noqa: BLE001 - reported to the client and logged
            import traceback
            self.log(f"request failed: {traceback.format_exc()}")
            if req.get("noreply") if isinstance(req, dict) else False:
                return None
            return {"ok": False, "error": f"namespace host: {type(e).__name__}: {e}"}
        finally:
            for fd in mine:
                os.close(fd)

    def _op(self, op: str, req: dict, fds: list):
        h = self.host
        if op == "hello":
            return h.hello()
        if op == "attach":
            if not fds:
                raise HostError("attach: pass the container's network namespace (an fd)")
            return h.attach(req["cid"], req["name"], fds[0],
                            [EndpointRequest.from_json(e) for e in req["endpoints"]],
                            bool(req.get("host_gateway")), tuple(req.get("upstream") or ()))
        if op == "detach":
            return h.detach(req["cid"], req.get("network", ""), bool(req.get("dying")))
        if op == "network_rm":
            return h.remove_network(req["network"])
        if op == "lower":
            return h.hold_lower(req["key"], list(req["layers"]), req.get("cache", ""),
                                req["cid"], [int(p) for p in req.get("pids", ())])
        if op == "watch":
            return h.watch(req["cid"], [int(p) for p in req.get("pids", ())])
        if op == "unlower":
            return h.release_lower(req["key"], req["cid"])
        if op == "forget":
            return h.forget(req["cid"])
        if op == "rename":
            return h.rename(req["cid"], req["name"])
        if op == "status":
            return h.status()
        if op == "ack_lost":
            return h.ack_lost()
        raise HostError(f"unknown request {op!r}")

    def _reap(self) -> None:
        from pydocklite.detach import reap_exited
        reap_exited()

    def _check_pause(self) -> None:
        """The pause died (killed by someone): make a new one in our namespaces, so that
        they outlive this process too."""
        st = self.host.state
        from pydocklite.nshost.pause import alive, make_pause
        if alive(st.pause_pid, st.pause_start):
            return
        from pydocklite.runtime.state import proc_start_time
        pid, _ = make_pause(str(self.files.dir.parent), (self.host.exit_w,), os.getpid())
        self.log(f"pause process {st.pause_pid} died: pause process {pid} holds the "
                 "namespaces now")
        self.host.state = st._replace(pause_pid=pid, pause_start=proc_start_time(pid) or 0)
        self.host.save()


def run(files: HostFiles, ready_w: int) -> int:
    """The host's life, in a forked process of its own session; writes "ok" or an error
    line to ready_w once it serves."""
    logf = open(files.log, "a", buffering=1)

    def log(msg: str) -> None:
        now = time.time()
        logf.write(time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now))
                   + f".{int(now * 1000) % 1000:03d} {msg}\n")

    log(f"namespace host {os.getpid()} starting")
    server = Server(files, log)
    try:
        server.start()
    except BaseException as e:  # noqa: BLE001 - told to the starter, then logged
        import traceback
        log(f"start failed: {traceback.format_exc()}")
        msg = e.args[1] if isinstance(e, OSError) and len(e.args) > 1 else str(e)
        os.write(ready_w, f"error: {msg or type(e).__name__}\n".encode())
        try:
            server.host.shutdown()
        except Exception:  # noqa: BLE001 - best effort
            pass
        return 1
    os.write(ready_w, b"ok\n")
    os.close(ready_w)
    log(f"serving on {files.socket}")
    server.loop()
    return 0
