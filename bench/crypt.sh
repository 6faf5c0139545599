#!/usr/bin/env bash
# Benchmark of the crypt layer against gocryptfs and plain `local`, on the same disk, one run:
#
#   bench/crypt.sh [--build build] [--size-mib 1024] [--rounds 3] [--dir /var/tmp/hfvfs-crypt-bench]
#                  [--contenders "raw local crypt gocryptfs"] [--cases "write_fsync read_cold ..."]
#                  [--base-bin DIR] [--runtime 10]
#
# Contenders (all on the same folder's disk; every mount stays up for the whole run):
#   raw          the folder itself (no FUSE)
#   local        hfvfs mount: local (plaintext through FUSE, the 0.75x reference of the issue)
#   crypt        hfvfs mount: local -> crypt
#   gocryptfs    gocryptfs -init / mount, as in its documentation (default options)
#   crypt_base   with --base-bin DIR: local -> crypt mounted by DIR/hfvfs with the plugins in
#                DIR/plugins (a baseline build, for A/B of a change)
#   crypt_cores  local -> crypt with `[options] max_threads` = the number of cores (not in the
#                default set; the README's `max_threads` row)
# Cases:
#   write_fsync  dd of SIZE MiB in 1 MiB blocks with conv=fsync, MB/s
#   read_cold    page cache dropped, dd in 1 MiB blocks, MB/s
#   read_warm    the same file read again without dropping the cache, MB/s
#   rand4k       fio 4 KiB random reads, psync, 1 job, RUNTIME s, page cache dropped first, IOPS
#   rand4k_4j    the same with 4 jobs at once (random reads under load), total IOPS
# Each read_cold line on stderr also says what the disk saw (from /proc/diskstats of the folder's
# device): read requests, their average size and the average number in flight; and the CPU it
# took: the daemon's (hfvfs or gocryptfs; user + system seconds) and the whole machine's busy
# share of all its cores (from /proc/stat), which tells a CPU-bound read from one that waits.
# A/B interleaved: each round runs every contender once, in an order rotated by one per round,
# so the machine's load drifts over all of them alike; the table shows the median of the rounds
# (and each round's figures), with the ratios crypt/gocryptfs and crypt/local of the medians.
# Run as root (drops the page cache). Mounts are stopped on exit.
set -euo pipefail

build=build
size_mib=1024
rounds=3
runtime=10
dir=/var/tmp/hfvfs-crypt-bench
contenders="raw local crypt gocryptfs"
cases="write_fsync read_cold read_warm rand4k rand4k_4j"
base_bin=
while (($#)); do
  case "$1" in
    --build) build=$2; shift 2 ;;
    --size-mib) size_mib=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    --runtime) runtime=$2; shift 2 ;;
    --dir) dir=$2; shift 2 ;;
    --contenders) contenders=$2; shift 2 ;;
    --cases) cases=$2; shift 2 ;;
    --base-bin) base_bin=$(cd "$2" && pwd); shift 2 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
if [ -n "$base_bin" ] && [[ " $contenders " != *" crypt_base "* ]]; then
  contenders="$contenders crypt_base"
fi
root=$(cd "$(dirname "$0")/.." && pwd)
hfvfs=$root/$build/kernel/hfvfs
[ -x "$hfvfs" ] || { echo "no $hfvfs: build first" >&2; exit 1; }
command -v gocryptfs >/dev/null || { echo "gocryptfs is missing (scripts/install-deps.sh)" >&2; exit 1; }
command -v fio >/dev/null || { echo "fio is missing" >&2; exit 1; }

rm -rf "$dir"
mkdir -p "$dir"/{raw,home}
for c in $contenders; do mkdir -p "$dir/$c-store" "$dir/$c-mnt"; done
export HFVFS_HOME=$dir/home
key=$dir/bench.key
"$hfvfs" keygen "$key" >/dev/null
printf 'bench-password\n' >"$dir/gocrypt.pass"

stop_mount() {  # mountpoint
  mountpoint -q "$1" || return 0
  "$hfvfs" stop "$1" >/dev/null 2>&1 || fusermount3 -u "$1" >/dev/null 2>&1 ||
    fusermount -u "$1" >/dev/null 2>&1 || true
}
# Free page reporting off for the run (see bench/page_reporting.py), given back on exit.
page_reporting=$(/usr/bin/python3 "$root/bench/page_reporting.py" off)
cleanup() {
  for c in $contenders; do stop_mount "$dir/$c-mnt"; done
  /usr/bin/python3 "$root/bench/page_reporting.py" restore "$page_reporting"
}
trap cleanup EXIT

spec() {  # store [crypt [max_threads]]
  [ -n "${3:-}" ] && printf '[options]\nmax_threads = %s\n\n' "$3"
  printf '[[layer]]\ntype = "local"\npath = "%s"\n' "$1"
  [ "${2:-}" = crypt ] && printf '\n[[layer]]\ntype = "crypt"\nkey_file = "%s"\n' "$key"
  return 0
}

