#!/bin/sh
# Dry-runs the DevKit udev rule against an emulated board, without touching the
# machine: `udevadm test` runs inside a private mount namespace (its own
# /etc/udev/rules.d, /run and /dev) and sees a umockdev testbed instead of /sys.
#
#   Scripts/check-udev-rule.sh [RULES_FILE [UMOCKDEV_FILE SYSPATH [ACTION]]]
#
# Defaults: Scripts/99-az3166-devkit.rules, the ST-LINK tty of
# Tests/Fixtures/umockdev/bench-three-ttys.umockdev, action "add".
# Prints udevadm's log on stderr and the device's resulting properties on stdout.
# Exit 77 (with the reason) when this machine cannot do it: not root, no udevadm
# (apt install udev), no umockdev-run (apt install umockdev), no mount namespace.
# (systemd >= 253 also has `udevadm verify`, which only checks syntax.)
set -eu

here=$(cd "$(dirname "$0")" && pwd)
rules=${1:-$here/99-az3166-devkit.rules}
device=${2:-$here/../Tests/Fixtures/umockdev/bench-three-ttys.umockdev}
syspath=${3:-/sys/devices/pci0000:00/0000:00:14.0/usb1/1-2/1-2:1.2/tty/ttyACM0}
action=${4:-add}

skip() {
    echo "check-udev-rule: skipped: $*" >&2
    exit 77
}
[ "$(id -u)" = 0 ] || skip "needs root (a private mount namespace for udevadm test)"
command -v udevadm >/dev/null 2>&1 || skip "udevadm not found (apt install udev)"
command -v umockdev-run >/dev/null 2>&1 || skip "umockdev-run not found (apt install umockdev)"
command -v unshare >/dev/null 2>&1 || skip "unshare not found (util-linux)"
unshare --mount --propagation private true 2>/dev/null || skip "cannot create a mount namespace here"
[ -r "$rules" ] || { echo "check-udev-rule: cannot read $rules" >&2; exit 66; }
[ -r "$device" ] || { echo "check-udev-rule: cannot read $device" >&2; exit 66; }

# Everything below happens in the new namespace; its mounts vanish with it.
exec unshare --mount --propagation private sh -eu -c '
    rules=$1 device=$2 syspath=$3 action=$4
    # Only our rule on top of the distribution rules (60-serial makes the by-id link).
    mount -t tmpfs devkit-rules /etc/udev/rules.d
    cp "$rules" /etc/udev/rules.d/
    # udevadm test writes its database under /run/udev and symlinks under /dev.
    mount -t tmpfs devkit-run /run
    scratch=$(mktemp -d)
    mount -t tmpfs devkit-dev "$scratch"
    for node in null zero full random urandom tty; do
        touch "$scratch/$node"
        mount --bind "/dev/$node" "$scratch/$node"
    done
    mkdir "$scratch/pts"
    # umockdev backs emulated ttys with ptys; a bind-mounted ptmx would not find
    # its pts directory, the pts/ptmx link does.
    mount --bind /dev/pts "$scratch/pts"
    ln -s pts/ptmx "$scratch/ptmx"
    mount --rbind "$scratch" /dev
    umockdev-run --device "$device" -- udevadm test --action="$action" "$syspath"
' check-udev-rule "$rules" "$device" "$syspath" "$action"
