#!/bin/bash
# The S3 benchmark: every case of the s3 issue's "Measure" section in one run on one loopback
# Swift + s3api server, for the limit (curl / boto3), s3fs, rclone mount (cache modes off and
# full), hfvfs s3 and hfvfs s3 + cache; prints one markdown table with ratios. Run as root.
#
#   bench/s3.sh                          # everything, one round (~10 min)
#   bench/s3.sh --data /var/tmp/s3b      # keep the server's objects for the next run
#   bench/s3.sh --rounds 3 --cases seq --contenders hfvfs-s3,hfvfs-s3@base \
#               --alt base=/path/to/old/plugins          # A/B, interleaved, medians of 3
#
# Options and cases: bench/s3_bench.py --help (build dir: $HFVFS_BUILD_DIR or ./build).
exec /usr/bin/python3 "$(dirname "$0")/s3_bench.py" "$@"
