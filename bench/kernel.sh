#!/usr/bin/env bash
# bench/kernel.sh: the kernel's overhead, a `local` stack against the same folder read directly.
#
#   bench/kernel.sh [BUILD_DIR] [SIZE_MIB] [FILES]     (defaults: build 1024 10000)
#
# Cases (same data, same tool, one after the other):
#   seq read warm    dd bs=1M of a SIZE_MIB file, page cache warm (best of 3)        MiB/s
#   seq read cold    the same after dropping the page cache (echo 3 > drop_caches)   MiB/s
#   ls -lR           over a FILES-file tree (100 files per folder), fresh mount      s
#   find             `find -type f | wc -l` over the same tree, right after          s
#   ls -lR warm      ls -lR again (kernel and VFS caches warm)                        s
# Each case is run three times and the best is kept (the machine may be busy).
# Ratios: hfvfs throughput / direct throughput, hfvfs time / direct time.
# Needs root for drop_caches (the cold row says n/a otherwise). Everything lives in a temporary
# folder removed at the end; the mount is stopped by its mountpoint (`hfvfs stop`).
set -euo pipefail

build=${1:-build}
size_mib=${2:-1024}
files=${3:-10000}
hfvfs="$build/kernel/hfvfs"
[ -x "$hfvfs" ] || { echo "no $hfvfs: build first (cmake --build $build --target hfvfs hfvfs_plugin_local)" >&2; exit 1; }
[ -f "$build/plugins/libhfvfs-local.so" ] || { echo "no local plugin in $build/plugins" >&2; exit 1; }

work=$(mktemp -d /tmp/hfvfs-bench-kernel-XXXXXX)
src="$work/src"
mnt="$work/mnt"
export HFVFS_HOME="$work/home"
mkdir -p "$src" "$mnt"
# Free page reporting off for the run (see bench/page_reporting.py), given back on exit.
page_reporting=$(/usr/bin/python3 "$(dirname "$0")/page_reporting.py" off)
cleanup() {
  /usr/bin/python3 "$(dirname "$0")/page_reporting.py" restore "$page_reporting"
  if mountpoint -q "$mnt" 2>/dev/null; then "$hfvfs" stop "$mnt" >/dev/null || true; fi
  mountpoint -q "$mnt" 2>/dev/null || rm -rf "$work"
}
trap cleanup EXIT

can_drop=0
if [ -w /proc/sys/vm/drop_caches ]; then can_drop=1; fi
drop_caches() { sync; echo 3 >/proc/sys/vm/drop_caches; }

now() { date +%s.%N; }
# Seconds taken by a command, its output discarded.
timed() {
  local start end
  start=$(now)
  "$@" >/dev/null 2>&1
  end=$(now)
  echo "$end - $start" | bc -l
}
rate() { printf '%.0f' "$(echo "$size_mib / $1" | bc -l)"; }
# The best of three runs of a command (seconds): warm cases vary with the machine's load.
best_of_3() {
  local best="" t
  for _ in 1 2 3; do
    t=$(timed "$@")
    if [ -z "$best" ] || [ "$(echo "$t < $best" | bc -l)" = 1 ]; then best=$t; fi
  done
  echo "$best"
}

echo "preparing: a $size_mib MiB file and a $files-file tree in $src" >&2
dd if=/dev/urandom of="$src/big.bin" bs=1M count="$size_mib" status=none
dirs=$(((files + 99) / 100))
for d in $(seq 1 "$dirs"); do
  mkdir -p "$src/tree/d$d"
  for f in $(seq 1 100); do
    [ $(((d - 1) * 100 + f)) -le "$files" ] || break
    : >"$src/tree/d$d/f$f"
  done
done

cat >"$work/spec.toml" <<EOF
mountpoint = "$mnt"
[[layer]]
type = "local"
path = "$src"
EOF

mount_stack() { "$hfvfs" mount "$work/spec.toml" >/dev/null; }
unmount_stack() { "$hfvfs" stop "$mnt" >/dev/null; }

