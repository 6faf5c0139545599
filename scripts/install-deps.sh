#!/usr/bin/env bash
# Installs what hfvfs needs to build, test and benchmark on Debian 12, from Debian's
# repositories only. Safe to run again: it installs only what is missing.
set -euo pipefail

packages=(
  build-essential cmake ninja-build pkg-config ccache git curl ca-certificates
  libfuse3-dev fuse3 libboost-dev libcurl4-openssl-dev libsodium-dev libfmt-dev libspdlog-dev
  libssl-dev libtomlplusplus-dev nlohmann-json3-dev googletest libgtest-dev libgmock-dev clang-format
  python3 python3-boto3 python3-numpy python3-cryptography
  # the S3 test server: OpenStack Swift with s3api, and memcached
  swift swift-proxy swift-object swift-container swift-account memcached
  # benchmarks: the peers and fio
  fio rclone s3fs gocryptfs
)
# Node.js (for the official Hub JS client check) may come from another repository already.
command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1 || packages+=(nodejs npm)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  sudo_cmd=()
  [ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
  echo "installing: ${missing[*]}"
  "${sudo_cmd[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends \
    "${missing[@]}" >/dev/null
fi
