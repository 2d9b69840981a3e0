#!/usr/bin/env bash
# Every configure preset builds with -Werror on this machine's GCC and clang:
#   tests/tools/build_presets.sh [PRESET-CC ...]     (./run presets installs what it needs)
# Without arguments: dev, asan and release with gcc and with clang, and fuzz
# with clang (libFuzzer is clang's). release is built with its tests here, so
# test code meets -O2's warnings too. Build directories: build/presets/PRESET-CC.
# Exit 0 only if every build succeeded.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
combos=("$@")
[ ${#combos[@]} -gt 0 ] || combos=(dev-gcc asan-gcc release-gcc dev-clang asan-clang release-clang fuzz-clang)
fails=()
mkdir -p build/presets
for combo in "${combos[@]}"; do
    preset="${combo%-*}" cc="${combo##*-}"
    case "$preset:$cc" in
    dev:gcc | asan:gcc | release:gcc | dev:clang | asan:clang | release:clang | fuzz:clang) ;;
    *) echo "build_presets.sh: unknown combination $combo" >&2; exit 2 ;;
    esac
    command -v "$cc" >/dev/null || { echo "build_presets.sh: $cc is not installed" >&2; exit 1; }
    dir="build/presets/$combo"
    extra=(-DCMAKE_C_COMPILER="$cc")
    [ "$preset" = release ] && extra+=(-DTS_TESTS=ON)
    printf '\033[1m==> %s with %s\033[0m\n' "$preset" "$("$cc" --version | head -1)" >&2
    t0=$SECONDS
    if ! cmake --preset "$preset" -B "$dir" "${extra[@]}" >"$dir.configure.log" 2>&1; then
        cat "$dir.configure.log" >&2
        fails+=("$combo (configure)")
        continue
    fi
    if ! cmake --build "$dir" -j"$(nproc)" >"$dir.build.log" 2>&1; then
        grep -E -A8 'error|warning' "$dir.build.log" | head -80 >&2
        fails+=("$combo")
        continue
    fi
    echo "    built in $((SECONDS - t0)) s" >&2
done
if [ ${#fails[@]} -gt 0 ]; then
    echo "build_presets.sh: failed: ${fails[*]}" >&2
    exit 1
fi
echo "build_presets.sh: built ${combos[*]} with -Werror" >&2
