"""What each metadata instruction does to an image config (pure functions, unit-tested).

`apply_config(config, ins, env, shell, ctx)` -> the changed image config for ENV, LABEL, CMD,
ENTRYPOINT, EXPOSE, VOLUME, STOPSIGNAL, HEALTHCHECK, SHELL, ONBUILD, USER, WORKDIR (the config
part; the directory is made by the builder) and MAINTAINER. Arguments are expanded with `env`
(ARGs and ENVs in effect) for the instructions Docker expands.
"""
from __future__ import annotations

import copy
import json
import posixpath
import re
from typing import Dict, List, Mapping, Optional

from pydocklite.builder.dockerfile import Instruction
from pydocklite.builder.errors import DockerfileError
from pydocklite.builder.shellwords import ExpansionError, expand, split_raw

DEFAULT_SHELL = ["/bin/sh", "-c"]
DEFAULT_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
CONFIG_ONLY = ("ENV", "LABEL", "CMD", "ENTRYPOINT", "EXPOSE", "VOLUME", "STOPSIGNAL",
               "HEALTHCHECK", "SHELL", "ONBUILD", "USER", "MAINTAINER", "ARG")


def env_map(config: dict) -> Dict[str, str]:
    out: Dict[str, str] = {}
    for item in (config.get("config") or {}).get("Env") or []:
        k, _, v = item.partition("=")
        out[k] = v
    return out


def words(ins: Instruction, env: Mapping[str, str], escape: str, filename: str) -> List[str]:
    """The instruction's arguments, expanded and unquoted."""
    try:
        if ins.json_args is not None:
            return [expand(w, env, escape) if "$" in w else w for w in ins.json_args]
        return [expand(w, env, escape) for w in split_raw(ins.args, escape)]
    except ExpansionError as e:
        raise DockerfileError(str(e), filename, ins.line, ins.original) from None


def pairs(ins: Instruction, env: Mapping[str, str], escape: str, filename: str) -> List[tuple]:
    """ENV/LABEL arguments as (key, value): `K=V K2="v 2"` or legacy `ENV K the value`."""
    raw = split_raw(ins.args, escape)
    try:
        if ins.keyword == "ENV" and "=" not in raw[0]:
            value = ins.args[len(raw[0]):].strip()
            return [(raw[0], expand(value, env, escape))]
        out = []
        for w in raw:
            k, eq, v = w.partition("=")
            if not eq:
                raise DockerfileError(f"{ins.keyword} {w!r}: expected NAME=VALUE", filename,
                                      ins.line, ins.original)
            out.append((expand(k, env, escape), expand(v, env, escape)))
        return out
    except ExpansionError as e:
        raise DockerfileError(str(e), filename, ins.line, ins.original) from None


def command_form(ins: Instruction, shell: List[str]) -> List[str]:
    """CMD/ENTRYPOINT/RUN: the exec form as given, the shell form wrapped in the SHELL."""
    if ins.json_args is not None:
        return list(ins.json_args)
    return list(shell) + [ins.args]


def heredoc_command(ins: Instruction, shell: List[str]) -> List[str]:
    """RUN with heredocs: `RUN <<EOF` runs the body as the script; otherwise the shell gets
    the whole text (it handles `cmd <<EOF` itself)."""
    name, body, _ = ins.heredocs[0]
    if len(ins.heredocs) == 1 and re.fullmatch(r"<<-?([\"']?)" + re.escape(name) + r"\1",
                                                 ins.args.strip()):
        return list(shell) + [body]
    script = ins.args
    for name, body, _ in ins.heredocs:
        script += "\n" + body + name
    return list(shell) + [script]


_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_UNIT = {"ns": 1, "us": 1e3, "µs": 1e3, "ms": 1e6, "s": 1e9, "m": 60e9, "h": 3600e9}


def duration_ns(text: str) -> int:
    """Go durations: '30s', '1m30s', '500ms' -> nanoseconds."""
    pos, total = 0, 0.0
    for m in _DURATION.finditer(text):
        if m.start() != pos:
            break
        total += float(m.group(1)) * _UNIT[m.group(2)]
        pos = m.end()
    if pos != len(text) or not text:
        raise ValueError(f"invalid duration {text!r}: use e.g. 30s, 1m30s, 500ms")
    return int(total)


