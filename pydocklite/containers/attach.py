"""Attaching to a running container's stdio (the service under `attach` and the API's
POST /containers/{id}/attach on a running container): a connection to its shim's attach
socket (shim/attach.py), whose stream is Docker's (raw with a tty, else multiplexed
frames), and resizing its terminal. Attaching before the start is the start's business:
ContainerService.start(attach=[stdin, stdout, stderr]) hands the shim those fds."""
from __future__ import annotations

import json

from pydocklite.errors import ContainerStateError, UsageError
from pydocklite.runtime.record import record


@record
class Attached:
    sock: object            # a connected socket.socket: read the stream, write stdin
    tty: bool
    state: object           # the ContainerState attached to


def connect(settings, ref: str, stdin: bool = True, stdout: bool = True, stderr: bool = True,
            detach_keys: str = "ctrl-p,ctrl-q") -> Attached:
    """A live attachment; ContainerStateError when the container isn't running."""
    from pydocklite.shim.attach import parse_detach_keys
    parse_detach_keys(detach_keys)              # a bad value: UsageError before anything
    state, sock = _dial(settings, ref)
    reply = _ask(sock, {"stdin": stdin, "stdout": stdout, "stderr": stderr,
                        "detach_keys": detach_keys}, state)
    return Attached(sock, bool(reply.get("tty")), state)


def resize(settings, ref: str, rows: int, cols: int) -> None:
    """Give a running tty container's terminal this size."""
    if not (0 < rows < 65536 and 0 < cols < 65536):
        raise UsageError(f"invalid terminal size {rows}x{cols}")
    state, sock = _dial(settings, ref)
    with sock:
        _ask(sock, {"resize": [rows, cols]}, state)


def _dial(settings, ref: str):
    import socket
    from pydocklite.state.store import ContainerStore
    state = ContainerStore(settings.layout.containers_dir).get(ref)
    if not state.status().running:
        raise ContainerStateError("You cannot attach to a stopped container, start it first")
    path = str(settings.runtime_layout.attach_socket(state.id))
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(path)
    except OSError as e:
        sock.close()
        raise ContainerStateError(f"container {state.name}: its shim does not serve attaching "
                                  f"({e.strerror}): it was started by an older pydocklite, or "
                                  f"its shim died; restart it") from None
    return state, sock


def _ask(sock, request: dict, state) -> dict:
    sock.sendall((json.dumps(request) + "\n").encode())
    line = b""
    while not line.endswith(b"\n"):
        chunk = sock.recv(1)
        if not chunk:
            sock.close()
            raise ContainerStateError(f"container {state.name} stopped while attaching")
        line += chunk
    reply = json.loads(line)
    if not reply.get("ok"):
        sock.close()
        raise ContainerStateError(f"container {state.name}: {reply.get('error', 'refused')}")
    return reply
