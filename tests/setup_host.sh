#!/usr/bin/env bash
# Host set-up for the test suite (run as root): the unprivileged test user with a
# subordinate id range, /dev/fuse and /dev/net/tun usable by non-root (their normal
# Debian mode is 0666; some VMs ship 0600). Idempotent.
# Settings: PDL_TEST_USER (pdltest), PDL_TEST_UID (1001), PDL_TEST_SUBID (the start of the
# user's subordinate range when it has none: default, the first 65536 ids after every range
# already in the file, so several test users never overlap; Debian's useradd usually
# allocates one itself).
set -euo pipefail
TEST_USER=${PDL_TEST_USER:-pdltest}
TEST_UID=${PDL_TEST_UID:-1001}
if ! id "$TEST_USER" >/dev/null 2>&1; then
  if getent passwd "$TEST_UID" >/dev/null; then
    useradd --create-home --shell /bin/bash "$TEST_USER"
  else
    useradd --create-home --shell /bin/bash --uid "$TEST_UID" "$TEST_USER"
  fi
fi
for f in /etc/subuid /etc/subgid; do
  touch "$f"
  grep -q "^$TEST_USER:" "$f" && continue
  start=${PDL_TEST_SUBID:-$(awk -F: 'BEGIN { e = 100000 } $2 + $3 > e { e = $2 + $3 } END { print e }' "$f")}
  echo "$TEST_USER:$start:65536" >> "$f"
done
chmod 0666 /dev/fuse
[ -e /dev/net/tun ] && chmod 0666 /dev/net/tun
grep -q '^user_allow_other' /etc/fuse.conf 2>/dev/null || echo user_allow_other >> /etc/fuse.conf
