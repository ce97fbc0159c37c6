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
# Mode 1 (reassembly) scripts, see fuzz_protocol.c: record = c (type index << 3 | flags), len u16, payload.
def rec(t, flags, payload):
    return bytes([t << 3 | flags]) + len(payload).to_bytes(2, "little") + payload
DATA, RESULT, PING, ACK, MORE = 0, 1, 2, 3, 2
pat = bytes(1 + i % 251 for i in range(1100))
scripts = {
    "max": rec(DATA, MORE, pat[:600]) + rec(DATA, 0, pat[:424]),
    "overflow": rec(DATA, MORE, pat[:600]) + rec(DATA, 0, pat[:425]) + rec(ACK, 0, b"\x05\x00\x03"),
    "control": rec(DATA, MORE, pat[:40]) + rec(ACK, 0, b"\x05\x00\x03") + rec(DATA, 0, pat[:20]),
    "wrongtype": rec(DATA, MORE, pat[:40]) + rec(PING, 0, b"abcd") + rec(PING, 0, b"abcd"),
    "result": b"".join(rec(RESULT, MORE, pat[:128]) for _ in range(5)) + rec(RESULT, 1, pat[:37]),
    "noise": rec(DATA, MORE, pat[:300]) + b"\x85\x11\x22\x33\x44\x55" + b"\xff" + rec(DATA, 0, pat[:9]),
}
for name, script in scripts.items():
    (out / f"reasm-{name}").write_bytes(b"\x01" + script)
PY
cd "$out"
if [ "$jobs" -gt 1 ]; then par="-jobs=$jobs -workers=$jobs"; else par=""; fi
# shellcheck disable=SC2086
exec ./fuzz_protocol -max_total_time="$secs" -max_len=4096 -print_final_stats=1 $par corpus seeds
