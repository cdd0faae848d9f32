"""A container's stdio as the shim relays it: every byte to the json-file log, and to an
attached CLI while one is there (its stdin to the container, Ctrl-P Ctrl-Q detaches, the
terminal's size follows the CLI's). The CLI may vanish at any moment: logging goes on."""
from __future__ import annotations

import json
import os
import threading

TYPE_CHECKING = False
if TYPE_CHECKING:     # annotations only: importing typing costs ~2 ms per start
    from typing import Callable, List, Optional

DETACH_KEYS = b"\x10\x11"    # ctrl-p ctrl-q


def send_json(fd: Optional[int], msg: dict) -> None:
    """One JSON line to the CLI; a CLI that went away is no error: the container goes on."""
    if fd is None:
        return
    try:
        os.write(fd, (json.dumps(msg) + "\n").encode())
    except OSError:
        pass


def receive_console(listener) -> int:
    """The pty master the runtime sends over its --console-socket (SCM_RIGHTS)."""
    from pydocklite.runtime.console import recv_fd
    listener.settimeout(30)
    conn, _ = listener.accept()
    with conn:
        fd = recv_fd(conn, 4096)
    if fd is None:
        raise RuntimeError("the runtime sent no terminal over the console socket")
    return fd


class StdioRelay:
    def __init__(self, logw, attach: Optional[List[int]], exit_fd: Optional[int],
                 log: Callable[[str], None]):
        self.logw = logw
        self.attach = attach                 # [stdin, stdout, stderr] of a foreground CLI
        self.exit_fd = exit_fd
        self.log = log
        self.detached = attach is None
        self.pty_master: Optional[int] = None
        self.threads: List[threading.Thread] = []
        self.clients: list = []              # attach.Client: later attachments (attach.py)
        self.lock = threading.Lock()
        self.ended = False                   # the container's output has ended
        self.stdin_w: Optional[int] = None   # the container's stdin pipe (-i, no tty)

    def relay(self, fd: int, stream: str, pty: bool = False) -> None:
        """Copy `fd` (a pipe, or the pty master) to the log and the attached CLI."""
        out_fd = None
        if self.attach is not None:
            out_fd = self.attach[1] if stream == "stdout" else self.attach[2]

        def pump():
            while True:
                try:
                    data = os.read(fd, 65536)
                except OSError:
                    data = b""     # EIO from a pty master once the container side closed
                if not data:
                    break
                self.logw.write(stream, data)
                if out_fd is not None and not self.detached:
                    try:
                        os.write(out_fd, data)
                    except OSError:
                        self.detached = True     # the CLI is gone; keep logging
                if self.clients:
                    for client in list(self.clients):
                        client.send(stream, data)
                        if client.gone:
                            self.remove_client(client)
            if not pty:
                os.close(fd)

        t = threading.Thread(target=pump, daemon=True, name=f"relay-{stream}")
        t.start()
        self.threads.append(t)
        if pty:
            self.pty_master = fd
            self.feed_stdin(fd, tty=True)

    def feed_stdin(self, to_fd: int, tty: bool = False) -> None:
        """The attached CLI's stdin to the container (the pty, or the stdin pipe: to_fd is
        stdin_w); EOF closes the container's stdin."""
        if self.attach is None:
            return
        src = self.attach[0]

        def pump():
            prev = b""
            while not self.detached:
                try:
                    data = os.read(src, 4096)
                except OSError:
                    data = b""
                if not data:
                    break
                if tty:
                    if DETACH_KEYS in prev + data:
                        self.detached = True
                        send_json(self.exit_fd, {"detached": True})
                        return
                    prev = data[-1:]
                try:
                    os.write(to_fd, data)
                except OSError:
                    break
            if not tty:
                self.close_stdin()         # the attached CLI's stdin ended (stdin once)

        threading.Thread(target=pump, daemon=True, name="relay-stdin").start()

    def resize_pty(self) -> None:
        """Give the container's pty the size of the attached CLI's terminal (at start, and
        on SIGWINCH: the CLI signals the shim when its terminal is resized; only the shim
        holds the pty master)."""
        if self.pty_master is None or self.attach is None or self.detached:
            return
        import fcntl
        import termios
        for fd in self.attach:
            try:
                size = fcntl.ioctl(fd, termios.TIOCGWINSZ, b"\0" * 8)
            except OSError:
                continue           # not a terminal
            try:
                fcntl.ioctl(self.pty_master, termios.TIOCSWINSZ, size)
            except OSError as e:
                self.log(f"cannot resize the container's terminal: {e.strerror}")
            return

    def join(self, timeout: float = 5) -> None:
        """Until the container's output is all in the log (its pipes closed); then the
        attached clients' streams end."""
        for t in self.threads:
            t.join(timeout=timeout)
        self.threads = []
        with self.lock:
            self.ended = True
            clients, self.clients = self.clients, []
        for client in clients:
            client.close()
        self.ended = False                   # a restart relays anew

    def end_attach(self) -> None:
        """The container is done for good: the attached CLI's output streams end now (an
        API client's attach answer with them), not when this shim exits after the
        clean-up. Its stdin stays with the pump reading it."""
        attach, self.attach = self.attach, None
        if attach is None:
            return
        for fd in dict.fromkeys(attach[1:]):
            try:
                os.close(fd)
            except OSError:
                pass

    def add_client(self, client) -> bool:
        """A later attachment gets the output from now on; False once it has ended."""
        with self.lock:
            if self.ended or not self.threads:
                return False
            self.clients.append(client)
            return True

    def remove_client(self, client) -> None:
        with self.lock:
            if client in self.clients:
                self.clients.remove(client)

    def stdin_target(self) -> Optional[int]:
        """Where an attached client's input goes: the pty, or the stdin pipe while open."""
        return self.pty_master if self.pty_master is not None else self.stdin_w

    def close_stdin(self) -> None:
        """The container's stdin reaches EOF (stdin-once, the client closed its side)."""
        fd, self.stdin_w = self.stdin_w, None
        if fd is not None:
            try:
                os.close(fd)
            except OSError:
                pass

    def close(self) -> None:
        self.join(timeout=2)
        self.logw.close()

