#!/bin/bash
# Side-by-side S3 figures on one loopback Swift + s3api server (tests/support/swift_s3.py):
# the raw client limit (curl for reads, boto3 for writes), hfvfs `s3`, s3fs and rclone mount
# (--vfs-cache-mode off), on the same objects. Prints a markdown table with ratios against the
# raw limit. Run as root (drops the page cache between runs).
#
#   bench/s3.sh [SIZE_MIB=1024] [FILES=2000]      (build dir: $HFVFS_BUILD_DIR or ./build)
#
# Cases: seq_write (a SIZE_MIB file copied in, MB/s), seq_read (read back cold, MB/s),
# walk (a fresh mount: `ls -lR` of FILES objects in FILES/100 folders, s).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
build=${HFVFS_BUILD_DIR:-$root/build}
size_mib=${1:-1024}
files=${2:-2000}
work=$(mktemp -d /tmp/hfvfs-s3bench-XXXXXX)
PY=/usr/bin/python3
mounts=()

cleanup() {
  for m in "${mounts[@]}"; do fusermount3 -u "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true; done
  $PY tests/support/swift_s3.py stop --dir "$work/swift" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

drop() { sync; echo 3 > /proc/sys/vm/drop_caches 2>/dev/null || true; }
now() { date +%s.%N; }
mbps() { echo "$size_mib $1 $2" | awk '{printf "%.0f", $1 * 1.048576 / ($3 - $2)}'; }
secs() { echo "$1 $2" | awk '{printf "%.2f", $2 - $1}'; }

$PY tests/support/swift_s3.py start --dir "$work/swift" --json > "$work/state.json"
eval "$($PY -c 'import json,sys; s=json.load(open(sys.argv[1])); print("endpoint=%s key=%s secret=%s pid=%s" % (s["endpoint"], s["access_key"], s["secret_key"], s["pid"]))' "$work/state.json")"
export AWS_ACCESS_KEY_ID=$key AWS_SECRET_ACCESS_KEY=$secret
bucket=bench
head -c $((size_mib << 20)) /dev/urandom > "$work/big.bin"
want=$(md5sum < "$work/big.bin" | cut -c1-32)

# Raw limits: boto3 upload (8 MiB parts, 4 threads like hfvfs) and curl download.
$PY - "$endpoint" "$bucket" "$work/big.bin" "$files" > "$work/raw.txt" <<'PY'
import boto3, sys, time, concurrent.futures
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
endpoint, bucket, big, files = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                  config=Config(s3={"addressing_style": "path"}, max_pool_connections=16))
s3.create_bucket(Bucket=bucket)
t0 = time.time()
s3.upload_file(big, bucket, "raw.bin", Config=TransferConfig(
    multipart_chunksize=8 << 20, multipart_threshold=8 << 20, max_concurrency=4))
print(time.time() - t0)
def put(i):
    s3.put_object(Bucket=bucket, Key=f"tree/d{i // 100:03d}/f{i:05d}", Body=b"x" * 100)
with concurrent.futures.ThreadPoolExecutor(8) as pool:
    list(pool.map(put, range(files)))
PY
raw_write=$(awk -v s="$size_mib" '{printf "%.0f", s * 1.048576 / $1}' "$work/raw.txt")
# curl --aws-sigv4 cannot take Swift's "account:user" key (it splits --user at the first ':'):
# curl gets a presigned URL instead.
url=$($PY -c 'import boto3,sys; from botocore.config import Config; print(boto3.client("s3", endpoint_url=sys.argv[1], region_name="us-east-1", config=Config(s3={"addressing_style": "path"})).generate_presigned_url("get_object", Params={"Bucket": sys.argv[2], "Key": "raw.bin"}, ExpiresIn=3600))' "$endpoint" "$bucket")
drop; t0=$(now)
curl -sSf -o /dev/null "$url"
raw_read=$(mbps "$t0" "$(now)")