declare -A at
for c in $contenders; do
  case $c in
    raw) at[$c]=$dir/raw ;;
    local)
      spec "$dir/$c-store" >"$dir/$c.toml"
      "$hfvfs" mount "$dir/$c.toml" --mountpoint "$dir/$c-mnt" >/dev/null
      at[$c]=$dir/$c-mnt ;;
    crypt)
      spec "$dir/$c-store" crypt >"$dir/$c.toml"
      "$hfvfs" mount "$dir/$c.toml" --mountpoint "$dir/$c-mnt" >/dev/null
      at[$c]=$dir/$c-mnt ;;
    crypt_cores)
      spec "$dir/$c-store" crypt "$(nproc)" >"$dir/$c.toml"
      "$hfvfs" mount "$dir/$c.toml" --mountpoint "$dir/$c-mnt" >/dev/null
      at[$c]=$dir/$c-mnt ;;
    crypt_base)
      spec "$dir/$c-store" crypt >"$dir/$c.toml"
      HFVFS_PLUGIN_PATH=$base_bin/plugins "$base_bin/hfvfs" mount "$dir/$c.toml" \
        --mountpoint "$dir/$c-mnt" >/dev/null
      at[$c]=$dir/$c-mnt ;;
    gocryptfs)
      gocryptfs -init -q -passfile "$dir/gocrypt.pass" "$dir/$c-store" >/dev/null
      gocryptfs -q -passfile "$dir/gocrypt.pass" "$dir/$c-store" "$dir/$c-mnt"
      at[$c]=$dir/$c-mnt ;;
    *) echo "unknown contender $c" >&2; exit 2 ;;
  esac
done

drop() { sync; echo 3 >/proc/sys/vm/drop_caches; }

# Reads completed, sectors read, ms spent reading, ms busy of the folder's disk.
disk=$(basename "$(df --output=source "$dir" | tail -1)")
disk_reads() { awk -v d="$disk" '$3 == d { print $4, $6, $7, $13 }' /proc/diskstats; }
# "reqs N avg K KiB depth D" between two disk_reads samples.
disk_delta() {
  awk -v a="$1" -v b="$2" 'BEGIN { split(a, x, " "); split(b, y, " "); n = y[1] - x[1];
    if (n <= 0) { print "reqs 0"; exit }
    busy = y[4] - x[4]; depth = 0; if (busy > 0) depth = (y[3] - x[3]) / busy;
    printf "reqs %d avg %.0f KiB depth %.2f", n, (y[2] - x[2]) / 2 / n, depth }'
}
declare -A diskinfo

# The daemon serving a contender (none for raw): the process whose command line names its spec
# or store.
daemon_pid() {  # contender
  case $1 in
    raw) ;;
    gocryptfs) pgrep -n -f -- "$dir/$1-store" || true ;;
    *) pgrep -n -f -- "mount $dir/$1.toml" || true ;;
  esac
}
# "daemon_ticks busy_ticks total_ticks" now (clock ticks: user + system of the daemon; all CPUs).
cpu_sample() {  # pid (may be empty)
  local d=0
  [ -n "$1" ] && [ -r "/proc/$1/stat" ] && d=$(awk '{ print $14 + $15 }' "/proc/$1/stat")
  awk -v d="$d" '$1 == "cpu" { busy = $2 + $3 + $4 + $7 + $8 + $9; print d, busy, busy + $5 + $6; exit }' /proc/stat
}
# "cpu: daemon S s, machine P% busy" between two cpu_sample lines.
cpu_delta() {
  awk -v a="$1" -v b="$2" -v hz="$(getconf CLK_TCK)" 'BEGIN { split(a, x, " "); split(b, y, " ");
    total = y[3] - x[3]; busy = total > 0 ? 100 * (y[2] - x[2]) / total : 0;
    printf "cpu: daemon %.2f s, machine %.0f%% busy", (y[1] - x[1]) / hz, busy }'
}
declare -A cpuinfo

# dd prints "... bytes ... copied, S s, R MB/s"; recompute from bytes and seconds for precision.
dd_rate() {
  local out
  out=$("$@" 2>&1 | tail -1)
  awk -v line="$out" 'BEGIN { n = split(line, f, " "); bytes = f[1];
    for (i = 1; i <= n; i++) if (f[i] == "s,") secs = f[i-1];
    printf "%.0f", bytes / secs / 1e6 }'
}

has_case() { [[ " $cases " == *" $1 "* ]]; }

