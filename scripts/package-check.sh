#!/usr/bin/env bash
# Build the .deb, install it with dpkg -i, verify the systemd unit, and run
# the installed binary: `check` against an emulator started for the purpose
# (it must leave no node behind) and `run` of an installed example.
# Needs root or sudo (dpkg -i). Usage: scripts/package-check.sh
set -euo pipefail
cd "$(dirname "$0")/.."
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"

# A tree configured for /usr: the unit names /usr/bin/snailjob-lua, the
# sample config lands in /etc/snailjob-lua. Only the two programs are built.
cmake -S . -B build-deb -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DCMAKE_INSTALL_PREFIX=/usr -DCMAKE_SKIP_INSTALL_ALL_DEPENDENCY=ON \
    >/dev/null
cmake --build build-deb -j"$(nproc)" --target snailjob-lua snailjob-emu
(cd build-deb && cpack -G DEB >/dev/null)
deb=$(ls build-deb/snailjob-lua_*_*.deb)
echo "package: $deb"
dpkg-deb -f "$deb" Depends
dpkg-deb -f "$deb" Depends | grep -q libmicrohttpd
$sudo dpkg -i "$deb"
for f in /usr/bin/snailjob-lua /usr/share/man/man1/snailjob-lua.1 \
    /etc/snailjob-lua/snailjob.conf.lua /etc/logrotate.d/snailjob-lua \
    /usr/lib/systemd/system/snailjob-lua.service \
    /usr/share/doc/snailjob-lua/examples/jobs.lua \
    /usr/share/doc/snailjob-lua/lua-api.md; do
    test -e "$f" || { echo "package-check: $f not installed"; exit 1; }
done
# Documentation=man: is checked only where man-db is installed.
man_opt=--man=no
command -v man >/dev/null 2>&1 && man_opt=--man=yes
systemd-analyze verify "$man_opt" /usr/lib/systemd/system/snailjob-lua.service

# The sample config parses, and shows the token masked only.
/usr/bin/snailjob-lua -c /etc/snailjob-lua/snailjob.conf.lua --print-config \
    | grep -q 'SNAIL_TOKEN *SJ_W'

work=$(mktemp -d)
emu_out="$work/emu.out"
build-deb/snailjob-emu --listen 127.0.0.1:0 --token SJ_PackageCheckToken_42 \
    >"$emu_out" 2>&1 </dev/null &
emu=$!
trap 'kill $emu 2>/dev/null || true; rm -rf "$work"' EXIT
for _ in $(seq 100); do
    grep -q '^LISTENING' "$emu_out" && break
    sleep 0.1
done
port=$(awk '/^LISTENING/ {print $2}' "$emu_out")
[ -n "$port" ] || { echo "package-check: the emulator did not start"; exit 1; }

cd "$work"
export SNAIL_SERVER_PORT="$port" SNAIL_TOKEN=SJ_PackageCheckToken_42 \
    SNAIL_EXECUTORS=/usr/share/doc/snailjob-lua/examples/jobs.lua
/usr/bin/snailjob-lua check | tee check.out
grep -q "token accepted" check.out
! grep -q SJ_PackageCheckToken_42 check.out
if grep -q '^REQ /beat' "$emu_out"; then
    echo "package-check: check sent a heartbeat (it must register nothing)"
    exit 1
fi
/usr/bin/snailjob-lua run testJobExecutor --params 1 | tee run.out
grep -q "SUCCESS" run.out
echo "package-check: ok"
