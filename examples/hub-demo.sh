#!/usr/bin/env bash
# The README's demo: installs what is missing, builds hfvfs, starts the Hub emulator with the sample model, mounts it with
# a `hub` + `cache` stack, lists it, reads the safetensors header through the mount, and
# unmounts.
#   examples/hub-demo.sh [BUILD_DIR]
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${1:-$ROOT/build}
PY=/usr/bin/python3

# What a fresh Debian 12 lacks (apt; a no-op once installed).
"$ROOT/scripts/install-deps.sh"

if [ ! -x "$BUILD/kernel/hfvfs" ] || [ ! -f "$BUILD/plugins/libhfvfs-hub.so" ] ||
  [ ! -f "$BUILD/plugins/libhfvfs-cache.so" ]; then
  echo "== building hfvfs in $BUILD"
  cmake -S "$ROOT" -B "$BUILD" -G Ninja >/dev/null
  cmake --build "$BUILD" -j"$(nproc)" --target hfvfs hfvfs_plugin_hub hfvfs_plugin_cache
fi
HFVFS=$BUILD/kernel/hfvfs

WORK=$(mktemp -d /tmp/hfvfs-demo.XXXXXX)
MNT=$WORK/mnt
EMU_PID=""
cleanup() {
  if mountpoint -q "$MNT" 2>/dev/null; then
    "$HFVFS" stop "$MNT" >/dev/null 2>&1 || fusermount3 -u "$MNT" 2>/dev/null || true
  fi
  [ -n "$EMU_PID" ] && kill "$EMU_PID" 2>/dev/null && wait "$EMU_PID" 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

echo "== starting the Hub emulator (127.0.0.1, a free port)"
$PY "$ROOT/tests/support/make_hub_fixtures.py" --out "$BUILD/hub-fixtures" >/dev/null
$PY "$ROOT/tests/support/hub_emulator.py" --fixtures "$BUILD/hub-fixtures" >"$WORK/ready" 2>"$WORK/emulator.log" &
EMU_PID=$!
for _ in $(seq 100); do [ -s "$WORK/ready" ] && break; sleep 0.1; done
PORT=$($PY -c "import json,sys;print(json.load(open(sys.argv[1]))['port'])" "$WORK/ready")
echo "   endpoint http://127.0.0.1:$PORT"

# The example spec with this run's endpoint and mountpoint.
mkdir -p "$MNT"
sed -e "s|^endpoint = .*|endpoint = \"http://127.0.0.1:$PORT\"|" \
    -e "s|^mountpoint = .*|mountpoint = \"$MNT\"|" \
    -e "s|^dir = .*|dir = \"$WORK/cache\"|" "$ROOT/examples/hub-emulator.toml" >"$WORK/spec.toml"

echo "== hfvfs mount (hub: hfvfs-test/tiny-model@main, then cache)"
"$HFVFS" mount "$WORK/spec.toml"

echo "== ls -lR"
ls -lR "$MNT"

echo "== the safetensors header, read through the mount"
$PY - "$MNT/model.safetensors" <<'PYEOF'
import json, struct, sys
with open(sys.argv[1], "rb") as f:
    (n,) = struct.unpack("<Q", f.read(8))
    header = json.loads(f.read(n))
for name, t in sorted(header.items()):
    if name != "__metadata__":
        print(f"   {name:16} {t['dtype']:4} {t['shape']}")
PYEOF

echo "== hfvfs stop"
"$HFVFS" stop "$MNT"
echo "done"
