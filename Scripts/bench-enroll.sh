#!/usr/bin/env bash
# Enrollment benchmark: BOARDS (1,000) boards of a registry enrolled with
# `devkit dps enroll --from-registry` against `devkit emulate-dps` (over TLS on
# loopback), with the server's --latency-ms 0 and 50, alternating, RUNS (3) each.
# Per run: enrollments/s, the requests the emulator counted (GET /_emulator/stats:
# bulk, read-back queries, GETs), wall time, and the time against the ideal
# (bulk requests x latency / requests in flight) and against the server's own
# time (the sum of what emulate-dps --verbose logs for each request, its latency
# included, / requests in flight). Then, once per latency, a second run
# on the same registry and DPS: every board `unchanged`; its time and requests.
# Targets: >= 500 enrollments/s at 0 ms; within 1.5x of the ideal at 50 ms.
#
#   Scripts/bench-enroll.sh                          # release build
#   Scripts/bench-enroll.sh --boards 200 --runs 1
#   Scripts/bench-enroll.sh --binary .build/release/devkit   # no build
#   Scripts/bench-enroll.sh --binary B --registry-tool T      # T: a built BenchRegistry
#   Scripts/bench-enroll.sh --parallel 8 --latencies "0 50 100"
#
# The registry is made once by Scripts/BenchRegistry (DevKitRegistry's API and
# DiceRIoT's certificates: see its header for why not SQL) and copied for each
# run, so every run starts from the same 1,000 finished, unenrolled boards and an
# empty DPS (a fresh state directory).
set -euo pipefail
cd "$(dirname "$0")/.."

BOARDS=1000 RUNS=3 PARALLEL=4 LATENCIES="0 50" BIN="" TOOL=""
while [ $# -gt 0 ]; do
    case $1 in
        --boards) BOARDS=$2; shift 2 ;;
        --runs) RUNS=$2; shift 2 ;;
        --parallel) PARALLEL=$2; shift 2 ;;
        --latencies) LATENCIES=$2; shift 2 ;;
        --binary) BIN=$2; shift 2 ;;
        --registry-tool) TOOL=$2; shift 2 ;;
        -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
        *) echo "bench-enroll.sh: unknown option $1 (see --help)" >&2; exit 64 ;;
    esac
done

# The release build, with the flags the README's build and the other scripts use
# (so they share .build/release). --binary skips building devkit; the registry
# tool is built beside it unless --registry-tool names one.
flags=(-c release --static-swift-stdlib)
if [ -z "$BIN" ]; then
    swift build "${flags[@]}" >&2
    BIN="$(swift build "${flags[@]}" --show-bin-path)/devkit"
fi
if [ -z "$TOOL" ]; then
    TOOL="$(swift build "${flags[@]}" --show-bin-path)/BenchRegistry"
    [ -x "$TOOL" ] || swift build "${flags[@]}" --product BenchRegistry >&2
fi

work=$(mktemp -d "${BENCH_DIR:-/tmp}/devkit-bench-enroll.XXXXXX")
dps_pid=""
cleanup() {
    if [ -n "$dps_pid" ]; then kill "$dps_pid" 2>/dev/null || true; wait "$dps_pid" 2>/dev/null || true; fi
    rm -rf "$work"
}
trap cleanup EXIT

"$TOOL" --registry "$work/fleet.sqlite" --output-dir "$work/certs" --boards "$BOARDS" \
    --elf Tests/Fixtures/dice-vectors/firmware/DevKitDPS.ino.elf >&2

# Starts emulate-dps with state dir $1 and latency $2; sets url, ca, cs, dps_pid.
start_dps() {
    local fifo="$work/dps.fifo" line
    mkfifo "$fifo"
    # --verbose: each request's own time on the server, latency included.
    "$BIN" emulate-dps --json --port 0 --state-dir "$1" --latency-ms "$2" --verbose > "$fifo" 2> "$work/dps.log" &
    dps_pid=$!
    read -r line < "$fifo"   # the "started" object: it listens
    rm -f "$fifo"
    read -r url ca cs < <(python3 -c 'import json,sys; o=json.loads(sys.argv[1]); print(o["url"], o["ca_file"], o["connection_string_file"])' "$line")
}
stop_dps() { kill -TERM "$dps_pid"; wait "$dps_pid" 2>/dev/null || true; dps_pid=""; }

# "requests bulk query get put" from the emulator's counters (not counted themselves).
stats() {
    curl -sf --cacert "$ca" "$url/_emulator/stats" | python3 -c '
import json, sys
s = json.load(sys.stdin); k = s.get("by_kind", {})
print(s["requests"], k.get("bulk", 0), k.get("query", 0), k.get("enrollment_get", 0), k.get("enrollment_put", 0))'
}

