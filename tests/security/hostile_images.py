"""Images that attack the host, built by the tests (busybox + what the attack needs).

nss_image: an /etc/nsswitch.conf sending passwd/group lookups to the image's own
`libnss_pwn.so.2`, whose constructor -- run by whatever process loads it -- tries to reach
the host: it appends to /nss-loaded (in the root it sees), writes NSS-MODULE-RAN to its
stdout/stderr, creates `nss-pwned` in every directory it holds an fd of, and connects to
127.0.0.1:<port in /nss-port> to say it ran (a listener in the host's network namespace).
"""
from __future__ import annotations

import hashlib
import subprocess
import tempfile
from pathlib import Path

from tests.fixtures import images

NSS_MARKER = "NSS-MODULE-RAN"
NSS_C = r"""
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

__attribute__((constructor)) static void pwn(void) {
    char msg[128];
    int n = snprintf(msg, sizeof msg, "NSS-MODULE-RAN pid %d\n", (int)getpid());
    int fd = open("/nss-loaded", O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (fd >= 0) { write(fd, msg, n); close(fd); }
    write(1, msg, n);
    write(2, msg, n);
    for (int i = 0; i < 1024; i++) {            /* any inherited directory fd: escape by it */
        struct stat st;
        if (fstat(i, &st) == 0 && S_ISDIR(st.st_mode)) {
            int f = openat(i, "nss-pwned", O_WRONLY | O_CREAT, 0644);
            if (f >= 0) { write(f, msg, n); close(f); }
        }
    }
    char buf[16] = {0};
    fd = open("/nss-port", O_RDONLY);
    if (fd >= 0) {
        read(fd, buf, sizeof buf - 1);
        close(fd);
        struct sockaddr_in a = {0};
        a.sin_family = AF_INET;
        a.sin_port = htons(atoi(buf));
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        int s = socket(AF_INET, SOCK_STREAM, 0);
        if (s >= 0 && connect(s, (struct sockaddr *)&a, sizeof a) == 0) write(s, msg, n);
        if (s >= 0) close(s);
    }
}
int _nss_pwn_getpwuid_r(void) { return 0; }  /* NSS_STATUS_NOTFOUND */
int _nss_pwn_getgrgid_r(void) { return 0; }
int _nss_pwn_getpwnam_r(void) { return 0; }
int _nss_pwn_getgrnam_r(void) { return 0; }
"""


def _nss_module() -> bytes:
    with tempfile.TemporaryDirectory() as d:
        src, out = Path(d) / "nss.c", Path(d) / "libnss_pwn.so.2"
        src.write_text(NSS_C)
        subprocess.run(["gcc", "-shared", "-fPIC", "-O1", "-o", str(out), str(src)],
                       check=True, capture_output=True)
        return out.read_bytes()


def nss_image(cache: Path) -> images.Image:
    key = "nss-hostile-" + hashlib.sha256(NSS_C.encode()).hexdigest()[:12]

    def fill(tar):
        so = _nss_module()
        images.tar_file(tar, "etc/nsswitch.conf", b"passwd: pwn files\ngroup: pwn files\n"
                                                  b"shadow: pwn files\nhosts: pwn files\n")
        for d in ("lib", "lib/x86_64-linux-gnu", "usr/lib", "usr/lib/x86_64-linux-gnu"):
            images.tar_dir(tar, d)
            images.tar_file(tar, f"{d}/libnss_pwn.so.2", so, 0o755)
    base = build_busybox_layer(cache)
    layer = images.build_layer(cache, key, images.DOCKER_LAYER_GZIP, "gzip", fill)
    return images.make_image(cache, "nss-hostile", [base, layer],
                             {"Env": [images.PATH_ENV], "Cmd": ["sh"]}, "docker")


def build_busybox_layer(cache: Path) -> images.Layer:
    return images.build_busybox_image(cache).layers[0]


SETX_C = r"""
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/xattr.h>
#include <unistd.h>
int main(int c, char **v) {
    if (c == 5 && !strcmp(v[1], "swap")) {      /* swap A B USEC: exchange them forever */
        for (;;) {
            if (syscall(SYS_renameat2, AT_FDCWD, v[2], AT_FDCWD, v[3], 2 /* EXCHANGE */)) {
                perror("renameat2");
                return 1;
            }
            usleep(atoi(v[4]));
        }
    }
    if (c == 5 && !strcmp(v[1], "set")) {
        if (setxattr(v[2], v[3], v[4], strlen(v[4]), 0)) { perror("setxattr"); return 1; }
        return 0;
    }
    if (c == 3 && !strcmp(v[1], "list")) {
        char b[65536];
        ssize_t n = llistxattr(v[2], b, sizeof b);
        if (n < 0) { perror("llistxattr"); return 1; }
        for (ssize_t i = 0; i < n; i += strlen(b + i) + 1) puts(b + i);
        return 0;
    }
    fputs("usage: setx set PATH NAME VALUE | setx list PATH | setx swap A B USEC\n", stderr);
    return 2;
}
"""
FORGED_OVERRIDE = "0:0:8630:259"   # S_IFCHR|0666, device 1:3: what no container may make


def _static_tool(source: str, name: str) -> bytes:
    with tempfile.TemporaryDirectory() as d:
        src, out = Path(d) / f"{name}.c", Path(d) / name
        src.write_text(source)
        subprocess.run(["gcc", "-static", "-Os", "-s", "-o", str(out), str(src)], check=True,
                       capture_output=True)
        return out.read_bytes()


def xattr_image(cache: Path) -> images.Image:
    """busybox + /usr/bin/setx (set/list xattrs; swap two paths with renameat2's
    RENAME_EXCHANGE, forever, to race a walker) + a layer whose files carry the upper dir's
    own markers: /forged (user.pydocklite.override saying "char device 1:3, root, 0666")
    and /opaque-dir (user.overlay.opaque)."""
    key = "xattr-hostile-" + hashlib.sha256((SETX_C + FORGED_OVERRIDE).encode()
                                            ).hexdigest()[:12]

    def fill(tar):
        images.tar_file(tar, "usr/bin/setx", _static_tool(SETX_C, "setx"), 0o755)
        info = images.tar_info("forged", size=6)
        info.pax_headers = {"SCHILY.xattr.user.pydocklite.override": FORGED_OVERRIDE,
                            "SCHILY.xattr.user.kept": "yes"}
        import io
        tar.addfile(info, io.BytesIO(b"plain\n"))
        d = images.tar_info("opaque-dir", kind=b"5", mode=0o755)
        d.pax_headers = {"SCHILY.xattr.user.overlay.opaque": "y"}
        tar.addfile(d)
    base = build_busybox_layer(cache)
    layer = images.build_layer(cache, key, images.DOCKER_LAYER_GZIP, "gzip", fill)
    return images.make_image(cache, "xattr-hostile", [base, layer],
                             {"Env": [images.PATH_ENV], "Cmd": ["sh"]}, "docker")
