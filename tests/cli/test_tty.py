"""`run -it`: the container's pty gets the size of the CLI's terminal at start and after each
resize (the CLI relays SIGWINCH to the shim, which holds the pty master). Driven through a
real pty pair, pydocklite running as the unprivileged test user."""
from __future__ import annotations

import fcntl
import os
import select
import struct
import subprocess
import termios
import time


def _set_size(fd: int, rows: int, cols: int) -> None:
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


def _as_controlling_tty() -> None:     # in the child, after setsid (start_new_session)
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


class Term:
    def __init__(self, master: int):
        self.fd, self.out = master, b""

    def read_until(self, needle: bytes, timeout: float = 30) -> bytes:
        deadline = time.time() + timeout
        while needle not in self.out and time.time() < deadline:
            r, _, _ = select.select([self.fd], [], [], 0.2)
            if r:
                try:
                    self.out += os.read(self.fd, 4096)
                except OSError:
                    break
        return self.out

    def ask(self, command: bytes, marker: bytes) -> str:
        """Run `command` in the container shell; its output line after `marker`."""
        start = len(self.out)
        os.write(self.fd, command + b"; echo " + marker + b"-$((1+1))\n")
        end = marker + b"-2"
        self.read_until(end)
        text = self.out[start:].decode(errors="replace")
        assert end.decode() in text, text
        lines = [l.strip() for l in text.replace("\r", "").split("\n")]
        i = lines.index(end.decode())
        return lines[i - 1]


def _start(cli, rows: int, cols: int, *args: str):
    master, slave = os.openpty()
    _set_size(slave, rows, cols)
    p = subprocess.Popen(cli.argv("run", "--rm", "-it", *args), env=cli.environ(),
                         cwd=str(cli.home), stdin=slave, stdout=slave, stderr=slave,
                         start_new_session=True, preexec_fn=_as_controlling_tty)
    os.close(slave)
    return p, master


def test_tty_size_at_start_and_after_resize(cli, busybox):
    p, master = _start(cli, 33, 101, busybox, "sh")
    term = Term(master)
    try:
        term.read_until(b"# ")
        assert term.ask(b"stty size", b"A") == "33 101"
        _set_size(master, 44, 120)        # the kernel sends SIGWINCH to the CLI
        deadline = time.time() + 10
        size = ""
        while time.time() < deadline:
            size = term.ask(b"stty size", b"B")
            if size == "44 120":
                break
            time.sleep(0.2)
        assert size == "44 120"
        _set_size(master, 20, 70)
        time.sleep(0.5)
        assert term.ask(b"stty size", b"C") == "20 70"
        os.write(master, b"exit 4\n")
        assert p.wait(timeout=30) == 4
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        os.close(master)


def test_tty_with_init(cli, busybox):
    """--init -t: the shell is init's child, owns the terminal (job control) and sees
    resizes; its exit status comes back through init."""
    p, master = _start(cli, 25, 90, "--init", busybox, "sh")
    term = Term(master)
    try:
        term.read_until(b"# ")
        assert term.ask(b"cat /proc/1/comm", b"P") == "init"
        assert term.ask(b"stty size", b"A") == "25 90"
        # pid, process group and the terminal's foreground group (fields 5 and 8 of stat)
        fg = term.ask(b"echo $$ $(cut -d' ' -f5,8 /proc/$$/stat)", b"G").split()
        assert fg[0] != "1" and fg[0] == fg[1] == fg[2], fg   # own group, the tty's foreground
        _set_size(master, 30, 100)
        time.sleep(0.5)
        assert term.ask(b"stty size", b"B") == "30 100"
        os.write(master, b"exit 6\n")
        assert p.wait(timeout=30) == 6
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        os.close(master)