# The server's own time for the requests it logged after line $1 of its log, in
# seconds, divided by the requests in flight: what the run would take if the client
# and the network cost nothing.
served() {
    sleep 0.05   # the log line of the last answer is written as it goes out
    tail -n +"$(( $1 + 1 ))" "$work/dps.log" | python3 -c '
import re, sys
print(sum(float(m.group(1)) for m in re.finditer(r"-> \d+ \(([0-9.]+) ms\)", sys.stdin.read())) / 1000 / int(sys.argv[1]))' "$PARALLEL"
}

# Runs the enrollment on registry $1; prints "seconds actions" (actions: a count per action).
enroll() {
    local t0 t1
    t0=${EPOCHREALTIME/,/.}
    "$BIN" dps enroll --from-registry --registry "$1" --connection-string-file "$cs" --endpoint "$url" \
        --ca-file "$ca" --parallel "$PARALLEL" --json > "$work/out.jsonl" 2> "$work/enroll.err" \
        || { echo "dps enroll failed ($?):" >&2; tail -n 5 "$work/enroll.err" >&2; exit 1; }
    t1=${EPOCHREALTIME/,/.}
    printf '%s %s\n' "$(echo "$t1 - $t0" | bc -l)" \
        "$(python3 -c '
import collections, json, sys
c = collections.Counter(json.loads(l)["action"] for l in open(sys.argv[1]) if l.strip())
print(",".join(f"{k}={v}" for k, v in sorted(c.items())))' "$work/out.jsonl")"
}

declare -A results
echo "boards: $BOARDS, requests in flight: $PARALLEL, devkit: $BIN"
for run in $(seq 1 "$RUNS"); do
    for latency in $LATENCIES; do
        cp "$work/fleet.sqlite" "$work/run.sqlite"
        for f in "$work"/fleet.sqlite-*; do [ -e "$f" ] && cp "$f" "$work/run.sqlite${f#"$work/fleet.sqlite"}"; done
        rm -rf "$work/dps"
        start_dps "$work/dps" "$latency"
        read -r seconds actions < <(enroll "$work/run.sqlite")
        read -r requests bulk query get put < <(stats)
        [ "$actions" = "created=$BOARDS" ] || { echo "run $run: expected created=$BOARDS, got $actions" >&2; exit 1; }
        rate=$(echo "$BOARDS / $seconds" | bc -l)
        ideal=$(echo "$bulk * $latency / 1000 / $PARALLEL" | bc -l)
        served=$(served 0)
        line=$(printf 'latency %3d ms, run %d: %4d enrolled in %6.3f s = %5.0f/s; requests %d (bulk %d, query %d, get %d)' \
            "$latency" "$run" "$BOARDS" "$seconds" "$rate" "$requests" "$bulk" "$query" "$get")
        if [ "$latency" -gt 0 ]; then
            line+=$(printf '; ideal %.3f s (x%.2f)' "$ideal" "$(echo "$seconds / $ideal" | bc -l)")
        fi
        line+=$(printf '; server'"'"'s own time / %d: %.3f s (x%.2f)' "$PARALLEL" "$served" "$(echo "$seconds / $served" | bc -l)")
        echo "$line"
        logged=$(wc -l < "$work/dps.log")
        results[$latency]+="$seconds "
        if [ "$run" -eq 1 ]; then
            # The same registry and DPS again: nothing to write.
            read -r seconds actions < <(enroll "$work/run.sqlite")
            read -r requests2 bulk2 query2 get2 put2 < <(stats)
            served=$(served "$logged")
            [ "$actions" = "unchanged=$BOARDS" ] || { echo "rerun: expected unchanged=$BOARDS, got $actions" >&2; exit 1; }
            printf '  rerun (same registry): %s in %.3f s; requests %d (bulk %d, query %d, get %d, put %d); server'"'"'s own time / %d: %.3f s\n' \
                "$actions" "$seconds" $((requests2 - requests)) $((bulk2 - bulk)) $((query2 - query)) $((get2 - get)) $((put2 - put)) \
                "$PARALLEL" "$served"
        fi
        stop_dps
    done
done
median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
for latency in $LATENCIES; do
    # shellcheck disable=SC2086
    m=$(median ${results[$latency]})
    printf 'median, latency %3d ms: %.3f s = %.0f enrollments/s' "$latency" "$m" "$(echo "$BOARDS / $m" | bc -l)"
    if [ "$latency" -gt 0 ]; then
        chunks=$(( (BOARDS + 9) / 10 ))
        ideal=$(echo "$chunks * $latency / 1000 / $PARALLEL" | bc -l)
        printf ' (ideal %.3f s: x%.2f, target <= 1.5)' "$ideal" "$(echo "$m / $ideal" | bc -l)"
    else
        printf ' (target >= 500/s)'
    fi
    echo
done