declare -A W R L
mount_one() {  # name mountpoint
  local name=$1 mnt=$2
  mkdir -p "$mnt"
  case $name in
    hfvfs)
      printf '[[layer]]\ntype = "s3"\nendpoint = "%s"\nbucket = "%s"\n' "$endpoint" "$bucket" > "$work/spec.toml"
      HFVFS_HOME="$work/home" "$build/kernel/hfvfs" mount "$work/spec.toml" --mountpoint "$mnt" >/dev/null ;;
    s3fs)
      AWSACCESSKEYID=$key AWSSECRETACCESSKEY=$secret s3fs "$bucket" "$mnt" -o "url=$endpoint" \
        -o use_path_request_style ;;
    rclone)
      env -u AWS_CA_BUNDLE RCLONE_CONFIG_B_TYPE=s3 RCLONE_CONFIG_B_PROVIDER=Other \
        RCLONE_CONFIG_B_ENDPOINT="$endpoint" RCLONE_CONFIG_B_ACCESS_KEY_ID="$key" \
        RCLONE_CONFIG_B_SECRET_ACCESS_KEY="$secret" RCLONE_CONFIG_B_FORCE_PATH_STYLE=true \
        rclone mount "b:$bucket" "$mnt" --vfs-cache-mode off --daemon ;;
  esac
  mounts+=("$mnt")
  for _ in $(seq 100); do mountpoint -q "$mnt" && return 0; sleep 0.1; done
  echo "$name did not mount" >&2; return 1
}
umount_one() {
  if [ "$1" = hfvfs ]; then HFVFS_HOME="$work/home" "$build/kernel/hfvfs" stop "$2" >/dev/null
  else fusermount3 -u "$2"; fi
}

for name in hfvfs s3fs rclone; do
  command -v "$name" >/dev/null 2>&1 || [ "$name" = hfvfs ] || continue
  mnt="$work/mnt-$name"
  mount_one "$name" "$mnt" || continue
  drop; t0=$(now)
  dd if="$work/big.bin" of="$mnt/$name.bin" bs=1M status=none conv=fsync
  W[$name]=$(mbps "$t0" "$(now)")
  umount_one "$name" "$mnt"; mount_one "$name" "$mnt"
  drop; t0=$(now)
  got=$(dd if="$mnt/$name.bin" bs=1M status=none | md5sum | cut -c1-32)
  R[$name]=$(mbps "$t0" "$(now)")
  [ "$got" = "$want" ] || R[$name]="WRONG"
  umount_one "$name" "$mnt"; mount_one "$name" "$mnt"
  t0=$(now)
  n=$(ls -lR "$mnt/tree" | grep -c '^-')
  L[$name]=$(secs "$t0" "$(now)")
  [ "$n" = "$files" ] || L[$name]="${L[$name]} (saw $n)"
  umount_one "$name" "$mnt"
done

ratio() { echo "$1 $2" | awk '{ if ($1 + 0 > 0 && $2 + 0 > 0) printf " (%.2fx)", $1 / $2 }'; }
echo "| case | raw | hfvfs s3 | s3fs | rclone (off) |"
echo "|---|---|---|---|---|"
row() {  # case raw map-name higher-is-better
  local line="| $1 | $2 |" v
  for n in hfvfs s3fs rclone; do
    declare -n m=$3; v=${m[$n]:-}
    if [ "$4" = 1 ]; then line="$line $v$(ratio "$v" "$2") |"; else line="$line $v$(ratio "$2" "$v") |"; fi
  done
  echo "$line"
}
row "seq_write ${size_mib} MiB (MB/s)" "$raw_write" W 1
row "seq_read cold ${size_mib} MiB (MB/s)" "$raw_read" R 1
row "ls -lR ${files} objects (s)" "" L 0
echo "raw = boto3 upload_file (8 MiB parts, 4 threads) / curl GET of a presigned URL; ratios against raw."
