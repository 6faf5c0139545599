#!/bin/sh
# Write-path benchmark of the sync layer: s3 + sync vs rclone (--vfs-cache-mode writes) and
# s3fs on the loopback S3 server. See bench/sync_bench.py for the cases.
exec /usr/bin/python3 "$(dirname "$0")/sync_bench.py" "$@"
