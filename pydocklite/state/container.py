"""A container's recorded facts and the status derived from them.

`ContainerState` holds only facts (pids with their kernel start times, exit code, times).
`status()` derives Docker's words from them: a pid counts as alive only if /proc/PID/stat
still shows the recorded start time (field 22), so pid reuse can't fool it, and a shim
that died while its container ran is reported as "exited" with an error naming it.
The record is written by the services (create, rename...) and by the container's shim
(pids, exit status, health), both through state.store.ContainerStore; this package sits
below both (it imports nothing of pydocklite but the runtime's record type).
"""
from __future__ import annotations

import os
import time

TYPE_CHECKING = False
if TYPE_CHECKING:     # annotations only: importing typing costs ~2 ms per start
    from datetime import datetime
    from typing import Any, Callable, Dict, Optional

from pydocklite.humanize import human_duration  # noqa: F401 (part of this module's API)
from pydocklite.runtime.record import Factory, record

ZERO_TIME = "0001-01-01T00:00:00Z"
SCHEMA = 1

# --- processes -----------------------------------------------------------------------------

def process_start_time(pid: int) -> Optional[int]:
    """Start time of `pid` in clock ticks since boot (/proc/PID/stat field 22), or None if the
    process doesn't exist or is a zombie (exited, not yet reaped: it runs nothing)."""
    if pid <= 0:
        return None
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    rest = data[data.rfind(b")") + 2:].split()  # rest[0] is field 3 (state)
    if not rest or rest[0] in (b"Z", b"X"):
        return None
    return int(rest[19])


def pid_alive(pid: int, start_time: int) -> bool:
    """True if `pid` runs and is the very process that started at `start_time`."""
    return pid > 0 and start_time > 0 and process_start_time(pid) == start_time


def now_rfc3339() -> str:
    """Current UTC time the way Docker writes it (RFC 3339, nanoseconds, Z)."""
    sec, frac = divmod(time.time_ns(), 1_000_000_000)
    # (time's strftime: datetime is ~0.9 ms to import, on every `run`'s path)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec)) + f".{frac:09d}Z"


def parse_rfc3339(text: str) -> Optional[datetime]:
    """Parse Docker's timestamps (any fraction length, Z or offset); None for empty/zero time."""
    if not text or text.startswith("0001-01-01"):
        return None
    from datetime import datetime
    t = text.replace("Z", "+00:00")
    if "." in t:
        head, tail = t.split(".", 1)
        i = next((k for k, c in enumerate(tail) if not c.isdigit()), len(tail))
        t = f"{head}.{tail[:i][:6].ljust(6, '0')}{tail[i:]}"
    return datetime.fromisoformat(t)


# --- facts and derived status -----------------------------------------------------------------

@record
class Status:
    """Derived, never stored. `state` is one of Docker's words: created, running, paused,
    restarting, removing, exited, dead."""
    state: str
    running: bool
    pid: int
    exit_code: int
    error: str
    shim_alive: bool


