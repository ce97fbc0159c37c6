#!/bin/sh
# Size report and image checks for an ARM build; called by the Makefile after linking.
#   size-report.sh ELF BOARD RAM_BYTES FLASH_BYTES SIZE_JSON     (env: SIZE, NM)
# Fails if static RAM or flash exceed the board, or if the image uses floating point or the
# heap: inference is integer-only and nothing may allocate, and in a soft-float build either
# shows up as library symbols.
set -eu
elf=$1 board=$2 ram=$3 flash_budget=$4 json=$5
SIZE=${SIZE:-arm-none-eabi-size}
NM=${NM:-arm-none-eabi-nm}

set -- $("$SIZE" -B "$elf" | awk 'NR == 2 { print $1, $2, $3 }')
text=$1 data=$2 bss=$3
flash=$((text + data))
static_ram=$((data + bss))

printf '%s size: flash %d B (text %d + data %d) of %d B (%d.%d%%); static RAM %d B (data %d + bss %d) of %d B (%d.%d%%), %d B left for the stack\n' \
    "$board" "$flash" "$text" "$data" "$flash_budget" \
    $((flash * 100 / flash_budget)) $((flash * 1000 / flash_budget % 10)) \
    "$static_ram" "$data" "$bss" "$ram" \
    $((static_ram * 100 / ram)) $((static_ram * 1000 / ram % 10)) $((ram - static_ram))

status=0
bad=$("$NM" "$elf" | awk '{ print $NF }' |
    grep -E '^(__aeabi_(c?[fd]|u?[il]2[fd])[a-z0-9_]*|malloc|_malloc_r|calloc|_calloc_r|realloc|_realloc_r|free|_free_r|_sbrk|_sbrk_r)$' |
    sort -u | tr '\n' ' ' || true)
if [ -n "$bad" ]; then
    echo "error: $elf uses floating point or the heap: $bad" >&2
    echo "       the link map (build/$board/rnnpool.map, 'Archive member included to satisfy" >&2
    echo "       reference by file') names the object that pulled each one in" >&2
    status=1
fi
if [ "$static_ram" -gt "$ram" ]; then
    echo "error: static RAM $static_ram B exceeds the board's $ram B" >&2
    status=1
fi
if [ "$flash" -gt "$flash_budget" ]; then
    echo "error: flash $flash B exceeds the board's $flash_budget B" >&2
    status=1
fi

printf '{"board": "%s", "flash_bytes": %d, "static_ram_bytes": %d, "ram_bytes": %d, "flash_budget_bytes": %d, "text_bytes": %d, "data_bytes": %d, "bss_bytes": %d}\n' \
    "$board" "$flash" "$static_ram" "$ram" "$flash_budget" "$text" "$data" "$bss" >"$json"
exit $status
