"""`attach`: the terminal's stdin, stdout and stderr to a running container (Docker's
flags: --no-stdin, --sig-proxy, --detach-keys); exits with the container's exit code, or
0 when detached."""
from __future__ import annotations

import os
import signal
import struct
import sys
import threading

from pydocklite.cli.common import Parser

_NOT_PROXIED = {signal.SIGCHLD, signal.SIGWINCH, signal.SIGPIPE, signal.SIGKILL,
                signal.SIGSTOP, signal.SIGTSTP, signal.SIGTTIN, signal.SIGTTOU, signal.SIGURG}


def cmd_attach(settings, argv) -> int:
    p = Parser("attach", "attach [OPTIONS] CONTAINER",
               "Attach local standard input, output, and error streams to a running container")
    p.add_argument("--detach-keys", default="ctrl-p,ctrl-q",
                   help="Override the key sequence for detaching a container")
    p.add_argument("--no-stdin", action="store_true", help="Do not attach STDIN")
    p.add_argument("--sig-proxy", default="true", choices=["true", "false"],
                   help="Proxy all received signals to the process (default true)")
    p.add_argument("container")
    args = p.parse_args(argv)
    from pydocklite.containers import attach
    from pydocklite.containers.container import ContainerService
    service = ContainerService(settings)
    state = service.store.get(args.container)
    want_stdin = not args.no_stdin and bool(state.config.get("Config", {}).get("OpenStdin"))
    conn = attach.connect(settings, state.id, stdin=want_stdin,
                          detach_keys=args.detach_keys)
    restore = None
    if conn.tty:
        if want_stdin and os.isatty(0):
            import termios
            import tty
            restore = termios.tcgetattr(0)
            tty.setraw(0)
        _follow_size(settings, state.id)
    elif args.sig_proxy == "true":
        _proxy_signals(service, state.id)
    try:
        if want_stdin:
            threading.Thread(target=_pump_stdin, args=(conn.sock,), daemon=True).start()
        _copy_out(conn.sock, conn.tty)
    finally:
        if restore is not None:
            import termios
            termios.tcsetattr(0, termios.TCSADRAIN, restore)
        conn.sock.close()
    from pydocklite.state.container import pid_alive
    if pid_alive(state.init_pid, state.init_start_time):
        return 0                 # detached (the detach keys): the container runs on
    return service.wait(state.id)


def _copy_out(sock, tty: bool) -> None:
    """The stream to our stdout (and stderr: Docker's frames when there is no tty)."""
    out, err = sys.stdout.buffer, sys.stderr.buffer
    buf = b""
    while True:
        try:
            data = sock.recv(65536)
        except OSError:
            data = b""
        if not data:
            return
        if tty:
            out.write(data)
            out.flush()
            continue
        buf += data
        while len(buf) >= 8:
            kind, size = struct.unpack(">BxxxI", buf[:8])
            if len(buf) < 8 + size:
                break
            target = err if kind == 2 else out
            target.write(buf[8:8 + size])
            target.flush()
            buf = buf[8 + size:]


def _pump_stdin(sock) -> None:
    import socket
    while True:
        try:
            data = os.read(0, 4096)
        except OSError:
            data = b""
        if not data:
            try:
                sock.shutdown(socket.SHUT_WR)       # EOF: stdin-once closes the container's
            except OSError:
                pass
            return
        try:
            sock.sendall(data)
        except OSError:
            return


def _follow_size(settings, cid: str) -> None:
    """The container's terminal follows ours (now and on SIGWINCH)."""
    import fcntl
    import termios
    from pydocklite.containers import attach

    def resize(signum=None, frame=None) -> None:
        for fd in (0, 1, 2):
            try:
                rows, cols = struct.unpack("HHHH", fcntl.ioctl(fd, termios.TIOCGWINSZ,
                                                               b"\0" * 8))[:2]
            except OSError:
                continue
            try:
                attach.resize(settings, cid, rows, cols)
            except Exception:  # noqa: BLE001 - it stopped meanwhile: the stream ends too
                pass
            return
    signal.signal(signal.SIGWINCH, resize)
    resize()


def _proxy_signals(service, cid: str) -> None:
    """--sig-proxy: what we receive goes to the container's main process."""
    def forward(signum, frame) -> None:
        try:
            service.kill(cid, signum)
        except Exception:  # noqa: BLE001 - it stopped meanwhile
            pass
    for s in signal.Signals:
        if s in _NOT_PROXIED:
            continue
        try:
            signal.signal(s, forward)
        except (OSError, ValueError):
            pass
