#!/bin/sh
# Fuzz the protocol codec with libFuzzer (clang -fsanitize=fuzzer,address,undefined).
#   sh tests/protocol/run_fuzz.sh [seconds=10] [jobs=1]      (from firmware/ or the repo root)
# The seed corpus is every frame of docs/protocol-vectors.json; new inputs found go to
# build/fuzz/corpus (kept between runs). Exit status is libFuzzer's: non-zero on a crash, with the
# reproducer written to build/fuzz/crash-*.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
fw=$(cd "$here/../.." && pwd)
secs=${1:-10}
jobs=${2:-1}
out="$fw/build/fuzz"
mkdir -p "$out/corpus" "$out/seeds"
CC=${CC:-clang}
$CC -std=c11 -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all -I"$fw/src" \
    "$fw"/src/protocol/*.c "$here/fuzz_protocol.c" -o "$out/fuzz_protocol"
python3 - "$fw/../docs/protocol-vectors.json" "$out/seeds" <<'PY'
import json, sys, pathlib
doc = json.load(open(sys.argv[1], encoding="utf-8"))
out = pathlib.Path(sys.argv[2])
for i, v in enumerate(doc["vectors"]):
    data = bytes.fromhex(v["hex"])
    (out / f"{i:03d}-rx").write_bytes(b"\x00" + data)     # mode 0: receiver
    (out / f"{i:03d}-cobs").write_bytes(b"\x02" + data)   # mode 2: COBS
PY
cd "$out"
if [ "$jobs" -gt 1 ]; then par="-jobs=$jobs -workers=$jobs"; else par=""; fi
# shellcheck disable=SC2086
exec ./fuzz_protocol -max_total_time="$secs" -max_len=4096 -print_final_stats=1 $par corpus seeds
