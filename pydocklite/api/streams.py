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


class AttachSession:
    """A client attached to a container that is not started yet (`docker run` attaches,
    then starts): its pipes are handed to the shim at the start."""

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

    def shim_fds(self):
        """The shim's stdio for this client ([stdin, stdout, stderr]) and our ends. With a
        tty the shim gets the slave of a pty of ours (raw mode), so that a resize of ours
        reaches the container's terminal (the shim copies its size on SIGWINCH)."""
        if self.tty:
            import tty
            master, slave = os.openpty()
            tty.setraw(slave)
            if self.size:
                set_winsize(master, *self.size)
            self.master = os.dup(master)            # for resize, closed by close()
            stdin = slave if self.stdin else os.open(os.devnull, os.O_RDONLY)
            fds = [stdin, slave, slave]
            return fds, (os.dup(master) if self.stdin else None, [(master, STDOUT)])
        in_r, in_w = os.pipe() if self.stdin else (os.open(os.devnull, os.O_RDONLY), None)
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        outputs = [(out_r, STDOUT if self.stdout else 0),
                   (err_r, STDERR if self.stderr else 0)]
        return [in_r, out_w, err_w], (in_w, outputs)

    def close(self) -> None:
        if self.master is not None:
            os.close(self.master)
            self.master = None

    def begin(self, ours) -> None:
        in_w, outputs = ours
        sending = [(fd, s) for fd, s in outputs if s != 0]
        for fd, s in outputs:
            if s == 0:
                threading.Thread(target=_drain, args=(fd,), daemon=True).start()
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
