#!/usr/bin/env bash
# The main job on an embedded default: set up, build, then run every seed
# example of examples/ through `snailjob-lua run` -- no SnailJob server, no
# database, no JVM -- and end with a summary. Usage: scripts/demo.sh
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh build
bin=build/snailjob-lua
export SNAIL_EXECUTORS=examples SNAIL_LOG_LEVEL=WARN

summary=()
# demo NAME EXPECT -- ARGS...: run one example, check its final status.
demo() {
    local title=$1 expect=$2
    shift 3
    printf '\n=== %s: snailjob-lua run %s\n' "$title" "$*"
    local rc=0 out
    out=$(mktemp)
    "$bin" run "$@" | tee "$out" || rc=${PIPESTATUS[0]}
    # "status    SUCCESS in 0.02 s" / "result    42" from the report above
    local got
    got="$(awk '/^status /{sub(/^status +/, ""); print; exit}' "$out"), result $(awk '/^result /{sub(/^result +/, ""); print; exit}' "$out")"
    rm -f "$out"
    if { [ "$expect" = ok ] && [ "$rc" -eq 0 ]; } ||
       { [ "$expect" = fail ] && [ "$rc" -ne 0 ]; }; then
        summary+=("ok    $title: $got")
    else
        summary+=("WRONG $title: $got (exit $rc)")
    fi
}

demo "cluster job (3 steps)"   ok   -- testJobExecutor --params 3
demo "static sharding"         ok   -- testShardingJobExecutor --type sharding --params '["north","south","east"]'
demo "workflow context"        ok   -- testWorkflowExecutor --wf-context '{"orders":3}'
demo "Map"                     ok   -- testMyMapExecutor
demo "MapReduce (sum is 42)"   ok   -- testMapReduceJobExecutor --shards 2
demo "a failing executor"      fail -- testJobExecutorFailed
demo "stop: timeout after 3 s" fail -- testJobExecutor --timeout 3
demo "a command (df -h /)"     ok   -- commandJob --params 'df -h /'
# The HTTP example needs a URL this machine can reach; the demo does not
# assume network access.
printf '\n=== an HTTP job: skipped (it needs a reachable URL; try: %s run httpCheckJob --params https://example.com/)\n' "$bin"
summary+=("skip  an HTTP job: needs a reachable URL (examples/http.lua)")

printf '\n=== summary\n'
printf '%s\n' "${summary[@]}"
if printf '%s\n' "${summary[@]}" | grep -q '^WRONG'; then
    exit 1
fi
