"""What runs in a container, seen from the host: `top`, `stats`. (`cp` is containers/cp.py
over the confined helper of fs_access.py.)"""
from __future__ import annotations

import os
import time
from typing import Dict, List


def container_pids(settings, cid: str) -> List[int]:
    from pydocklite.runtime import api
    return api.processes(cid, root=str(settings.runtime_layout.runtime_root))


def _stat(pid: int) -> List[str]:
    with open(f"/proc/{pid}/stat") as f:
        data = f.read()
    return data[data.rindex(")") + 2:].split()


def cpu_ticks(pids: List[int]) -> int:
    total = 0
    for pid in pids:
        try:
            fields = _stat(pid)
            total += int(fields[11]) + int(fields[12])
        except (OSError, ValueError, IndexError):
            pass
    return total


def rss_bytes(pids: List[int]) -> int:
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/statm") as f:
                total += int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except (OSError, ValueError, IndexError):
            pass
    return total


def sample_stats(settings, states, interval: float = 0.5) -> List[Dict]:
    """CPU % over `interval`, memory (RSS sum), pids; per running container."""
    hz = os.sysconf("SC_CLK_TCK")
    pids = {s.id: container_pids(settings, s.id) for s in states}
    before = {cid: cpu_ticks(p) for cid, p in pids.items()}
    t0 = time.monotonic()
    time.sleep(interval)
    dt = time.monotonic() - t0
    total_mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    out = []
    for s in states:
        p = pids[s.id]
        cpu = (cpu_ticks(p) - before[s.id]) / hz / dt * 100.0
        mem = rss_bytes(p)
        limit = s.config.get("HostConfig", {}).get("Memory") or total_mem
        out.append({"id": s.id, "name": s.name, "cpu": cpu, "mem": mem, "limit": limit,
                    "pids": len(p)})
    return out