read_file() { dd if="$1" of=/dev/null bs=1M status=none; }

# Every case runs three times and keeps the best: the machine may be shared and busy.
min3() { printf '%s\n' "$@" | sort -g | head -1; }

# --- sequential read ---
mount_stack
read_file "$src/big.bin"
read_file "$mnt/big.bin"
direct_warm=$(best_of_3 read_file "$src/big.bin")
hfvfs_warm=$(best_of_3 read_file "$mnt/big.bin")
if [ $can_drop = 1 ]; then
  d=() h=()
  for _ in 1 2 3; do
    drop_caches
    d+=("$(timed read_file "$src/big.bin")")
    drop_caches
    h+=("$(timed read_file "$mnt/big.bin")")
  done
  direct_cold=$(min3 "${d[@]}")
  hfvfs_cold=$(min3 "${h[@]}")
fi
unmount_stack

# --- tree walks: source metadata warm in both cases; a fresh mount for each hfvfs round ---
ls -lR "$src/tree" >/dev/null
dl=() df=() dl2=() hl=() hf=() hl2=()
for _ in 1 2 3; do
  dl+=("$(timed ls -lR "$src/tree")")
  df+=("$(timed sh -c "find '$src/tree' -type f | wc -l")")
  dl2+=("$(timed ls -lR "$src/tree")")
  mount_stack
  hl+=("$(timed ls -lR "$mnt/tree")")
  hf+=("$(timed sh -c "find '$mnt/tree' -type f | wc -l")")
  hl2+=("$(timed ls -lR "$mnt/tree")")
  count=$(find "$mnt/tree" -type f | wc -l)
  unmount_stack
  [ "$count" -eq "$files" ] || { echo "the mount showed $count files, expected $files" >&2; exit 1; }
done
direct_ls=$(min3 "${dl[@]}") direct_find=$(min3 "${df[@]}") direct_ls2=$(min3 "${dl2[@]}")
hfvfs_ls=$(min3 "${hl[@]}") hfvfs_find=$(min3 "${hf[@]}") hfvfs_ls2=$(min3 "${hl2[@]}")

row() { printf '| %-32s | %10s | %10s | %6s |\n' "$@"; }
ratio() { printf '%.2f' "$(echo "$1 / $2" | bc -l)"; }
echo
echo "hfvfs kernel overhead: local stack vs direct ($(nproc) cores, $(uname -r), $(date -u +%F))"
echo
row "case" "direct" "hfvfs" "ratio"
row "--------------------------------" "----------" "----------" "------"
row "seq read ${size_mib} MiB warm (MiB/s)" "$(rate "$direct_warm")" "$(rate "$hfvfs_warm")" \
  "$(ratio "$(rate "$hfvfs_warm")" "$(rate "$direct_warm")")"
if [ $can_drop = 1 ]; then
  row "seq read ${size_mib} MiB cold (MiB/s)" "$(rate "$direct_cold")" "$(rate "$hfvfs_cold")" \
    "$(ratio "$(rate "$hfvfs_cold")" "$(rate "$direct_cold")")"
else
  row "seq read cold (MiB/s)" "n/a" "n/a" "n/a"
fi
row "ls -lR $files files (s)" "$(printf %.3f "$direct_ls")" "$(printf %.3f "$hfvfs_ls")" \
  "$(ratio "$hfvfs_ls" "$direct_ls")"
row "find $files files (s)" "$(printf %.3f "$direct_find")" "$(printf %.3f "$hfvfs_find")" \
  "$(ratio "$hfvfs_find" "$direct_find")"
row "ls -lR again, warm (s)" "$(printf %.3f "$direct_ls2")" "$(printf %.3f "$hfvfs_ls2")" \
  "$(ratio "$hfvfs_ls2" "$direct_ls2")"
echo
echo "ratio: hfvfs/direct (throughput: higher is better; times: lower is better)."
echo "aims (issue 2): warm read ratio >= 0.5; tree walks <= 3x."
