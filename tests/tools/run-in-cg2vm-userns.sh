#!/bin/bash
# A copy of ../shared/tools/run-in-cg2vm.sh (see its README there) that enters the guest's new
# root switch_root-style instead of with chroot: inside a chroot unshare(CLONE_NEWUSER) is refused,
# so rootless containers could not start in the guest. Everything else is the shared tool's.
# run-in-cg2vm.sh CMD [ARG...]
# Boots Debian's kernel under qemu TCG with the host's / shared read-only over
# virtio-9p (+ a tmpfs overlay so the guest can write), mounts a pure cgroup2
# hierarchy, delegates $CG2_DELEGATED to uid $CG2VM_UID and runs CMD there as
# that uid (cwd = host $PWD, started in $CG2_DELEGATED/init).
# CMD's stdout/stderr come back on stdout/stderr; exit status is CMD's
# (125 = VM/infra failure; guest console log is then printed on stderr).
set -euo pipefail
BASE=${CG2VM_BASE:-/var/tmp/cg2vm-userns}   # its own cache: the initramfs differs
CACHE=${CG2VM_CACHE:-$BASE/cache}
TIMEOUT=${CG2VM_TIMEOUT:-600}     # wall-clock limit for the whole VM run
MEM=${CG2VM_MEM:-1024}            # guest RAM, MiB
GUID=${CG2VM_UID:-1001}
[ $# -gt 0 ] || { echo "usage: $0 CMD [ARG...]" >&2; exit 2; }
command -v qemu-system-x86_64 >/dev/null || { echo "need qemu-system-x86" >&2; exit 125; }
mkdir -p "$CACHE" "$BASE/runs"

build() {  # -> $CACHE/kernel, $CACHE/initramfs.gz
  local b=$CACHE/build ir pkg kdir m f
  rm -rf "$b"; mkdir -p "$b/deb" "$b/ir/bin" "$b/ir/lib/modules"; ir=$b/ir
  pkg=${CG2VM_KPKG:-$(apt-cache depends linux-image-amd64 | awk '/Depends: linux-image-[0-9]/ && !p {print $2; p=1}')}
  (cd "$CACHE" && ls "$pkg"_*.deb >/dev/null 2>&1 || timeout 600 apt-get -q download "$pkg") >&2
  dpkg-deb -x "$(ls "$CACHE/$pkg"_*.deb | head -1)" "$b/deb"
  kdir=$(ls -d "$b"/deb/lib/modules/* "$b"/deb/usr/lib/modules/* 2>/dev/null | head -1 || true)
  declare -A path=() seen=()
  while read -r f; do m=${f##*/}; m=${m%%.ko*}; path[${m//-/_}]=$f; done < <(find "$kdir" -name '*.ko*')
  add() {  # copy module + its deps (from .modinfo depends=) in load order
    local m=$1 d; [ -n "${seen[$m]:-}" ] && return 0; seen[$m]=1
    [ -n "${path[$m]:-}" ] || { grep -q "/$m.ko" "$kdir/modules.builtin" || echo "missing module $m" >&2; return 0; }
    case ${path[$m]} in *.xz) xz -dc "${path[$m]}";; *.zst) zstd -qdc "${path[$m]}";; *) cat "${path[$m]}";; esac > "$ir/lib/modules/$m.ko"
    for d in $(tr '\0' '\n' < "$ir/lib/modules/$m.ko" | sed -n 's/^depends=//p' | tr , ' '); do add "${d//-/_}"; done
    echo "$m" >> "$ir/lib/modules/order"
  }
  for m in virtio_pci 9pnet_virtio 9p overlay; do add $m; done
  if dpkg-query -W -f='${Status}' busybox-static 2>/dev/null | grep -q 'ok installed'; then cp /bin/busybox "$ir/bin/"
  else (cd "$b" && timeout 300 apt-get -q download busybox-static >&2 && dpkg-deb -x busybox-static_*.deb bb && cp bb/bin/busybox ir/bin/); fi
  cat > "$ir/init" <<'EOF'
#!/bin/busybox sh
/bin/busybox --install -s /bin; export PATH=/bin
die() { echo "cg2vm-init: $*"; echo 125 > /share/rc 2>/dev/null; sync; poweroff -f; }
mkdir -p /proc /sys /dev /lower /upper /newroot /share
mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev
for m in $(cat /lib/modules/order); do insmod /lib/modules/$m.ko || die "insmod $m"; done
O=trans=virtio,version=9p2000.L,msize=512000
mount -t 9p -o $O,cache=none run /share || die "mount share"
mount -t 9p -o $O,ro,cache=loose hostroot /lower || die "mount hostroot"
mount -t tmpfs -o mode=755 upper /upper; mkdir /upper/u /upper/w
mount -t overlay -o lowerdir=/lower,upperdir=/upper/u,workdir=/upper/w root /newroot || die "overlay"
R=/newroot
mount -t proc proc $R/proc; mount -t sysfs sys $R/sys; mount -t devtmpfs dev $R/dev
mkdir -p $R/dev/pts $R/dev/shm $R/run/cg2vm
mount -t devpts -o newinstance,ptmxmode=0666 devpts $R/dev/pts; mount -t tmpfs -o mode=1777 shm $R/dev/shm
for l in fd:/proc/self/fd stdin:fd/0 stdout:fd/1 stderr:fd/2; do ln -sfn ${l#*:} $R/dev/${l%%:*}; done
mount --bind /share $R/run/cg2vm
C=$R/sys/fs/cgroup; D=cg2vm.slice
mount -t cgroup2 cgroup2 $C || die "mount cgroup2"
ctl=$(for c in $(cat $C/cgroup.controllers); do printf '+%s ' $c; done)
echo "$ctl" > $C/cgroup.subtree_control; mkdir $C/$D $C/$D/init
echo "$ctl" > $C/$D/cgroup.subtree_control
U=$(cat /share/uid)
chown $U:$U $C/$D $C/$D/cgroup.procs $C/$D/cgroup.threads $C/$D/cgroup.subtree_control
chown -R $U:$U $C/$D/init
echo "cg2vm-init: ready uptime=$(cut -d' ' -f1 /proc/uptime), controllers: $(cat $C/$D/cgroup.subtree_control)"
sh -c 'echo $$ > '$C/$D'/init/cgroup.procs; exec unshare -m /bin/sh /enter '$R' '$U' '$D'' < /dev/null > /share/out 2> /share/err
rc=$?; echo $rc > /share/rc; sync; umount /share 2>/dev/null
echo "cg2vm-init: done rc=$rc uptime=$(cut -d' ' -f1 /proc/uptime)"; poweroff -f
EOF
  chmod +x "$ir/init"
  cat > "$ir/enter" <<'EOF'
#!/bin/busybox sh
# like switch_root, in a private mount namespace: the new root is the namespace's root, not
# a chroot, so the user may create user namespaces (unshare(CLONE_NEWUSER) is EPERM in a chroot)
R=$1 U=$2 D=$3
mount --make-rprivate / && cd "$R" && mount --move . / && exec chroot . /usr/bin/setpriv \
  --reuid=$U --regid=$U --init-groups /usr/bin/env -i PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin \
  HOME=/tmp LANG=C.UTF-8 TERM=dumb CG2_DELEGATED=/sys/fs/cgroup/$D CG2VM=1 \
  /bin/bash -c 'cd "$(cat /run/cg2vm/cwd)" && . /run/cg2vm/cmd'
EOF
  chmod +x "$ir/enter"
  (cd "$ir" && find . | cpio -o -H newc -R 0:0 --quiet | gzip -1) > "$CACHE/initramfs.gz.tmp"
  # Boot the uncompressed ELF vmlinux via its PVH entry: skips the in-guest xz
  # decompression, which costs ~5 s under TCG. Fall back to the bzImage.
  local z; z=$(ls "$b"/deb/boot/vmlinuz-* | head -1); cp "$z" "$CACHE/kernel"
  for m in $'\xfd7zXZ:xz' $'\x28\xb5\x2f\xfd:zstd' $'\x1f\x8b\x08:gzip'; do
    f=$(LC_ALL=C grep -abo "${m%:*}" "$z" | head -1 | cut -d: -f1 || true); [ -n "$f" ] || continue
    tail -c +$((f+1)) "$z" | ${m#*:} -dc > "$b/vmlinux" 2>/dev/null || true
    [ "$(head -c4 "$b/vmlinux")" = $'\x7fELF' ] && { cp "$b/vmlinux" "$CACHE/kernel"; break; }
  done
  mv "$CACHE/initramfs.gz.tmp" "$CACHE/initramfs.gz"; rm -rf "$b"
}
exec 9> "$CACHE/.lock"; flock 9
[ -s "$CACHE/initramfs.gz" ] && [ -s "$CACHE/kernel" ] || build
flock -u 9

RUN=$(mktemp -d "$BASE/runs/run.XXXXXX"); chmod 755 "$RUN"; trap 'rm -rf "$RUN"' EXIT
printf '%q ' "$@" > "$RUN/cmd"; echo >> "$RUN/cmd"
printf '%s\n' "$PWD" > "$RUN/cwd"; echo "$GUID" > "$RUN/uid"
timeout -k 5 "$TIMEOUT" qemu-system-x86_64 -accel tcg ${CG2VM_QEMU_OPTS:--cpu max -smp 1} -m "$MEM" \
  -nodefaults -no-user-config -display none -no-reboot -net none \
  -serial "file:$RUN/console.log" -kernel "$CACHE/kernel" -initrd "$CACHE/initramfs.gz" \
  -append "console=ttyS0 panic=-1 rdinit=/init quiet mitigations=off printk.time=1" \
  -fsdev local,id=root,path=/,security_model=none,readonly=on,multidevs=remap \
  -device virtio-9p-pci,fsdev=root,mount_tag=hostroot \
  -fsdev local,id=run,path="$RUN",security_model=none \
  -device virtio-9p-pci,fsdev=run,mount_tag=run </dev/null >&2 || true
cat "$RUN/out" 2>/dev/null || true; cat "$RUN/err" >&2 2>/dev/null || true
rc=$(cat "$RUN/rc" 2>/dev/null || true); [[ $rc =~ ^[0-9]+$ ]] || rc=125
if [ "$rc" = 125 ] || [ -n "${CG2VM_CONSOLE:-}" ]; then echo "--- guest console ---" >&2; cat "$RUN/console.log" >&2; echo >&2; fi
exit "$rc"
