#!/usr/bin/env bash
# bench/hub.sh: the hub source against the Hub emulator, side by side with curl (the raw limit).
#
#   bench/hub.sh [BUILD_DIR]        (default: build; needs the hub plugin and hub_bench built)
#
# Cases: sequential read of the 1 GiB file (MB/s) by a fresh mount with the file in the
# emulator's page cache (the network limit; a "FUSE ceiling" row reads the same file through
# FUSE from the local layer over tmpfs) and cold, with every page cache dropped (both read the
# emulator's disk; "cold" as bench/run and the issue mean it, so the 0.8x aim is this row's); 4 KiB
# random reads (p50/p99); time to first byte of a 1-byte read (ms and HTTP requests); a walk of
# the 10,000-file dataset (s); and peak RSS. "hfvfs" figures come from the FUSE mount when
# `hfvfs mount` is available, else from the plugin in-process (hub_bench, no FUSE): the table
# says which.
# Servers bind 127.0.0.1 and are stopped by PID.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=$(cd "${1:-$ROOT/build}" && pwd)
PY=/usr/bin/python3
FIXTURES=$BUILD/hub-fixtures
BENCH=$BUILD/plugins/hub/hub_bench
HFVFS=""
for c in "$BUILD/kernel/hfvfs" "$BUILD/hfvfs"; do [ -x "$c" ] && HFVFS=$c && break; done
WORK=$(mktemp -d /tmp/hfvfs-bench-hub.XXXXXX)
EMU_PID=""
MNT=""
MOUNT_PID=""
CEIL_DIR=""

# Free page reporting off for the run (see bench/page_reporting.py), given back on exit.
PAGE_REPORTING=$(/usr/bin/python3 "$ROOT/bench/page_reporting.py" off)
cleanup() {
  /usr/bin/python3 "$ROOT/bench/page_reporting.py" restore "$PAGE_REPORTING"
  if [ -n "$MOUNT_PID" ]; then
    kill -TERM "$MOUNT_PID" 2>/dev/null
    wait "$MOUNT_PID" 2>/dev/null
  fi
  if [ -n "$MNT" ] && mountpoint -q "$MNT" 2>/dev/null; then fusermount3 -u "$MNT" || true; fi
  [ -n "$EMU_PID" ] && kill "$EMU_PID" 2>/dev/null && wait "$EMU_PID" 2>/dev/null || true
  rm -rf "$WORK"
  [ -n "$CEIL_DIR" ] && rm -rf "$CEIL_DIR"
}
trap cleanup EXIT

[ -x "$BENCH" ] || { echo "bench/hub.sh: $BENCH is not built (cmake --build $BUILD --target hub_bench)" >&2; exit 1; }

