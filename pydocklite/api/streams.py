"""Docker's stdio streams over a client's socket.

Without a tty, stdout and stderr share one stream of frames, each an 8-byte header
(stream 1 or 2, three zero bytes, big-endian length) then the data; with a tty the bytes
go raw. `Pumps` joins a hijacked socket to a process's pipes (or a pty master): output
to the client as it comes, the client's input to the process, and the client's
half-close (shutdown of its write side) closes the process's stdin while output keeps
flowing. When the process's output ends, the socket is closed.
"""
from __future__ import annotations

import os
import socket
import struct
import threading

STDOUT, STDERR = 1, 2


def set_winsize(fd: int, rows: int, cols: int) -> None:
    import fcntl
    import termios
    try:
        fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
    except OSError:
        pass


def frame(stream: int, data: bytes) -> bytes:
    return struct.pack(">BxxxL", stream, len(data)) + data


class Pumps:
    """Copy between `sock` and a process's fds until its output ends.

    outputs: [(fd, stream number)] read until EOF (EIO for a pty master); stdin_fd: where
    the client's bytes go (None: the client's input is read and dropped, so a half-close
    is seen); raw: no framing (tty). The fds are ours: closed when done."""

    def __init__(self, sock: socket.socket, outputs: list, stdin_fd, raw: bool,
                 initial: bytes = b""):
        self.sock = sock
        self.initial = initial          # input the client sent with its request
        self.outputs = outputs
        self.stdin_fd = stdin_fd
        self.raw = raw
        self.wlock = threading.Lock()
        self.client_gone = threading.Event()
        self.threads = []

    def start(self) -> None:
        for fd, stream in self.outputs:
            t = threading.Thread(target=self._out, args=(fd, stream), daemon=True,
                                 name="attach-out")
            t.start()
            self.threads.append(t)
        threading.Thread(target=self._in, daemon=True, name="attach-in").start()

    def _send(self, data: bytes) -> None:
        if self.client_gone.is_set():
            return
        with self.wlock:
            try:
                self.sock.sendall(data)
            except OSError:
                self.client_gone.set()

    def _out(self, fd: int, stream: int) -> None:
        try:
            while True:
                try:
                    data = os.read(fd, 65536)
                except OSError:
                    data = b""          # EIO: the pty's other side is closed
                if not data:
                    return
                self._send(data if self.raw else frame(stream, data))
        finally:
            os.close(fd)

    def _in(self) -> None:
        """The client's input to the process; its EOF (a half-close) closes our end of
        the process's stdin (with a tty, stdin_fd is a dup of the master: closing it
        leaves the output flowing)."""
        fd = self.stdin_fd
        try:
            while True:
                if self.initial:
                    data, self.initial = self.initial, b""
                else:
                    try:
                        data = self.sock.recv(65536)
                    except OSError:
                        data = b""
                if not data:
                    break
                if fd is None:
                    continue
                try:
                    os.write(fd, data)
                except OSError:
                    os.close(fd)
                    fd = None           # the process closed its stdin; keep reading
        finally:
            if fd is not None:
                try:
                    os.close(fd)
                except OSError:
                    pass

    def wait(self) -> None:
        """Until every output ended; then the client's socket is shut down."""
        for t in self.threads:
            t.join()
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


class Stdio:
    """A container's stdio as a foreground client would hand it to the shim: pipes, or with
    a tty the slave of a pty of ours in raw mode (a resize of ours then reaches the
    container's terminal: the shim copies the size on SIGWINCH). Made when the service
    forks the shim ahead (at create) or at the start; `shim_fds` go to the shim (and are
    closed here once it has them), the rest is ours until a client takes them, or closed
    (the shim then just logs: a write to a closed pipe or pty makes it detach)."""

    def __init__(self, tty: bool, size=None):
        self.tty = tty
        if tty:
            import tty as ttymod
            master, slave = os.openpty()
            ttymod.setraw(slave)
            if size:
                set_winsize(master, *size)
            self.shim_fds = [slave, slave, slave]
            self.in_w, self.out_r, self.err_r, self.master = os.dup(master), master, None, \
                os.dup(master)
        else:
            in_r, self.in_w = os.pipe()
            self.out_r, out_w = os.pipe()
            self.err_r, err_w = os.pipe()
            self.shim_fds = [in_r, out_w, err_w]
            self.master = None

    def shim_has_them(self) -> None:
        for fd in set(self.shim_fds):
            os.close(fd)
        self.shim_fds = []

    def close(self, keep_stdin: bool = False):
        """Nobody attached: our ends go (the container's stdin sees EOF), but with
        keep_stdin the stdin end is returned, kept open (Docker's -i without attaching:
        stdin stays open for a later `attach`)."""
        self.shim_has_them()
        kept = None
        if keep_stdin and self.in_w is not None:
            kept, self.in_w = self.in_w, None
        for fd in (self.in_w, self.out_r, self.err_r, self.master):
            if fd is not None:
                try:
                    os.close(fd)
                except OSError:
                    pass
        self.in_w = self.out_r = self.err_r = self.master = None
        return kept


class AttachSession:
    """A client attached to a container that is not started yet (`docker run` attaches,
    then starts): at the start it takes the container's Stdio."""

    def __init__(self, sock: socket.socket, stdin: bool, stdout: bool, stderr: bool,
                 tty: bool, size=None):
        self.sock = sock
        self.size = size             # [rows, columns] of the client's terminal
        self.stdin, self.stdout, self.stderr, self.tty = stdin, stdout, stderr, tty
        self.started = threading.Event()
        self.pumps = None
        self.failed = ""
        self.master = None           # our pty master (tty), for resize
        self.leftover = b""          # input that came with the request

    def close(self) -> None:
        if self.master is not None:
            os.close(self.master)
            self.master = None

    def begin(self, stdio: Stdio) -> None:
        """Take the container's stdio: what the client asked for is sent, the rest drained;
        its input goes to the container's stdin (or that is closed)."""
        sending = []
        for fd, stream, wanted in ((stdio.out_r, STDOUT, self.stdout or self.tty),
                                   (stdio.err_r, STDERR, self.stderr)):
            if fd is None:
                continue
            if wanted:
                sending.append((fd, stream))
            else:
                threading.Thread(target=_drain, args=(fd,), daemon=True).start()
        in_w = stdio.in_w
        if not self.stdin and in_w is not None:
            os.close(in_w)
            in_w = None
        if self.size and stdio.master is not None:
            set_winsize(stdio.master, *self.size)
        self.master = stdio.master
        stdio.in_w = stdio.out_r = stdio.err_r = stdio.master = None
        self.pumps = Pumps(self.sock, sending, in_w, raw=self.tty, initial=self.leftover)
        self.pumps.start()
        self.started.set()

    def fail(self, message: str) -> None:
        self.failed = message
        self.started.set()


def _drain(fd: int) -> None:
    try:
        while os.read(fd, 65536):
            pass
    except OSError:
        pass
    finally:
        os.close(fd)
