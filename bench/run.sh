#!/bin/sh
# bench/run.sh - build Release in build-bench and run every benchmark.
#
#   bench/run.sh                 every bench_* target of bench/CMakeLists.txt
#   bench/run.sh bench_jobs ...  only these
#
# Extra arguments for one benchmark come from the environment, named after
# it in upper case: BENCH_JOBS_ARGS="--quick" for bench_jobs. Unset, they
# default to what BENCHMARKS.md's tables need (bench_jobs: --perf, which
# uses perf(1) when it is installed and allowed, and --sweep 1,4,8,16,4,8,16,4,8,16: each count but 1 three times, interleaved, judged by its median).
# BUILD_DIR (default build-bench) and JOBS (default 2) adjust the build.
#
# Benchmarks print figures; they are not tests. Each runs on its own, one
# after another (they measure the machine: never run two at once). The
# exit status is 0 only if every benchmark ran and exited 0.
set -u

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
build=${BUILD_DIR:-build-bench}
case $build in /*) ;; *) build="$root/$build" ;; esac
jobs=${JOBS:-2}

# Every add_executable(bench_<name> ...) of bench/CMakeLists.txt but
# bench_bare_grpc, which is not a benchmark: bench_jobs starts it as the
# bare gRPC peer its idle RSS is compared with.
all=$(sed -n 's/^[[:space:]]*add_executable([[:space:]]*\(bench_[A-Za-z0-9_]*\).*/\1/p' \
    "$here/CMakeLists.txt" | grep -vx bench_bare_grpc | sort -u)
if [ $# -gt 0 ]; then
    wanted="$*"
else
    wanted=$all
fi
if [ -z "$wanted" ]; then
    echo "bench/run.sh: no bench_* targets in bench/CMakeLists.txt" >&2
    exit 2
fi

echo "== configure + build Release in $build"
if ! cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release >/dev/null; then
    echo "bench/run.sh: cmake configure failed" >&2
    exit 1
fi
if ! cmake --build "$build" -j "$jobs" --target snailjob-lua; then
    echo "bench/run.sh: snailjob-lua does not build" >&2
    exit 1
fi
# One target at a time: a benchmark that does not build is reported and
# skipped, the others still run.
failed=""
built=""
for b in $wanted; do
    if cmake --build "$build" -j "$jobs" --target "$b"; then
        built="$built $b"
    else
        echo "bench/run.sh: $b does not build; skipped" >&2
        failed="$failed $b"
    fi
done

echo
echo "== machine: $(nproc) cpu(s), load average $(cut -d' ' -f1-3 /proc/loadavg)," \
     "$(uname -sr), $(date -u '+%Y-%m-%d %H:%M UTC')"
if git -C "$root" rev-parse --git-dir >/dev/null 2>&1; then
    echo "== source: $(git -C "$root" rev-parse --short HEAD)" \
         "$(git -C "$root" diff --quiet HEAD -- || echo '(working tree differs from HEAD)')"
else
    echo "== source: $root (not a git checkout)"
fi

for b in $built; do
    exe="$build/bench/$b"
    echo
    echo "== $b"
    if [ ! -x "$exe" ]; then
        echo "bench/run.sh: $exe was not built" >&2
        failed="$failed $b"
        continue
    fi
    var=$(echo "$b" | tr '[:lower:]' '[:upper:]')_ARGS
    case $b in
    bench_jobs) default="--perf --sweep 1,4,8,16,4,8,16,4,8,16" ;;
    *) default="" ;;
    esac
    eval "args=\${$var-\$default}"
    # shellcheck disable=SC2086,SC2154
    SJ_BINARY="$build/snailjob-lua" "$exe" $args
    rc=$?
    if [ $rc -ne 0 ]; then
        echo "bench/run.sh: $b exited with status $rc" >&2
        failed="$failed $b"
    fi
done

echo
if [ -n "$failed" ]; then
    echo "== failed:$failed"
    exit 1
fi
echo "== all benchmarks ran"
