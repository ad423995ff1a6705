#!/usr/bin/env bash
# The main job, on the built-in virtual DevKit when no board is attached:
#   1. start a virtual DevKit in configuration mode (`devkit emulate`),
#   2. store a fresh UDS on it, saved to a 0600 file first (`devkit set-uds --generate-uds`),
#   3. read its firmware version and, after a reboot, its MAC (`devkit info --reboot`),
#   4. compute the enrollment certificate it will present (`devkit cert`), from the
#      bundled sample firmware (a 600 KB AZ3166 DPS build),
#   5. enroll it in DPS (`devkit dps enroll`) and show the enrollment (`devkit dps
#      show`): without --port, in a local DPS started beside the virtual board
#      (`devkit emulate-dps`, over TLS on 127.0.0.1, its state in a temporary directory),
#   6. watch it register (`devkit verify`): the board boots its sketch, registers with
#      DPS over mutual TLS presenting its Alias certificate, and the demo ends with
#      "registered: assigned to hub <hub> as <device id>" and a timeline of the steps.
#      The virtual board runs the DPS sample on the same firmware image the
#      certificate was computed from, as a real board does.
# With a real board in configuration mode: Scripts/demo.sh --port /dev/ttyACM0
# (use the .bin and .map of the firmware the board runs: --bin F --map F); add
# --dps-connection-string-file F to enroll it in your DPS (a shared access policy
# with EnrollmentRead and EnrollmentWrite: see the README's "Enroll in DPS"); then
# reset the board when asked, and devkit verify reads its log.
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
swift build -c release --static-swift-stdlib >&2
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

# The timeline: each step's name and how long it took.
timeline=() step_start=0 demo_start=$(date +%s%N)
begin() { step_start=$(date +%s%N); echo "== $*"; }
seconds_since() { local ms=$((($(date +%s%N) - $1) / 1000000)); printf '%4d.%02d s' $((ms / 1000)) $((ms % 1000 / 10)); }
end() { timeline+=("$(seconds_since "$step_start")  $1"); }

board_dps=()
if [ -z "$port" ] && [ -z "$dps_cs" ]; then
  begin "no --port and no DPS given: starting a local DPS (devkit emulate-dps)"
  "$devkit" emulate-dps --json --port 0 --state-dir "$work/dps" >"$work/dps.json" 2>"$work/dps.log" &
  dps_emulator=$!
  # Its first line, once it listens: the URL, its CA, a connection-string file, the ID scope.
  for _ in $(seq 100); do [ -s "$work/dps.json" ] && break; sleep 0.2; done
  [ -s "$work/dps.json" ] || { echo "the local DPS did not start: $(cat "$work/dps.log")" >&2; exit 69; }
  field() { python3 -c 'import json,sys; print(json.loads(open(sys.argv[1]).readline())[sys.argv[2]])' "$work/dps.json" "$1"; }
  dps_cs=$(field connection_string_file)
  dps_options=(--connection-string-file "$dps_cs" --endpoint "$(field url)" --ca-file "$(field ca_file)")
  # The virtual board's DPS sample registers here, trusting the local CA.
  board_dps=(--dps-endpoint "$(field url)" --id-scope "$(field id_scope)" --ca-file "$(field ca_file)" --bin "$bin" --map "$map")
  echo "   local DPS at $(field url), ID scope $(field id_scope) (CA $(field ca_file))"
  end "start the local DPS"
fi

if [ -z "$port" ]; then
  begin "no --port: starting a virtual DevKit (devkit emulate)"
  mkfifo "$work/ready"
  "$devkit" emulate --link "$work/ttyDevKit" --state "$out/virtual-devkit-state.json" "${board_dps[@]}" >"$work/ready" &
  emulator=$!
  # The emulator prints its pty path once the board waits at its prompt.
  read -r -t 20 pty <"$work/ready" || { echo "the virtual DevKit did not start" >&2; exit 69; }
  echo "   virtual DevKit on $pty (link $work/ttyDevKit)"
  port="$work/ttyDevKit"
  end "start the virtual DevKit"
fi
[ -n "$dps_cs" ] && [ -z "${dps_options+x}" ] && dps_options=(--connection-string-file "$dps_cs")

uds="$out/uds-$(date +%Y%m%d-%H%M%S).hex"
begin "devkit set-uds --port $port --generate-uds --save $uds"
"$devkit" set-uds --port "$port" --generate-uds --save "$uds"
end "store a new UDS (set_dps_uds)"

begin "devkit info --port $port --reboot"
"$devkit" info --port "$port" --reboot --json >"$work/info.json"
end "read the firmware version and the MAC"
cat "$work/info.json"; echo
mac=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["mac_address"])' "$work/info.json")
version=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["firmware_version"])' "$work/info.json")

begin "devkit cert --bin $bin --map $map --uds-file $uds --mac $mac --firmware-version $version"
"$devkit" cert --bin "$bin" --map "$map" --uds-file "$uds" --mac "$mac" --firmware-version "$version" \
  --output-dir "$out" --device-cert --json >"$work/cert.json"
end "compute the Alias certificate"
cat "$work/cert.json"; echo
id=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["registration_id"])' "$work/cert.json")
pem=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["certificate"])' "$work/cert.json")

if [ -z "$dps_cs" ]; then
  echo "== done: enroll $pem in DPS (devkit dps enroll --cert $pem --connection-string-file F); keep $uds secret"
  exit 0
fi
begin "devkit dps enroll --cert $pem ${dps_options[*]}"
"$devkit" dps enroll --cert "$pem" "${dps_options[@]}"
end "enroll in DPS"
begin "devkit dps show $id ${dps_options[*]}"
"$devkit" dps show "$id" "${dps_options[@]}"
end "read the enrollment back"

# `info --reboot` left the board in user mode, where its sketch already tried to
# register (before the enrollment existed). verify follows the log of a fresh boot:
# the virtual board's reset button is SIGHUP; a real board's is pressed by hand.
begin "devkit verify --port $port ${dps_options[*]}"
if [ -n "$emulator" ]; then (sleep 1; kill -HUP "$emulator") & fi
set +e
"$devkit" verify --port "$port" --timeout 60 --json "${dps_options[@]}" >"$work/verify.json"
verified=$?
set -e
cat "$work/verify.json"; echo
end "see it register (verify)"

echo
echo "== timeline"
printf '%s\n' "${timeline[@]}"
echo "$(seconds_since "$demo_start")  in all"
if [ "$verified" -ne 0 ]; then
  echo "== not registered: $(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(d["outcome"] + ": " + d["diagnosis"])' "$work/verify.json" 2>/dev/null || echo "devkit verify exited $verified")"
  exit "$verified"
fi
python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print("registered: assigned to hub %s as %s" % (d["assigned_hub"], d["device_id"] or d["registration_id"]))' "$work/verify.json"
echo "   keep $uds secret"
