#!/usr/bin/env bash
# Shared-registry benchmark (issue 16): STATIONS (4) `devkit watch` processes, each
# provisioning BOARDS (16) virtual DevKits paced at 115200 baud, all recording in
# one PostgreSQL registry on loopback (TCP, fsync on, as a real server), against
# the same STATIONS x BOARDS boards provisioned by one station into its SQLite
# file. Prints, per run and as medians:
#   - wall time of each side and their ratio, PostgreSQL / SQLite (target <= 1.2)
#   - a control: the same STATIONS processes at once, each with its own SQLite
#     file, and PostgreSQL's time over it: how much of the ratio is several
#     station processes sharing these cores rather than the shared registry
#   - registry transactions per second on the server (pg_stat_database's
#     xact_commit over the run: every write and every read the stations made;
#     a read or a claim is one statement, its own transaction)
#   - the CPU time (user + system) of the devkit processes of each side: the
#     stations are STATIONS processes on the same cores, each with its own
#     start-up (the firmware measured, the key read, a connection opened)
#
#   - the server's CPU time over the PostgreSQL side (its processes, the
#     stations' sessions included once they have ended)
#   - how many of the machine's cores were busy during each side (/proc/stat:
#     server, emulators and stations together; near all of them means CPU-bound)
#   - with SESSIONS=1, the most server sessions the stations held at once
#     (sampled every 20 ms by psql, which adds load: not for the timed figures)
#
#   Scripts/bench-registry.sh                           # release build
#   STATIONS=2 BOARDS=4 RUNS=1 DEVKIT_BIN=.build/debug/devkit Scripts/bench-registry.sh
#
# Needs PostgreSQL's server binaries (Scripts/install-deps.sh installs them); the
# cluster is made in a temporary directory, started and removed by this script.
# As root the server runs as the postgres user (initdb refuses root).
set -euo pipefail
cd "$(dirname "$0")/.."

CONFIG=${CONFIG:-release}
STATIONS=${STATIONS:-4}
BOARDS=${BOARDS:-16}
RUNS=${RUNS:-3}
BAUD=${BAUD:-115200}

if [ -n "${DEVKIT_BIN:-}" ]; then
    BIN=$(realpath "$DEVKIT_BIN")
else
    flags=()
    if [ "$CONFIG" = release ]; then flags=(--static-swift-stdlib); fi
    swift build -c "$CONFIG" "${flags[@]}" >/dev/null
    BIN="$(swift build -c "$CONFIG" "${flags[@]}" --show-bin-path)/devkit"
fi

pgbin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
if [ -z "$pgbin" ] || [ ! -x "$pgbin/initdb" ]; then
    echo "bench-registry: PostgreSQL's server binaries are not installed; run Scripts/install-deps.sh" >&2
    exit 69
fi
as_server=()
if [ "$(id -u)" = 0 ]; then as_server=(/usr/sbin/runuser -u postgres --); fi

work=$(mktemp -d /tmp/devkit-bench-registry.XXXXXX)
chmod 755 "$work"
pids=()
stop_boards() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
    pids=()
}
cleanup() {
    stop_boards
    # Boards started in a command substitution's subshell are not in this shell's
    # list: a run cut short (a failed station, SIGPIPE) would leave them running.
    pkill -f -- "--link $work/" 2>/dev/null || true
    "${as_server[@]}" "$pgbin/pg_ctl" -D "$work/pg/data" -m fast -w stop >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT

# The server: its own directory (owned by postgres when root), loopback only.
mkdir -p "$work/pg"
if [ "$(id -u)" = 0 ]; then chown postgres: "$work/pg"; fi
port=$((50000 + RANDOM % 10000))
"${as_server[@]}" "$pgbin/initdb" -D "$work/pg/data" -U devkit --auth=trust -E UTF8 >/dev/null
"${as_server[@]}" "$pgbin/pg_ctl" -D "$work/pg/data" -l "$work/pg/server.log" -w -t 120 \
    -o "-k $work/pg -c listen_addresses=127.0.0.1 -p $port" start >/dev/null
psql() { "$pgbin/psql" -h 127.0.0.1 -p "$port" -U devkit -tA "$@"; }

"$BIN" registry keygen "$work/registry.key" >/dev/null
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
    "$BIN" emulate --link "$1" --mac "$2" --baud "$BAUD" > "$fifo" 2>> "$work/emulators.log" &
    pids+=($!)
    local line
    read -r line < "$fifo"
    rm -f "$fifo"
}

# Boards of run $1, side $2 (1: SQLite, 2: PostgreSQL, 3: the control): new MACs every time.
start_fleet() {
    local run=$1 side=$2 s b
    for s in $(seq 1 "$STATIONS"); do
        for b in $(seq 1 "$BOARDS"); do
            start_board "$work/tty$s.$b" "$(printf 'a4cf%02x%02x%02x%02x' "$side" "$run" "$s" "$b")"
        done
    done
}