def apply_config(config: dict, ins: Instruction, env: Mapping[str, str], shell: List[str],
                 escape: str = "\\", filename: str = "Dockerfile",
                 cmd_set: bool = True) -> dict:
    """A copy of `config` with the instruction applied."""
    out = copy.deepcopy(config)
    c = out.setdefault("config", {})
    kw = ins.keyword

    def fail(msg: str):
        raise DockerfileError(msg, filename, ins.line, ins.original)
    if kw == "ENV":
        cur = env_map(out)
        for k, v in pairs(ins, {**env}, escape, filename):
            cur[k] = v
        c["Env"] = [f"{k}={v}" for k, v in cur.items()]
    elif kw == "LABEL":
        labels = dict(c.get("Labels") or {})
        labels.update(pairs(ins, env, escape, filename))
        c["Labels"] = labels
    elif kw == "MAINTAINER":
        out["author"] = ins.args
    elif kw == "CMD":
        c["Cmd"] = command_form(ins, shell)
    elif kw == "ENTRYPOINT":
        c["Entrypoint"] = command_form(ins, shell)
        if not cmd_set:
            c["Cmd"] = None
    elif kw == "EXPOSE":
        ports = dict(c.get("ExposedPorts") or {})
        for w in words(ins, env, escape, filename):
            port, _, proto = w.partition("/")
            proto = (proto or "tcp").lower()
            m = re.fullmatch(r"(\d+)(?:-(\d+))?", port)
            if not m or proto not in ("tcp", "udp", "sctp") or \
                    (m.group(2) and int(m.group(2)) < int(m.group(1))):
                fail(f"invalid port {w!r}: use PORT[-PORT][/tcp|udp|sctp]")
            first = int(m.group(1))
            for n in range(first, int(m.group(2) or first) + 1):
                ports[f"{n}/{proto}"] = {}
        c["ExposedPorts"] = ports
    elif kw == "VOLUME":
        vols = dict(c.get("Volumes") or {})
        for w in words(ins, env, escape, filename):
            if not w:
                fail("VOLUME specified can not be an empty string")
            vols[w] = {}
        c["Volumes"] = vols
    elif kw == "STOPSIGNAL":
        c["StopSignal"] = words(ins, env, escape, filename)[0]
    elif kw == "USER":
        c["User"] = words(ins, env, escape, filename)[0]
    elif kw == "WORKDIR":
        w = words(ins, env, escape, filename)[0]
        c["WorkingDir"] = posixpath.normpath(posixpath.join(c.get("WorkingDir") or "/", w))
    elif kw == "SHELL":
        c["Shell"] = list(ins.json_args or ())
    elif kw == "ONBUILD":
        c["OnBuild"] = list(c.get("OnBuild") or []) + [ins.args]
    elif kw == "HEALTHCHECK":
        c["Healthcheck"] = _healthcheck(ins, shell, fail)
    return out


def _healthcheck(ins: Instruction, shell: List[str], fail) -> dict:
    rest = ins.args.split(None, 1)
    if rest[0].upper() == "NONE":
        return {"Test": ["NONE"]}
    body = rest[1].strip()
    if body.startswith("["):
        try:
            test = ["CMD"] + [str(x) for x in json.loads(body)]
        except ValueError:
            test = ["CMD-SHELL", body]
    else:
        test = ["CMD-SHELL", body]
    hc: dict = {"Test": test}
    names = {"interval": "Interval", "timeout": "Timeout", "start-period": "StartPeriod",
             "start-interval": "StartInterval"}
    for k, v in ins.flags:
        try:
            if k == "retries":
                hc["Retries"] = int(v)
            else:
                hc[names[k]] = duration_ns(v)
        except (ValueError, KeyError) as e:
            fail(f"HEALTHCHECK --{k}={v}: {e}")
    return hc


def history_text(ins: Instruction, env: Mapping[str, str], shell: List[str],
                 escape: str = "\\") -> str:
    """The `created_by` of a history entry, BuildKit's style: 'RUN /bin/sh -c make'."""
    if ins.keyword == "RUN":
        return "RUN " + " ".join(command_form(ins, shell))
    if ins.keyword in ("CMD", "ENTRYPOINT", "SHELL") and ins.json_args is not None:
        return f"{ins.keyword} {json.dumps(list(ins.json_args))}"
    if ins.keyword in ("CMD", "ENTRYPOINT"):
        return f"{ins.keyword} {json.dumps(command_form(ins, shell))}"
    flags = " ".join(f"--{k}={v}" for k, v in ins.flags)
    return " ".join(x for x in (ins.keyword, flags, ins.args) if x)


# Build args usable without an ARG line (passed to RUN, kept out of the image), as in Docker.
PROXY_ARGS = ("HTTP_PROXY", "HTTPS_PROXY", "FTP_PROXY", "NO_PROXY", "ALL_PROXY",
              "http_proxy", "https_proxy", "ftp_proxy", "no_proxy", "all_proxy")


def platform_args() -> dict:
    """BuildKit's automatic platform ARGs (global scope; `ARG TARGETARCH` brings one in)."""
    arch = host_arch()
    out = {}
    for side in ("TARGET", "BUILD"):
        out.update({f"{side}PLATFORM": f"linux/{arch}", f"{side}OS": "linux",
                    f"{side}ARCH": arch, f"{side}VARIANT": ""})
    return out


def scratch_config(arch: str, os_name: str = "linux") -> dict:
    return {"architecture": arch, "os": os_name,
            "config": {"Env": [DEFAULT_PATH]},
            "rootfs": {"type": "layers", "diff_ids": []}, "history": []}


def host_arch() -> str:
    import platform
    m = platform.machine().lower()
    return {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "i686": "386",
            "ppc64le": "ppc64le", "s390x": "s390x", "riscv64": "riscv64"}.get(m, m)


def check_platform(text: Optional[str]) -> None:
    if not text:
        return
    want = text.lower().split("/")
    if want[0] != "linux" or (len(want) > 1 and want[1] != host_arch()):
        from pydocklite.errors import UsageError
        raise UsageError(f"--platform {text}: only the host platform linux/{host_arch()} can "
                         "be built (no emulation)")
