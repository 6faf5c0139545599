#!/usr/bin/env bash
# Overlay benchmark (issue 6): reads of lower files and a tree walk of 10,000 lower files,
# through `local -> overlay` vs the same stack without the overlay (`local`), both against the
# raw folder. Prints one table with ratios and writes it as JSON next to it.
#
#   bench/overlay.sh [--build build] [--size-mib 512] [--files 10000] [--runs 3] [--out DIR]
#
# Cases, each the median of --runs:
#   read_cold   sequential read of the big lower file, 1 MiB blocks, page cache dropped, MB/s
#   read_warm   the same with the lower file in the page cache, on a fresh mount (so only the
#               FUSE and layer path is measured), MB/s
#   walk10k     fresh mount: list and stat every file of a 10,000-file lower tree
#               (find -type f -printf '%s'), seconds
# Run as root for read_cold (it drops the page cache); otherwise read_cold is skipped.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD="$ROOT/build"
SIZE_MIB=512
FILES=10000
RUNS=3
OUT="$ROOT/bench/results"
while (($#)); do
  case "$1" in
    --build) BUILD=$(cd "$2" && pwd); shift 2 ;;
    --size-mib) SIZE_MIB=$2; shift 2 ;;
    --files) FILES=$2; shift 2 ;;
    --runs) RUNS=$2; shift 2 ;;
    --out) OUT=$2; shift 2 ;;
    --quick) SIZE_MIB=64; FILES=2000; RUNS=1; shift ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
  esac
done
HFVFS="$BUILD/kernel/hfvfs"
[ -x "$HFVFS" ] || { echo "no $HFVFS: build the hfvfs target first" >&2; exit 1; }
for p in local overlay; do
  [ -f "$BUILD/plugins/libhfvfs-$p.so" ] || { echo "no libhfvfs-$p.so in $BUILD/plugins" >&2; exit 1; }
done

WORK=$(mktemp -d "${TMPDIR:-/var/tmp}/hfvfs-bench-overlay-XXXXXX")
MNT="$WORK/mnt"
export HFVFS_HOME="$WORK/home"
# Free page reporting off for the run (see bench/page_reporting.py), given back on exit.
PAGE_REPORTING=$(/usr/bin/python3 "$ROOT/bench/page_reporting.py" off)
cleanup() {
  /usr/bin/python3 "$ROOT/bench/page_reporting.py" restore "$PAGE_REPORTING"
  if grep -q " $MNT " /proc/self/mountinfo 2>/dev/null; then
    "$HFVFS" stop "$MNT" >/dev/null 2>&1 || fusermount3 -u "$MNT" 2>/dev/null || true
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT

log() { echo "[bench/overlay] $*" >&2; }

mkdir -p "$WORK/lower/tree" "$WORK/upper" "$MNT" "$OUT"
log "preparing a ${SIZE_MIB} MiB file and ${FILES} files in $WORK/lower"
dd if=/dev/urandom of="$WORK/lower/big.bin" bs=1M count="$SIZE_MIB" status=none
/usr/bin/python3 - "$WORK/lower/tree" "$FILES" <<'PY'
import os, sys
root, n = sys.argv[1], int(sys.argv[2])
per_dir = 100
for i in range(n):
    d = os.path.join(root, f"d{i // per_dir:03d}")
    if i % per_dir == 0:
        os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, f"f{i:05d}.bin"), "wb") as f:
        f.write(b"x" * (i % 4096))
PY
# The overlay's upper folder holds some files of its own, as in real use.
mkdir -p "$WORK/upper/tree/d000" && echo local > "$WORK/upper/tree/d000/local.txt"

cat > "$WORK/local.toml" <<TOML
[[layer]]
type = "local"
path = "$WORK/lower"
TOML
cat > "$WORK/overlay.toml" <<TOML
[[layer]]
type = "local"
path = "$WORK/lower"

[[layer]]
type = "overlay"
upper = "$WORK/upper"
TOML

CAN_DROP=0
if [ -w /proc/sys/vm/drop_caches ]; then CAN_DROP=1; fi
drop_caches() { sync; echo 3 > /proc/sys/vm/drop_caches; }

# Mounts a stack and sets DAEMON_PID (from "mounted ... (pid N; ...").
mount_stack() {
  local out
  out=$("$HFVFS" mount "$WORK/$1.toml" --mountpoint "$MNT")
  DAEMON_PID=$(echo "$out" | sed -n 's/.*(pid \([0-9]*\).*/\1/p')
}
# CPU time (ms) the mount daemon has used so far: utime + stime from /proc/PID/stat.
daemon_cpu_ms() {
  awk -v hz="$(getconf CLK_TCK)" '{print int(($14 + $15) * 1000 / hz)}' "/proc/$DAEMON_PID/stat"
}
unmount_stack() { "$HFVFS" stop "$MNT" >/dev/null; }

