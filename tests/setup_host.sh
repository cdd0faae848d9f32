#!/usr/bin/env bash
# Host set-up for the test suite (run as root): the unprivileged test user with a
# subordinate id range, /dev/fuse and /dev/net/tun usable by non-root (their normal
# Debian mode is 0666; some VMs ship 0600). Idempotent.
# Settings: PDL_TEST_USER (pdltest), PDL_TEST_UID (1001), PDL_TEST_SUBID (200000).
set -euo pipefail
TEST_USER=${PDL_TEST_USER:-pdltest}
TEST_UID=${PDL_TEST_UID:-1001}
# Each test user gets its own subordinate range (several suites may run side by side).
TEST_SUBID=${PDL_TEST_SUBID:-200000}
if ! id "$TEST_USER" >/dev/null 2>&1; then
  if getent passwd "$TEST_UID" >/dev/null; then
    useradd --create-home --shell /bin/bash "$TEST_USER"
  else
    useradd --create-home --shell /bin/bash --uid "$TEST_UID" "$TEST_USER"
  fi
fi
for f in /etc/subuid /etc/subgid; do
  touch "$f"
  grep -q "^$TEST_USER:" "$f" || echo "$TEST_USER:$TEST_SUBID:65536" >> "$f"
done
chmod 0666 /dev/fuse
[ -e /dev/net/tun ] && chmod 0666 /dev/net/tun
grep -q '^user_allow_other' /etc/fuse.conf 2>/dev/null || echo user_allow_other >> /etc/fuse.conf
