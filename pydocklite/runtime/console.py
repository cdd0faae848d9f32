"""Foreground terminal for `run` when process.terminal is true and no --console-socket was
given (what runc does): receive the pty master from the container's init over a socket of our
own, then relay our stdin/stdout to it until the container closes the terminal."""
from __future__ import annotations

import os


def recv_fd(conn, bufsize: int = 64):
    """The one fd a peer sent over the unix socket `conn` with SCM_RIGHTS, or None."""
    import array
    import socket
    fds = array.array("i")
    _msg, anc, _flags, _addr = conn.recvmsg(bufsize, socket.CMSG_SPACE(fds.itemsize))
    for level, typ, data in anc:
        if level == socket.SOL_SOCKET and typ == socket.SCM_RIGHTS:
            fds.frombytes(data[:fds.itemsize])
    return fds[0] if fds else None


class ConsoleReceiver:
    """A listening unix socket in the container's state dir; the init connects and sends
    the pty master with SCM_RIGHTS (buffered, so no accept() is needed until after create)."""

    def __init__(self, directory: str):
        import socket
        self.path = os.path.join(directory, "console.sock")
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._sock.bind(self.path)
        self._sock.listen(1)

    def receive(self, timeout: float = 30.0) -> int:
        self._sock.settimeout(timeout)
        conn, _ = self._sock.accept()
        try:
            fd = recv_fd(conn)
        finally:
            conn.close()
        if fd is None:
            raise OSError("the container sent no terminal")
        return fd

    def close(self) -> None:
        self._sock.close()
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass


def _copy_winsize(src: int, dst: int) -> None:
    import fcntl
    import termios
    try:
        fcntl.ioctl(dst, termios.TIOCSWINSZ, fcntl.ioctl(src, termios.TIOCGWINSZ, b"\0" * 8))
    except OSError:
        pass


def relay(master: int, stdin: int = 0, stdout: int = 1) -> None:
    """Copy stdin -> master and master -> stdout until the terminal closes (EIO/EOF).
    Puts our terminal in raw mode meanwhile when stdin is a tty."""
    import select
    import termios
    import tty
    saved = None
    if os.isatty(stdin):
        saved = termios.tcgetattr(stdin)
        tty.setraw(stdin)
        _copy_winsize(stdin, master)
    fds = [master, stdin]
    try:
        while True:
            try:
                ready, _, _ = select.select(fds, [], [])
            except InterruptedError:
                continue
            if master in ready:
                try:
                    data = os.read(master, 65536)
                except OSError:          # EIO: every slave fd closed
                    data = b""
                if not data:
                    return
                os.write(stdout, data)
            if stdin in ready:
                data = os.read(stdin, 65536)
                if not data:
                    fds = [master]       # our input ended; keep showing output
                    os.write(master, b"\x04")
                else:
                    os.write(master, data)
    finally:
        if saved is not None:
            termios.tcsetattr(stdin, termios.TCSADRAIN, saved)
        os.close(master)
