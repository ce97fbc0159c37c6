"""The engine's real ARM build (Cortex-M4 DSP kernels, hand-scheduled FastGRNN) under QEMU gives exactly
the golden vectors' boxes.

Builds firmware/tests/engine/qemu_test_engine.c (``make -C firmware bench-image``), which links every
golden vector's frame into flash and streams it through the engine row by row, and runs it on
``qemu-system-arm -M netduinoplus2 -icount shift=0``. The boxes it prints must equal boxes.txt line for
line, and the same image run twice must cost the same number of instructions (reset restarts fully).
The host tests (make -C firmware BOARD=host test) check every intermediate stage; this checks that the
ARM build agrees at the end.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.qemu

ROOT = Path(__file__).resolve().parent.parent
FIRMWARE = ROOT / "firmware"
VECTORS = FIRMWARE / "tests" / "vectors"
ELF = FIRMWARE / "build/qemu/test/tests/engine/qemu_test_engine.elf"


def _missing_tools() -> list[str]:
    return [t for t in ("qemu-system-arm", "arm-none-eabi-gcc", "make") if shutil.which(t) is None]


@pytest.fixture(scope="module")
def qemu_report() -> str:
    missing = _missing_tools()
    if missing:
        pytest.skip(f"needs {', '.join(missing)} on PATH")
    build = subprocess.run(["make", "-C", str(FIRMWARE), "bench-image", "-j2"], capture_output=True, text=True)
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
    run = subprocess.run(
        ["sh", str(FIRMWARE / "tools/run-qemu.sh"), str(ELF)],
        capture_output=True,
        text=True,
        timeout=600,
        stdin=subprocess.DEVNULL,
    )
    assert run.returncode == 0, f"QEMU exit status {run.returncode}:\n{run.stdout[-3000:]}{run.stderr[-2000:]}"
    return run.stdout.replace("\r", "")


def _golden_boxes(name: str) -> list[list[int]]:
    text = (VECTORS / name / "boxes.txt").read_text()
    return [[int(v) for v in line.split()] for line in text.splitlines() if line.strip()]


def _qemu_boxes(report: str, name: str) -> list[list[int]]:
    prefix = f"{name} box "
    return [[int(v) for v in line[len(prefix) :].split()] for line in report.splitlines() if line.startswith(prefix)]


@pytest.mark.parametrize("name", ["scene", "letterboxed", "black", "noise"])
def test_qemu_boxes_equal_golden(qemu_report: str, name: str) -> None:
    assert (VECTORS / name / "input.u8").exists()
    golden = _golden_boxes(name)
    got = _qemu_boxes(qemu_report, name)
    assert got == golden, f"{name}: QEMU build's boxes differ from boxes.txt"
    assert f"{name}: ok" in qemu_report


def test_qemu_candidates_match_manifest(qemu_report: str) -> None:
    import json

    for name in ("scene", "letterboxed", "black", "noise"):
        manifest = json.loads((VECTORS / name / "manifest.json").read_text())
        line = next(ln for ln in qemu_report.splitlines() if ln.startswith(f"{name} engine_ticks "))
        candidates = int(line.split()[4])
        assert candidates == manifest["candidates"], name


def test_qemu_repeat_is_identical(qemu_report: str) -> None:
    """The same image twice costs the same; only the 100 Hz SysTick handler (~30 instructions per
    10^7) may land in one run more often than in the other."""
    first = next(ln for ln in qemu_report.splitlines() if ln.startswith("scene instructions "))
    again = next(ln for ln in qemu_report.splitlines() if ln.startswith("scene repeat_instructions "))
    assert abs(int(first.split()[2]) - int(again.split()[2])) <= 200
