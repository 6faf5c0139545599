#!/usr/bin/env bash
# Fails when a C++ file of the project is not clang-formatted (.clang-format at the root).
set -euo pipefail
cd "$(dirname "$0")/.."
mapfile -t files < <(git ls-files '*.h' '*.cc' '*.cpp' | grep -v '^build')
((${#files[@]})) || exit 0
if ! clang-format --dry-run -Werror "${files[@]}" 2>/tmp/hfvfs-format.log; then
  grep -E '^[^ ].*error' /tmp/hfvfs-format.log | sed 's/:[0-9]*:[0-9]*: error.*//' | sort -u |
    sed 's/^/not formatted: /'
  echo "run: clang-format -i <files> (clang-format $(clang-format --version | grep -o '[0-9.]*' | head -1))"
  exit 1
fi
echo "format: ${#files[@]} files OK"