@record
class ContainerState:
    id: str
    name: str
    image: str                      # the reference the user gave ("nginx:latest")
    image_id: str = ""              # "sha256:<hex>" of the image config
    created: str = ZERO_TIME
    config: Dict[str, Any] = Factory(dict)   # Docker's Config/HostConfig used
    shim_pid: int = 0
    shim_start_time: int = 0
    init_pid: int = 0
    init_start_time: int = 0
    exit_code: Optional[int] = None  # recorded by the shim when the init exits
    started_at: str = ZERO_TIME
    finished_at: str = ZERO_TIME
    oom_killed: bool = False
    restart_count: int = 0
    restarting: bool = False        # the shim waits to apply the restart policy
    paused: bool = False
    removing: bool = False
    dead: bool = False              # removal failed half-way; only `rm -f` helps
    health: Optional[Dict[str, Any]] = None  # State.Health (shim/health.py) with a check
    error: str = ""
    log_path: str = ""
    shim_log_path: str = ""
    # the endpoints of the running container, by network name (the shim writes them when
    # the namespace host has attached it, and empties them when it stops): Docker's
    # NetworkSettings.Networks values (IPAddress, IPPrefixLen, Gateway, MacAddress,
    # EndpointID, NetworkID)
    endpoints: Dict[str, Any] = Factory(dict)

    @property
    def short_id(self) -> str:
        return self.id[:12]

    def one_moment(self) -> "ContainerState":
        """This record with its processes' liveness read once, at first need: status(),
        human_status() and inspect_state() then agree, and /proc is read once per process,
        not once per call (an API answer, a `ps` line: one moment). Not for a record
        polled over time."""
        memo: Dict[tuple, bool] = {}

        def alive(pid: int, start: int) -> bool:
            key = (pid, start)
            if key not in memo:
                memo[key] = pid_alive(pid, start)
            return memo[key]
        copy = self._replace()
        object.__setattr__(copy, "_liveness", alive)
        object.__setattr__(copy, "_status", None)
        return copy

    def status(self, alive: Optional[Callable[[int, int], bool]] = None) -> Status:
        if alive is None:
            if self.__dict__.get("_status") is not None:
                return self.__dict__["_status"]
            if "_liveness" in self.__dict__:
                st = self._status_with(self.__dict__["_liveness"])
                object.__setattr__(self, "_status", st)
                return st
            alive = pid_alive
        return self._status_with(alive)

    def _status_with(self, alive: Callable[[int, int], bool]) -> Status:
        shim_alive = alive(self.shim_pid, self.shim_start_time)
        init_alive = alive(self.init_pid, self.init_start_time)
        code = self.exit_code if self.exit_code is not None else 0
        if self.dead:
            return Status("dead", False, 0, code, self.error, shim_alive)
        if self.removing:
            return Status("removing", False, 0, code, self.error, shim_alive)
        if init_alive:
            err = self.error
            if not shim_alive and self.shim_pid:
                err = err or (f"shim (pid {self.shim_pid}) exited while the container runs: "
                              f"logs and exit status are no longer recorded")
            return Status("paused" if self.paused else "running", True, self.init_pid, code,
                          err, shim_alive)
        if self.restarting and shim_alive:
            return Status("restarting", False, 0, code, self.error, True)
        if self.exit_code is not None:
            return Status("exited", False, 0, self.exit_code, self.error, shim_alive)
        if self.started_at != ZERO_TIME or self.init_pid:
            if shim_alive:  # the init just exited; its shim is recording the status
                return Status("running", True, self.init_pid, 0, self.error, True)
            err = self.error or (f"shim (pid {self.shim_pid}) died while the container was running;"
                                 f" exit status unknown (see {self.shim_log_path or 'the shim log'})")
            return Status("exited", False, 0, 255, err, False)
        return Status("created", False, 0, code, self.error, shim_alive)

    def human_status(self, now: Optional[datetime] = None,
                     alive: Optional[Callable[[int, int], bool]] = None) -> str:
        """The STATUS column of `docker ps`: "Up 5 minutes", "Exited (0) 2 hours ago"..."""
        st = self.status(alive)
        if now is None:
            from datetime import datetime, timezone
            now = datetime.now(timezone.utc)

        def since(ts: str) -> str:
            t = parse_rfc3339(ts)
            return human_duration((now - t).total_seconds()) if t else "Less than a second"
        if st.state in ("running", "paused"):
            up = f"Up {since(self.started_at)}"
            if st.state == "paused":
                return up + " (Paused)"
            status = (self.health or {}).get("Status")
            if status:
                up += " (health: starting)" if status == "starting" else f" ({status})"
            return up
        if st.state == "restarting":
            return f"Restarting ({st.exit_code}) {since(self.finished_at)} ago"
        if st.state == "exited":
            if self.finished_at == ZERO_TIME:
                return f"Exited ({st.exit_code})"
            return f"Exited ({st.exit_code}) {since(self.finished_at)} ago"
        return {"created": "Created", "removing": "Removal In Progress", "dead": "Dead"}[st.state]

    def inspect_state(self, alive: Optional[Callable[[int, int], bool]] = None
                      ) -> Dict[str, Any]:
        """The "State" object of `docker inspect`."""
        st = self.status(alive)
        return {
            "Status": st.state, "Running": st.state in ("running", "paused"),
            "Paused": st.state == "paused", "Restarting": st.state == "restarting",
            "OOMKilled": self.oom_killed, "Dead": st.state == "dead", "Pid": st.pid,
            "ExitCode": st.exit_code, "Error": st.error, "StartedAt": self.started_at,
            "FinishedAt": self.finished_at,
            **({"Health": self.health} if self.health else {}),
        }

    def to_json(self) -> Dict[str, Any]:
        data = self._asdict()
        data["schema"] = SCHEMA
        return data

    @classmethod
    def from_json(cls, data: Dict[str, Any]) -> "ContainerState":
        names = set(cls._fields)
        return cls(**{k: v for k, v in data.items() if k in names})


def new_id() -> str:
    """64 hex digits whose 12-digit short form isn't all decimal (Docker avoids those)."""
    while True:
        cid = os.urandom(32).hex()
        if not cid[:12].isdigit():
            return cid
