#!/usr/bin/env bash
# Installs the Debian packages devkit builds and tests with, when any is missing.
# Runs `apt-get update` once (only when something must be installed), then
# `apt-get install -y`. Uses sudo when not root.
set -euo pipefail

packages=(
  pkg-config      # resolves the libedit/libudev system-library targets
  libedit-dev     # line editing for `devkit console`
  libudev-dev     # device discovery
  libsqlite3-dev  # the registry (GRDB links the system SQLite)
  umockdev        # emulated udev devices for the discovery tests
  libumockdev-dev
  python3 python3-gi gir1.2-umockdev-1.0   # the hotplug test's uevent driver
  udev systemd    # udevadm and systemd-analyze check the udev rule and the unit
  tmux            # drives the interactive console in tests
  procps          # pgrep/ps used by scripts
  util-linux      # taskset for the single-core benchmark
  postgresql      # initdb/pg_ctl/pg_dump: the registry tests' throwaway PostgreSQL cluster
  openssl         # the TLS test's CA and server certificate; bench-cert's reference rate
)
# Extra arguments are more packages to install; an option is not one (apt-get
# would read `--help` as its own option and install nothing, saying it did).
for arg in "$@"; do
  case "$arg" in
    -h|--help)
      echo "usage: Scripts/install-deps.sh [package ...]: installs the Debian packages devkit builds and tests with (and any named), when missing"
      exit 0 ;;
    -*) echo "install-deps: $arg is not a package name; usage: Scripts/install-deps.sh [package ...]" >&2; exit 64 ;;
  esac
done
packages+=("$@")

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

sudo=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "install-deps: need root or sudo to install: ${missing[*]}" >&2; exit 77; }
  sudo="sudo"
fi
echo "install-deps: installing ${missing[*]}" >&2
# Through env: sudo resets the environment, and apt must not stop to ask.
$sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq
$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
