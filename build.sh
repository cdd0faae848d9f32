#!/usr/bin/env bash
# Build ./pydocklite.pyz (and ./pydocklite-runtime, runc's command line for engines): one shiv zipapp with pydocklite, registry, snapshotter and every
# dependency, compiled modules for CPython 3.9 (>= 3.9.2) up to 3.14 side by side, and the
# embedded `hello` image. Re-runnable; slow steps are cached under $PDL_BUILD_CACHE
# (default ${XDG_CACHE_HOME:-~/.cache}/pydocklite-build).
#
# Needs: python3 (>= 3.9, with venv), gcc + libc6-dev (static libc), binutils (strip), and
# network access to PyPI the first time (wheels are cached afterwards).
# Settings: PDL_BUILD_PYTHON (interpreter for the build, default /usr/bin/python3),
#           PDL_PY_VERSIONS (default 3.9.2,3.10,3.11,3.12,3.13,3.14),
#           PDL_PLATFORM (default manylinux2014_<uname -m>), PDL_OUTPUT (default ./pydocklite.pyz:
#           the name ./pydocklite is taken by the package directory).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cd "$here"
py=${PDL_BUILD_PYTHON:-/usr/bin/python3}
[ -x "$py" ] || py=$(command -v python3)
cache=${PDL_BUILD_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/pydocklite-build}
versions=${PDL_PY_VERSIONS:-3.9.2,3.10,3.11,3.12,3.13,3.14}
platform=${PDL_PLATFORM:-manylinux2014_$(uname -m)}
output=${PDL_OUTPUT:-$here/pydocklite.pyz}
entry=pydocklite.cli.main:entry
shiv_version=1.0.8
wheel_version=0.45.1
mkdir -p "$cache"
# One build at a time per cache (tests may start one while a developer runs another).
exec 9>"$cache/build.lock"
flock 9

log() { printf '[build.sh] %s\n' "$*" >&2; }
hash_of() { cat "$@" | sha256sum | cut -c1-16; }

[ -f pydocklite/cli/main.py ] || { log "pydocklite/cli/main.py is missing: nothing to use as the entry point"; exit 1; }

# 1. The build venv (shiv), made once per shiv version and build interpreter.
venv="$cache/venv-$(echo "$shiv_version $wheel_version $("$py" -c 'import sys; print(sys.version)')" | sha256sum | cut -c1-12)"
if [ ! -x "$venv/bin/shiv" ]; then
  log "creating build venv $venv"
  rm -rf "$venv"
  "$py" -m venv "$venv"
  "$venv/bin/pip" install -q "shiv==$shiv_version" "wheel==$wheel_version"
fi

# 2. Dependencies: one merged, stripped site-packages per (requirements, pins, versions).
mapfile -t reqs < <("$py" - <<'EOF'
import re
text = open("pyproject.toml", encoding="utf-8").read()
block = re.search(r"^dependencies\s*=\s*\[(.*?)\]", text, re.S | re.M).group(1)
for req in re.findall(r'"([^"]+)"', block):
    print(req)
EOF
)
[ "${#reqs[@]}" -gt 0 ] || { log "no dependencies found in pyproject.toml"; exit 1; }
deps_key=$( { printf '%s\n' "${reqs[@]}" "$versions" "$platform"; cat tools/build-constraints.txt tools/build_site.py; } | sha256sum | cut -c1-16)
site="$cache/site-$deps_key"
if [ ! -d "$site" ]; then
  log "assembling dependencies for CPython $versions ($platform)"
  "$py" tools/build_site.py --pip "$venv/bin/pip" --constraints tools/build-constraints.txt \
    --out "$site" --python-versions "$versions" --platform "$platform" "${reqs[@]}"
fi

# 3. The embedded hello image (static program -> OCI layout in pydocklite/embedded/hello/).
hello_bin="$cache/hello-$(hash_of pydocklite/embedded/hello.c)"
if [ ! -x "$hello_bin" ]; then
  log "compiling the static hello program"
  gcc -static -Os -s -o "$hello_bin.tmp" pydocklite/embedded/hello.c
  mv "$hello_bin.tmp" "$hello_bin"
fi
"$py" tools/build_hello_image.py "$hello_bin" pydocklite/embedded/hello >/dev/null

# 3b. The container init for `run --init` (pydocklite/embedded/init, bind-mounted at /dev/init).
init_bin="$cache/init-$(hash_of pydocklite/embedded/init.c)"
if [ ! -x "$init_bin" ]; then
  log "compiling the static container init"
  gcc -static -Os -s -o "$init_bin.tmp" pydocklite/embedded/init.c
  mv "$init_bin.tmp" "$init_bin"
fi
cmp -s "$init_bin" pydocklite/embedded/init || install -m 0755 "$init_bin" pydocklite/embedded/init

# 4. Our own packages, staged without caches or build leftovers.
stage=$(mktemp -d "$cache/src.XXXXXX")
trap 'rm -rf "$stage"' EXIT
for pkg in pydocklite registry snapshotter; do
  tar -C "$here" --exclude='__pycache__' --exclude='*.pyc' --exclude='*.c' -cf - "$pkg" \
    | tar -C "$stage" -xf -
done

# 5. The zipapp, with a __main__.py that skips shiv's bootstrap once extracted (see
# tools/zipapp_fastpath.py). Reproducible timestamps: the same inputs give the same build id, so an
# unchanged rebuild reuses the extraction in ~/.shiv (or $SHIV_ROOT).
log "writing $output"
SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-315532800} "$venv/bin/shiv" --reproducible \
  -e "$entry" -p '/usr/bin/env python3' -o "$output.tmp" \
  --site-packages "$site" --site-packages "$stage" >/dev/null
"$py" tools/zipapp_fastpath.py "$output.tmp" "$entry"
[ ! -d "$output" ] || { log "$output is a directory: choose another PDL_OUTPUT"; exit 1; }
# ./pydocklite-runtime: the same zipapp with runc's command line as its entry point, for
# engines (containerd's BinaryName, dockerd --add-runtime, podman --runtime); a /bin/sh
# header starts it straight from the extracted copy (tools/zipapp_fastpath.py --copy)
runtime_out=$(dirname "$output")/pydocklite-runtime
"$py" tools/zipapp_fastpath.py "$output.tmp" "$entry" --copy "$runtime_out.tmp" \
  pydocklite.runtime.runc_cli:entry --prelude tools/runtime_prelude.sh
mv -f "$output.tmp" "$output"
mv -f "$runtime_out.tmp" "$runtime_out"

# 6. Smoke test with the build interpreter.
"$py" "$output" --version >/dev/null || { log "$output --version failed"; exit 1; }
"$runtime_out" --version >/dev/null || { log "$runtime_out --version failed"; exit 1; }
log "done: $output ($(du -h "$output" | cut -f1))"
