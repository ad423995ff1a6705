#!/usr/bin/env bash
# Fleet benchmark: BOARDS (16) virtual DevKits paced at 115200 baud provisioned at
# once by one `devkit watch` process, against one board alone. Prints:
#   - single-board wall time, fleet wall time, and their ratio (target <= 1.2)
#   - peak RSS of the watch process during the fleet run
#   - CPU time the idle `devkit watch` daemon uses in IDLE_SECONDS (target ~0:
#     it blocks on the udev socket, never polls on a timer)
#
#   Scripts/bench-fleet.sh                       # release build
#   BOARDS=4 RUNS=3 CONFIG=debug Scripts/bench-fleet.sh
#   DEVKIT_BIN=.build/debug/devkit Scripts/bench-fleet.sh
#   BENCH_DIR=/dev/shm Scripts/bench-fleet.sh    # registry and outputs on tmpfs
#
# The boards are emulated on ptys, which udev does not announce, so the fleet run
# uses `devkit watch --port ... --port ...` (the same per-board threads as the
# udev path, without the monitor); the idle measurement runs the udev path.
# No sleeps for synchronisation: each emulator's first output line says it is up.
set -euo pipefail
cd "$(dirname "$0")/.."

CONFIG=${CONFIG:-release}
BOARDS=${BOARDS:-16}
RUNS=${RUNS:-9}
BAUD=${BAUD:-115200}
IDLE_SECONDS=${IDLE_SECONDS:-10}

if [ -n "${DEVKIT_BIN:-}" ]; then
    BIN=$DEVKIT_BIN
else
    # Release builds link the Swift runtime and Foundation in, as the README's
    # build does (the same flags, so the scripts and the README share .build/release).
    flags=()
    if [ "$CONFIG" = release ]; then flags=(--static-swift-stdlib); fi
    swift build -c "$CONFIG" "${flags[@]}" >/dev/null
    BIN="$(swift build -c "$CONFIG" "${flags[@]}" --show-bin-path)/devkit"
fi

# The registry and the certificates go here: the disk's fsync latency is part of
# what a fleet waits for (BENCH_DIR=/dev/shm shows the run without it).
work=$(mktemp -d "${BENCH_DIR:-/tmp}/devkit-bench-fleet.XXXXXX")
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

# Each run starts its own emulators (a provisioned board has rebooted into user
# mode) from a subshell, and stops them before it returns. Every run's boards have
# MACs of their own, as new boards on a bench do, so their certificates are new
# files (the same MACs every run replaced the previous run's files instead, which
# also frees their blocks: not the case being measured).
# Starts a paced emulator with link $1 and MAC $2; returns when it is up.
start_board() {
    local fifo="$work/fifo.$RANDOM.$RANDOM"
    mkfifo "$fifo"
    # The emulators' own status lines go to a log, not among the results.
    "$BIN" emulate --link "$1" --mac "$2" --baud "$BAUD" > "$fifo" 2>> "$work/emulators.log" &
    pids+=($!)
    local line
    read -r line < "$fifo"   # the pty path: the emulator is up
    rm -f "$fifo"
}

# Spans are read from bash's own clock, $EPOCHREALTIME: no `date` process started
# on either side of a measured span.

stop_boards() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
    pids=()
}

# One board alone; prints the wall time in seconds.
run_single() {
    local run=$1
    start_board "$work/solo" "$(printf 'a4cf13%04x00' "$run")"
    local t0 t1
    t0=${EPOCHREALTIME/,/.}
    "$BIN" watch --profile "$work/profile.toml" --registry "$work/solo$run.sqlite" --port "$work/solo" 2>"$work/solo.log" \
        || { echo "single board failed:" >&2; cat "$work/solo.log" >&2; stop_boards; exit 1; }
    t1=${EPOCHREALTIME/,/.}
    stop_boards
    echo "$t1 - $t0" | bc -l
}

# The fleet, all at once, in one watch process; prints the wall time in seconds.
# With a second argument, runs watch under /usr/bin/time and keeps its peak RSS
# there instead (an untimed run: time's own fork and exec, about 0.8 ms, would
# otherwise count against the fleet and not the single board).
run_fleet() {
    local run=$1 rss_file=${2:-} args=() i t0 t1 wrap=()
    for i in $(seq 1 "$BOARDS"); do
        start_board "$work/tty$i" "$(printf 'a4cf12%04x%02x' "$run" "$i")"
        args+=(--port "$work/tty$i")
    done
    if [ -n "$rss_file" ]; then wrap=(/usr/bin/time -f "%M" -o "$rss_file"); fi
    t0=${EPOCHREALTIME/,/.}
    "${wrap[@]}" "$BIN" watch --profile "$work/profile.toml" --registry "$work/fleet$run.sqlite" "${args[@]}" 2>"$work/fleet.log" \
        || { echo "fleet run failed:" >&2; tail -n 20 "$work/fleet.log" >&2; stop_boards; exit 1; }
    t1=${EPOCHREALTIME/,/.}
    stop_boards
    echo "$t1 - $t0" | bc -l
}

# Alternating runs, so a noisy moment hits both sides; the medians are compared.
singles=() fleets=()
for run in $(seq 1 "$RUNS"); do
    singles+=("$(run_single "$run")")
    fleets+=("$(run_fleet "$run")")
    printf 'run %d: single %.3f s, fleet %.3f s\n' "$run" "${singles[-1]}" "${fleets[-1]}"
done
median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
single=$(median "${singles[@]}")
fleet=$(median "${fleets[@]}")
run_fleet $((RUNS + 1)) "$work/rss" > /dev/null
rss=$(cat "$work/rss")
certs=$(( $(ls "$work/out"/az-a4cf12*.pem | wc -l) / (RUNS + 1) ))   # per fleet run

# The idle daemon on the udev monitor.
fifo="$work/idle.fifo"
mkfifo "$fifo"
# Held open for watch's whole life: a line after the one awaited (or a warning
# before it, e.g. that udev does not run here) must not meet a closed pipe.
exec 3<> "$fifo"
"$BIN" watch --profile "$work/profile.toml" --registry "$work/idle.sqlite" 2> "$fifo" &
watch_pid=$!
pids+=($watch_pid)
while read -r line <&3; do   # up to "watching for DevKits": the monitor is listening
    case $line in *"watching for DevKits"*) break ;; esac
done
ticks() { awk '{print $14 + $15}' "/proc/$watch_pid/stat"; }
c0=$(ticks)
sleep "$IDLE_SECONDS"    # the measurement window, not a synchronisation
c1=$(ticks)
hz=$(getconf CLK_TCK)
kill -TERM "$watch_pid"
wait "$watch_pid" 2>/dev/null || true
exec 3<&-

printf 'boards:            %d at %d baud\n' "$BOARDS" "$BAUD"
printf 'runs:              %d of each, alternating (%d boards certified per fleet run)\n' "$RUNS" "$certs"
printf 'single board:      %.3f s (median)\n' "$single"
printf 'fleet (at once):   %.3f s (median)\n' "$fleet"
printf 'fleet / single:    %.2f   (target <= 1.2)\n' "$(echo "$fleet / $single" | bc -l)"
printf 'peak RSS (fleet):  %d KiB\n' "$rss"
printf 'idle CPU:          %.3f s in %d s\n' "$(echo "($c1 - $c0) / $hz" | bc -l)" "$IDLE_SECONDS"
