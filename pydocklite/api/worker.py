"""Heavy one-off work (pull, push, build) in a forked child of the service, its progress
relayed as JSON lines.

Why a child: a pull or a push loads requests, urllib3, zstandard and friends (~10 MiB that
Python never gives back), a build the builder; the service forks (its pages are shared,
copy-on-write), the child does the work with the modules it needs and exits, and the
resident service stays small (bench/api.py's idle memory). A child that crashes takes no
client's connection or other request with it.

    for event in run_in_child(lambda emit: work(emit)):   # each emit(dict) arrives here
        ...                                                # the last is {"result": ...}
                                                           # or {"failed": message, "status": N}
"""
from __future__ import annotations

import json
import os


def run_in_child(work, new_session: bool = True):
    """Yield the dicts work(emit) emits in a forked child, then its result or failure."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            os.close(r)
            if new_session:
                os.setsid()            # Ctrl-C in the service's terminal: not for it
            out = os.fdopen(w, "w", buffering=1)

            def emit(event: dict) -> None:
                out.write(json.dumps(event) + "\n")
            try:
                result = work(emit)
                emit({"result": result})
            except BaseException as e:  # noqa: BLE001 - reported to the parent
                from pydocklite.api.status import message_of, status_of
                emit({"failed": message_of(e), "status": status_of(e)})
            out.flush()
        except BaseException:  # noqa: BLE001 - the parent sees the pipe end
            code = 1
        finally:
            os._exit(code)
    os.close(w)
    got_end = False
    try:
        with os.fdopen(r, "r") as f:
            for line in f:
                try:
                    event = json.loads(line)
                except ValueError:
                    continue
                if "result" in event or "failed" in event:
                    got_end = True
                yield event
    finally:
        if not got_end:             # the client left (or the child died): stop the work
            import signal
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        os.waitpid(pid, 0)
    if not got_end:
        yield {"failed": "the worker process died", "status": 500}
