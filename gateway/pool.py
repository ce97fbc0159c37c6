"""Device pool: a bounded FIFO queue in front of one worker thread per device.

Sessions are blocking (a UART is), so each device gets its own thread that owns its `DeviceSession`
outright: connect with backoff, take the oldest waiting request it may serve, run it, report. The
asyncio side only enqueues and awaits a `concurrent.futures.Future`. Dispatch is "first idle device
takes the head of the queue": idle workers all wait on one condition variable.

Health: a device that fails (link error, reset, unanswered ping) is quarantined: its session is
closed, its in-flight request is retried once on whichever device is next free (if its deadline
allows), and the worker reconnects with exponential backoff. Idle workers ping their device every
`heartbeat_s`, so readiness follows a device that dies or returns even when no traffic flows.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import enum
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from gateway.errors import (
    ClientGoneError,
    DeadlineExceededError,
    DeviceFailedError,
    GatewayError,
    NoDeviceReadyError,
    QueueFullError,
)
from gateway.settings import Settings
from gateway.views import check_views, detect_views

if TYPE_CHECKING:
    from gateway.sim import SimDevice

log = logging.getLogger("gateway.pool")

ProgressFn = Callable[[str, dict[str, Any]], None]
LINK_FIELDS = (
    "bytes_tx",
    "bytes_rx",
    "frames_tx",
    "frames_rx",
    "crc_errors",
    "naks",
    "retransmits",
    "resyncs",
    "timeouts",
    "device_resets",
)


class Session(Protocol):
    """What the pool needs from `gateway.device.DeviceSession`."""

    @property
    def info(self) -> Any: ...

    @property
    def stats(self) -> Any: ...

    def open(self) -> Any: ...

    def ping(self) -> float: ...

    def detect(
        self,
        frame: np.ndarray,
        *,
        deadline_s: float | None = None,
        progress: ProgressFn | None = None,
        cancel: threading.Event | None = None,
        stats: bool = False,
    ) -> Any: ...

    def close(self) -> None: ...


SessionFactory = Callable[[str], Session]


class DeviceState(enum.StrEnum):
    READY = "ready"
    BUSY = "busy"
    OFFLINE = "offline"
    QUARANTINED = "quarantined"


@dataclass(frozen=True)
class DeviceIdentity:
    url: str
    board: str
    firmware_version: str
    model_id: str
    model_hash: str
    protocol_version: int
    input_width: int
    input_height: int
    clock_hz: int | None
    tick_unit: str
    ram_bytes: int | None
    max_baud: int | None
    baud: int | None


@dataclass(frozen=True)
class DeviceSnapshot:
    url: str
    state: DeviceState
    identity: DeviceIdentity | None
    connected_since: float | None
    last_error: str | None
    requests_ok: int
    requests_failed: int
    requests_cancelled: int
    reconnects: int
    link: dict[str, int]


@dataclass(frozen=True)
class Outcome:
    """A finished detection and how long each part took, as the host saw it."""

    result: Any  # gateway.device.DetectResult
    device: DeviceIdentity
    queue_wait_s: float
    transfer_s: float
    compute_s: float
    attempts: int
    views: int = 1  # device passes fused into `result`


@dataclass
class _Request:
    frame: np.ndarray
    deadline: float  # time.monotonic()
    cancel: threading.Event
    progress: ProgressFn | None
    pin: str | None
    views: int  # device passes fused into one answer (gateway/views.py)
    future: concurrent.futures.Future[Outcome] = field(default_factory=concurrent.futures.Future)
    enqueued: float = field(default_factory=time.monotonic)
    attempts: int = 0

    def fail(self, error: BaseException) -> None:
        if not self.future.done():
            self.future.set_exception(error)


def _hex(value: Any) -> str:
    if isinstance(value, int):
        return f"{value:08x}"
    if isinstance(value, bytes | bytearray):
        return bytes(value).hex()
    return str(value)


def _identity(url: str, info: Any, baud: int | None) -> DeviceIdentity:
    clock = int(getattr(info, "clock_hz", 0) or 0)
    return DeviceIdentity(
        url=url,
        board=str(getattr(info, "board", "unknown")),
        firmware_version=str(getattr(info, "firmware_version", "unknown")),
        model_id=_hex(getattr(info, "model_id", "")),
        model_hash=_hex(getattr(info, "model_hash", "")),
        protocol_version=int(getattr(info, "protocol_version", 0)),
        input_width=int(getattr(info, "input_width", 320)),
        input_height=int(getattr(info, "input_height", 320)),
        clock_hz=clock or None,
        tick_unit=tick_unit_name(getattr(info, "tick_unit", "")),
        ram_bytes=int(getattr(info, "ram_bytes", 0) or 0) or None,
        max_baud=int(getattr(info, "max_baud", 0) or 0) or None,
        baud=baud,
    )


def tick_unit_name(value: Any) -> str:
    name = getattr(value, "name", None)
    return str(name).lower() if name is not None else str(value)


def _link_counts(stats: Any) -> dict[str, int]:
    return {name: int(getattr(stats, name, 0) or 0) for name in LINK_FIELDS}


def _default_factory(settings: Settings) -> SessionFactory:
    def make(url: str) -> Session:
        from gateway.device import DeviceSession

        session: Session = DeviceSession(
            url,
            baudrate=settings.baudrate,
            target_baud=settings.target_baud,
            timeout_s=settings.device_timeout_s,
            max_retries=settings.device_max_retries,
        )
        return session

    return make


class _Worker:
    """Owns one device: its session, its state and its thread."""

    def __init__(self, pool: DevicePool, url: str, display_url: str) -> None:
        self.pool = pool
        self.url = url  # what the session opens
        self.display_url = display_url  # what clients see (e.g. "sim" -> socket://127.0.0.1:PORT)
        self.state = DeviceState.OFFLINE
        self.identity: DeviceIdentity | None = None
        self.session: Session | None = None
        self.connected_since: float | None = None
        self.last_error: str | None = None
        self.requests_ok = 0
        self.requests_failed = 0
        self.requests_cancelled = 0
        self.current: _Request | None = None  # the request on the device now, so shutdown can cancel it
        self.reconnects = 0
        self.link_base = dict.fromkeys(LINK_FIELDS, 0)  # counts of closed sessions, so totals never go back
        self.backoff = pool.settings.reconnect_min_s
        self.next_attempt = 0.0
        self.ever_connected = False
        self.thread = threading.Thread(target=self._run, name=f"device-{display_url}", daemon=True)

    # -- state visible to other threads ------------------------------------------------------------

    def link(self) -> dict[str, int]:
        session = self.session
        current = _link_counts(session.stats) if session is not None else {}
        counts = {k: self.link_base[k] + current.get(k, 0) for k in LINK_FIELDS}
        # The MTU is a gauge, not a counter: the current session's value, never summed (0: no session).
        counts["mtu"] = int(getattr(session.stats, "mtu", 0) or 0) if session is not None else 0
        return counts

    def snapshot(self) -> DeviceSnapshot:
        return DeviceSnapshot(
            url=self.display_url,
            state=self.state,
            identity=self.identity,
            connected_since=self.connected_since,
            last_error=self.last_error,
            requests_ok=self.requests_ok,
            requests_failed=self.requests_failed,
            requests_cancelled=self.requests_cancelled,
            reconnects=self.reconnects,
            link=self.link(),
        )

    def up(self) -> bool:
        return self.state in (DeviceState.READY, DeviceState.BUSY)

    # -- thread --------------------------------------------------------------------------------------

    def _run(self) -> None:
        pool = self.pool
        while not pool.stopping.is_set():
            if self.session is None:
                self._connect()
                continue
            request = pool.take(self, timeout=pool.settings.heartbeat_s)
            if pool.stopping.is_set():
                if request is not None:
                    request.fail(NoDeviceReadyError("the gateway is shutting down"))
                break
            if request is None:
                self._heartbeat()
            else:
                self._serve(request)
        self._drop_session(None)

    def _connect(self) -> None:
        pool = self.pool
        pool.expire_stranded()
        wait = self.next_attempt - time.monotonic()
        if wait > 0:
            pool.stopping.wait(min(wait, 0.5))
            return
        try:
            session = pool.factory(self.url)
        except Exception as exc:
            self._connect_failed(exc)
            return
        try:
            info = session.open()
        except Exception as exc:
            with contextlib.suppress(Exception):
                session.close()
            self._connect_failed(exc)
            return
        baud = getattr(session, "baudrate", None) or pool.settings.target_baud or pool.settings.baudrate
        with pool.cond:
            self.session = session
            self.identity = _identity(self.display_url, info, int(baud) if baud else None)
            self.connected_since = time.time()
            self.last_error = None
            self.backoff = pool.settings.reconnect_min_s
            if self.ever_connected:
                self.reconnects += 1
            self.ever_connected = True
            self.state = DeviceState.READY
            pool.all_down_since = None
            pool.cond.notify_all()
        log.info("device %s ready: %s", self.display_url, self.identity)

    def _connect_failed(self, exc: BaseException) -> None:
        self.last_error = f"connect failed: {type(exc).__name__}: {exc}"
        if self.state != DeviceState.QUARANTINED:
            self.state = DeviceState.OFFLINE
        self.next_attempt = time.monotonic() + self.backoff
        self.backoff = min(self.backoff * 2, self.pool.settings.reconnect_max_s)
        log.debug("device %s: %s", self.display_url, self.last_error)
        self.pool.on_device_down()

    def _drop_session(self, reason: str | None) -> None:
        session, self.session = self.session, None
        if session is not None:
            for key, value in _link_counts(session.stats).items():
                self.link_base[key] += value
            with contextlib.suppress(Exception):
                session.close()
        if reason is not None:
            self.last_error = reason
            self.state = DeviceState.QUARANTINED
            self.next_attempt = time.monotonic() + self.backoff
            self.backoff = min(self.backoff * 2, self.pool.settings.reconnect_max_s)
            log.warning("device %s quarantined: %s", self.display_url, reason)
        else:
            self.state = DeviceState.OFFLINE
        self.pool.on_device_down()

    def _heartbeat(self) -> None:
        session = self.session
        if session is None:
            return
        try:
            session.ping()
        except Exception as exc:
            self._drop_session(f"heartbeat failed: {type(exc).__name__}: {exc}")

    def _serve(self, request: _Request) -> None:
        self.current = request
        try:
            self._run_request(request)
        finally:
            self.current = None
            # take() marked the device busy; every path out of a request, including the early
            # refusals, must leave a connected device idle again.
            with self.pool.cond:
                if self.session is not None and self.state == DeviceState.BUSY:
                    self.state = DeviceState.READY
                self.pool.cond.notify_all()

    def _run_request(self, request: _Request) -> None:
        from gateway import device as dev

        session = self.session
        identity = self.identity
        assert session is not None and identity is not None
        started = time.monotonic()
        queue_wait = started - request.enqueued
        if request.cancel.is_set():
            request.fail(ClientGoneError("the client went away before a device was free"))
            return
        remaining = request.deadline - started
        if remaining <= 0:
            request.fail(DeadlineExceededError("the request's deadline passed while it waited for a device"))
            return
        expected = (identity.input_height, identity.input_width)
        if request.frame.shape != expected:
            request.fail(
                DeviceFailedError(f"frame is {request.frame.shape}, device {self.display_url} wants {expected}")
            )
            return

        # Per view: (started, computing started, finished), for the transfer / compute split.
        spans: list[list[float]] = []
        frame_bytes = request.frame.size

        def detect_one(frame: np.ndarray, view: int) -> Any:
            spans.append([time.monotonic()])

            def progress(stage: str, data: dict[str, Any]) -> None:
                if stage == "computing" and len(spans[-1]) == 1:
                    spans[-1].append(time.monotonic())
                if stage == "transmitting":  # one byte count across all views
                    data = {
                        "bytes_sent": view * frame_bytes + int(data.get("bytes_sent", 0)),
                        "bytes_total": request.views * frame_bytes,
                    }
                if request.progress is not None:
                    with contextlib.suppress(Exception):
                        request.progress(stage, data)

            remaining = request.deadline - time.monotonic()
            if remaining <= 0:
                raise dev.DeviceTimeout("the deadline passed between views")
            # stats=True: the per-stage tick counts cost the device one small extra message.
            result = session.detect(frame, deadline_s=remaining, progress=progress, cancel=request.cancel, stats=True)
            spans[-1].append(time.monotonic())
            return result

        self.state = DeviceState.BUSY
        request.attempts += 1
        try:
            result = detect_views(detect_one, request.frame, request.views)
        except dev.Cancelled:
            self.requests_cancelled += 1
            request.fail(ClientGoneError("the request was cancelled"))
            self._after_abort(session)
            return
        except dev.DeviceTimeout as exc:
            self.requests_failed += 1
            request.fail(DeadlineExceededError(f"device {self.display_url} did not answer in time: {exc}"))
            self._after_abort(session)
            return
        except dev.DeviceRejected as exc:
            self.requests_failed += 1
            message = f"device {self.display_url} rejected the request: {exc}"
            request.fail(DeviceFailedError(message, code="device_rejected"))
            self.state = DeviceState.READY
            return
        except Exception as exc:
            # Link errors, device resets and anything unexpected: the session can no longer be trusted.
            self.requests_failed += 1
            self._drop_session(f"{type(exc).__name__}: {exc}")
            self.pool.retry_or_fail(request, exc)
            return
        finished = time.monotonic()
        self.requests_ok += 1
        self.state = DeviceState.READY
        # A view whose device never reported "computing" counts as all transfer.
        transfer = sum((span[1] if len(span) == 3 else span[-1]) - span[0] for span in spans)
        compute = sum(span[2] - span[1] for span in spans if len(span) == 3)
        outcome = Outcome(
            result=result,
            device=identity,
            queue_wait_s=queue_wait,
            transfer_s=transfer,
            compute_s=compute,
            attempts=request.attempts,
            views=request.views,
        )
        self.pool.record_service_time(finished - started)
        if not request.future.done():
            request.future.set_result(outcome)

    def _after_abort(self, session: Session) -> None:
        """After a timeout or cancellation, make sure the device is back in step before reusing it."""
        try:
            session.ping()
        except Exception as exc:
            self._drop_session(f"unresponsive after an aborted request: {type(exc).__name__}: {exc}")
            return
        self.state = DeviceState.READY


class DevicePool:
    def __init__(
        self,
        urls: list[str],
        settings: Settings | None = None,
        *,
        factory: SessionFactory | None = None,
    ) -> None:
        self.settings = settings or Settings()
        self.factory = factory or _default_factory(self.settings)
        self.urls = list(urls)
        self.cond = threading.Condition()
        self.stopping = threading.Event()
        self.queue: deque[_Request] = deque()
        self.workers: list[_Worker] = []
        self.sims: list[SimDevice] = []
        self.start_errors: list[str] = []
        self._service_ewma: float | None = None
        self._started = False
        self.all_down_since: float | None = time.monotonic()

    # -- lifecycle -----------------------------------------------------------------------------------

    def start(self) -> None:
        """Start simulated boards named `sim`/`qemu` and one worker per device. Returns at once."""
        from gateway.sim import SIM_URLS, SimUnavailableError, start_sim

        if self._started:
            return
        self._started = True
        for url in self.urls:
            board = SIM_URLS.get(url.strip().lower())
            if board is None:
                self.workers.append(_Worker(self, url, url))
                continue
            try:
                sim = start_sim(board)
            except SimUnavailableError as exc:
                self.start_errors.append(f"{url}: {exc}")
                log.error("cannot start simulated board %r: %s", url, exc)
                continue
            self.sims.append(sim)
            self.workers.append(_Worker(self, sim.url, sim.url))
        for worker in self.workers:
            worker.thread.start()

    def close(self) -> None:
        self.stopping.set()
        with self.cond:
            pending = list(self.queue)
            self.queue.clear()
            self.cond.notify_all()
        for request in pending:
            request.cancel.set()
            request.fail(NoDeviceReadyError("the gateway is shutting down"))
        for worker in self.workers:
            # In-flight work would otherwise hold shutdown for up to its deadline (tens of seconds on QEMU).
            current = worker.current
            if current is not None:
                current.cancel.set()
        for worker in self.workers:
            worker.thread.join(timeout=10.0)
        for sim in self.sims:
            sim.stop()

    def __enter__(self) -> DevicePool:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def wait_ready(self, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        with self.cond:
            while not self.ready():
                left = deadline - time.monotonic()
                if left <= 0 or self.stopping.is_set():
                    return False
                self.cond.wait(min(left, 0.25))
        return True

    # -- status --------------------------------------------------------------------------------------

    def ready(self) -> bool:
        return any(w.up() for w in self.workers)

    def devices_ready(self) -> int:
        return sum(1 for w in self.workers if w.up())

    def snapshots(self) -> list[DeviceSnapshot]:
        return [w.snapshot() for w in self.workers]

    def identity(self, url: str | None = None) -> DeviceIdentity | None:
        """Identity of the device at `url`, or of the first device that has handshaken."""
        for worker in self.workers:
            if worker.identity is not None and (url is None or worker.display_url == url):
                return worker.identity
        return None

    def frame_size(self) -> tuple[int, int]:
        """(width, height) the devices expect; 320x320 until one has said otherwise."""
        ident = self.identity()
        return (ident.input_width, ident.input_height) if ident else (320, 320)

    @property
    def queue_depth(self) -> int:
        return len(self.queue)

    @property
    def queue_capacity(self) -> int:
        return self.settings.queue_size

    def busy_count(self) -> int:
        return sum(1 for w in self.workers if w.state == DeviceState.BUSY)

    # -- submitting ---------------------------------------------------------------------------------

    def submit(
        self,
        frame: np.ndarray,
        *,
        timeout_s: float | None = None,
        progress: ProgressFn | None = None,
        cancel: threading.Event | None = None,
        device: str | None = None,
        views: int = 1,
    ) -> tuple[concurrent.futures.Future[Outcome], threading.Event]:
        """Queue a frame for `views` fused device passes (gateway/views.py, one device runs them all).

        Raises NoDeviceReady (503) or QueueFull (429) instead of waiting."""
        if self.stopping.is_set():
            raise NoDeviceReadyError("the gateway is shutting down")
        request = _Request(
            frame=frame,
            deadline=time.monotonic() + (timeout_s if timeout_s is not None else self.settings.request_timeout_s),
            cancel=cancel or threading.Event(),
            progress=progress,
            pin=device,
            views=check_views(views),
        )
        with self.cond:
            candidates = [w for w in self.workers if device is None or w.display_url == device]
            if device is not None and not candidates:
                raise NoDeviceReadyError(f"no device {device!r} in this gateway", retry_after_s=60)
            if not any(w.up() for w in candidates):
                raise NoDeviceReadyError(self._why_not_ready(candidates), retry_after_s=self._retry_after(0))
            idle = sum(1 for w in candidates if w.state == DeviceState.READY)
            if len(self.queue) >= self.settings.queue_size + idle:
                raise QueueFullError(
                    f"{len(self.queue)} requests are already waiting for a device; try again later",
                    retry_after_s=self._retry_after(len(self.queue)),
                )
            self.queue.append(request)
            self.cond.notify_all()
        return request.future, request.cancel

    async def detect(
        self,
        frame: np.ndarray,
        *,
        timeout_s: float | None = None,
        progress: ProgressFn | None = None,
        cancel: threading.Event | None = None,
        device: str | None = None,
        views: int = 1,
    ) -> Outcome:
        """Submit and await. Cancelling the awaiting task cancels the request (the device stops early)."""
        future, cancel_event = self.submit(
            frame, timeout_s=timeout_s, progress=progress, cancel=cancel, device=device, views=views
        )
        try:
            return await asyncio.wrap_future(future)
        except asyncio.CancelledError:
            cancel_event.set()
            self._withdraw(future)
            raise

    def _withdraw(self, future: concurrent.futures.Future[Outcome]) -> None:
        with self.cond:
            for request in list(self.queue):
                if request.future is future:
                    self.queue.remove(request)
                    request.fail(ClientGoneError("cancelled while queued"))

    # -- called by workers --------------------------------------------------------------------------

    def take(self, worker: _Worker, timeout: float) -> _Request | None:
        """The oldest waiting request `worker` may serve, waiting up to `timeout` for one."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while not self.stopping.is_set():
                for request in self.queue:
                    if request.pin is None or request.pin == worker.display_url:
                        self.queue.remove(request)
                        worker.state = DeviceState.BUSY
                        return request
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self.cond.wait(left)
        self.expire_stranded()
        return None

    def retry_or_fail(self, request: _Request, exc: BaseException) -> None:
        """A device failed mid-request: give the request one more try (elsewhere, or here once back)."""
        if request.cancel.is_set():
            request.fail(ClientGoneError("the request was cancelled"))
            return
        if request.attempts < 2 and request.deadline - time.monotonic() > 1.0:
            with self.cond:
                self.queue.appendleft(request)
                self.cond.notify_all()
            return
        request.fail(DeviceFailedError(f"the device failed during the request: {type(exc).__name__}: {exc}"))

    def on_device_down(self) -> None:
        with self.cond:
            if not self.ready() and self.all_down_since is None:
                self.all_down_since = time.monotonic()

    def expire_stranded(self) -> None:
        """Answer queued requests nobody will serve: past their deadline, or every device down too long.

        A quarantined device usually reconnects within a second, so waiting requests get a grace
        period (`no_device_grace_s`) before they are told no device is ready.
        """
        now = time.monotonic()
        expired: list[tuple[_Request, GatewayError]] = []
        with self.cond:
            down_for = now - self.all_down_since if self.all_down_since is not None and not self.ready() else 0.0
            for request in list(self.queue):
                if request.deadline <= now:
                    error: GatewayError = DeadlineExceededError("the deadline passed while waiting for a device")
                elif down_for > self.settings.no_device_grace_s:
                    error = NoDeviceReadyError(
                        f"every device has been down for {down_for:.1f} s", retry_after_s=self._retry_after(0)
                    )
                else:
                    continue
                self.queue.remove(request)
                expired.append((request, error))
        for request, error in expired:
            request.fail(error)

    def record_service_time(self, seconds: float) -> None:
        previous = self._service_ewma
        self._service_ewma = seconds if previous is None else 0.8 * previous + 0.2 * seconds

    def _retry_after(self, waiting: int) -> float:
        per_request = self._service_ewma or 1.0
        devices = max(1, self.devices_ready())
        return per_request * (waiting + 1) / devices

    def _why_not_ready(self, workers: list[_Worker]) -> str:
        if not workers:
            detail = "; ".join(self.start_errors) or "no devices configured"
            return f"no device is ready ({detail})"
        reasons = [
            f"{w.display_url}: {w.state.value}" + (f" ({w.last_error})" if w.last_error else "") for w in workers
        ]
        return "no device is ready: " + "; ".join(reasons)


def error_from_exception(exc: BaseException) -> GatewayError:
    """The client-facing error for anything a pool future can raise."""
    if isinstance(exc, GatewayError):
        return exc
    return DeviceFailedError(f"{type(exc).__name__}: {exc}")
