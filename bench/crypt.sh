#!/usr/bin/env bash
# Benchmark of the crypt layer against gocryptfs and the raw disk, on the same disk, one run:
#
#   bench/crypt.sh [--build build] [--size-mib 1024] [--dir /var/tmp/hfvfs-crypt-bench]
#
# Contenders (all on the same folder's disk):
#   raw          the folder itself (no FUSE)
#   local        hfvfs mount: local (plaintext through FUSE, the 0.75x reference of the issue)
#   crypt        hfvfs mount: local -> crypt
#   gocryptfs    gocryptfs -init / mount, as in its documentation (default options)
# Cases:
#   write_fsync  dd of SIZE MiB in 1 MiB blocks with conv=fsync, MB/s
#   read_cold    page cache dropped, dd in 1 MiB blocks, MB/s
#   read_warm    the same file read again without dropping the cache, MB/s
#   rand4k       fio 4 KiB random reads, psync, 1 job, 10 s, page cache dropped first, IOPS
# Prints one table with the ratios crypt/gocryptfs and crypt/local. Run as root (drops the page
# cache). Mounts are stopped with `hfvfs stop` / fusermount3 -u on exit.
set -euo pipefail

build=build
size_mib=1024
dir=/var/tmp/hfvfs-crypt-bench
while (($#)); do
  case "$1" in
    --build) build=$2; shift 2 ;;
    --size-mib) size_mib=$2; shift 2 ;;
    --dir) dir=$2; shift 2 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
root=$(cd "$(dirname "$0")/.." && pwd)
hfvfs=$root/$build/kernel/hfvfs
[ -x "$hfvfs" ] || { echo "no $hfvfs: build first" >&2; exit 1; }
command -v gocryptfs >/dev/null || { echo "gocryptfs is missing (scripts/install-deps.sh)" >&2; exit 1; }
command -v fio >/dev/null || { echo "fio is missing" >&2; exit 1; }

rm -rf "$dir"
mkdir -p "$dir"/{raw,local-store,local-mnt,crypt-store,crypt-mnt,gocrypt-cipher,gocrypt-mnt,home}
export HFVFS_HOME=$dir/home
key=$dir/bench.key
"$hfvfs" keygen "$key" >/dev/null 2>&1 || head -c 32 /dev/urandom >"$key"
chmod 600 "$key"
printf 'bench-password\n' >"$dir/gocrypt.pass"

cleanup() {
  "$hfvfs" stop "$dir/local-mnt" >/dev/null 2>&1 || true
  "$hfvfs" stop "$dir/crypt-mnt" >/dev/null 2>&1 || true
  fusermount3 -u "$dir/gocrypt-mnt" >/dev/null 2>&1 || fusermount -u "$dir/gocrypt-mnt" >/dev/null 2>&1 || true
}
trap cleanup EXIT

cat >"$dir/local.toml" <<EOF
[[layer]]
type = "local"
path = "$dir/local-store"
EOF
cat >"$dir/crypt.toml" <<EOF
[[layer]]
type = "local"
path = "$dir/crypt-store"

[[layer]]
type = "crypt"
key_file = "$key"
EOF

drop() { sync; echo 3 >/proc/sys/vm/drop_caches; }

# dd prints "... bytes ... copied, S s, R MB/s"; recompute from bytes and seconds for precision.
dd_rate() {
  local out
  out=$("$@" 2>&1 | tail -1)
  awk -v line="$out" 'BEGIN { n = split(line, f, " "); bytes = f[1];
    for (i = 1; i <= n; i++) if (f[i] == "s,") secs = f[i-1];
    printf "%.0f", bytes / secs / 1e6 }'
}

declare -A result
run_cases() {  # name folder
  local name=$1 at=$2 file=$2/bench.bin
  drop
  result[$name,write_fsync]=$(dd_rate dd if=/dev/zero of="$file" bs=1M count="$size_mib" conv=fsync)
  drop
  result[$name,read_cold]=$(dd_rate dd if="$file" of=/dev/null bs=1M)
  result[$name,read_warm]=$(dd_rate dd if="$file" of=/dev/null bs=1M)
  drop
  result[$name,rand4k]=$(fio --name=rand4k --filename="$file" --rw=randread --bs=4k \
    --ioengine=psync --numjobs=1 --time_based --runtime=10 --size="${size_mib}M" \
    --output-format=terse --terse-version=3 2>/dev/null | awk -F';' '{ printf "%.0f", $8 }')
  echo "[bench] $name: write ${result[$name,write_fsync]} MB/s, cold ${result[$name,read_cold]} MB/s," \
    "warm ${result[$name,read_warm]} MB/s, rand4k ${result[$name,rand4k]} IOPS" >&2
  rm -f "$file"
}

run_cases raw "$dir/raw"

"$hfvfs" mount "$dir/local.toml" --mountpoint "$dir/local-mnt" >/dev/null
run_cases local "$dir/local-mnt"
"$hfvfs" stop "$dir/local-mnt" >/dev/null

"$hfvfs" mount "$dir/crypt.toml" --mountpoint "$dir/crypt-mnt" >/dev/null
run_cases crypt "$dir/crypt-mnt"
"$hfvfs" stop "$dir/crypt-mnt" >/dev/null

gocryptfs -init -q -passfile "$dir/gocrypt.pass" "$dir/gocrypt-cipher" >/dev/null
gocryptfs -q -passfile "$dir/gocrypt.pass" "$dir/gocrypt-cipher" "$dir/gocrypt-mnt"
run_cases gocryptfs "$dir/gocrypt-mnt"
fusermount3 -u "$dir/gocrypt-mnt" 2>/dev/null || fusermount -u "$dir/gocrypt-mnt"

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }'; }
printf '\n%s MiB file on %s (%s cores)\n\n' "$size_mib" "$(df --output=source "$dir" | tail -1)" "$(nproc)"
printf '| case | raw | local | crypt | gocryptfs | crypt/gocryptfs | crypt/local |\n'
printf '|---|---|---|---|---|---|---|\n'
for c in write_fsync read_cold read_warm rand4k; do
  unit=MB/s
  [ "$c" = rand4k ] && unit=IOPS
  printf '| %s (%s) | %s | %s | %s | %s | %s | %s |\n' "$c" "$unit" "${result[raw,$c]}" \
    "${result[local,$c]}" "${result[crypt,$c]}" "${result[gocryptfs,$c]}" \
    "$(ratio "${result[crypt,$c]}" "${result[gocryptfs,$c]}")" \
    "$(ratio "${result[crypt,$c]}" "${result[local,$c]}")"
done
rm -rf "$dir"
