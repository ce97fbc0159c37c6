"""Firmware board layer, end to end: build every board, check the images fit, and talk to the
placeholder echo firmware (firmware/src/app/main.c) the way the gateway will talk to the real
one: over a pseudo-terminal (host build) and over QEMU's TCP serial port (qemu build), both
through pyserial.

The ARM parts need arm-none-eabi-gcc and qemu-system-arm; without them they skip and say so.
"""

from __future__ import annotations

import json
import os
import queue
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import pytest
import serial

FIRMWARE = Path(__file__).resolve().parents[1] / "firmware"
HOST_BIN = FIRMWARE / "build" / "host" / "rnnpool"
QEMU_ELF = FIRMWARE / "build" / "qemu" / "rnnpool.elf"

HAVE_ARM_GCC = shutil.which("arm-none-eabi-gcc") is not None
HAVE_QEMU = shutil.which("qemu-system-arm") is not None
needs_arm = pytest.mark.skipif(not HAVE_ARM_GCC, reason="arm-none-eabi-gcc is not installed")
needs_qemu = pytest.mark.skipif(
    not (HAVE_ARM_GCC and HAVE_QEMU), reason="qemu-system-arm and/or arm-none-eabi-gcc are not installed"
)

BANNER_RE = re.compile(
    rb"rnnpool-placeholder board=(?P<board>\S+) clock_hz=(?P<clock>\d+) tick_unit=(?P<unit>\S+) "
    rb"ram_bytes=(?P<ram>\d+) static_ram_bytes=(?P<static>\d+) "
    rb"loop_iterations=(?P<iters>\d+) loop_ticks=(?P<ticks>\d+)\r\n"
)
ECHO_PAYLOAD = bytes(range(256)) + bytes(range(0, 256, 3))  # 342 bytes, every byte value


