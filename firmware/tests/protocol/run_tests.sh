#!/bin/sh
# Build and run the protocol codec test with ASan + UBSan, independent of the firmware Makefile
# (which also runs it, under UBSan, in `make BOARD=host test`). Usage: sh tests/protocol/run_tests.sh
set -eu
here=$(cd "$(dirname "$0")" && pwd)
fw=$(cd "$here/../.." && pwd)
mkdir -p "$fw/build/protocol"
${CC:-gcc} -std=c11 -O1 -g -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wmissing-prototypes \
    -fsanitize=address,undefined -fno-sanitize-recover=all -I"$fw/src" \
    "$fw"/src/protocol/*.c "$here/test_protocol.c" -o "$fw/build/protocol/test_protocol"
cd "$fw" && ./build/protocol/test_protocol
