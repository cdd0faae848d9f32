"""What this host allows a rootless user, for `pydocklite info`: each missing feature is
reported with the exact command that enables it."""
from __future__ import annotations

import os
import platform
import pwd
import shutil
from dataclasses import dataclass
from typing import List, Optional


@dataclass(frozen=True)
class Missing:
    feature: str
    effect: str
    fix: str


def _read(path: str) -> Optional[str]:
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return None


def user_name() -> str:
    try:
        return pwd.getpwuid(os.getuid()).pw_name
    except KeyError:
        return str(os.getuid())


def subid_range(path: str, user: str, uid: int) -> Optional[tuple]:
    """(start, count) of the first /etc/subuid-style line for this user, else None."""
    text = _read(path) or ""
    for line in text.splitlines():
        parts = line.strip().split(":")
        if len(parts) == 3 and parts[0] in (user, str(uid)):
            try:
                return int(parts[1]), int(parts[2])
            except ValueError:
                continue
    return None


def idmap_mode(missing: List[Missing]) -> str:
    if os.getuid() == 0:
        return "root (full id range)"
    user = user_name()
    have_tools = shutil.which("newuidmap") and shutil.which("newgidmap")
    uids = subid_range("/etc/subuid", user, os.getuid())
    gids = subid_range("/etc/subgid", user, os.getuid())
    if have_tools and uids and gids:
        return f"subordinate ids (uids {uids[0]}+{uids[1]}, gids {gids[0]}+{gids[1]})"
    if not have_tools:
        missing.append(Missing("newuidmap/newgidmap", "containers see only one uid (root = you)",
                               "sudo apt-get install uidmap"))
    if not (uids and gids):
        missing.append(Missing(f"/etc/subuid and /etc/subgid entries for {user}",
                               "containers see only one uid (root = you)",
                               f"sudo usermod --add-subuids 100000-165535 "
                               f"--add-subgids 100000-165535 {user}"))
    return "single id (root in the container is you)"


def userns_status(missing: List[Missing]) -> str:
    if _read("/proc/sys/kernel/unprivileged_userns_clone") == "0":
        missing.append(Missing("unprivileged user namespaces", "no container can start",
                               "sudo sysctl -w kernel.unprivileged_userns_clone=1"))
        return "disabled"
    if _read("/proc/sys/kernel/apparmor_restrict_unprivileged_userns") == "1":
        missing.append(Missing("user namespaces (AppArmor restriction, Ubuntu 24.04+)",
                               "no container can start",
                               "sudo sysctl -w kernel.apparmor_restrict_unprivileged_userns=0"))
        return "restricted by AppArmor"
    if _read("/proc/sys/user/max_user_namespaces") == "0":
        missing.append(Missing("user namespaces", "no container can start",
                               "sudo sysctl -w user.max_user_namespaces=15000"))
        return "disabled"
    return "available"


def fuse_status(missing: List[Missing]) -> str:
    if not os.path.exists("/dev/fuse"):
        missing.append(Missing("/dev/fuse", "the fuse storage driver is unavailable",
                               "sudo modprobe fuse"))
        return "absent"
    if not os.access("/dev/fuse", os.R_OK | os.W_OK):
        missing.append(Missing("access to /dev/fuse", "the fuse storage driver is unavailable",
                               "sudo chmod 0666 /dev/fuse"))
        return "no access"
    import ctypes.util
    if not (ctypes.util.find_library("fuse") or ctypes.util.find_library("fuse3")):
        missing.append(Missing("libfuse", "the fuse storage driver is unavailable",
                               "sudo apt-get install libfuse2"))
        return "no libfuse"
    return "available"


def network_status(missing: List[Missing]) -> str:
    from pydocklite.nshost.outbound import outbound_tool
    tool, why = outbound_tool()
    if tool:
        return (f"bridge networks in the namespace host, outbound traffic via {tool}; "
                "published ports forwarded")
    missing.append(Missing("outbound networking for bridge networks", why,
                           "sudo apt-get install slirp4netns (or passt); "
                           "sudo chmod 0666 /dev/net/tun"))
    return ("bridge networks in the namespace host without outbound traffic (containers "
            "reach each other; published ports forwarded; --network host has outbound)")