declare -A result
run_cases() {  # contender round
  local name=$1 r=$2 file=${at[$1]}/bench.bin line
  if has_case write_fsync || [ ! -e "$file" ]; then
    drop
    result[$name,write_fsync,$r]=$(dd_rate dd if=/dev/zero of="$file" bs=1M count="$size_mib" conv=fsync)
  fi
  if has_case read_cold; then
    drop
    local before pid cpu_before
    pid=$(daemon_pid "$name")
    before=$(disk_reads)
    cpu_before=$(cpu_sample "$pid")
    result[$name,read_cold,$r]=$(dd_rate dd if="$file" of=/dev/null bs=1M)
    cpuinfo[$name,$r]=$(cpu_delta "$cpu_before" "$(cpu_sample "$pid")")
    diskinfo[$name,$r]=$(disk_delta "$before" "$(disk_reads)")
  fi
  if has_case read_warm; then
    dd if="$file" of=/dev/null bs=1M 2>/dev/null  # warm even when read_cold is not run
    result[$name,read_warm,$r]=$(dd_rate dd if="$file" of=/dev/null bs=1M)
  fi
  if has_case rand4k; then
    drop
    result[$name,rand4k,$r]=$(fio --name=rand4k --filename="$file" --rw=randread --bs=4k \
      --ioengine=psync --numjobs=1 --time_based --runtime="$runtime" --size="${size_mib}M" \
      --output-format=terse --terse-version=3 2>/dev/null | awk -F';' '{ printf "%.0f", $8 }')
  fi
  if has_case rand4k_4j; then
    drop
    result[$name,rand4k_4j,$r]=$(fio --name=rand4k --filename="$file" --rw=randread --bs=4k \
      --ioengine=psync --numjobs=4 --group_reporting --time_based --runtime="$runtime" \
      --size="${size_mib}M" --output-format=terse --terse-version=3 2>/dev/null |
      awk -F';' '{ printf "%.0f", $8 }')
  fi
  line="[bench] round $r $name:"
  for c in $cases; do line="$line $c ${result[$name,$c,$r]:--}"; done
  has_case read_cold && line="$line (read_cold disk: ${diskinfo[$name,$r]}; ${cpuinfo[$name,$r]})"
  echo "$line" >&2
  has_case write_fsync && rm -f "$file"
  return 0
}

read -r -a order <<<"$contenders"
for ((r = 1; r <= rounds; r++)); do
  n=${#order[@]}
  for ((i = 0; i < n; i++)); do
    run_cases "${order[$(((i + r - 1) % n))]}" "$r"
  done
done

median() {  # values...
  printf '%s\n' "$@" | grep -v '^-*$' | sort -n | awk '{ v[NR] = $1 } END {
    if (NR == 0) print "-"; else if (NR % 2) print v[(NR + 1) / 2];
    else printf "%.0f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0 && a != "-") printf "%.2f", a / b; else print "-" }'; }

declare -A med
for c in $contenders; do
  for k in $cases; do
    vals=()
    for ((r = 1; r <= rounds; r++)); do vals+=("${result[$c,$k,$r]:--}"); done
    med[$c,$k]=$(median "${vals[@]}")
  done
done

printf '\n%s MiB file on %s (%s cores, load %s), medians of %s interleaved rounds\n\n' \
  "$size_mib" "$(df --output=source "$dir" | tail -1)" "$(nproc)" \
  "$(cut -d' ' -f1-3 /proc/loadavg)" "$rounds"
header='| case |'
sep='|---|'
for c in $contenders; do header="$header $c |"; sep="$sep---|"; done
has_gocrypt=0; has_local=0
[[ " $contenders " == *" gocryptfs "* ]] && has_gocrypt=1
[[ " $contenders " == *" local "* ]] && has_local=1
((has_gocrypt)) && { header="$header crypt/gocryptfs |"; sep="$sep---|"; }
((has_local)) && { header="$header crypt/local |"; sep="$sep---|"; }
[ -n "$base_bin" ] && { header="$header crypt/crypt_base |"; sep="$sep---|"; }
has_cores=0
[[ " $contenders " == *" crypt_cores "* ]] && has_cores=1
((has_cores && has_local)) && { header="$header crypt_cores/local |"; sep="$sep---|"; }
echo "$header"
echo "$sep"
for k in $cases; do
  unit=MB/s
  [[ $k == rand4k* ]] && unit=IOPS
  line="| $k ($unit) |"
  for c in $contenders; do
    all=()
    for ((r = 1; r <= rounds; r++)); do all+=("${result[$c,$k,$r]:--}"); done
    line="$line ${med[$c,$k]} ($(IFS=/; echo "${all[*]}")) |"
  done
  ((has_gocrypt)) && line="$line $(ratio "${med[crypt,$k]:--}" "${med[gocryptfs,$k]:--}") |"
  ((has_local)) && line="$line $(ratio "${med[crypt,$k]:--}" "${med[local,$k]:--}") |"
  [ -n "$base_bin" ] && line="$line $(ratio "${med[crypt,$k]:--}" "${med[crypt_base,$k]:--}") |"
  ((has_cores && has_local)) &&
    line="$line $(ratio "${med[crypt_cores,$k]:--}" "${med[local,$k]:--}") |"
  echo "$line"
done
cleanup
trap - EXIT
rm -rf "$dir"
