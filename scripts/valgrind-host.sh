#!/usr/bin/env bash
# Run the host under valgrind against the emulator: start, register, run a
# cluster job and a MapReduce, shut down on SIGTERM; then `run` a MapReduce
# locally. Fails on any memory error or definite/indirect leak.
# Usage: scripts/valgrind-host.sh BUILD_DIR
set -euo pipefail
cd "$(dirname "$0")/.."
build="${1:-build}"
command -v valgrind >/dev/null || {
    echo "valgrind-host: valgrind is not installed; skipped" >&2
    exit 0
}
work=$(mktemp -d /tmp/sj-valgrind-XXXXXX)
trap 'kill $emu_pid $host_pid 2>/dev/null || true; exec 3>&- || true; rm -rf "$work"' EXIT

mkfifo "$work/cmd"
"$build/snailjob-emu" --listen 127.0.0.1:0 <"$work/cmd" >"$work/emu.out" 2>&1 &
emu_pid=$!
exec 3>"$work/cmd"
for _ in $(seq 100); do
    grep -q '^LISTENING' "$work/emu.out" && break
    sleep 0.1
done
port=$(awk '/^LISTENING/ {print $2; exit}' "$work/emu.out")
[ -n "$port" ] || { echo "valgrind-host: emulator did not start"; exit 1; }

SNAIL_SERVER_PORT=$port SNAIL_HOST_PORT=0 SNAIL_EXECUTORS=examples \
SNAIL_BEAT_INTERVAL=1 SNAIL_SPOOL_DIR="$work/spool" SNAIL_WORKERS=2 \
valgrind -q --error-exitcode=99 --leak-check=full \
    --errors-for-leak-kinds=definite,indirect \
    --suppressions=.ci/valgrind.supp --log-file="$work/valgrind.log" \
    "$build/snailjob-lua" >"$work/host.log" 2>&1 &
host_pid=$!

for _ in $(seq 300); do
    grep -q 'REQ /beat' "$work/emu.out" && break
    sleep 0.1
done
sleep 1.5 # the emulator applies beats; the node becomes dispatchable
echo "trigger cluster testShardingJobExecutor valgrind" >&3
echo 'trigger mapreduce testMapReduceJobExecutor {"shardNum":2,"argsStr":""}' >&3
for _ in $(seq 600); do
    [ "$(grep -c 'REQ /report/dispatch/result' "$work/emu.out")" -ge 11 ] && break
    sleep 0.1
done
results=$(grep -c 'REQ /report/dispatch/result' "$work/emu.out" || true)
kill -TERM $host_pid
rc=0
wait $host_pid || rc=$?
host_pid=
cat "$work/valgrind.log"
if [ "$results" -lt 11 ]; then
    echo "valgrind-host: only $results of 11 results reported"; tail -20 "$work/host.log"; exit 1
fi
if [ "$rc" -ne 0 ]; then
    echo "valgrind-host: host exited with $rc"; tail -20 "$work/host.log"; exit 1
fi
echo "valgrind-host: clean (11 results reported, exit 0, no errors or leaks)"

# The local run: the embedded server, the same pool and upstream, no network.
rc=0
SNAIL_EXECUTORS=examples SNAIL_WORKERS=2 \
valgrind -q --error-exitcode=99 --leak-check=full \
    --errors-for-leak-kinds=definite,indirect \
    --suppressions=.ci/valgrind.supp --log-file="$work/valgrind-run.log" \
    "$build/snailjob-lua" run testMapReduceJobExecutor --shards 2 --json \
    >"$work/run.json" 2>"$work/run.err" || rc=$?
cat "$work/valgrind-run.log"
if [ "$rc" -ne 0 ] || ! grep -q '"result": *"42"' "$work/run.json"; then
    echo "valgrind-host: run exited $rc"; cat "$work/run.err"; head -c 600 "$work/run.json"; exit 1
fi
echo "valgrind-host: run clean (MapReduce result 42, exit 0, no errors or leaks)"