def nshost_status(settings, missing: List[Missing]) -> dict:
    """The per-user namespace host: running or not, its pid, log, id mapping, outbound
    helper (asked without starting one)."""
    from pydocklite.nshost.client import connect
    from pydocklite.nshost.state import HostFiles
    files = HostFiles(settings.runtime_dir)
    out = {"Running": False, "Log": str(files.log)}
    try:
        host = connect(settings.runtime_dir, start=False)
    except Exception as e:  # noqa: BLE001 - a host that doesn't answer: said as such
        out["Error"] = str(e)
        return out
    if host is None:
        return out
    with host:
        st = host.call("status")
    if st.get("firewall"):
        out["Firewall"] = st["firewall"]
        missing.append(Missing("nf_tables in user namespaces", st["firewall"],
                               "a kernel with nf_tables, NAT, masquerade and conntrack "
                               "(CONFIG_NF_TABLES, CONFIG_NFT_NAT, CONFIG_NFT_MASQ, "
                               "CONFIG_NFT_CT), or their modules loaded: sudo modprobe -a "
                               "nf_tables nft_masq nft_ct nft_nat"))
    out.update({"Running": True, "Pid": st["pid"], "PausePid": st["pause_pid"],
                "IDMapping": st["idmap"], "Outbound": st["outbound"] or "none",
                "Networks": len(st["networks"]), "Endpoints": len(st["endpoints"]),
                "SharedLowers": len(st["lowers"])})
    return out


def cgroup_status(missing: List[Missing]) -> dict:
    try:
        from pydocklite.runtime import cgroups
    except ImportError:
        return {"version": "unknown", "controllers": [], "reason": "cgroup support not built"}
    info = cgroups.detect()
    controllers = list(getattr(info, "controllers", ()) or ())
    reason = getattr(info, "reason", "") or ""
    fix = getattr(info, "fix", "") or ""
    if not controllers:
        missing.append(Missing("delegated cgroup controllers",
                               "--memory, --cpus and --pids-limit cannot be enforced",
                               fix or reason or "enable systemd cgroup v2 delegation"))
    return {"version": str(getattr(info, "version", "")), "controllers": controllers,
            "reason": reason}


def pause_status(cg: dict) -> str:
    """How `pause` works here (containers/pause.py)."""
    signals = ("SIGSTOP/SIGCONT of every process of the container: its processes show as "
               "stopped, and a SIGCONT sent to one from the host resumes it")
    if cg["controllers"] and (cg["version"] == "v2" or "freezer" in cg["controllers"]):
        return "cgroup freezer for containers given a delegated cgroup; otherwise " + signals
    return signals + " (no delegated cgroup with a freezer)"


def storage_status(settings) -> dict:
    from snapshotter.overlay import choose_driver
    choice = choose_driver(settings.storage_driver)
    return {"driver": choice.driver, "reason": choice.reason}


def security_status() -> dict:
    """Docker's SecurityOptions list, and which LSMs the host enforces (the runtime refuses
    AppArmor profiles and SELinux labels where the LSM is not enabled)."""
    from pydocklite.runtime import lsm
    host = lsm.detect()
    opts = [f"name={n}" for n, on in (("apparmor", host.apparmor), ("selinux", host.selinux))
            if on]
    opts.append("name=seccomp,profile=builtin")
    if os.getuid() != 0:
        opts.append("name=rootless")
    opts.append("name=cgroupns")
    return {"SecurityOptions": opts, "LSM": lsm.describe(host)}


API_SOCKET_NAME = "docker.sock"


def api_socket(settings) -> dict:
    """Where `system service` listens by default, and whether a service answers there."""
    import socket
    path = str(settings.runtime_layout.api_socket)
    state = "not running (start it with `pydocklite system service`)"
    if os.path.exists(path):
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        probe.settimeout(0.5)
        try:
            probe.connect(path)
            state = "listening"
        except OSError:
            state = "stale socket, no service (the next `system service` replaces it)"
        finally:
            probe.close()
    return {"path": path, "host": f"unix://{path}", "state": state}