# read_mbps FILE: MB/s (10^6 bytes) of a sequential read with 1 MiB blocks.
read_mbps() {
  /usr/bin/python3 - "$1" <<'PY'
import sys, time
buf = bytearray(1 << 20); view = memoryview(buf); done = 0
t0 = time.perf_counter()
with open(sys.argv[1], "rb", buffering=0) as f:
    while True:
        n = f.readinto(view)
        if not n: break
        done += n
print(f"{done / (time.perf_counter() - t0) / 1e6:.1f}")
PY
}
# walk_s DIR: seconds to list and stat every file below DIR.
walk_s() {
  local t0 t1 n
  t0=$(date +%s.%N)
  n=$(find "$1" -type f -printf '%s\n' | wc -l)
  t1=$(date +%s.%N)
  [ "$n" -ge "$FILES" ] || { echo "walk of $1 saw $n files" >&2; exit 1; }
  echo "$t1 - $t0" | bc -l | xargs printf '%.3f\n'
}
median() { tr ' ' '\n' | grep . | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

# run CONTENDER CASE: one measurement. CONTENDER is raw, local or overlay. Appends the daemon's
# CPU milliseconds for the measurement to CPU[case,contender].
declare -A CPU
run() {
  local who=$1 what=$2 dir result cpu0=0
  if [ "$who" = raw ]; then dir="$WORK/lower"; else mount_stack "$who"; dir="$MNT"; fi
  case "$what" in
    read_cold) drop_caches ;;
    read_warm) cat "$WORK/lower/big.bin" > /dev/null ;;
    walk10k) find "$WORK/lower/tree" -type f -printf '%s\n' > /dev/null ;;
  esac
  [ "$who" = raw ] || cpu0=$(daemon_cpu_ms)
  case "$what" in
    read_cold | read_warm) result=$(read_mbps "$dir/big.bin") ;;
    walk10k) result=$(walk_s "$dir/tree") ;;
  esac
  if [ "$who" != raw ]; then
    CPU[$what,$who]+="$(($(daemon_cpu_ms) - cpu0)) "
    unmount_stack
  fi
  RESULT=$result
}

CASES=(read_warm walk10k)
if ((CAN_DROP)); then CASES=(read_cold "${CASES[@]}"); else log "not root: read_cold skipped"; fi
# Contenders take turns within each round, so a busy moment of the machine hits all of them.
declare -A R V C
for c in "${CASES[@]}"; do
  for ((i = 0; i < RUNS; i++)); do
    for who in raw local overlay; do
      run "$who" "$c"
      V[$c,$who]+="$RESULT "
    done
  done
  for who in raw local overlay; do
    R[$c,$who]=$(echo "${V[$c,$who]}" | median)
    log "$c $who: ${V[$c,$who]}-> ${R[$c,$who]}"
  done
  for who in local overlay; do
    C[$c,$who]=$(echo "${CPU[$c,$who]}" | median)
    log "$c $who daemon CPU ms: ${CPU[$c,$who]}-> ${C[$c,$who]}"
  done
done

# Ratios: for throughput, overlay/local and stack/raw (higher is better); for time, the
# overlay's slowdown over local and each over raw (lower is better).
stamp=$(date -u +%Y%m%dT%H%M%SZ)
{
  printf '\n%-10s %-6s %10s %10s %10s %14s %12s %12s\n' case unit raw local overlay "overlay/local" "local/raw" "overlay/raw"
  for c in "${CASES[@]}"; do
    unit=MB/s; [ "$c" = walk10k ] && unit=s
    printf '%-10s %-6s %10s %10s %10s %14s %12s %12s\n' "$c" "$unit" "${R[$c,raw]}" "${R[$c,local]}" "${R[$c,overlay]}" \
      "$(echo "${R[$c,overlay]} / ${R[$c,local]}" | bc -l | xargs printf '%.3f')" \
      "$(echo "${R[$c,local]} / ${R[$c,raw]}" | bc -l | xargs printf '%.3f')" \
      "$(echo "${R[$c,overlay]} / ${R[$c,raw]}" | bc -l | xargs printf '%.3f')"
  done
  printf '(%s MiB file, %s files, median of %s runs; walk10k is time: overlay/local > 1 is slower)\n' "$SIZE_MIB" "$FILES" "$RUNS"
  printf '\n%-10s %16s %16s %14s\n' case "local CPU ms" "overlay CPU ms" "overlay/local"
  for c in "${CASES[@]}"; do
    printf '%-10s %16s %16s %14s\n' "$c" "${C[$c,local]}" "${C[$c,overlay]}" \
      "$(echo "${C[$c,overlay]} / (${C[$c,local]} + 0.0001)" | bc -l | xargs printf '%.3f')"
  done
  printf '(CPU time of the mount daemon during the measurement: steadier than wall time on a busy machine)\n'
  printf 'load average at the end: %s\n' "$(cut -d' ' -f1-3 /proc/loadavg)"
} | tee "$OUT/overlay-$stamp.txt"
{
  echo "{\"size_mib\": $SIZE_MIB, \"files\": $FILES, \"runs\": $RUNS, \"results\": {"
  first=1
  for c in "${CASES[@]}"; do
    ((first)) || echo ","
    first=0
    printf '"%s": {"raw": %s, "local": %s, "overlay": %s, "local_cpu_ms": %s, "overlay_cpu_ms": %s}' \
      "$c" "${R[$c,raw]}" "${R[$c,local]}" "${R[$c,overlay]}" "${C[$c,local]}" "${C[$c,overlay]}"
  done
  echo "}}"
} > "$OUT/overlay-$stamp.json"
