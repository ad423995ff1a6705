#!/usr/bin/env bash
# The main job on the built-in defaults: with no board attached, starts a virtual
# DevKit, stores a fresh UDS on it, reads its firmware version and MAC, and computes
# the enrollment certificate from the bundled sample firmware.
# With a real board: Scripts/demo.sh --port /dev/ttyACM0
set -euo pipefail
cd "$(dirname "$0")/.."
Scripts/install-deps.sh
swift build -c release --product devkit >&2
devkit=$(swift build -c release --show-bin-path)/devkit
fw=Tests/Fixtures/dice-vectors/firmware/DevKitDPS.ino
out=${DEVKIT_DEMO_DIR:-$PWD/out}
mkdir -p "$out"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

echo "== devkit cert on the bundled sample firmware (${fw}.bin, 600 KB)"
head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$work/uds.hex"
"$devkit" cert --bin "$fw.bin" --map "$fw.map" --uds-file "$work/uds.hex" \
  --mac a4:cf:12:0b:9e:31 --firmware-version 1.6.2 --output-dir "$out"
