#!/usr/bin/env bash
# Fleet benchmark: BOARDS (16) virtual DevKits paced at 115200 baud provisioned at
# once by one `devkit watch` process, against one board alone. Prints:
#   - single-board wall time, fleet wall time, and their ratio (target <= 1.2)
#   - peak RSS of the watch process during the fleet run
#   - CPU time the idle `devkit watch` daemon uses in IDLE_SECONDS (target ~0:
#     it blocks on the udev socket, never polls on a timer)
#
#   Scripts/bench-fleet.sh                       # release build
#   BOARDS=4 CONFIG=debug Scripts/bench-fleet.sh
#   DEVKIT_BIN=.build/debug/devkit Scripts/bench-fleet.sh
#
# The boards are emulated on ptys, which udev does not announce, so the fleet run
# uses `devkit watch --port ... --port ...` (the same per-board threads as the
# udev path, without the monitor); the idle measurement runs the udev path.
# No sleeps for synchronisation: each emulator's first output line says it is up.
set -euo pipefail
cd "$(dirname "$0")/.."

CONFIG=${CONFIG:-release}
BOARDS=${BOARDS:-16}
BAUD=${BAUD:-115200}
IDLE_SECONDS=${IDLE_SECONDS:-10}

if [ -n "${DEVKIT_BIN:-}" ]; then
    BIN=$DEVKIT_BIN
else
    # Release builds link the Swift runtime and Foundation in, as the README's
    # build does (the same flags, so the scripts and the README share .build/release).
    flags=()
    if [ "$CONFIG" = release ]; then flags=(--static-swift-stdlib); fi
    swift build -c "$CONFIG" "${flags[@]}" --product devkit >/dev/null
    BIN="$(swift build -c "$CONFIG" "${flags[@]}" --show-bin-path)/devkit"
fi

work=$(mktemp -d /tmp/devkit-bench-fleet.XXXXXX)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT

fw="$PWD/Tests/Fixtures/dice-vectors/firmware/DevKitDPS.ino.elf"
mkdir -p "$work/out"
cat > "$work/profile.toml" <<TOML
output_dir = "$work/out"
registration_id = "derived"
[firmware]
elf = "$fw"
[uds]
policy = "generate"
TOML

# Starts a paced emulator with link $1 and MAC $2; returns when it is up.
start_board() {
    local fifo="$work/fifo.$RANDOM.$RANDOM"
    mkfifo "$fifo"
    "$BIN" emulate --link "$1" --mac "$2" --baud "$BAUD" > "$fifo" &
    pids+=($!)
    local line
    read -r line < "$fifo"   # the pty path: the emulator is up
    rm -f "$fifo"
}

now() { date +%s.%N; }

# One board alone.
start_board "$work/solo" "a4cf12ff0000"
t0=$(now)
"$BIN" watch --profile "$work/profile.toml" --registry "$work/solo.sqlite" --port "$work/solo" 2>"$work/solo.log" \
    || { echo "single board failed:"; cat "$work/solo.log"; exit 1; }
t1=$(now)
single=$(echo "$t1 - $t0" | bc -l)

# The fleet, all at once, in one watch process.
args=()
for i in $(seq 1 "$BOARDS"); do
    start_board "$work/tty$i" "$(printf 'a4cf12%06x' "$i")"
    args+=(--port "$work/tty$i")
done
t0=$(now)
/usr/bin/time -f "%M" -o "$work/rss" \
    "$BIN" watch --profile "$work/profile.toml" --registry "$work/fleet.sqlite" "${args[@]}" 2>"$work/fleet.log" \
    || { echo "fleet run failed:"; tail -n 20 "$work/fleet.log"; exit 1; }
t1=$(now)
fleet=$(echo "$t1 - $t0" | bc -l)
certs=$(( $(ls "$work/out"/*.pem | wc -l) - 1 ))   # minus the single board's

# The idle daemon on the udev monitor.
fifo="$work/idle.fifo"
mkfifo "$fifo"
"$BIN" watch --profile "$work/profile.toml" --registry "$work/idle.sqlite" 2> "$fifo" &
watch_pid=$!
pids+=($watch_pid)
read -r line < "$fifo"   # "watching for DevKits": the monitor is listening
ticks() { awk '{print $14 + $15}' "/proc/$watch_pid/stat"; }
c0=$(ticks)
sleep "$IDLE_SECONDS"    # the measurement window, not a synchronisation
c1=$(ticks)
hz=$(getconf CLK_TCK)
kill -TERM "$watch_pid"

printf 'boards:            %d at %d baud\n' "$BOARDS" "$BAUD"
printf 'single board:      %.3f s\n' "$single"
printf 'fleet (at once):   %.3f s   (%d certificates)\n' "$fleet" "$certs"
printf 'fleet / single:    %.2f   (target <= 1.2)\n' "$(echo "$fleet / $single" | bc -l)"
printf 'peak RSS (fleet):  %d KiB\n' "$(cat "$work/rss")"
printf 'idle CPU:          %.3f s in %d s\n' "$(echo "($c1 - $c0) / $hz" | bc -l)" "$IDLE_SECONDS"
