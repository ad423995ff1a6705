#!/usr/bin/env bash
# The main job, on the built-in virtual DevKit when no board is attached:
#   1. start a virtual DevKit in configuration mode (`devkit emulate`),
#   2. store a fresh UDS on it, saved to a 0600 file first (`devkit set-uds --generate-uds`),
#   3. read its firmware version and, after a reboot, its MAC (`devkit info --reboot`),
#   4. compute the enrollment certificate it will present (`devkit cert`), from the
#      bundled sample firmware (a 600 KB AZ3166 DPS build).
# With a real board in configuration mode: Scripts/demo.sh --port /dev/ttyACM0
# (use the .bin and .map of the firmware the board runs: --bin F --map F).
set -euo pipefail
cd "$(dirname "$0")/.."

port="" bin=Tests/Fixtures/dice-vectors/firmware/DevKitDPS.ino.bin map="" out=${DEVKIT_DEMO_DIR:-$PWD/out}
while [ $# -gt 0 ]; do
  case "$1" in
    --port) port=$2; shift 2 ;;
    --bin) bin=$2; shift 2 ;;
    --map) map=$2; shift 2 ;;
    --output-dir) out=$2; shift 2 ;;
    *) echo "usage: $0 [--port DEV] [--bin F --map F] [--output-dir DIR]" >&2; exit 64 ;;
  esac
done
map=${map:-${bin%.bin}.map}

Scripts/install-deps.sh
# Swift runtime and Foundation linked in: halves process start-up (see README).
swift build -c release --static-swift-stdlib --product devkit >&2
devkit="$(swift build -c release --static-swift-stdlib --show-bin-path)/devkit"
mkdir -p "$out"
work=$(mktemp -d)
emulator=""
cleanup() { [ -n "$emulator" ] && kill "$emulator" 2>/dev/null; wait 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

if [ -z "$port" ]; then
  echo "== no --port: starting a virtual DevKit (devkit emulate)"
  mkfifo "$work/ready"
  "$devkit" emulate --link "$work/ttyDevKit" --state "$out/virtual-devkit-state.json" >"$work/ready" &
  emulator=$!
  # The emulator prints its pty path once the board waits at its prompt.
  read -r -t 20 pty <"$work/ready" || { echo "the virtual DevKit did not start" >&2; exit 69; }
  echo "   virtual DevKit on $pty (link $work/ttyDevKit)"
  port="$work/ttyDevKit"
fi

uds="$out/uds-$(date +%Y%m%d-%H%M%S).hex"
echo "== devkit set-uds --port $port --generate-uds --save $uds"
"$devkit" set-uds --port "$port" --generate-uds --save "$uds"

echo "== devkit info --port $port --reboot"
"$devkit" info --port "$port" --reboot --json >"$work/info.json"
cat "$work/info.json"; echo
mac=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["mac_address"])' "$work/info.json")
version=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["firmware_version"])' "$work/info.json")

echo "== devkit cert --bin $bin --map $map --uds-file $uds --mac $mac --firmware-version $version"
"$devkit" cert --bin "$bin" --map "$map" --uds-file "$uds" --mac "$mac" --firmware-version "$version" \
  --output-dir "$out" --device-cert
echo "== done: upload the .pem above as a DPS individual enrollment (X.509); keep $uds secret"
