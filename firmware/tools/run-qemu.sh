#!/bin/sh
# Run a firmware ELF on QEMU's netduinoplus2 (STM32F405) the way the tests and the gateway do.
#   run-qemu.sh [--tcp PORT] ELF [extra qemu-system-arm arguments...]
# UART (USART1) on this terminal's stdin/stdout, or with --tcp on tcp:127.0.0.1:PORT as a
# server that waits for its client before starting the guest (pyserial:
# serial_for_url("socket://127.0.0.1:PORT")). -icount shift=0 makes one guest instruction one
# nanosecond of virtual time, so runs are deterministic and TIM2 counts instructions.
# The firmware ends QEMU with its own exit status through semihosting (board_exit).
set -eu
serial=stdio
if [ "${1:-}" = "--tcp" ]; then
    [ $# -ge 3 ] || { echo "usage: $0 [--tcp PORT] ELF [qemu args...]" >&2; exit 2; }
    serial="tcp:127.0.0.1:$2,server=on,wait=on"
    shift 2
fi
[ $# -ge 1 ] || { echo "usage: $0 [--tcp PORT] ELF [qemu args...]" >&2; exit 2; }
elf=$1
shift
exec "${QEMU:-qemu-system-arm}" -M netduinoplus2 -icount shift=0 -nographic -monitor none \
    -semihosting-config enable=on,target=native -serial "$serial" -kernel "$elf" "$@"
