"""Firmware board layer, end to end: build every board, check the images fit, and talk to the
firmware (the protocol app, firmware/src/app/) the way the gateway does: over stdin/stdout and a
pseudo-terminal (host build) and over QEMU's TCP serial port (qemu build), through pyserial. The
board's UART must carry every byte value both ways: a DATA frame with all 256 of them is checked
by the device's CRC (it answers the CANCEL that follows with "at row 3").

The ARM parts need arm-none-eabi-gcc and qemu-system-arm; without them they skip and say so.
"""

from __future__ import annotations

import json
import os
import queue
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

from gateway import protocol as P

FIRMWARE = Path(__file__).resolve().parents[1] / "firmware"
HOST_BIN = FIRMWARE / "build" / "host" / "rnnpool"
QEMU_ELF = FIRMWARE / "build" / "qemu" / "rnnpool.elf"

HAVE_ARM_GCC = shutil.which("arm-none-eabi-gcc") is not None
HAVE_QEMU = shutil.which("qemu-system-arm") is not None
needs_arm = pytest.mark.skipif(not HAVE_ARM_GCC, reason="arm-none-eabi-gcc is not installed")
needs_qemu = pytest.mark.skipif(
    not (HAVE_ARM_GCC and HAVE_QEMU), reason="qemu-system-arm and/or arm-none-eabi-gcc are not installed"
)

ALL_BYTES = (bytes(range(256)) * 4)[: 3 * 320]  # three image rows holding every byte value
# DETECT, one DATA frame, CANCEL: the device ACKs the three and answers ERROR(CANCELLED, "at row 3").
TRANSPARENCY = (
    P.encode(P.Detect(1, 320, 320), seq=0) + P.encode(P.Data(0, ALL_BYTES), seq=1) + P.encode(P.Cancel(1), seq=2)
)


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


def decode_all(data: bytes) -> list[P.AnyMessage]:
    events = P.FrameReceiver().feed(data)
    assert all(isinstance(ev, P.Frame) for ev in events), events
    return [P.decode_frame(ev).msg for ev in events if isinstance(ev, P.Frame)]


def read_messages(port: serial.SerialBase, count: int, timeout: float) -> list[P.AnyMessage]:
    """The next `count` frames from the board, decoded (every one must be good)."""
    rx = P.FrameReceiver()
    out: list[P.AnyMessage] = []
    deadline = time.monotonic() + timeout
    while len(out) < count and time.monotonic() < deadline:
        for ev in rx.feed(port.read(max(1, port.in_waiting))):
            assert isinstance(ev, P.Frame), ev
            out.append(P.decode_frame(ev).msg)
    assert len(out) == count, out
    return out


def check_transparency(messages: list[P.AnyMessage]) -> None:
    acks = [m.ack_seq for m in messages if isinstance(m, P.Ack)]
    errors = [m for m in messages if isinstance(m, P.Error)]
    assert acks == [0, 1, 2], messages
    assert len(errors) == 1 and errors[0].code == P.ErrorCode.CANCELLED and "at row 3" in errors[0].text


def handshake(port: serial.SerialBase, nonce: int, timeout: float) -> P.Hello:
    port.write(b"\x00" + P.encode(P.HelloRequest(nonce)))
    (hello,) = read_messages(port, 1, timeout)
    assert isinstance(hello, P.Hello) and hello.reason == P.HelloReason.REPLY and hello.nonce == nonce
    return hello


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


def test_host_protocol_over_stdio(host_binary: Path) -> None:
    request = P.encode(P.HelloRequest(7)) + TRANSPARENCY
    result = subprocess.run([str(host_binary)], input=request, capture_output=True, timeout=20)
    assert result.returncode == 0, result.stderr  # EOF on stdin ends the host "device"
    boot, reply, *rest = decode_all(result.stdout)
    assert isinstance(boot, P.Hello) and boot.reason == P.HelloReason.BOOT
    assert boot.board == "host" and boot.tick_unit == P.TickUnit.NS
    assert isinstance(reply, P.Hello) and reply.reason == P.HelloReason.REPLY and reply.nonce == 7
    check_transparency(rest)


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


def test_host_protocol_over_pty(host_pty: str) -> None:
    with serial.Serial(host_pty, 115200, timeout=0.1) as port:
        # The board waits for this open (it sees pyserial's input flush) before its boot HELLO.
        (boot,) = read_messages(port, 1, 5)
        assert isinstance(boot, P.Hello) and boot.reason == P.HelloReason.BOOT and boot.board == "host"
        handshake(port, 1, 5)
        port.write(TRANSPARENCY)
        check_transparency(read_messages(port, 4, 5))
    # A device outlives its host: reopen and it still answers.
    with serial.Serial(host_pty, 115200, timeout=0.1) as port:
        handshake(port, 2, 5)


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
def test_qemu_protocol_over_tcp(qemu_serial: serial.SerialBase) -> None:
    # The emulated USART drops what arrives before UE/RE are set: wait for the boot HELLO first.
    qemu_serial.timeout = 0.1
    (boot,) = read_messages(qemu_serial, 1, 15)
    assert isinstance(boot, P.Hello) and boot.reason == P.HelloReason.BOOT
    assert boot.board == "qemu" and boot.tick_unit == P.TickUnit.INSTRUCTIONS
    assert boot.clock_hz == 168_000_000 and boot.ram_bytes == 131072
    # RX by interrupt into the ring, TX polled; the emulated UART moves ~10-15 KB/s.
    handshake(qemu_serial, 3, 5)
    qemu_serial.write(TRANSPARENCY)
    check_transparency(read_messages(qemu_serial, 4, 10))


@needs_qemu
@pytest.mark.qemu
def test_qemu_target_tests() -> None:
    """firmware/tests/**/qemu_test_*.c on the emulated M4, e.g. the instruction-counter
    calibration: exactly one TIM2 tick per instruction under -icount shift=0."""
    result = make("BOARD=qemu", "test", timeout=600)
    assert "qemu tests passed" in result.stdout
    assert "loop N=100000: 200001 ticks" in result.stdout
    assert os.path.isfile(FIRMWARE / "build" / "qemu" / "test" / "tests" / "board" / "qemu_test_counter.elf")