ports_of() {
    local s=$1 b
    for b in $(seq 1 "$BOARDS"); do printf -- '--port\n%s\n' "$work/tty$s.$b"; done
}

# CPU seconds (user + system) of a command, appended to $work/cpu.$1 (GNU time).
cpu_of() {
    local side=$1
    shift
    if [ -x /usr/bin/time ]; then
        /usr/bin/time -f '%U %S' -a -o "$work/cpu.$side" "$@"
    else
        "$@"
    fi
}
# The whole machine's busy CPU time (every process: server, emulators, stations),
# from /proc/stat; `machine_busy START` prints the cores kept busy since START.
machine_stat() { awk '/^cpu / { print $2 + $3 + $4 + $7 + $8, $5 + $6 }' /proc/stat; }
machine_busy() {
    local b0 i0 b1 i1
    read -r b0 i0 <<< "$1"
    read -r b1 i1 < <(machine_stat)
    echo "$b0 $i0 $b1 $i1" | awk '{ printf "%.2f of %d cores busy", ($3 - $1) / ($3 - $1 + $4 - $2) * n, n }' n="$(grep -c '^cpu[0-9]' /proc/stat)"
}
# The server's CPU seconds so far: the postmaster, its live children (checkpointer,
# WAL writer, sessions still open) and the sessions it reaped (cutime/cstime).
server_cpu() {
    local pm ticks=0 p
    pm=$(head -n 1 "$work/pg/data/postmaster.pid")
    for p in "$pm" $(pgrep -P "$pm"); do
        # Fields 14-17 of /proc/PID/stat: utime stime cutime cstime (comm has no spaces here).
        ticks=$((ticks + $(awk '{ print $14 + $15 + $16 + $17 }' "/proc/$p/stat" 2>/dev/null || echo 0)))
    done
    echo "$ticks $(getconf CLK_TCK)" | awk '{ printf "%.2f", $1 / $2 }'
}
cpu_total() { [ -f "$work/cpu.$1" ] && awk '{ t += $1 + $2 } END { printf "%.2f", t }' "$work/cpu.$1" || echo "?"; }

# One station, every board, its own SQLite file; prints the wall time.
run_sqlite() {
    local run=$1 args=() s t0 t1
    start_fleet "$run" 1
    for s in $(seq 1 "$STATIONS"); do mapfile -t -O "${#args[@]}" args < <(ports_of "$s"); done
    local m0
    m0=$(machine_stat)
    t0=${EPOCHREALTIME/,/.}
    cpu_of "sqlite$run" "$BIN" watch --profile "$work/profile.toml" --registry "$work/sqlite$run.sqlite" --key-file "$work/registry.key" \
        "${args[@]}" 2> "$work/sqlite.log" \
        || { echo "SQLite run failed:" >&2; tail -n 20 "$work/sqlite.log" >&2; exit 1; }
    t1=${EPOCHREALTIME/,/.}
    machine_busy "$m0" > "$work/busy.sqlite$run"
    stop_boards
    echo "$t1 - $t0" | bc -l
}

# STATIONS `watch` processes at once, station s recording in registry $2 (`@S@` in
# it becomes s); their CPU time into cpu.$1, their stderr into $1.s.log. Fails when
# any station did, after saying which.
stations_at_once() {
    local name=$1 registry=$2 s failed=0 spids=()
    for s in $(seq 1 "$STATIONS"); do
        local args=()
        mapfile -t args < <(ports_of "$s")
        cpu_of "$name" "$BIN" watch --profile "$work/profile.toml" --registry "${registry//@S@/$s}" \
            --key-file "$work/registry.key" --station "station-$s" "${args[@]}" 2> "$work/$name.$s.log" &
        spids+=($!)
    done
    for s in "${!spids[@]}"; do
        wait "${spids[$s]}" || { failed=1; echo "$name: station $((s + 1)) failed:" >&2; tail -n 20 "$work/$name.$((s + 1)).log" >&2; }
    done
    return "$failed"
}

# The control: STATIONS watch processes at once as on the PostgreSQL side, each with
# its own SQLite file (no shared registry). What it adds to the one-station time is
# the cost of several processes on these cores, not of a shared registry.
run_split() {
    local run=$1 t0 t1 failed=0
    start_fleet "$run" 3
    t0=${EPOCHREALTIME/,/.}
    stations_at_once "split$run" "$work/split$run.@S@.sqlite" || failed=1
    t1=${EPOCHREALTIME/,/.}
    stop_boards
    [ "$failed" = 0 ] || exit 1
    echo "$t1 - $t0" | bc -l
}

