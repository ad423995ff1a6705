#!/usr/bin/env bash
# Session benchmark: wall time of `devkit set-uds` + `devkit info --reboot` against
# the virtual DevKit paced at 115200 baud, compared with the time the bytes need on
# the wire at that rate plus the emulated device delays. Target: within 1.3x.
#
#   Scripts/bench-session.sh            # release build, 5 runs
#   RUNS=10 CONFIG=debug SE_DELAY_MS=30 Scripts/bench-session.sh
#   DEVKIT_BIN=.build/debug/devkit Scripts/bench-session.sh   # skip the build
#
# Byte counts come from the commands themselves (DEVKIT_WIRE_STATS=1 makes them
# print "sent N bytes, received M bytes" on stderr). The wire time is the
# board-to-host direction, which carries every echo and so is the busier one:
# rx_bytes x 10 bits / baud (8N1). The sum of both directions is printed too, as
# the half-duplex bound, and the time spent inside the two console sessions
# (port open to close), which excludes process start-up. The emulated device
# delays are the secure-element writes (SE_DELAY_MS) and the USB bridge's frame
# latency at the end of each reply, which the emulator reports when it stops;
# the ratio to the wire time alone is printed too. No sleeps: the emulator's first output line says it is up.
set -euo pipefail
cd "$(dirname "$0")/.."

CONFIG=${CONFIG:-release}
RUNS=${RUNS:-5}
BAUD=${BAUD:-115200}
SE_DELAY_MS=${SE_DELAY_MS:-0}

if [ -n "${DEVKIT_BIN:-}" ]; then
    BIN=$DEVKIT_BIN  # an already built devkit
else
    # Release builds link the Swift runtime and Foundation in, as the README's
    # build does (the same flags, so the scripts and the README share .build/release).
    flags=()
    if [ "$CONFIG" = release ]; then flags=(--static-swift-stdlib); fi
    swift build -c "$CONFIG" "${flags[@]}" >/dev/null
    BIN="$(swift build -c "$CONFIG" "${flags[@]}" --show-bin-path)/devkit"
fi

work=$(mktemp -d /tmp/devkit-bench-session.XXXXXX)
emulator=
cleanup() {
    if [ -n "$emulator" ]; then kill "$emulator" 2>/dev/null || true; wait "$emulator" 2>/dev/null || true; fi
    rm -rf "$work"
}
trap cleanup EXIT

# A throwaway UDS for the benchmark board (never a real board's secret).
od -An -tx1 -N32 /dev/urandom | tr -d ' \n' > "$work/uds"
chmod 600 "$work/uds"

# The clock is bash's own $EPOCHREALTIME (microseconds), read without starting a
# process: `$(date +%s%N)` cost a fork and exec on each side of the measured span,
# about 1.5 ms of it. Around the measured commands the reads are inline (taking a
# function's output needs a subshell).
now_us() { echo "${EPOCHREALTIME/[.,]/}"; }

