#!/bin/sh
# Measures what the udev monitor costs while nothing happens: CPU time, wake-ups
# and peak memory of `devkit list --watch` over an idle period. The monitor blocks
# in poll(2) with no timeout, so CPU time and wake-ups should stay at zero.
#
#   Scripts/bench-monitor-idle.sh [SECONDS]     (default 10)
#
# DEVKIT=path/to/devkit selects the binary (default: the debug build, which
# `swift build` brings up to date first). Linux only (reads /proc).
set -eu

seconds=${1:-10}
here=$(cd "$(dirname "$0")/.." && pwd)
devkit=${DEVKIT:-}
if [ -z "$devkit" ]; then
    (cd "$here" && swift build >/dev/null)
    devkit="$(cd "$here" && swift build --show-bin-path)/devkit"
fi

# The snapshot line says the monitor is listening: start measuring after it.
fifo=$(mktemp -u)
mkfifo "$fifo"
"$devkit" list --watch --json >"$fifo" 2>/dev/null &
pid=$!
trap 'kill $pid 2>/dev/null; rm -f "$fifo"' EXIT
exec 3<"$fifo"  # kept open, so an event during the run does not hit a closed pipe
read -r _ <&3

ticks() { awk '{print $14 + $15}' "/proc/$pid/stat"; }
switches() {
    total=0
    for task in /proc/$pid/task/*; do
        n=$(awk '/^(non)?voluntary_ctxt_switches/ {s += $2} END {print s}' "$task/status")
        total=$((total + n))
    done
    echo $total
}
hz=$(getconf CLK_TCK)
t0=$(ticks); s0=$(switches)
sleep "$seconds"  # the measured idle period, not a synchronisation
t1=$(ticks); s1=$(switches)
rss=$(awk '/^VmHWM/ {print $2}' "/proc/$pid/status")
threads=$(ls /proc/$pid/task | wc -l)

echo "idle period:            ${seconds} s"
echo "CPU time while idle:    $(( (t1 - t0) * 1000 / hz )) ms"
echo "context switches:       $((s1 - s0)) (all $threads threads)"
echo "peak resident memory:   ${rss} kB"