echo "[hub] fixtures (1 GiB file on first use)..." >&2
$PY "$ROOT/tests/support/make_hub_fixtures.py" --out "$FIXTURES" --big >/dev/null
$PY "$ROOT/tests/support/hub_emulator.py" --fixtures "$FIXTURES" >"$WORK/ready" 2>"$WORK/emu.log" &
EMU_PID=$!
for _ in $(seq 100); do [ -s "$WORK/ready" ] && break; sleep 0.1; done
PORT=$($PY -c "import json,sys;print(json.load(open(sys.argv[1]))['port'])" "$WORK/ready")
EP="http://127.0.0.1:$PORT"
BIG_URL="$EP/hfvfs-test/big-file/resolve/main/big.dat"
BIG_FILE=$(ls -d "$FIXTURES"/repos/models/hfvfs-test/big-file/commits/*/files/big.dat | head -1)
SIZE=$(stat -c %s "$BIG_FILE")

median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

# ---- curl: the raw limit -------------------------------------------------------------------
curl -s -L -o /dev/null "$BIG_URL"  # warms the server's page cache
curl_seq() { curl -s -L -o /dev/null -w '%{speed_download}\n' "$BIG_URL" | awk '{print $1/1e6}'; }
CURL_RUNS=()
for _ in 1 2 3; do CURL_RUNS+=("$(curl_seq)"); done
CURL_SEQ=$(printf '%s\n' "${CURL_RUNS[@]}" | median)
CDN_URL=$(curl -s -o /dev/null -w '%{redirect_url}' "$BIG_URL")
CURL_RAND=$($PY - "$CDN_URL" "$SIZE" <<'EOF'
import random, subprocess, sys
url, size = sys.argv[1], int(sys.argv[2])
random.seed(7)
ts = []
for _ in range(50):
    off = random.randrange(size // 4096) * 4096
    out = subprocess.run(["curl", "-s", "-o", "/dev/null", "-r", f"{off}-{off + 4095}", "-w",
                          "%{time_total}", url], capture_output=True, text=True).stdout
    ts.append(float(out) * 1e6)
ts.sort()
print(f"{ts[len(ts) // 2]:.0f} {ts[len(ts) * 99 // 100]:.0f}")
EOF
)
CURL_TTFB=$(for _ in 1 2 3; do curl -s -L -o /dev/null -r 0-0 -w '%{time_starttransfer}\n' "$BIG_URL"; done |
  awk '{print $1*1000}' | median)

# ---- hfvfs ---------------------------------------------------------------------------------
MODE="in-process (plugin, no FUSE)"
jget() { $PY -c "import json,sys;print(json.loads(sys.argv[1])[sys.argv[2]])" "$1" "$2"; }
SEQ_JSON=""
for _ in 1 2 3; do
  J=$("$BENCH" --endpoint "$EP" --repo hfvfs-test/big-file --mode seq --file big.dat)
  SEQ_JSON="$SEQ_JSON$J"$'\n'
done
HUB_SEQ=$(echo -n "$SEQ_JSON" | while read -r l; do jget "$l" mb_s; done | median)
HUB_RSS=$(echo -n "$SEQ_JSON" | while read -r l; do jget "$l" peak_rss_mib; done | sort -g | tail -1)
HUB_SEQ_REQ=$(jget "$(echo -n "$SEQ_JSON" | head -1)" requests)
HUB_CPU=$(echo -n "$SEQ_JSON" | while read -r l; do jget "$l" cpu_seconds; done | median)
R=$("$BENCH" --endpoint "$EP" --repo hfvfs-test/big-file --mode rand --file big.dat --count 400)
HUB_P50=$(jget "$R" p50_us)
HUB_P99=$(jget "$R" p99_us)
TT=()
for _ in 1 2 3; do TT+=("$("$BENCH" --endpoint "$EP" --repo hfvfs-test/big-file --mode ttfb --file big.dat)"); done
HUB_TTFB=$(for t in "${TT[@]}"; do jget "$t" ms; done | median)
HUB_TTFB_REQ=$(for t in "${TT[@]}"; do jget "$t" requests; done | sort -g | tail -1)
W=$("$BENCH" --endpoint "$EP" --repo datasets/hfvfs-test/many-files --mode walk)
HUB_WALK=$(jget "$W" seconds)
HUB_WALK_FILES=$(jget "$W" files)
HUB_WALK_REQ=$(jget "$W" requests)

HUB_SEQ_INPROC=$HUB_SEQ
HUB_RSS_INPROC=$HUB_RSS
if [ -n "$HFVFS" ] && [ -f "$BUILD/plugins/libhfvfs-hub.so" ] && [ -e /dev/fuse ]; then
  MODE="through the FUSE mount ($HFVFS mount -f)"
  MNT=$WORK/mnt
  mkdir -p "$MNT" "$WORK/home"
  mount_repo() {  # $1 = repo; the daemon runs in the foreground as our child: we know its PID
    printf '[[layer]]\ntype = "hub"\nrepo = "%s"\nendpoint = "%s"\n' "$1" "$EP" >"$WORK/spec.toml"
    mount_spec
  }
  mount_spec() {  # mounts $WORK/spec.toml on $MNT
    HFVFS_HOME=$WORK/home HF_TOKEN='' "$HFVFS" mount -f "$WORK/spec.toml" --mountpoint "$MNT" \
      >>"$WORK/mount.log" 2>&1 &
    MOUNT_PID=$!
    for _ in $(seq 200); do mountpoint -q "$MNT" && return 0; sleep 0.05; done
    echo "bench/hub.sh: the mount did not come up; log:" >&2
    cat "$WORK/mount.log" >&2
    exit 1
  }
  unmount_repo() {
    kill -TERM "$MOUNT_PID" 2>/dev/null || true
    wait "$MOUNT_PID" 2>/dev/null || true
    MOUNT_PID=""
  }
  stat_requests() {  # $1 = which ports: hub or all
    curl -s "$EP/_emulator/stats" | $PY -c "
import json, sys
r = json.load(sys.stdin)['requests']
print(r['hub'] if sys.argv[1] == 'hub' else r['hub'] + r['cdn'])" "$1"
  }
  seq_read() {  # $1 = file: MB/s of one sequential pass with 1 MiB reads
    $PY - "$1" <<'EOF'
import os, sys, time
fd = os.open(sys.argv[1], os.O_RDONLY)
t = time.perf_counter(); n = 0
while True:
    b = os.read(fd, 1 << 20)
    if not b: break
    n += len(b)
print(n / (time.perf_counter() - t) / 1e6)
EOF
  }
  # The FUSE ceiling of this machine, measured in the same rounds: the same bytes served by the
  # `local` layer from tmpfs, so the daemon only copies memory into its replies (no network,
  # no disk). No source can go faster through FUSE here; the row shows how much of the curl
  # limit FUSE itself leaves.
  CEIL_DIR=$(mktemp -d /dev/shm/hfvfs-bench-hub.XXXXXX)
  cp "$BIG_FILE" "$CEIL_DIR/big.dat"
  C=()
  S=()
  CPUS=()
  HUB_RSS=0
  for _ in 1 2 3; do
    printf '[[layer]]\ntype = "local"\npath = "%s"\n' "$CEIL_DIR" >"$WORK/spec.toml"
    mount_spec
    C+=("$(seq_read "$MNT/big.dat")")
    unmount_repo
    CURL_RUNS+=("$(curl_seq)")
    mount_repo hfvfs-test/big-file
    curl -s -X POST "$EP/_emulator/reset" >/dev/null
    CPU0=$(awk '{print $14 + $15}' "/proc/$MOUNT_PID/stat")
    S+=("$(seq_read "$MNT/big.dat")")
    # The daemon's CPU time for the read (clock ticks): steadier than MB/s on a busy machine.
    CPUS+=("$(awk -v c="$CPU0" -v hz="$(getconf CLK_TCK)" -v size="$SIZE" \
      '{printf "%.3f", ($14 + $15 - c) / hz * 1073741824 / size}' "/proc/$MOUNT_PID/stat")")
    HUB_SEQ_REQ=$(stat_requests all)
    R=$(awk '/VmHWM/ {print $2/1024}' "/proc/$MOUNT_PID/status")
    HUB_RSS=$(printf '%s\n%s\n' "$R" "$HUB_RSS" | sort -g | tail -1)
    unmount_repo
  done
  HUB_SEQ=$(printf '%s\n' "${S[@]}" | median)
  HUB_FUSE_CPU=$(printf '%s\n' "${CPUS[@]}" | median)
  FUSE_CEIL=$(printf '%s\n' "${C[@]}" | median)
  CURL_SEQ=$(printf '%s\n' "${CURL_RUNS[@]}" | median)  # the limit over all six rounds
  rm -rf "$CEIL_DIR"
  CEIL_DIR=""
  # "Cold" as bench/run means it: every page cache dropped, the server's too, so both curl
  # and the mount read the file from the emulator's disk (root only).
  if [ -w /proc/sys/vm/drop_caches ]; then
    drop_caches() { sync; echo 3 >/proc/sys/vm/drop_caches; }
    DC=()
    DH=()
    for _ in 1 2 3; do
      drop_caches
      DC+=("$(curl_seq)")
      mount_repo hfvfs-test/big-file
      drop_caches
      DH+=("$(seq_read "$MNT/big.dat")")
      unmount_repo
    done
    CURL_DROPPED=$(printf '%s\n' "${DC[@]}" | median)
    HUB_DROPPED=$(printf '%s\n' "${DH[@]}" | median)
  fi
  TT=()
  for _ in 1 2 3; do
    mount_repo hfvfs-test/big-file
    curl -s -X POST "$EP/_emulator/reset" >/dev/null
    TT+=("$($PY - "$MNT/big.dat" <<'EOF'
import os, sys, time
t = time.perf_counter()
fd = os.open(sys.argv[1], os.O_RDONLY)
os.pread(fd, 1, 0)
print(f"{(time.perf_counter() - t) * 1000:.3f}")
EOF
)")
    HUB_TTFB_REQ=$(stat_requests all)
    unmount_repo
  done
  HUB_TTFB=$(printf '%s\n' "${TT[@]}" | median)
  mount_repo hfvfs-test/big-file
  read -r HUB_P50 HUB_P99 < <($PY - "$MNT/big.dat" "$SIZE" <<'EOF'
import os, random, sys, time
fd = os.open(sys.argv[1], os.O_RDONLY); size = int(sys.argv[2])
os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_RANDOM)
os.pread(fd, 4096, 0)
random.seed(11); ts = []
for _ in range(400):
    off = random.randrange(size // 4096) * 4096
    t = time.perf_counter(); os.pread(fd, 4096, off); ts.append((time.perf_counter() - t) * 1e6)
ts.sort(); print(f"{ts[len(ts) // 2]:.0f} {ts[len(ts) * 99 // 100]:.0f}")
EOF
)
  unmount_repo
  mount_repo datasets/hfvfs-test/many-files
  curl -s -X POST "$EP/_emulator/reset" >/dev/null
  T0=$(date +%s.%N)
  ls -R "$MNT" >"$WORK/ls.txt"
  HUB_WALK=$(awk -v a="$T0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.3f", b - a }')
  HUB_WALK_FILES=$(find "$MNT" -type f | wc -l)
  HUB_WALK_REQ=$(stat_requests hub)
  unmount_repo
fi

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2fx", a / b; else print "n/a" }'; }
CURL_P50=${CURL_RAND% *}
CURL_P99=${CURL_RAND#* }
echo
echo "hub bench: 1 GiB file, emulator on loopback; hfvfs measured $MODE"
echo "(curl's random and TTFB figures are one curl process per request: a new connection each)"
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg) on $(nproc) cores"
echo "curl runs, MB/s: $(printf '%.0f ' "${CURL_RUNS[@]}")"
printf '%-34s %14s %14s %10s %s\n' case curl hfvfs ratio aim
# The issue's aim is for a cold read (bench/run's meaning: every page cache dropped); without
# root the caches cannot be dropped and the warm-server row carries it.
printf '%-34s %14.0f %14.0f %10s %s\n' "seq read, server cache warm, MB/s" "$CURL_SEQ" "$HUB_SEQ" "$(ratio "$HUB_SEQ" "$CURL_SEQ")" "$([ -n "${HUB_DROPPED:-}" ] || echo ">= 0.8x")"
if [ -n "${FUSE_CEIL:-}" ]; then
  printf '%-34s %14.0f %14.0f %10s %s\n' "  FUSE ceiling: local over tmpfs" "$CURL_SEQ" "$FUSE_CEIL" "$(ratio "$FUSE_CEIL" "$CURL_SEQ")" ""
  printf '%-34s %14s %14s %10s %s\n' "  hfvfs hub / FUSE ceiling" "" "" "$(ratio "$HUB_SEQ" "$FUSE_CEIL")" ""
fi
if [ -n "${HUB_DROPPED:-}" ]; then
  printf '%-34s %14.0f %14.0f %10s %s\n' "seq cold read (caches dropped)" "$CURL_DROPPED" "$HUB_DROPPED" "$(ratio "$HUB_DROPPED" "$CURL_DROPPED")" ">= 0.8x"
fi
printf '%-34s %14.0f %14.0f %10s %s\n' "  same, in-process (no FUSE)" "$CURL_SEQ" "$HUB_SEQ_INPROC" "$(ratio "$HUB_SEQ_INPROC" "$CURL_SEQ")" ""
printf '%-34s %14s %14s %10s %s\n' "  CPU seconds per GiB, in-process" "-" "$HUB_CPU" "" ""
printf '%-34s %14s %14s %10s %s\n' "  CPU s per GiB, FUSE daemon" "-" "${HUB_FUSE_CPU:--}" "" ""
printf '%-34s %14s %14s %10s %s\n' "4 KiB random read p50, us" "$CURL_P50" "$HUB_P50" "$(ratio "$HUB_P50" "$CURL_P50")" "<= 2x"
printf '%-34s %14s %14s %10s %s\n' "4 KiB random read p99, us" "$CURL_P99" "$HUB_P99" "$(ratio "$HUB_P99" "$CURL_P99")" ""
printf '%-34s %14.2f %14.2f %10s %s\n' "TTFB 1-byte read, ms" "$CURL_TTFB" "$HUB_TTFB" "$(ratio "$HUB_TTFB" "$CURL_TTFB")" ""
printf '%-34s %14s %14s %10s %s\n' "TTFB requests" "2" "$HUB_TTFB_REQ" "" "<= 2"
printf '%-34s %14s %14s %10s %s\n' "walk 10k files ($HUB_WALK_FILES), s" "-" "$HUB_WALK" "" "< 1.5 s"
printf '%-34s %14s %14s %10s %s\n' "walk requests" "-" "$HUB_WALK_REQ" "" ""
printf '%-34s %14s %14s %10s %s\n' "peak RSS during seq, MiB" "-" "$(printf %.1f "$HUB_RSS")" "" "< 100"
printf '%-34s %14s %14s %10s %s\n' "  same, in-process (no FUSE)" "-" "$HUB_RSS_INPROC" "" ""
printf '%-34s %14s %14s %10s %s\n' "requests for the seq read" "2" "$HUB_SEQ_REQ" "" ""
