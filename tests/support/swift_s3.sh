#!/bin/bash
# Shell face of tests/support/swift_s3.py (the loopback Swift + s3api test server), for scripts:
#   swift_s3.sh start DIR   # prints endpoint=, access_key=, secret_key=, region=, pid= lines
#   swift_s3.sh stop DIR    # stops it by the PID recorded in DIR/state.json
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cmd=${1:?usage: swift_s3.sh start|stop DIR}
dir=${2:?usage: swift_s3.sh start|stop DIR}
case "$cmd" in
  start)
    /usr/bin/python3 "$here/swift_s3.py" start --fresh --dir "$dir" --json |
      /usr/bin/python3 -c 'import json,sys; s=json.load(sys.stdin); [print(f"{k}={s[k]}") for k in ("endpoint","access_key","secret_key","region","pid","dir")]'
    ;;
  stop) /usr/bin/python3 "$here/swift_s3.py" stop --dir "$dir" ;;
  *) echo "usage: swift_s3.sh start|stop DIR" >&2; exit 2 ;;
esac
