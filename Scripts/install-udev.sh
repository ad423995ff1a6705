#!/bin/sh
# Installs the udev rule and the systemd unit that auto-configure AZ3166 DevKits
# when they are plugged in, then reloads udev and systemd.
#
#   sudo Scripts/install-udev.sh [--devkit-binary PATH] [--destdir DIR] [--group-file FILE]
#
#   --devkit-binary PATH  the devkit executable the unit runs, or the
#                         devkit-full beside it when there is one
#                         (default: /usr/local/bin/devkit, or `devkit` on PATH)
#   --destdir DIR         install below DIR (packaging, tests) instead of /; no
#                         root needed and nothing is reloaded
#   --group-file FILE     the group database the rule's group is picked from
#                         (default: DIR/etc/group if it exists, else /etc/group)
#
# Installs:
#   /etc/udev/rules.d/99-az3166-devkit.rules
#   /etc/systemd/system/devkit-autoconfigure@.service
# The unit reads /etc/devkit/profile.toml; until that file exists, boards get the
# rule (group dialout, or uucp where there is no dialout (Arch), /dev/devkit-N, no ModemManager probing) but are not
# provisioned. Undo: delete both files and run this script's reload steps.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
destdir=""
binary=""
group_file=""

usage() {
    # The comment block at the top, however long it grows.
    awk 'NR > 1 { if (!/^#/) exit; sub(/^# ?/, ""); print }' "$0"
}

while [ $# -gt 0 ]; do
    case "$1" in
        --devkit-binary) [ $# -ge 2 ] || { usage >&2; exit 64; }; binary=$2; shift 2 ;;
        --destdir) [ $# -ge 2 ] || { usage >&2; exit 64; }; destdir=$2; shift 2 ;;
        --group-file) [ $# -ge 2 ] || { usage >&2; exit 64; }; group_file=$2; shift 2 ;;
        -h|--help) usage; exit 0 ;;
        *) echo "install-udev: unknown option $1" >&2; usage >&2; exit 64 ;;
    esac
done

if [ -z "$destdir" ] && [ "$(id -u)" != 0 ]; then
    echo "install-udev: must run as root to write /etc/udev/rules.d and /etc/systemd/system;" \
        "try: sudo $0 $*" >&2
    exit 77
fi

if [ -z "$binary" ]; then
    if [ -x /usr/local/bin/devkit ]; then
        binary=/usr/local/bin/devkit
    elif command -v devkit >/dev/null 2>&1; then
        binary=$(command -v devkit)
    else
        binary=/usr/local/bin/devkit
        echo "install-udev: warning: no devkit executable found; the unit will run $binary," \
            "install it there (e.g. swift build -c release --static-swift-stdlib && sudo Scripts/install.sh --binary .build/release/devkit)" >&2
    fi
fi
case "$binary" in
    /*) ;;
    *) echo "install-udev: --devkit-binary must be an absolute path, got $binary" >&2; exit 64 ;;
esac

rules_dir="$destdir/etc/udev/rules.d"
unit_dir="$destdir/etc/systemd/system"
install -d -m 0755 "$rules_dir" "$unit_dir"
# The serial-port group differs between distributions: dialout (Debian, Ubuntu,
# Fedora, openSUSE), uucp (Arch). The rule names the one that exists here.
pick_group() {
    for g in dialout uucp; do
        if grep -q "^$g:" "$1" 2>/dev/null; then echo "$g"; return 0; fi
    done
    echo dialout
}
if [ -z "$group_file" ]; then
    group_file=/etc/group
    [ -n "$destdir" ] && [ -f "$destdir/etc/group" ] && group_file="$destdir/etc/group"
fi
group=$(pick_group "$group_file")
sed "s/GROUP=\"dialout\"/GROUP=\"$group\"/" "$here/99-az3166-devkit.rules" > "$rules_dir/99-az3166-devkit.rules.tmp"
chmod 0644 "$rules_dir/99-az3166-devkit.rules.tmp"
mv "$rules_dir/99-az3166-devkit.rules.tmp" "$rules_dir/99-az3166-devkit.rules"
echo "installed $rules_dir/99-az3166-devkit.rules (group $group: add users with \`usermod -aG $group USER\`)"
# devkit hands autoconfigure to the devkit-full beside it: the unit runs that one
# directly, one process start per board instead of two (~1.5 ms less each).
runs=$binary
# (beside the file itself, through symbolic links, as devkit looks for it)
full="$(dirname "$(readlink -f "$binary" 2>/dev/null || echo "$binary")")/devkit-full"
if [ -x "$destdir$full" ] || [ -x "$full" ]; then
    runs=$full
fi
# The unit names the executable; write it with the chosen path ('|' cannot be in it
# unescaped, so it is the sed delimiter).
sed "s|^ExecStart=/usr/local/bin/devkit |ExecStart=$runs |" \
    "$here/devkit-autoconfigure@.service" > "$unit_dir/devkit-autoconfigure@.service.tmp"
chmod 0644 "$unit_dir/devkit-autoconfigure@.service.tmp"
mv "$unit_dir/devkit-autoconfigure@.service.tmp" "$unit_dir/devkit-autoconfigure@.service"
echo "installed $unit_dir/devkit-autoconfigure@.service (runs $runs)"
# The README's profile writes to output_dir = "enrollments" next to it: the one
# directory under /etc the unit may write (ReadWritePaths=).
install -d -m 0755 "$destdir/etc/devkit/enrollments"
echo "created $destdir/etc/devkit/enrollments (for output_dir = \"enrollments\")"

if [ -n "$destdir" ]; then
    echo "not reloading udev or systemd (--destdir)"
    exit 0
fi

if command -v udevadm >/dev/null 2>&1 && udevadm control --reload 2>/dev/null; then
    echo "reloaded udev rules (udevadm control --reload)"
    # Apply to boards already plugged in (the USB id is on the parent, which
    # trigger cannot match on: re-run the rules for every ttyACM).
    if udevadm trigger --subsystem-match=tty --sysname-match='ttyACM*' --action=change 2>/dev/null; then
        echo "re-applied the rules to attached ttyACM devices (udevadm trigger)"
    fi
else
    echo "udev is not running: the rule takes effect when it starts"
fi

if [ -d /run/systemd/system ]; then
    systemctl daemon-reload
    echo "reloaded systemd units (systemctl daemon-reload)"
else
    echo "systemd is not running: the unit takes effect when it starts"
fi

if [ ! -e /etc/devkit/profile.toml ]; then
    echo "next: write /etc/devkit/profile.toml (output_dir = \"enrollments\", or a directory outside"
    echo "      /usr, /boot and /etc: the unit may not write elsewhere there), then plug in a DevKit (hold A, reset)"
fi
