"""Shared fixtures for the gateway tests: simulated boards, dataset photos, and the skip rules.

Device-backed tests use the real firmware (host build, on a pty behind the sim relay) through the real
`DeviceSession`; there are no device mocks. They skip, with the reason, only when the firmware cannot
be built or does not answer HELLO.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from gateway.sim import SimDevice, SimUnavailableError, ensure_firmware, start_sim

REPO_ROOT = Path(__file__).resolve().parent.parent
DATASET = REPO_ROOT.parent / "shared" / "datasets" / "faces"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session")
def host_firmware() -> Path:
    try:
        return ensure_firmware("host")
    except SimUnavailableError as exc:
        pytest.skip(f"host firmware cannot be built: {exc}")


@pytest.fixture(scope="session")
def protocol_firmware(host_firmware: Path) -> Path:
    """The host firmware, known to answer HELLO (the protocol app loop is in)."""
    from gateway.device import DeviceError, DeviceSession

    try:
        sim = start_sim("host")
    except SimUnavailableError as exc:
        pytest.skip(f"host firmware does not start: {exc}")
    try:
        session = DeviceSession(sim.url, timeout_s=5.0)
        try:
            session.open()
        except DeviceError as exc:
            pytest.skip(f"host firmware does not answer HELLO yet ({type(exc).__name__}: {exc})")
        finally:
            session.close()
    finally:
        sim.stop()
    return host_firmware


@pytest.fixture
def sim_device(protocol_firmware: Path) -> Iterator[SimDevice]:
    """A fresh host-build board for one test (each test gets its own, so none sees another's state)."""
    with start_sim("host") as sim:
        yield sim


def dev_photos(count: int) -> list[tuple[str, bytes]]:
    """The first `count` dev-split photos (read at test time; never copied into the repository)."""
    index = DATASET / "dev.jsonl"
    if not index.exists():
        pytest.skip(f"dataset not found at {DATASET}")
    out = []
    with index.open() as fh:
        for line in fh:
            record = json.loads(line)
            out.append((Path(record["image"]).name, (DATASET / record["image"]).read_bytes()))
            if len(out) == count:
                break
    return out
