"""Asynchronous detection jobs: a bounded, expiring store of jobs and their event logs.

A job's life is `queued -> transmitting (bytes sent, repeated) -> computing -> done | failed`. Events
are kept per job (with sequence ids) so a client that connects late, or reconnects with
`Last-Event-ID`, replays what it missed. Progress arrives from device worker threads and is handed to
the event loop with `call_soon_threadsafe`; everything else runs on the loop, so no locks are needed.

Bounds: at most `max_jobs` jobs are held. Finished jobs expire `ttl_s` after finishing, and the oldest
finished job is evicted early when room is needed; if every held job is still running, new jobs are
refused (429).
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from gateway.errors import GatewayError, NotFoundError, TooManyJobsError

TERMINAL = ("done", "failed")
# Transmit progress arrives once per protocol frame (~100 per image); clients need far fewer.
_PROGRESS_MIN_INTERVAL_S = 0.2
_PROGRESS_MIN_FRACTION = 0.05
_KEEPALIVE_S = 15.0


@dataclass
class JobEvent:
    seq: int
    event: str
    data: dict[str, Any]

    def to_sse(self) -> str:
        return f"id: {self.seq}\nevent: {self.event}\ndata: {json.dumps(self.data, separators=(',', ':'))}\n\n"


@dataclass
class Job:
    id: str
    created_at: float = field(default_factory=time.time)
    updated_at: float = field(default_factory=time.time)
    finished_mono: float | None = None
    expires_at: float | None = None
    state: str = "queued"
    bytes_sent: int = 0
    bytes_total: int = 0
    result: dict[str, Any] | None = None
    error: dict[str, str] | None = None
    events: list[JobEvent] = field(default_factory=list)
    task: asyncio.Task[None] | None = None
    cancel: Callable[[], None] | None = None
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    _last_progress: tuple[float, int] = (0.0, -1)

    @property
    def finished(self) -> bool:
        return self.state in TERMINAL


class JobStore:
    def __init__(self, max_jobs: int, ttl_s: float) -> None:
        self.max_jobs = max_jobs
        self.ttl_s = ttl_s
        self.jobs: dict[str, Job] = {}
        self._loop: asyncio.AbstractEventLoop | None = None

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    def counts(self) -> dict[str, int]:
        out = {state: 0 for state in ("queued", "transmitting", "computing", "done", "failed")}
        for job in self.jobs.values():
            out[job.state] = out.get(job.state, 0) + 1
        return out

    # -- lifecycle -----------------------------------------------------------------------------------

    def create(self, run: Callable[[Job], Awaitable[dict[str, Any]]]) -> Job:
        """Register a job and start `run(job)` on the loop; its return value becomes the result."""
        self.sweep()
        if len(self.jobs) >= self.max_jobs:
            finished = sorted((j for j in self.jobs.values() if j.finished), key=lambda j: j.finished_mono or 0.0)
            if not finished:
                raise TooManyJobsError(f"{len(self.jobs)} jobs are running; the limit is {self.max_jobs}")
            del self.jobs[finished[0].id]
        job = Job(id=uuid.uuid4().hex)
        self.jobs[job.id] = job
        self._emit(job, "queued", {"state": "queued"})
        job.task = asyncio.get_running_loop().create_task(self._drive(job, run), name=f"job-{job.id}")
        return job

    async def _drive(self, job: Job, run: Callable[[Job], Awaitable[dict[str, Any]]]) -> None:
        try:
            result = await run(job)
        except GatewayError as exc:
            self.fail(job, exc.code, exc.message)
        except asyncio.CancelledError:
            self.fail(job, "cancelled", "the job was cancelled")
        except Exception as exc:
            self.fail(job, "internal_error", f"{type(exc).__name__}: {exc}")
        else:
            job.result = result
            self._finish(job, "done", result)

    def fail(self, job: Job, code: str, message: str) -> None:
        if job.finished:
            return
        job.error = {"code": code, "message": message}
        self._finish(job, "failed", {"error": job.error})

    def _finish(self, job: Job, state: str, data: dict[str, Any]) -> None:
        job.state = state
        job.finished_mono = time.monotonic()
        job.expires_at = time.time() + self.ttl_s
        self._emit(job, state, data)

    def get(self, job_id: str) -> Job:
        self.sweep()
        job = self.jobs.get(job_id)
        if job is None:
            raise NotFoundError(f"no job {job_id!r} (unknown, or expired)", code="job_not_found")
        return job

    def sweep(self) -> None:
        now = time.monotonic()
        expired = [
            job_id
            for job_id, job in self.jobs.items()
            if job.finished_mono is not None and now - job.finished_mono > self.ttl_s
        ]
        for job_id in expired:
            del self.jobs[job_id]

    async def close(self) -> None:
        tasks = [job.task for job in self.jobs.values() if job.task is not None and not job.task.done()]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=5.0)

    # -- progress ------------------------------------------------------------------------------------

    def progress_callback(self, job: Job) -> Callable[[str, dict[str, Any]], None]:
        """A callback for DeviceSession progress, safe to call from any thread."""
        loop = self._loop or asyncio.get_running_loop()

        def callback(stage: str, data: dict[str, Any]) -> None:
            loop.call_soon_threadsafe(self.record_progress, job, stage, dict(data))

        return callback

    def record_progress(self, job: Job, stage: str, data: dict[str, Any]) -> None:
        """Apply one progress report (on the loop's thread)."""
        if job.finished:
            return
        if stage == "transmitting":
            sent, total = int(data.get("bytes_sent", 0)), int(data.get("bytes_total", 0))
            job.bytes_sent, job.bytes_total = sent, total
            now = time.monotonic()
            last_t, last_sent = job._last_progress
            step = max(1, int(total * _PROGRESS_MIN_FRACTION))
            if job.state == "transmitting" and sent < total and now - last_t < _PROGRESS_MIN_INTERVAL_S \
                    and sent - last_sent < step:  # fmt: skip
                return
            job._last_progress = (now, sent)
            job.state = "transmitting"
            self._emit(job, "transmitting", {"state": "transmitting", "bytes_sent": sent, "bytes_total": total})
        elif stage == "computing":
            if job.state == "computing":
                return
            job.state = "computing"
            self._emit(job, "computing", {"state": "computing"})

    def _emit(self, job: Job, event: str, data: dict[str, Any]) -> None:
        job.updated_at = time.time()
        job.events.append(JobEvent(seq=len(job.events) + 1, event=event, data=data))
        # Wake every follower, then arm a fresh event for the next change.
        job.changed.set()
        job.changed = asyncio.Event()

    # -- following ------------------------------------------------------------------------------------

    async def follow(self, job: Job, after: int = 0, max_s: float = 3600.0) -> AsyncIterator[str]:
        """Server-sent-event text for the job's events after sequence `after`, ending with the last one."""
        deadline = time.monotonic() + max_s
        sent = after
        yield "retry: 2000\n\n"
        while True:
            for ev in job.events[sent:]:
                yield ev.to_sse()
                sent = ev.seq
            if job.finished and sent >= len(job.events):
                return
            left = deadline - time.monotonic()
            if left <= 0:
                return
            waiter = job.changed
            try:
                await asyncio.wait_for(waiter.wait(), timeout=min(_KEEPALIVE_S, left))
            except TimeoutError:
                yield ": keepalive\n\n"
