"""Device pool: dispatch, FIFO order, backpressure, deadlines, cancellation, quarantine and recovery.

Device-backed tests run the real host firmware through the real DeviceSession.
"""

from __future__ import annotations

import concurrent.futures
import threading
import time
from collections.abc import Iterator

import numpy as np
import pytest

from gateway.errors import ClientGoneError, DeadlineExceededError, DeviceFailedError, NoDeviceReadyError, QueueFullError
from gateway.pool import DevicePool, DeviceState, Outcome
from gateway.settings import Settings
from gateway.sim import FaultSpec, SimDevice, start_sim


def fast(**overrides: object) -> Settings:
    values: dict[str, object] = {
        "heartbeat_s": 0.3,
        "reconnect_min_s": 0.1,
        "reconnect_max_s": 0.5,
        "request_timeout_s": 60.0,
    }
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


def frames(n: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        frame = np.zeros((320, 320), np.uint8)
        frame[:] = rng.integers(0, 256, (320, 320), dtype=np.uint8) // (i + 2)
        out.append(frame)
    return out


def boxes_of(outcome: Outcome) -> list[tuple[float, ...]]:
    return [(b.x, b.y, b.w, b.h, b.score) for b in outcome.result.boxes]


def wait_for(predicate: object, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(0.05)


@pytest.fixture
def pool(sim_device: SimDevice) -> Iterator[DevicePool]:
    with DevicePool([sim_device.url], fast(queue_size=4)) as p:
        assert p.wait_ready(20), p.snapshots()
        yield p


# ------------------------------------------------------------------------------------------------
# Without a device


def test_unreachable_device_stays_offline_and_retries() -> None:
    with DevicePool(["socket://127.0.0.1:9"], fast()) as p:
        wait_for(lambda: p.snapshots()[0].last_error is not None, 5, "a failed connect")
        snap = p.snapshots()[0]
        assert snap.state in (DeviceState.OFFLINE, DeviceState.QUARANTINED)
        assert "connect failed" in (snap.last_error or "")
        assert not p.ready()
        with pytest.raises(NoDeviceReadyError):
            p.submit(np.zeros((320, 320), np.uint8))
    assert all(not w.thread.is_alive() for w in p.workers)


def test_no_devices() -> None:
    with DevicePool([], fast()) as p:
        assert not p.ready() and p.snapshots() == []
        with pytest.raises(NoDeviceReadyError) as exc:
            p.submit(np.zeros((320, 320), np.uint8))
        assert "no devices configured" in exc.value.message


def test_unknown_pin() -> None:
    with DevicePool(["socket://127.0.0.1:9"], fast()) as p, pytest.raises(NoDeviceReadyError):
        p.submit(np.zeros((320, 320), np.uint8), device="socket://127.0.0.1:10")


# ------------------------------------------------------------------------------------------------
# With the real firmware


def test_results_are_deterministic_and_fifo(pool: DevicePool) -> None:
    inputs = frames(4)
    reference = [boxes_of(pool.submit(f)[0].result(60)) for f in inputs]
    done: list[int] = []
    lock = threading.Lock()
    futures = []
    for i, frame in enumerate(inputs):
        future, _ = pool.submit(frame)

        def record(_: object, i: int = i) -> None:
            with lock:
                done.append(i)

        future.add_done_callback(record)
        futures.append(future)
    results = [f.result(120) for f in futures]
    assert done == [0, 1, 2, 3], "one device serves the queue in arrival order"
    assert [boxes_of(r) for r in results] == reference
    for r in results:
        assert r.result.ticks_total > 0 and r.result.peak_ram_bytes > 0
        assert r.device.board and r.device.model_hash
        assert r.transfer_s >= 0 and r.compute_s >= 0 and r.queue_wait_s >= 0


def test_queue_full(pool: DevicePool) -> None:
    accepted: list[concurrent.futures.Future[Outcome]] = []
    refused = 0
    for frame in frames(12):
        try:
            accepted.append(pool.submit(frame)[0])
        except QueueFullError as exc:
            refused += 1
            assert int(exc.headers["Retry-After"]) >= 1
    assert refused >= 12 - (4 + 1)
    for future in accepted:
        assert future.result(120).result is not None


def test_deadline(pool: DevicePool) -> None:
    future, _ = pool.submit(frames(1)[0], timeout_s=0.001)
    with pytest.raises(DeadlineExceededError):
        future.result(30)
    assert pool.submit(frames(1)[0])[0].result(60) is not None, "the device is usable afterwards"


def test_cancel_mid_transfer(pool: DevicePool) -> None:
    cancel = threading.Event()

    def progress(stage: str, info: dict[str, object]) -> None:
        if stage == "transmitting":
            cancel.set()

    future, _ = pool.submit(frames(1)[0], progress=progress, cancel=cancel)
    with pytest.raises(ClientGoneError):
        future.result(30)
    reference = frames(2)[1]
    assert pool.submit(reference)[0].result(60) is not None
    snap = pool.snapshots()[0]
    assert snap.state in (DeviceState.READY, DeviceState.BUSY) and snap.requests_failed == 0


def test_crash_quarantines_and_recovers(sim_device: SimDevice) -> None:
    with DevicePool([sim_device.url], fast()) as p:
        assert p.wait_ready(20)
        before = p.snapshots()[0].link
        sim_device.crash()
        wait_for(lambda: not p.ready(), 10, "the pool to notice the dead device")
        assert p.snapshots()[0].state in (DeviceState.QUARANTINED, DeviceState.OFFLINE)
        with pytest.raises(NoDeviceReadyError):
            p.submit(frames(1)[0])
        sim_device.restart()
        assert p.wait_ready(20), p.snapshots()
        snap = p.snapshots()[0]
        assert snap.reconnects >= 1
        assert all(snap.link[k] >= before[k] for k in before), "link counters never go backwards"
        assert p.submit(frames(1)[0])[0].result(60) is not None


def test_device_dying_mid_request_fails_fast_with_one_device(sim_device: SimDevice) -> None:
    with DevicePool([sim_device.url], fast()) as p:
        assert p.wait_ready(20)
        crashed = threading.Event()

        def progress(stage: str, info: dict[str, object]) -> None:
            if stage == "transmitting" and not crashed.is_set():
                crashed.set()
                sim_device.crash()

        started = time.monotonic()
        future, _ = p.submit(frames(1)[0], progress=progress)
        with pytest.raises((DeviceFailedError, NoDeviceReadyError, DeadlineExceededError)):
            future.result(60)
        assert time.monotonic() - started < 30


def test_two_devices_share_work_and_survive_one_dying(protocol_firmware: object) -> None:
    with start_sim("host") as a, start_sim("host") as b, DevicePool([a.url, b.url], fast(queue_size=16)) as p:
        wait_for(lambda: p.devices_ready() == 2, 20, "both devices")
        futures = [p.submit(f)[0] for f in frames(8)]
        for future in futures:
            future.result(120)
        served = {s.url: s.requests_ok for s in p.snapshots()}
        assert sum(served.values()) == 8 and all(n > 0 for n in served.values()), served

        # Pinning sends work to the named device only.
        pinned = p.submit(frames(1)[0], device=b.url)[0].result(60)
        assert pinned.device.url == b.url

        # One device dies mid-request: the request is retried on the other one.
        crashed = threading.Event()

        def progress(stage: str, info: dict[str, object]) -> None:
            if stage == "transmitting" and not crashed.is_set():
                crashed.set()
                a.crash()

        outcome = p.submit(frames(1)[0], progress=progress, device=None)[0].result(60)
        if crashed.is_set() and outcome.attempts > 1:
            assert outcome.device.url == b.url
        wait_for(lambda: p.devices_ready() == 1, 10, "the crash to be noticed")
        assert p.submit(frames(1)[0])[0].result(60).device.url == b.url


def test_requests_refused_before_the_device_leave_it_idle(pool: DevicePool) -> None:
    cancel = threading.Event()
    cancel.set()
    future, _ = pool.submit(frames(1)[0], cancel=cancel)
    with pytest.raises(ClientGoneError):
        future.result(30)
    wrong_shape = np.zeros((240, 320), np.uint8)
    with pytest.raises(DeviceFailedError):
        pool.submit(wrong_shape)[0].result(30)
    wait_for(lambda: pool.snapshots()[0].state == DeviceState.READY, 5, "the device to be idle again")


def test_close_cancels_work_in_flight(sim_device: SimDevice) -> None:
    sim_device.set_fault(FaultSpec(delay_s=0.1, direction="to_device"))  # a frame now takes seconds
    pool = DevicePool([sim_device.url], fast())
    pool.start()
    try:
        assert pool.wait_ready(20)
        started = threading.Event()
        future, _ = pool.submit(frames(1)[0], progress=lambda stage, info: started.set())
        assert started.wait(10)
    finally:
        t0 = time.monotonic()
        pool.close()
    assert time.monotonic() - t0 < 5
    with pytest.raises(ClientGoneError):
        future.result(1)
    assert all(not w.thread.is_alive() for w in pool.workers)
