"""Health checks, run by the container's shim: Docker's HEALTHCHECK semantics.

A thread (only for a container that has a check: nothing is imported or started otherwise)
waits `interval` (`start_interval` during the start period), runs the check inside the
container as an exec, and records State.Health in the container's record:

    {"Status": "starting" | "healthy" | "unhealthy", "FailingStreak": N,
     "Log": [{"Start", "End", "ExitCode", "Output"}, ...]}     (the last 5 results)

Exit 0 is healthy; anything else a failure (a check that outlives `timeout` is killed:
ExitCode -1). `retries` failures in a row make the container unhealthy; failures inside
the start period don't count, a success there makes it healthy at once. A change of
status is a `health_status: healthy|unhealthy` event. The output kept is the first 4096
bytes, as Docker's.

The check runs in a forked child that starts its own process group, so a check that hangs
is killed whole (the exec helper and what it started in the container). The shim's main
thread reaps every child (it is a subreaper): it hands the check's exit status over
through Checker.reaped().
"""
from __future__ import annotations

import os
import signal
import threading
import time

TYPE_CHECKING = False
if TYPE_CHECKING:     # annotations only: importing typing costs ~2 ms per start
    from typing import Callable, Dict, List, Optional

MAX_LOG = 5
MAX_OUTPUT = 4096


def command_of(test) -> Optional[List[str]]:
    """The argv of a check's Test (["CMD", ...] / ["CMD-SHELL", "cmd"]); None = no check."""
    if not test or test[0] == "NONE":
        return None
    if test[0] == "CMD":
        return list(test[1:]) or None
    if test[0] == "CMD-SHELL":
        return ["/bin/sh", "-c", " ".join(test[1:])]
    return list(test)         # a bare list, as some clients send: taken as CMD


class Checker:
    def __init__(self, config, cid: str, runtime_root: str, record: Callable[[dict], None],
                 told: Callable[[str], None], log: Callable[[str], None]):
        """config: shim.config.HealthConfig. record(health) stores State.Health; told(status)
        writes the health_status event."""
        self.config, self.cid, self.runtime_root = config, cid, runtime_root
        self.record, self.told, self.log = record, told, log
        self.argv = command_of(config.test)
        self.stopped = threading.Event()
        self.cond = threading.Condition()
        self.exits: Dict[int, int] = {}
        self.health = {"Status": "starting", "FailingStreak": 0, "Log": []}
        self.thread: Optional[threading.Thread] = None

    def start(self) -> None:
        if self.argv is None:
            return
        self.record(dict(self.health))
        # what the check's child runs is imported now, not after fork in a threaded process
        from pydocklite.runtime import api, exec as _exec, security  # noqa: F401
        self.thread = threading.Thread(target=self._loop, daemon=True, name="health")
        self.thread.start()

    def stop(self, running_ended: bool = True) -> None:
        """The container exited (or restarts): no more checks; unhealthy until it runs."""
        self.stopped.set()
        with self.cond:
            self.cond.notify_all()
        if self.thread is not None:
            self.thread.join(timeout=5)
        if running_ended and self.argv is not None:
            self.health["Status"] = "unhealthy"
            self.record(dict(self.health))

    def reaped(self, pid: int, status: int) -> bool:
        """The main thread reaped `pid`: True if it was a check's (handed over)."""
        with self.cond:
            if pid not in self.exits:
                return False
            self.exits[pid] = status
            self.cond.notify_all()
            return True

    # --- the thread ----------------------------------------------------------------------
    def _loop(self) -> None:
        c = self.config
        started = time.monotonic()
        while True:
            in_start = (time.monotonic() - started) * 1e9 < c.start_period
            wait = (c.start_interval if in_start and c.start_interval else c.interval) / 1e9
            if self.stopped.wait(max(wait, 0.001)):
                return
            in_start = (time.monotonic() - started) * 1e9 < c.start_period
            try:
                result = self._probe()
            except Exception as e:  # noqa: BLE001 - a check that can't run is a failure
                now = _now()
                result = {"Start": now, "End": now, "ExitCode": -1, "Output": str(e)}
            if self.stopped.is_set():
                return
            self._judge(result, in_start)

    def _judge(self, result: dict, in_start: bool) -> None:
        h = self.health
        before = h["Status"]
        h["Log"] = (h["Log"] + [result])[-MAX_LOG:]
        if result["ExitCode"] == 0:
            h["FailingStreak"] = 0
            h["Status"] = "healthy"
        elif not in_start:
            h["FailingStreak"] += 1
            if h["FailingStreak"] >= max(1, self.config.retries):
                h["Status"] = "unhealthy"
        self.record(dict(h))
        if h["Status"] != before:
            self.told(h["Status"])

    def _probe(self) -> dict:
        from pydocklite.runtime import api
        start = _now()
        r, w = os.pipe()
        with self.cond:
            pid = os.fork()
            if pid == 0:
                code = 1
                try:
                    os.setpgid(0, 0)      # the check's own group: killed whole on timeout
                    devnull = os.open(os.devnull, os.O_RDONLY)
                    code = api.exec_process(self.cid, self.argv, root=self.runtime_root,
                                            stdio=(devnull, w, w))
                except BaseException as e:  # noqa: BLE001 - told through the output
                    os.write(w, f"health check: {e}\n".encode())
                finally:
                    os._exit(code if 0 <= code < 256 else 1)
            self.exits[pid] = -1          # the main thread hands its status over here
        os.close(w)
        out, timed_out = self._read(r, pid)
        status = self._wait(pid)
        end = _now()
        if timed_out:
            return {"Start": start, "End": end, "ExitCode": -1,
                    "Output": f"Health check exceeded timeout ({_seconds(self.config.timeout)})"}
        code = os.waitstatus_to_exitcode(status) if status >= 0 else -1
        return {"Start": start, "End": end, "ExitCode": code,
                "Output": out.decode("utf-8", "replace")}

    def _read(self, r: int, pid: int):
        """The check's output (first MAX_OUTPUT bytes) until it closes; kill it at timeout."""
        import select
        deadline = time.monotonic() + self.config.timeout / 1e9
        out, timed_out = b"", False
        try:
            while True:
                left = deadline - time.monotonic()
                if left <= 0 or self.stopped.is_set():
                    timed_out = left <= 0
                    try:
                        os.killpg(pid, signal.SIGKILL)
                    except (ProcessLookupError, PermissionError):
                        pass
                    break
                ready, _, _ = select.select([r], [], [], min(left, 0.5))
                if not ready:
                    continue
                chunk = os.read(r, 65536)
                if not chunk:
                    break
                if len(out) < MAX_OUTPUT:
                    out += chunk[:MAX_OUTPUT - len(out)]
        finally:
            os.close(r)
        return out, timed_out

    def _wait(self, pid: int) -> int:
        """The check's exit status, handed over by the shim's reaper; once the container
        has exited nobody reaps any more (stop() is running): then reaped here."""
        deadline = time.monotonic() + 10
        with self.cond:
            while self.exits.get(pid, -1) == -1 and time.monotonic() < deadline:
                if self.stopped.is_set():
                    try:
                        return os.waitpid(pid, 0)[1]
                    except ChildProcessError:
                        break               # the reaper had it after all
                    finally:
                        self.exits.pop(pid, None)
                self.cond.wait(0.5)
            return self.exits.pop(pid, -1)


def _now() -> str:
    from pydocklite.state.container import now_rfc3339
    return now_rfc3339()


def _seconds(ns: int) -> str:
    s = ns / 1e9
    return f"{s:g}s"