def collect(settings) -> dict:
    from pydocklite import __version__
    missing: List[Missing] = []
    info = {
        "ServerVersion": __version__,
        "PythonVersion": platform.python_version(),
        "KernelVersion": platform.release(),
        "OperatingSystem": _os_name(),
        "Architecture": platform.machine(),
        "Rootless": os.getuid() != 0,
        "DockerRootDir": str(settings.data_root),
        "RuntimeDir": str(settings.runtime_dir),
        "UserNamespaces": userns_status(missing),
        "IDMapping": idmap_mode(missing),
        "FUSE": fuse_status(missing),
        "Network": network_status(missing),
        "NamespaceHost": nshost_status(settings, missing),
        "Cgroup": cgroup_status(missing),
        "Pause": "",
        "Storage": storage_status(settings),
        "UnprivilegedPortStart": _read("/proc/sys/net/ipv4/ip_unprivileged_port_start"),
        "APISocket": api_socket(settings),
    }
    info["Pause"] = pause_status(info["Cgroup"])
    info.update(security_status())
    info["Missing"] = [{"Feature": m.feature, "Effect": m.effect, "Fix": m.fix}
                       for m in missing]
    return info


def _os_name() -> str:
    text = _read("/etc/os-release") or ""
    for line in text.splitlines():
        if line.startswith("PRETTY_NAME="):
            return line.split("=", 1)[1].strip('"')
    return platform.system()


def _nshost_line(ns: dict) -> str:
    if not ns.get("Running"):
        why = f" ({ns['Error']})" if ns.get("Error") else " (started by the first container)"
        return f"not running{why}; log {ns['Log']}"
    return (f"pid {ns['Pid']} (pause {ns['PausePid']}), {ns['IDMapping']} id map, outbound "
            f"{ns['Outbound']}, {ns['Networks']} bridge(s), {ns['Endpoints']} endpoint(s), "
            f"{ns['SharedLowers']} shared image mount(s); log {ns['Log']}"
            + (f"; {ns['Firewall']}" if ns.get("Firewall") else ""))


def render_text(info: dict) -> str:
    cg = info["Cgroup"]
    st = info["Storage"]
    lines = [
        "Client:",
        f" Version:          {info['ServerVersion']}",
        f" Python:           {info['PythonVersion']}",
        "",
        "Host:",
        f" Kernel Version:   {info['KernelVersion']}",
        f" Operating System: {info['OperatingSystem']}",
        f" Architecture:     {info['Architecture']}",
        f" Rootless:         {str(info['Rootless']).lower()}",
        f" Root Dir:         {info['DockerRootDir']}",
        f" Runtime Dir:      {info['RuntimeDir']}",
        f" Storage Driver:   {st['driver']}" + (f" ({st['reason']})" if st.get("reason") else ""),
        f" User Namespaces:  {info['UserNamespaces']}",
        f" ID Mapping:       {info['IDMapping']}",
        f" FUSE:             {info['FUSE']}",
        f" Cgroup Version:   {cg['version']}",
        f" Cgroup Controllers: {' '.join(cg['controllers']) or 'none delegated'}"
        + (f" ({cg['reason']})" if cg.get("reason") else ""),
        f" Pause:            {info['Pause']}",
        f" Network:          {info['Network']}",
        f" Namespace Host:   {_nshost_line(info['NamespaceHost'])}",
        " Security Options: " + ", ".join(o[5:].replace(",profile=", " profile ")
                                          for o in info["SecurityOptions"]),
        f" LSMs:             {info['LSM']}",
        f" Unprivileged ports start at: {info['UnprivilegedPortStart']}",
        f" API socket:       {info['APISocket']['host']} ({info['APISocket']['state']})",
    ]
    if info["Missing"]:
        lines += ["", "Missing host features (and how to enable them):"]
        for m in info["Missing"]:
            lines.append(f" - {m['Feature']}: {m['Effect']}")
            lines.append(f"     fix: {m['Fix']}")
    return "\n".join(lines) + "\n"