total_ns=0 total_rx=0 total_tx=0 total_session_us=0 best_ns=
walls=()
for run in $(seq 1 "$RUNS"); do
    mkfifo "$work/ready"
    "$BIN" emulate --link "$work/tty" --baud "$BAUD" --se-write-delay "$SE_DELAY_MS" > "$work/ready" 2> "$work/emulator.log" &
    emulator=$!
    # Blocks until the emulator prints its pty path: it is up and listening.
    read -r _ < "$work/ready"
    rm "$work/ready"

    : > "$work/stats"
    start=${EPOCHREALTIME/[.,]/}
    DEVKIT_WIRE_STATS=1 "$BIN" set-uds --port "$work/tty" --uds-file "$work/uds" > /dev/null 2>> "$work/stats"
    DEVKIT_WIRE_STATS=1 "$BIN" info --port "$work/tty" --reboot --json > "$work/info.json" 2>> "$work/stats"
    end=${EPOCHREALTIME/[.,]/}

    kill "$emulator"; wait "$emulator" 2>/dev/null || true; emulator=
    # The emulator's USB bridge hands replies over at the end of 1 ms frames, as
    # the ST-LINK's does; it reports the latency that added to its replies.
    usb_ms=$(awk '/USB frame latency at the end of replies:/ { print $(NF-4) }' "$work/emulator.log")
    total_usb=$(echo "${total_usb:-0} + ${usb_ms:-0}" | bc -l)

    elapsed=$(( (end - start) * 1000 ))
    tx=$(awk '/devkit: wire:/ { s += $4 } END { print s }' "$work/stats")
    rx=$(awk '/devkit: wire:/ { s += $7 } END { print s }' "$work/stats")
    session_us=$(awk '/devkit: wire:/ { s += $10 } END { print s }' "$work/stats")
    total_ns=$((total_ns + elapsed)); total_rx=$((total_rx + rx)); total_tx=$((total_tx + tx))
    total_session_us=$((total_session_us + session_us))
    if [ -z "$best_ns" ] || [ "$elapsed" -lt "$best_ns" ]; then best_ns=$elapsed; fi
    walls+=("$elapsed")
    awk -v r="$run" -v e="$elapsed" -v t="$tx" -v x="$rx" 'BEGIN { printf "run %d: %.1f ms wall, %d bytes sent, %d bytes received\n", r, e / 1e6, t, x }'
done

# Process start-up of devkit itself (two processes per run), for reference.
start=$(now_us)
for _ in $(seq 1 10); do "$BIN" --version > /dev/null; done
startup_ns=$(( ($(now_us) - start) * 100 ))

grep -q '"registration_id":"az-' "$work/info.json" || { echo "info --reboot gave no registration ID" >&2; exit 1; }

# The median run, less swayed than the mean by a run that met a busy moment.
median_ns=$(printf '%s\n' "${walls[@]}" | sort -n | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }')

awk -v usb="${total_usb:-0}" -v ns="$total_ns" -v best="$best_ns" -v med="$median_ns" -v rx="$total_rx" -v tx="$total_tx" -v runs="$RUNS" \
    -v baud="$BAUD" -v se="$SE_DELAY_MS" -v config="$CONFIG" -v startup="$startup_ns" -v session="$total_session_us" 'BEGIN {
    wall = ns / runs / 1e6; bestms = best / 1e6; medms = med / 1e6
    rxb = rx / runs; txb = tx / runs
    wire = rxb * 10 / baud * 1000          # ms, board-to-host direction
    both = (rxb + txb) * 10 / baud * 1000  # ms, both directions back to back
    usbms = usb / runs                     # USB frame latency at the ends of replies
    delays = 2 * se + usbms                # set_dps_uds: one write + its verify
    target = wire + delays
    printf "\nset-uds + info --reboot at %d baud (%s build, %d runs, secure-element write %d ms)\n", baud, config, runs, se
    printf "  bytes on the wire:   %d sent, %d received\n", txb, rxb
    printf "  wire time:           %.1f ms (received bytes), %.1f ms (both directions)\n", wire, both
    printf "  device delays:       %.1f ms (secure element %.1f ms, USB frames at reply ends %.1f ms)\n", delays, 2 * se, usbms
    printf "  wall time:           %.1f ms mean, %.1f ms median, %.1f ms best\n", wall, medms, bestms
    printf "  ratio:               %.2fx mean, %.2fx median, %.2fx best (target <= 1.30x of wire + delays)\n", wall / target, medms / target, bestms / target
    printf "  ratio to wire alone: %.2fx mean, %.2fx best (USB frame latency not counted)\n", wall / (wire + 2 * se), bestms / (wire + 2 * se)
    st = startup / 1e6
    printf "  devkit start-up:     %.1f ms per process (devkit --version), 2 per run\n", st
    printf "  ratio less start-up: %.2fx mean, %.2fx best\n", (wall - 2 * st) / target, (bestms - 2 * st) / target
    sess = session / runs / 1000
    printf "  console sessions:    %.1f ms mean (inside the two sessions: first \\r to last byte), %.2fx of wire + delays\n", sess, sess / target
}'
