#!/usr/bin/env bash
# Fuzz the places where untrusted bytes enter C with libFuzzer (clang),
# under ASan + UBSan, SECONDS each (default 30), starting from the seed
# corpora of tests/fuzz/corpus. Crashes are left in build-fuzz/crash-*.
# Usage: scripts/fuzz.sh [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-30}"
missing=()
for p in clang libclang-rt-dev; do # the compiler and libFuzzer
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" ||
        missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
    echo "fuzz: installing ${missing[*]}"
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq \
        --no-install-recommends "${missing[@]}" >/dev/null
fi
cc=$(command -v clang || command -v clang-14)
scripts/setup.sh build-fuzz -DCMAKE_C_COMPILER="$cc" -DSJ_FUZZ=ON \
    -DSJ_SANITIZE=address,undefined -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    >/dev/null
for t in codec endpoint luajson logrec task; do
    work="build-fuzz/corpus-$t"
    rm -rf "$work"
    mkdir -p "$work"
    cp tests/fuzz/corpus/$t/* "$work/"
    echo "fuzz: $t for ${secs}s"
    (cd build-fuzz && SNAIL_LOG_LEVEL=OFF \
        ./tests/fuzz/fuzz_$t -max_total_time="$secs" -max_len=65536 \
        $([ -f "../tests/fuzz/$t.dict" ] && echo "-dict=../tests/fuzz/$t.dict") \
        -print_final_stats=1 "corpus-$t" 2>&1 | grep -E 'stat::number_of_executed_units|stat::peak_rss|ERROR|SUMMARY|Done' || true)
    if ls build-fuzz/crash-* >/dev/null 2>&1; then
        echo "fuzz: $t found a crash:"; ls build-fuzz/crash-*; exit 1
    fi
done
echo "fuzz: no crashes"
