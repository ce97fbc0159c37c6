"""The device link on the emulated Cortex-M4: the ARM firmware (firmware/build/qemu/rnnpool.elf) on QEMU's
netduinoplus2 with -icount shift=0, behind the sim relay. Same checks as tests/test_link_host.py where
they matter on the target: the handshake, one real image against the numpy reference with the figures
the target reports (instructions, peak RAM), the error paths, noise, RESET and SET_BAUD.

The emulated UART moves 10-15 KB/s whatever the baud rate, so an image takes about 8 s here.
"""

from __future__ import annotations

import json
import random
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_link_host import REPO, RawLink, build_firmware, check_hello, check_result, dev_frames, reference_raw, session

from gateway import protocol as P
from gateway.sim import SimDevice, start_sim

pytestmark = [
    pytest.mark.qemu,
    pytest.mark.timeout(300),
    pytest.mark.skipif(
        shutil.which("qemu-system-arm") is None or shutil.which("arm-none-eabi-gcc") is None,
        reason="qemu-system-arm and/or arm-none-eabi-gcc are not installed",
    ),
]

PEAK_RAM_TARGET = 64 * 1024


@pytest.fixture(scope="module")
def qemu_elf() -> Path:
    return build_firmware("qemu")


@pytest.fixture
def sim(qemu_elf: Path) -> Iterator[SimDevice]:
    with start_sim("qemu") as device:
        yield device


def test_qemu_hello(sim: SimDevice) -> None:
    with RawLink(sim.url) as link:
        boot = link.wait_hello(lambda h: h.reason == P.HelloReason.BOOT, 10.0)
        check_hello(boot, "qemu")
        assert (boot.tick_unit, boot.clock_hz, boot.ram_bytes) == (P.TickUnit.INSTRUCTIONS, 168_000_000, 131_072)
        link.write(P.encode(P.Ping(1), seq=0))
        link.wait_hello(lambda h: h.reason == P.HelloReason.NOT_SYNCED, 3.0)
        link.handshake()
        link.send(P.Ping(0xFEEDF00D))
        assert link.expect(P.Pong).token == 0xFEEDF00D


def test_qemu_detect_matches_the_reference(sim: SimDevice) -> None:
    frame = dev_frames(1)[0]
    with session(sim.url, timeout_s=5.0) as s:
        assert s.info is not None and s.info.tick_unit == "instructions"
        res = s.detect(frame, stats=True, deadline_s=120.0)
    check_result(res, frame)
    # Peak RAM = static RAM (the link map) + the painted stack's high water, within the target.
    size = json.loads((REPO / "firmware" / "build" / "qemu" / "size.json").read_text())
    assert abs(res.peak_ram_bytes - res.stack_high_water_bytes - size["static_ram_bytes"]) <= 8
    assert res.peak_ram_bytes <= PEAK_RAM_TARGET, f"peak RAM {res.peak_ram_bytes} B"
    seconds = res.seconds(res.ticks_compute)
    assert seconds is not None
    print(
        f"qemu: {len(res.boxes)} boxes in {res.host_seconds:.1f} s wall; instructions: compute "
        f"{res.ticks_compute} ({seconds:.2f} s at 168 MHz, 1 instr/cycle), receive {res.ticks_receive}, "
        f"total {res.ticks_total}; peak RAM {res.peak_ram_bytes} B (stack {res.stack_high_water_bytes} B)"
    )


def test_qemu_errors_noise_and_reset(sim: SimDevice) -> None:
    frame = dev_frames(1)[0]
    rng = random.Random(9)
    with RawLink(sim.url) as link:
        link.handshake()
        link.send(P.Detect(1, 320, 240))
        link.expect_error(P.ErrorCode.BAD_SIZE, 1)
        link.send(P.Detect(2, 320, 320))
        link.send(P.Data(0, frame[0:3].tobytes()))
        link.send(P.Data(9, frame[9:12].tobytes()))
        link.expect_error(P.ErrorCode.BAD_ROW, 2)
        link.send(P.Detect(3, 320, 320))
        link.send(P.Data(0, frame[0:3].tobytes()))
        link.send(P.Cancel(3))
        link.expect_error(P.ErrorCode.CANCELLED, 3)
        # Noise: more than the 2 KiB UART ring holds, so some of it is also lost to overruns.
        link.write(bytes(rng.randrange(256) for _ in range(3000)))
        link.send(P.Ping(4), timeout_s=10.0)
        assert link.expect(P.Pong).token == 4
        # RESET mid-image: QEMU reloads the image and the board says HELLO again on the same port.
        link.send(P.Detect(5, 320, 320))
        link.send(P.Data(0, frame[0:3].tobytes()))
        link.send(P.Reset())
        link.wait_hello(lambda h: h.reason == P.HelloReason.BOOT, 10.0)
        link.handshake()
        link.send(P.Ping(6))
        assert link.expect(P.Pong).token == 6


def test_qemu_set_baud_and_exact_raw_result(sim: SimDevice) -> None:
    frame = dev_frames(2)[1]
    with session(sim.url, target_baud=921_600) as s:
        assert s.baudrate == 921_600 and s.ping() > 0
    # The session's handshake resets the device's link state, not its UART: it is still at 921600
    # (the emulated USART carries the bytes whatever its BRR says). Stream by hand, stop-and-wait,
    # and compare the protocol's own units.
    with RawLink(sim.url) as link:
        link.handshake()
        t0 = time.monotonic()
        link.send_image(frame, 7)
        result = link.expect(P.Result, 60.0)
        assert result.boxes == reference_raw(frame.tobytes())
        print(f"qemu stop-and-wait image: {time.monotonic() - t0:.1f} s wall")
