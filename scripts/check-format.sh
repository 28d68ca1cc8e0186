#!/usr/bin/env bash
# Fails when a tracked C, C++ or CUDA file differs from what the pinned clang-format makes of it, or
# when a tracked source line is longer than 100 columns.
#   bash scripts/check-format.sh          check (what CI runs)
#   bash scripts/check-format.sh --fix    reformat in place
# The formatter is pinned to Debian 12's clang-format 14 (`apt-get install clang-format`): other
# major versions format some constructs differently, so they are refused rather than trusted.
set -euo pipefail
cd "$(dirname "$0")/.."

readonly pinned_major=14
formatter="${CLANG_FORMAT:-clang-format}"
if ! command -v "$formatter" >/dev/null; then
  echo "check-format: $formatter not found (apt-get install clang-format)"
  exit 2
fi
version="$("$formatter" --version)"
major="$(sed -E 's/.*version ([0-9]+)\..*/\1/' <<<"$version")"
if [ "$major" != "$pinned_major" ]; then
  echo "check-format: need clang-format $pinned_major, found: $version"
  exit 2
fi

mapfile -t sources < <(git ls-files '*.c' '*.h' '*.cpp' '*.hpp' '*.cu' '*.cuh')
if [ "${1:-}" = "--fix" ]; then
  "$formatter" -i "${sources[@]}"
  echo "check-format: reformatted ${#sources[@]} files"
  exit 0
fi

status=0
if ! "$formatter" --dry-run -Werror "${sources[@]}" 2>/tmp/check-format.$$; then
  grep -E '^[^ ].*(warning|error):' /tmp/check-format.$$ | cut -d: -f1 | sort | uniq -c |
    sed 's/^/check-format: not formatted: /'
  echo "check-format: run 'bash scripts/check-format.sh --fix'"
  status=1
fi
rm -f /tmp/check-format.$$

# Lines past 100 columns in code the formatter does not see (CMake, Python, shell) or cannot wrap.
mapfile -t code < <(git ls-files '*.c' '*.h' '*.cpp' '*.hpp' '*.cu' '*.cuh' '*.py' '*.sh' \
  '*.cmake' 'CMakeLists.txt' '*/CMakeLists.txt' '.ci/run')
long="$(python3 - "${code[@]}" <<'PY'
import sys
for path in sys.argv[1:]:
    with open(path, encoding="utf-8") as lines:
        for number, line in enumerate(lines, 1):
            width = len(line.rstrip("\n"))  # characters, not bytes
            if width > 100:
                print(f"{path}:{number}: {width} columns")
PY
)"
if [ -n "$long" ]; then
  echo "$long" | sed 's/^/check-format: /'
  status=1
fi
if [ "$status" -eq 0 ]; then
  echo "check-format: ${#sources[@]} C/C++/CUDA files formatted, no line over 100 columns"
fi
exit "$status"
