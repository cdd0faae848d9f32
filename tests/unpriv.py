"""Run commands as the unprivileged test user (tests/setup_host.sh creates it).

A test that passes as root proves nothing about rootless, so everything that exercises
pydocklite's rootless behaviour goes through `run_as_user`.
"""
from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
TEST_USER = os.environ.get("PDL_TEST_USER", "pdltest")
SYSTEM_PYTHON = "/usr/bin/python3"


def test_user() -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(TEST_USER)
    except KeyError:
        raise RuntimeError(
            f"test user {TEST_USER!r} does not exist: run 'sudo bash tests/setup_host.sh' first"
        ) from None


def test_ids() -> tuple:
    """(uid, gid) of the test user (each engineer's suite may run as its own user)."""
    user = test_user()
    return user.pw_uid, user.pw_gid


def subid_start(path: str = "/etc/subuid") -> int:
    """First id of the test user's subordinate range in /etc/subuid (or /etc/subgid): useradd
    may have picked it, whatever PDL_TEST_SUBID asked setup_host.sh for."""
    user = test_user()
    with open(path) as f:
        for line in f:
            name, _, rest = line.strip().partition(":")
            if name in (user.pw_name, str(user.pw_uid)) and rest:
                return int(rest.split(":")[0])
    raise RuntimeError(f"{user.pw_name} has no range in {path}: run tests/setup_host.sh")


def site_packages() -> str:
    """The site-packages of the interpreter running pytest (holds requests, zstandard...)."""
    return sysconfig.get_paths()["purelib"]


def make_user_dir(path: Path) -> Path:
    """Create `path` (and parents up to an existing dir) owned by the test user."""
    user = test_user()
    path.mkdir(parents=True, exist_ok=True)
    os.chown(path, user.pw_uid, user.pw_gid)
    return path


def user_env(home: Path, extra: dict | None = None) -> dict:
    env = {
        "HOME": str(home),
        "USER": TEST_USER,
        "LOGNAME": TEST_USER,
        "PATH": "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin",
        "LANG": "C.UTF-8",
        "XDG_DATA_HOME": str(home / ".local" / "share"),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "XDG_RUNTIME_DIR": str(home / "run"),
        "PYTHONPATH": f"{REPO}:{site_packages()}",
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    if extra:
        env.update(extra)
    return env


def user_cmd(argv: list) -> list:
    """Wrap argv so it runs as the test user with its own groups (setpriv from util-linux)."""
    if os.geteuid() != 0:
        return list(argv)
    user = test_user()
    return [
        shutil.which("setpriv") or "/usr/bin/setpriv",
        f"--reuid={user.pw_uid}",
        f"--regid={user.pw_gid}",
        "--init-groups",
        "--",
        *argv,
    ]


def run_as_user(argv: list, home: Path, *, env: dict | None = None, check: bool = False,
                timeout: float = 120, **kw) -> subprocess.CompletedProcess:
    """Run argv as the test user; stdout/stderr captured as text unless overridden."""
    kw.setdefault("capture_output", True)
    kw.setdefault("text", True)
    (home / "run").mkdir(exist_ok=True)
    if os.geteuid() == 0:
        os.chown(home / "run", test_user().pw_uid, test_user().pw_gid)
    os.chmod(home / "run", 0o700)
    return subprocess.run(user_cmd(argv), env=user_env(home, env), check=check,
                          timeout=timeout, **kw)


def python_as_user(args: list, home: Path, **kw) -> subprocess.CompletedProcess:
    """Run `/usr/bin/python3 ARGS` as the test user with the repo and deps importable."""
    return run_as_user([SYSTEM_PYTHON, *args], home, **kw)


def processes(uid=None) -> list:
    """(pid, command line with spaces for its NULs) of each process now, of `uid` only when
    given (zombies show an empty command line)."""
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            if uid is not None and os.stat(f"/proc/{name}").st_uid != uid:
                continue
            raw = Path(f"/proc/{name}/cmdline").read_bytes()
        except OSError:
            continue
        found.append((int(name), raw.replace(b"\0", b" ").decode(errors="replace")))
    return found


def user_processes() -> list:
    """processes() of the test user."""
    return processes(test_user().pw_uid)


if __name__ == "__main__":  # quick manual check
    h = make_user_dir(Path("/tmp/pdl-unpriv-check"))
    print(python_as_user(["-c", "import os, requests; print(os.getuid())"], h).stdout)
    sys.exit(0)
