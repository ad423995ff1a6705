#!/usr/bin/env bash
# The main job, on the built-in virtual DevKit when no board is attached:
#   1. start a virtual DevKit in configuration mode (`devkit emulate`),
#   2. store a fresh UDS on it, saved to a 0600 file first (`devkit set-uds --generate-uds`),
#   3. read its firmware version and, after a reboot, its MAC (`devkit info --reboot`),
#   4. compute the enrollment certificate it will present (`devkit cert`), from the
#      bundled sample firmware (a 600 KB AZ3166 DPS build),
#   5. enroll it in DPS (`devkit dps enroll`) and show the enrollment (`devkit dps
#      show`): without --port, in a local DPS started beside the virtual board
#      (`devkit emulate-dps`, over TLS on 127.0.0.1, its state in a temporary directory).
# With a real board in configuration mode: Scripts/demo.sh --port /dev/ttyACM0
# (use the .bin and .map of the firmware the board runs: --bin F --map F); add
# --dps-connection-string-file F to enroll it in your DPS (a shared access policy
# with EnrollmentWrite: see the README's "Enroll in DPS").
# Both emulators are stopped on exit, Ctrl-C or SIGTERM.
set -euo pipefail
cd "$(dirname "$0")/.."

port="" bin=Tests/Fixtures/dice-vectors/firmware/DevKitDPS.ino.bin map="" out=${DEVKIT_DEMO_DIR:-$PWD/out}
dps_cs=""
while [ $# -gt 0 ]; do
  case "$1" in
    --port) port=$2; shift 2 ;;
    --bin) bin=$2; shift 2 ;;
    --map) map=$2; shift 2 ;;
    --output-dir) out=$2; shift 2 ;;
    --dps-connection-string-file) dps_cs=$2; shift 2 ;;
    *) echo "usage: $0 [--port DEV] [--bin F --map F] [--output-dir DIR] [--dps-connection-string-file F]" >&2
       exit 64 ;;
  esac
done
map=${map:-${bin%.bin}.map}

Scripts/install-deps.sh
# Swift runtime and Foundation linked in: halves process start-up (see README).
swift build -c release --static-swift-stdlib --product devkit >&2
devkit="$(swift build -c release --static-swift-stdlib --show-bin-path)/devkit"
mkdir -p "$out"
work=$(mktemp -d)
emulator="" dps_emulator=""
cleanup() {
  [ -n "$emulator" ] && kill "$emulator" 2>/dev/null
  [ -n "$dps_emulator" ] && kill "$dps_emulator" 2>/dev/null
  wait 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT
# An interrupted demo still stops what it started (the EXIT trap runs on exit).
trap 'exit 130' INT
trap 'exit 143' TERM

if [ -z "$port" ]; then
  echo "== no --port: starting a virtual DevKit (devkit emulate)"
  mkfifo "$work/ready"
  "$devkit" emulate --link "$work/ttyDevKit" --state "$out/virtual-devkit-state.json" >"$work/ready" &
  emulator=$!
  # The emulator prints its pty path once the board waits at its prompt.
  read -r -t 20 pty <"$work/ready" || { echo "the virtual DevKit did not start" >&2; exit 69; }
  echo "   virtual DevKit on $pty (link $work/ttyDevKit)"
  port="$work/ttyDevKit"

  if [ -z "$dps_cs" ]; then
    echo "== no DPS given: starting a local DPS beside it (devkit emulate-dps)"
    "$devkit" emulate-dps --json --port 0 --state-dir "$work/dps" >"$work/dps.json" 2>"$work/dps.log" &
    dps_emulator=$!
    # Its first line, once it listens: the URL, its CA and a connection-string file.
    for _ in $(seq 100); do [ -s "$work/dps.json" ] && break; sleep 0.2; done
    [ -s "$work/dps.json" ] || { echo "the local DPS did not start: $(cat "$work/dps.log")" >&2; exit 69; }
    field() { python3 -c 'import json,sys; print(json.loads(open(sys.argv[1]).readline())[sys.argv[2]])' "$work/dps.json" "$1"; }
    dps_cs=$(field connection_string_file)
    dps_options=(--connection-string-file "$dps_cs" --endpoint "$(field url)" --ca-file "$(field ca_file)")
    echo "   local DPS at $(field url) (CA $(field ca_file))"
  fi
fi
[ -n "$dps_cs" ] && [ -z "${dps_options+x}" ] && dps_options=(--connection-string-file "$dps_cs")

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
  --output-dir "$out" --device-cert --json >"$work/cert.json"
cat "$work/cert.json"; echo
id=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["registration_id"])' "$work/cert.json")
pem=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["certificate"])' "$work/cert.json")

if [ -z "$dps_cs" ]; then
  echo "== done: enroll $pem in DPS (devkit dps enroll --cert $pem --connection-string-file F); keep $uds secret"
  exit 0
fi
echo "== devkit dps enroll --cert $pem ${dps_options[*]}"
"$devkit" dps enroll --cert "$pem" "${dps_options[@]}"
echo "== devkit dps show $id ${dps_options[*]}"
"$devkit" dps show "$id" "${dps_options[@]}"
echo "== done: $id is enrolled in DPS; keep $uds secret"
