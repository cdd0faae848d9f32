"""Small translations the handlers share: filters in both of Docker's encodings, times,
noticing that a client went away."""
from __future__ import annotations

import select
import socket

from pydocklite.api.http import HttpError


def filters_arg(req, name: str = "filters") -> list:
    """?filters= as ["key=value", ...]: Go clients send {"label": {"k=v": true}}, the Python
    SDK {"label": ["k=v"]}."""
    raw = req.json_arg(name, {})
    if not isinstance(raw, dict):
        raise HttpError(400, "invalid filters: a JSON object of key -> values expected")
    out = []
    for key, values in raw.items():
        if isinstance(values, dict):
            items = [v for v, on in values.items() if on]
        elif isinstance(values, list):
            items = values
        elif isinstance(values, str):
            items = [values]
        else:
            raise HttpError(400, f"invalid filter {key!r}: values must be a list or a map")
        for v in items:
            if not isinstance(v, str):
                raise HttpError(400, f"invalid filter {key!r}: values must be strings")
            out.append(f"{key}={v}")
    return out


def filter_values(filters: list, key: str) -> list:
    return [f.partition("=")[2] for f in filters if f.partition("=")[0] == key]


def unix_time(rfc3339: str) -> int:
    from pydocklite.state.container import parse_rfc3339
    t = parse_rfc3339(rfc3339)
    return int(t.timestamp()) if t else 0


def client_closed(sock: socket.socket, half_close_ok: bool = False) -> bool:
    """Has the client gone away? Data it sent meanwhile is left unread.

    half_close_ok: for hijacked streams, where a client shuts its writing side when it has
    no more input (the docker CLI does so at once when it attaches without stdin) and still
    reads: then only a hang-up counts (both directions closed, or an error)."""
    if half_close_ok:
        import select as sel
        poller = sel.poll()
        poller.register(sock, sel.POLLHUP | sel.POLLERR)
        try:
            return any(ev & (sel.POLLHUP | sel.POLLERR | sel.POLLNVAL)
                       for _, ev in poller.poll(0))
        except OSError:
            return True
    try:
        ready, _, _ = select.select([sock], [], [], 0)
    except (OSError, ValueError):
        return True
    if not ready:
        return False
    try:
        return sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True
