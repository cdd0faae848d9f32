"""OCI hooks: run each hook with the container's state JSON on its stdin."""
from __future__ import annotations

from . import minijson

from .errors import RuntimeErr


class HookError(RuntimeErr):
    pass


def run_hooks(hooks, state: dict, phase: str) -> None:
    """Run hooks in order; the first failure raises HookError naming the hook and phase."""
    if not hooks:
        return
    import subprocess
    data = minijson.dumps(state).encode()
    for h in hooks:
        env = dict(e.split("=", 1) for e in h.env if "=" in e)
        args = list(h.args) or [h.path]
        try:
            p = subprocess.run(args, executable=h.path, input=data, env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               timeout=h.timeout or None)
        except subprocess.TimeoutExpired:
            raise HookError(f"{phase} hook {h.path} timed out after {h.timeout}s") from None
        except OSError as e:
            raise HookError(f"{phase} hook {h.path}: {e.strerror}") from None
        if p.returncode != 0:
            err = p.stderr.decode(errors="replace").strip()
            raise HookError(f"{phase} hook {h.path} failed with exit {p.returncode}"
                            f"{': ' + err if err else ''}")


def run_hooks_warning(hooks, state: dict, phase: str) -> list:
    """Run every hook even when one fails (poststart, poststop: the runtime-spec wants a
    warning and the lifecycle going on as if it had succeeded); returns the warnings."""
    warnings = []
    for h in hooks or ():
        try:
            run_hooks((h,), state, phase)
        except HookError as e:
            warnings.append(f"{e} (ignored: the container goes on)")
    return warnings