def make(*args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """Run make in firmware/; two jobs at most (the machine is shared with training)."""
    result = subprocess.run(
        ["make", "-C", str(FIRMWARE), "-j2", *args], capture_output=True, text=True, timeout=timeout
    )
    assert result.returncode == 0, f"make {' '.join(args)} failed:\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
    return result


@pytest.fixture(scope="module")
def host_binary() -> Path:
    make("BOARD=host")
    assert HOST_BIN.is_file()
    return HOST_BIN


@pytest.fixture(scope="module")
def qemu_elf() -> Path:
    make("BOARD=qemu")
    assert QEMU_ELF.is_file()
    return QEMU_ELF


def parse_banner(line: bytes) -> dict[str, bytes]:
    match = BANNER_RE.fullmatch(line)
    assert match, f"unexpected banner: {line!r}"
    return match.groupdict()


def read_exactly(port: serial.SerialBase, n: int, timeout: float) -> bytes:
    data = b""
    deadline = time.monotonic() + timeout
    while len(data) < n and time.monotonic() < deadline:
        data += port.read(n - len(data))
    return data


def echo_roundtrip(port: serial.SerialBase, payload: bytes, chunk: int, timeout: float) -> bytes:
    """Send in chunks, reading back as we go, so no buffer on the way ever has to hold it all."""
    received = b""
    for i in range(0, len(payload), chunk):
        piece = payload[i : i + chunk]
        port.write(piece)
        received += read_exactly(port, len(piece), timeout)
    return received


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


# ---- host -------------------------------------------------------------------------------------


def test_host_board_c_tests() -> None:
    """firmware/tests/**/test_*.c, including tests/board/test_host_board.c."""
    result = make("BOARD=host", "test")
    assert "host tests passed" in result.stdout


def test_host_echo_over_stdio(host_binary: Path) -> None:
    result = subprocess.run([str(host_binary)], input=ECHO_PAYLOAD, capture_output=True, timeout=20)
    assert result.returncode == 0, result.stderr  # EOF on stdin ends the host "device"
    banner, _, echoed = result.stdout.partition(b"\n")
    fields = parse_banner(banner + b"\n")
    assert fields["board"] == b"host" and fields["unit"] == b"ns"
    assert echoed == ECHO_PAYLOAD


@pytest.fixture
def host_pty(host_binary: Path) -> Iterator[str]:
    proc = subprocess.Popen([str(host_binary), "--pty"], stdin=subprocess.DEVNULL, stderr=subprocess.PIPE)
    assert proc.stderr is not None
    lines: queue.Queue[bytes] = queue.Queue()

    def pump(stream: IO[bytes]) -> None:
        for line in stream:
            lines.put(line)

    threading.Thread(target=pump, args=(proc.stderr,), daemon=True).start()
    try:
        first = lines.get(timeout=10)
        assert first.startswith(b"PTY /dev/"), first
        yield first.split()[1].decode()
        assert proc.poll() is None, "host firmware died"
    finally:
        stop(proc)


def test_host_echo_over_pty(host_pty: str) -> None:
    with serial.Serial(host_pty, 115200, timeout=1) as port:
        # The board waits for this open (it sees pyserial's input flush) before its banner.
        fields = parse_banner(port.readline())
        assert fields["board"] == b"host"
        assert int(fields["ticks"]) > 0
        assert echo_roundtrip(port, ECHO_PAYLOAD, chunk=100, timeout=5) == ECHO_PAYLOAD
    # A device outlives its host: reopen and it still answers.
    with serial.Serial(host_pty, 115200, timeout=1) as port:
        assert echo_roundtrip(port, b"still here", chunk=10, timeout=5) == b"still here"


# ---- ARM builds --------------------------------------------------------------------------------


@needs_arm
@pytest.mark.qemu
def test_all_boards_build_and_fit() -> None:
    make("all-boards")
    expected = {"qemu": (131072, 1048576), "nucleo-f439zi": (196608, 2097152)}
    for board, (ram, flash) in expected.items():
        size_file = FIRMWARE / "build" / board / "size.json"
        assert size_file.is_file(), f"{size_file} missing"
        size = json.loads(size_file.read_text())
        assert size["board"] == board
        assert size["ram_bytes"] == ram and size["flash_budget_bytes"] == flash
        assert 0 < size["static_ram_bytes"] <= size["ram_bytes"]
        assert 0 < size["flash_bytes"] <= size["flash_budget_bytes"]
        assert (FIRMWARE / "build" / board / "rnnpool.bin").is_file()


# ---- QEMU --------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def qemu_serial(qemu_elf: Path) -> Iterator[serial.SerialBase]:
    port_number = free_port()
    proc = subprocess.Popen(
        ["sh", str(FIRMWARE / "tools" / "run-qemu.sh"), "--tcp", str(port_number), str(qemu_elf)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        # server=on,wait=on: QEMU listens first and starts the guest once we connect.
        deadline = time.monotonic() + 20
        while True:
            try:
                port = serial.serial_for_url(f"socket://127.0.0.1:{port_number}", timeout=1)
                break
            except serial.SerialException:
                if proc.poll() is not None or time.monotonic() > deadline:
                    stop(proc)
                    out = proc.stdout.read() if proc.stdout else b""
                    pytest.fail(f"QEMU did not open its serial port: {out!r}")
                time.sleep(0.1)
        with port:
            yield port
    finally:
        stop(proc)


@needs_qemu
@pytest.mark.qemu
def test_qemu_echo_over_tcp(qemu_serial: serial.SerialBase) -> None:
    # The emulated USART drops what arrives before UE/RE are set: wait for the banner first.
    deadline = time.monotonic() + 15
    line = b""
    while not line.endswith(b"\n") and time.monotonic() < deadline:
        line += qemu_serial.readline()
    fields = parse_banner(line)
    assert fields["board"] == b"qemu"
    assert fields["unit"] == b"instructions"
    assert int(fields["clock"]) == 168_000_000
    assert int(fields["ram"]) == 131072
    assert 0 < int(fields["static"]) < 131072
    # The loop is a few instructions per iteration (6 with GCC 12 -O2): the counter moves, and
    # by a plausible amount.
    iterations, ticks = int(fields["iters"]), int(fields["ticks"])
    assert 2 * iterations <= ticks <= 20 * iterations
    # RX by interrupt into the ring, TX polled; the emulated UART moves ~10-15 KB/s.
    assert echo_roundtrip(qemu_serial, ECHO_PAYLOAD, chunk=64, timeout=10) == ECHO_PAYLOAD


@needs_qemu
@pytest.mark.qemu
def test_qemu_target_tests() -> None:
    """firmware/tests/**/qemu_test_*.c on the emulated M4, e.g. the instruction-counter
    calibration: exactly one TIM2 tick per instruction under -icount shift=0."""
    result = make("BOARD=qemu", "test", timeout=600)
    assert "qemu tests passed" in result.stdout
    assert "loop N=100000: 200001 ticks" in result.stdout
    assert os.path.isfile(FIRMWARE / "build" / "qemu" / "test" / "tests" / "board" / "qemu_test_counter.elf")
