"""Give a shiv zipapp a fast start: replace its __main__.py (build.sh step).

Usage: python3 tools/zipapp_fastpath.py ZIPAPP MODULE:FUNCTION
           [--copy OUT MODULE:FUNCTION [--prelude SH_FILE]]

shiv's own bootstrap imports zipfile, json, hashlib, compileall, subprocess, pathlib... on
every start (~45 ms here) just to find the directory it extracted itself to. The new
__main__.py computes that directory the way shiv does (SHIV_ROOT or ~/.shiv, then
"<archive file name>_<build id>") with `os` alone; when it exists it puts its site-packages
on sys.path and calls the entry point directly. Otherwise (first run, or any SHIV_* setting
other than SHIV_ROOT) it hands over to shiv's bootstrap unchanged, which extracts. It also
refuses Python older than 3.9.2 with a clear message, in syntax every Python 3 parses.

Before the zip it gets a /bin/sh header (a zip is read from its end: `python3 ZIPAPP` still
runs __main__.py) that starts Python on the extracted copy at once when there is one:
`python3 -S -c ...`, no site, no runpy, no zip directory read (~8 ms of every command
here), the current directory taken off sys.path first (a json.py where the user stands is
never imported). The main zipapp runs the python3 first on PATH, as its
`#!/usr/bin/env python3` did, and keeps the user's PYTHON* variables; the --copy for engines
runs isolated (-I: no PYTHON* variables either) and prefers /usr/bin/python3 (an engine's
PATH may be bare). A Python older than 3.9.2, an absent extraction or a SHIV_* setting go
the zip's way.
"""
from __future__ import annotations

import json
import os
import sys
import zipfile

TEMPLATE = '''\
# pydocklite zipapp entry (written by tools/zipapp_fastpath.py; shiv's bootstrap is the fallback)
import os
import sys

if sys.version_info < (3, 9, 2):
    sys.stderr.write("pydocklite needs Python 3.9.2 or newer; %%s is Python %%s.\\n"
                     "Run it with a newer interpreter, e.g. `python3.11 %%s ...`.\\n"
                     %% (sys.executable, sys.version.split()[0], sys.argv[0]))
    sys.exit(125)


def _extracted_site():
    for key in os.environ:
        if key.startswith("SHIV_") and key != "SHIV_ROOT":
            return None
    root = os.environ.get("SHIV_ROOT") or %(root)r or "~/.shiv"
    if root.startswith("$"):
        root = os.environ.get(root[1:], root[1:])
    name = os.path.basename(os.path.realpath(sys.argv[0]))
    site = os.path.join(os.path.expanduser(root), name + "_" + %(build_id)r, "site-packages")
    return site if os.path.isdir(site) else None


_site = _extracted_site()
if _site is None:
    import _bootstrap
    _bootstrap.bootstrap()
else:
    sys.path.insert(1, _site)
    from %(module)s import %(function)s as _entry
    sys.exit(_entry())
'''


SH_HEADER = """\
#!/bin/sh
# %(name)s: a pydocklite zipapp (tools/zipapp_fastpath.py); sh only starts it faster
%(prelude)sif [ -z "$HOME$SHIV_ROOT" ]; then  # engines may give no HOME (rootless Podman's conmon)
  [ -n "$XDG_RUNTIME_DIR" ] && export SHIV_ROOT="$XDG_RUNTIME_DIR/.shiv" ||
    export SHIV_ROOT="${TMPDIR:-/tmp}/.shiv-$(id -u)"
fi
s="${SHIV_ROOT:-$HOME/.shiv}/${0##*/}_%(build_id)s/site-packages" %(python)s
[ -z "$SHIV_ENTRY_POINT$SHIV_INTERPRETER$SHIV_FORCE_EXTRACT$SHIV_COMPILE_PYC$SHIV_COMPILE_WORKERS\\
$SHIV_EXTEND_PYTHONPATH$SHIV_PRESERVE_LD" ] || s=
[ -n "$s" ] && [ -d "$s" ] && exec $p %(flags)s -c 'import sys
if sys.version_info < (3, 9, 2): import os; os.execv(sys.executable, [sys.executable] + sys.argv[2:])
if sys.path and not sys.path[0]: del sys.path[0]
sys.path.insert(0, sys.argv.pop(1)); sys.argv[0] = sys.argv.pop(1)
from %(module)s import %(function)s; %(function)s()' "$s" "$0" "$@"
exec $p "$0" "$@"
"""
# which python3, and how: the main zipapp's as its former `#!/usr/bin/env python3` did, with
# the user's PYTHON* variables (PYTHONPROFILEIMPORTTIME, PYTHONWARNINGS... as before) but the
# current directory taken off sys.path (`-c` puts it first); the engines' copy isolated (-I:
# no variables, no current directory) and /usr/bin/python3 first
PATH_PYTHON = "p=python3"
ENGINE_PYTHON = "p=/usr/bin/python3\n[ -x $p ] || p=python3"


def rewrite(zipapp: str, entry_point: str, out_path: str = None, prelude: str = "") -> None:
    """Give ZIPAPP the fast __main__.py (in place), or write a copy to out_path with another
    entry point (environment.json's too, for shiv's first-run bootstrap) and the sh header."""
    module, function = entry_point.split(":")
    with open(zipapp, "rb") as f:
        shebang = f.readline()
    if not shebang.startswith(b"#!"):
        raise SystemExit(f"{zipapp}: no shebang line; is it a shiv zipapp?")
    target = out_path or zipapp
    tmp = target + ".fast"
    with zipfile.ZipFile(zipapp) as src:
        env = json.loads(src.read("environment.json"))
        main_py = TEMPLATE % {"root": env.get("root") or "", "build_id": env["build_id"],
                              "module": module, "function": function}
        if out_path:
            env["entry_point"] = entry_point
        # (the main zipapp's header names no file: the bytes must not depend on PDL_OUTPUT)
        name = os.path.basename(out_path) if out_path else "pydocklite"
        name = name[:-len(".tmp")] if name.endswith(".tmp") else name
        header = (SH_HEADER % {"name": name, "module": module, "prelude": prelude,
                               "function": function, "build_id": env["build_id"],
                               "python": ENGINE_PYTHON if out_path else PATH_PYTHON,
                               "flags": "-I -S" if out_path else "-S"}).encode()
        with open(tmp, "wb") as out:
            out.write(header)
            with zipfile.ZipFile(out, "w") as dst:
                for info in src.infolist():
                    if info.filename == "__main__.py":
                        data = main_py.encode()
                    elif info.filename == "environment.json" and out_path:
                        data = json.dumps(env).encode()
                    else:
                        data = src.read(info)
                    dst.writestr(info, data, compress_type=info.compress_type)
    os.chmod(tmp, 0o755)
    os.replace(tmp, target)


if __name__ == "__main__":
    if len(sys.argv) in (6, 8) and sys.argv[3] == "--copy":
        text = ""
        if len(sys.argv) == 8 and sys.argv[6] == "--prelude":
            with open(sys.argv[7]) as f:
                text = f.read()
        rewrite(sys.argv[1], sys.argv[5], sys.argv[4], text)
    elif len(sys.argv) == 3:
        rewrite(sys.argv[1], sys.argv[2])
    else:
        sys.exit("usage: zipapp_fastpath.py ZIPAPP MODULE:FUNCTION "
                 "[--copy OUT MODULE:FUNCTION [--prelude SH_FILE]]")