# STATIONS watch processes at once, one shared database; prints "wall transactions".
run_postgres() {
    local run=$1 t0 t1 before after failed=0
    local db="bench$run"
    psql -d postgres -c "CREATE DATABASE $db" >/dev/null
    local url="postgresql://devkit@127.0.0.1:$port/$db?sslmode=disable"
    start_fleet "$run" 2
    # The schema first, so that the measured run is the stations' work alone.
    "$BIN" registry upgrade --registry "$url" --key-file "$work/registry.key" >/dev/null
    before=$(psql -d postgres -c "SELECT xact_commit FROM pg_stat_database WHERE datname = '$db'")
    local sampler=""
    if [ "${SESSIONS:-0}" = 1 ]; then
        : > "$work/sessions.$run"
        while :; do
            psql -d postgres -c "SELECT count(*) FROM pg_stat_activity WHERE datname = '$db'" >> "$work/sessions.$run" 2>/dev/null
            sleep 0.02
        done &
        sampler=$!
    fi
    local m0 c0
    m0=$(machine_stat)
    c0=$(server_cpu)
    t0=${EPOCHREALTIME/,/.}
    stations_at_once "pg$run" "$url" || failed=1
    t1=${EPOCHREALTIME/,/.}
    machine_busy "$m0" > "$work/busy.pg$run"
    # The stations' sessions have ended with them: reaped, so counted.
    echo "$(server_cpu) - $c0" | bc -l > "$work/server.pg$run"
    if [ -n "$sampler" ]; then
        kill "$sampler" 2>/dev/null; wait "$sampler" 2>/dev/null || true
        echo "run $run: at most $(sort -n "$work/sessions.$run" | tail -n 1) server sessions at once ($(wc -l < "$work/sessions.$run") samples)" >&2
    fi
    stop_boards
    [ "$failed" = 0 ] || exit 1
    # The statistics collector reports a moment later.
    sleep 1
    after=$(psql -d postgres -c "SELECT xact_commit FROM pg_stat_database WHERE datname = '$db'")
    local recorded
    recorded=$(psql -d "$db" -c "SELECT count(*) FROM board WHERE state = 'done'")
    if [ "$recorded" != $((STATIONS * BOARDS)) ]; then
        echo "PostgreSQL run recorded $recorded finished boards, not $((STATIONS * BOARDS))" >&2
        exit 1
    fi
    echo "$(echo "$t1 - $t0" | bc -l) $((after - before))"
}

median() { sort -g | awk '{ a[NR] = $1 } END { print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }

echo "bench-registry: $STATIONS stations x $BOARDS boards at $BAUD baud, $RUNS runs; $(uptime | sed 's/.*load/load/')"
sqlites=() pgs=() tps=() splits=()
for run in $(seq 1 "$RUNS"); do
    # Alternating sides, so a noisy moment hits both.
    s=$(run_sqlite "$run")
    read -r p x < <(run_postgres "$run")
    c=$(run_split "$run")
    t=$(echo "$x / $p" | bc -l)
    printf 'run %d: SQLite one station %.2f s, PostgreSQL %d stations %.2f s, ratio %.2f, %d transactions (%.0f/s); devkit CPU %s s vs %s s, server CPU %.2f s; machine %s vs %s\n' \
        "$run" "$s" "$STATIONS" "$p" "$(echo "$p / $s" | bc -l)" "$x" "$t" "$(cpu_total "sqlite$run")" "$(cpu_total "pg$run")" \
        "$(cat "$work/server.pg$run")" "$(cat "$work/busy.sqlite$run")" "$(cat "$work/busy.pg$run")"
    printf 'run %d, control: %d stations with a SQLite file each %.2f s (devkit CPU %s s): PostgreSQL over it %.2f\n' \
        "$run" "$STATIONS" "$c" "$(cpu_total "split$run")" "$(echo "$p / $c" | bc -l)"
    sqlites+=("$s") pgs+=("$p") tps+=("$t") splits+=("$c")
done
ms=$(printf '%s\n' "${sqlites[@]}" | median)
mp=$(printf '%s\n' "${pgs[@]}" | median)
mt=$(printf '%s\n' "${tps[@]}" | median)
mc=$(printf '%s\n' "${splits[@]}" | median)
printf 'median: SQLite %.2f s, PostgreSQL %.2f s, ratio %.2f (target <= 1.2), %.0f registry transactions/s on the server\n' \
    "$ms" "$mp" "$(echo "$mp / $ms" | bc -l)" "$mt"
printf 'median, control: %d stations with a SQLite file each %.2f s, %.2f x one station; PostgreSQL %.2f x it\n' \
    "$STATIONS" "$mc" "$(echo "$mc / $ms" | bc -l)" "$(echo "$mp / $mc" | bc -l)"
echo "load at the end: $(uptime | sed 's/.*load/load/')"
