"""Simulated boards for development and tests: the real firmware, run on the host or under QEMU.

`start_sim("host")` runs `firmware/build/host/rnnpool --pty` (the firmware compiled for Linux, talking
over a pseudo-terminal); `start_sim("qemu")` runs the ARM image on QEMU's netduinoplus2 with
`-icount shift=0`, so instruction counts are exact. Either way the board sits behind a small TCP
relay on 127.0.0.1, which

- gives the board one URL (`socket://127.0.0.1:PORT`) that survives `restart()`, as a USB serial
  port survives an MCU reset, so a pool can reconnect to the same address;
- can inject faults between gateway and device (dropped, corrupted and delayed bytes, at seeded
  rates) to exercise the protocol's recovery.

The firmware is built with make when its binary is missing. Every process started here is killed on
`stop()`, on garbage collection and at interpreter exit.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import logging
import os
import random
import re
import select
import shutil
import signal
import socket
import subprocess
import tempfile
import termios
import threading
import time
import tty
import weakref
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from gateway.settings import REPO_ROOT

log = logging.getLogger("gateway.sim")

Board = Literal["host", "qemu"]
SIM_URLS: dict[str, Board] = {"sim": "host", "host": "host", "qemu": "qemu"}

FIRMWARE_DIR = REPO_ROOT / "firmware"
BUILD_TIMEOUT_S = 600.0
_PTY_LINE = re.compile(rb"PTY (/dev/\S+)")
_QEMU_WAITING = re.compile(rb"waiting for connection")
_POLL_S = 0.05


class SimUnavailableError(RuntimeError):
    """The simulated board cannot run here (firmware does not build, QEMU missing, no HELLO...)."""


def firmware_binary(board: Board) -> Path:
    if board == "host":
        return FIRMWARE_DIR / "build" / "host" / "rnnpool"
    return FIRMWARE_DIR / "build" / "qemu" / "rnnpool.elf"


def _newest_source_mtime() -> float:
    newest = 0.0
    for top in ("src", "boards", "model"):
        for path in (FIRMWARE_DIR / top).rglob("*"):
            if path.suffix in (".c", ".h", ".ld", ".mk"):
                newest = max(newest, path.stat().st_mtime)
    makefile = FIRMWARE_DIR / "Makefile"
    return max(newest, makefile.stat().st_mtime if makefile.exists() else 0.0)


def firmware_is_current(board: Board) -> bool:
    binary = firmware_binary(board)
    return binary.exists() and binary.stat().st_mtime >= _newest_source_mtime()


def ensure_firmware(board: Board, *, rebuild: bool = False) -> Path:
    """Path to the board's firmware, (re)building it first if it is missing or older than its sources.

    A failed rebuild falls back to the existing binary (with a warning): a half-edited source tree
    should not take the simulator away from everyone else working in the checkout.
    """
    binary = firmware_binary(board)
    if not rebuild and firmware_is_current(board):
        return binary
    if shutil.which("make") is None:
        raise SimUnavailableError("make is not installed, so the firmware cannot be built")
    if board == "qemu" and shutil.which("arm-none-eabi-gcc") is None:
        raise SimUnavailableError("arm-none-eabi-gcc is not installed, so the QEMU firmware cannot be built")
    lock_path = FIRMWARE_DIR / "build" / f".sim-build-{board}.lock"
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    # Several processes (test runs, `rnnpool serve`) may ask at once; building twice in parallel in
    # the same tree corrupts object files, so serialize on a lock file.
    with open(lock_path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not rebuild and firmware_is_current(board):
            return binary
        try:
            done = subprocess.run(
                ["make", "-C", str(FIRMWARE_DIR), f"BOARD={board}"],
                capture_output=True,
                timeout=BUILD_TIMEOUT_S,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise SimUnavailableError(f"building the {board} firmware took over {BUILD_TIMEOUT_S:.0f} s") from exc
        if done.returncode != 0 or not binary.exists():
            tail = (done.stdout + done.stderr).decode(errors="replace")[-2000:]
            if binary.exists() and not rebuild:
                log.warning("rebuilding the %s firmware failed; using the existing binary:\n%s", board, tail)
                return binary
            raise SimUnavailableError(f"`make -C firmware BOARD={board}` failed (exit {done.returncode}):\n{tail}")
    return binary


# --------------------------------------------------------------------------------------------------
# Fault injection


@dataclass(frozen=True)
class FaultSpec:
    """What the relay does to bytes in flight. Rates are per byte; the RNG is seeded so runs repeat."""

    drop_rate: float = 0.0
    corrupt_rate: float = 0.0  # flips one random bit of the byte
    delay_s: float = 0.0  # added to every chunk
    jitter_s: float = 0.0  # uniform extra delay in [0, jitter_s]
    direction: Literal["both", "to_device", "from_device"] = "both"
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("drop_rate", "corrupt_rate"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {value}")
        if self.delay_s < 0 or self.jitter_s < 0:
            raise ValueError("delays must not be negative")

    def applies(self, to_device: bool) -> bool:
        return self.direction == "both" or (self.direction == "to_device") == to_device


@dataclass
class RelayStats:
    connections: int = 0
    bytes_to_device: int = 0
    bytes_from_device: int = 0
    dropped: int = 0
    corrupted: int = 0


class _Mangler:
    def __init__(self, spec: FaultSpec, to_device: bool, stats: RelayStats) -> None:
        self.spec = spec
        self.active = spec.applies(to_device)
        # Separate streams per direction keep one direction's faults independent of the other's traffic.
        self.rng = random.Random(spec.seed * 2 + (1 if to_device else 0))
        self.stats = stats

    def mangle(self, data: bytes) -> bytes:
        if not self.active or (self.spec.drop_rate == 0 and self.spec.corrupt_rate == 0):
            return data
        out = bytearray()
        for byte in data:
            if self.spec.drop_rate and self.rng.random() < self.spec.drop_rate:
                self.stats.dropped += 1
                continue
            if self.spec.corrupt_rate and self.rng.random() < self.spec.corrupt_rate:
                byte ^= 1 << self.rng.randrange(8)
                self.stats.corrupted += 1
            out.append(byte)
        return bytes(out)

    def delay(self) -> float:
        if not self.active:
            return 0.0
        jitter = self.rng.uniform(0.0, self.spec.jitter_s) if self.spec.jitter_s else 0.0
        return self.spec.delay_s + jitter


class _Pipe:
    """One direction of the relay: bytes waiting for their delay, then for the destination to accept them."""

    MAX_BUFFERED = 256 * 1024

    def __init__(self, mangler: _Mangler) -> None:
        self.mangler = mangler
        self.delayed: deque[tuple[float, bytes]] = deque()
        self.ready = bytearray()

    def push(self, data: bytes, now: float) -> None:
        data = self.mangler.mangle(data)
        if data:
            # Delays never reorder bytes: a chunk is released no earlier than the one before it.
            due = now + self.mangler.delay()
            if self.delayed:
                due = max(due, self.delayed[-1][0])
            self.delayed.append((due, data))

    def release(self, now: float) -> float | None:
        """Move due chunks to `ready`; returns seconds until the next one is due."""
        while self.delayed and self.delayed[0][0] <= now:
            self.ready += self.delayed.popleft()[1]
        return self.delayed[0][0] - now if self.delayed else None

    def backlogged(self) -> bool:
        return len(self.ready) + sum(len(d) for _, d in self.delayed) > self.MAX_BUFFERED


class Upstream:
    """The device end of the relay: a pty slave (host board) or a TCP connection (QEMU)."""

    @classmethod
    def tcp(cls, host: str, port: int, timeout_s: float = 5.0) -> Upstream:
        sock = socket.create_connection((host, port), timeout=timeout_s)
        sock.setblocking(False)
        return cls(sock.fileno(), close=False, on_close=sock)

    def __init__(self, fd: int, close: bool, on_close: socket.socket | None = None) -> None:
        self.fd = fd
        self._close = close
        self._sock = on_close

    def read(self) -> bytes:
        try:
            return os.read(self.fd, 65536)
        except BlockingIOError:
            return _WOULD_BLOCK
        except OSError:
            return b""  # EIO: the pty's other side is gone (device process died)

    def write(self, data: bytes | bytearray) -> int:
        try:
            return os.write(self.fd, data)
        except BlockingIOError:
            return 0

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
        elif self._close:
            with contextlib.suppress(OSError):
                os.close(self.fd)


_WOULD_BLOCK = b"would-block"  # sentinel identity, never compared by value


class FaultRelay:
    """TCP server on 127.0.0.1 that forwards one client at a time to the current device endpoint.

    `connect()` is called for each client and returns the device end, or None when the device is down
    (the client is then disconnected at once).
    """

    def __init__(self, connect: Callable[[], Upstream | None], fault: FaultSpec | None = None) -> None:
        self._connect = connect
        self._fault = fault or FaultSpec()
        self.stats = RelayStats()
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(4)
        self._listener.settimeout(_POLL_S * 4)
        self.port: int = self._listener.getsockname()[1]
        self._stop = threading.Event()
        self._generation = 0  # bumped to kick the current client (new client, device restart)
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._accept = threading.Thread(target=self._accept_loop, name=f"sim-relay-{self.port}", daemon=True)
        self._accept.start()

    @property
    def fault(self) -> FaultSpec:
        return self._fault

    def set_fault(self, fault: FaultSpec | None) -> None:
        """Applies to connections made from now on (the current one is dropped so the change is clean)."""
        with self._lock:
            self._fault = fault or FaultSpec()
        self.kick()

    def kick(self) -> None:
        with self._lock:
            self._generation += 1

    def close(self) -> None:
        self._stop.set()
        self.kick()
        with contextlib.suppress(OSError):
            self._listener.close()
        self._accept.join(timeout=2.0)
        for thread in self._threads:
            thread.join(timeout=2.0)

    def _accept_loop(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                # A serial port has one user; a new connection replaces the old one, as when a host
                # process restarts and reopens the port.
                self._generation += 1
                generation = self._generation
                fault = self._fault
            self.stats.connections += 1
            self._threads = [t for t in self._threads if t.is_alive()]
            thread = threading.Thread(
                target=self._serve, args=(client, generation, fault), name=f"sim-relay-{self.port}-c", daemon=True
            )
            self._threads.append(thread)
            thread.start()

    def _serve(self, client: socket.socket, generation: int, fault: FaultSpec) -> None:
        upstream: Upstream | None = None
        try:
            upstream = self._connect()
        except Exception:
            upstream = None
        if upstream is None:
            # Device is down: close at once, as an unplugged adapter refuses to open.
            client.close()
            return
        client.setblocking(False)
        down = _Pipe(_Mangler(fault, True, self.stats))  # client -> device
        up = _Pipe(_Mangler(fault, False, self.stats))  # device -> client
        try:
            self._pump(client, upstream, down, up, generation)
        finally:
            with contextlib.suppress(OSError):
                client.close()
            upstream.close()

    def _pump(self, client: socket.socket, upstream: Upstream, down: _Pipe, up: _Pipe, generation: int) -> None:
        while not self._stop.is_set() and self._generation == generation:
            now = time.monotonic()
            waits = [w for w in (down.release(now), up.release(now)) if w is not None]
            timeout = min([_POLL_S, *waits])
            readers: list[int] = []
            writers: list[int] = []
            if not down.backlogged():
                readers.append(client.fileno())
            if not up.backlogged():
                readers.append(upstream.fd)
            if down.ready:
                writers.append(upstream.fd)
            if up.ready:
                writers.append(client.fileno())
            try:
                rlist, wlist, _ = select.select(readers, writers, [], max(0.0, timeout))
            except (OSError, ValueError):
                return
            now = time.monotonic()
            if client.fileno() in rlist:
                try:
                    data = client.recv(65536)
                except BlockingIOError:
                    data = _WOULD_BLOCK
                except OSError:
                    return
                if not data:
                    return
                if data is not _WOULD_BLOCK:
                    self.stats.bytes_to_device += len(data)
                    down.push(data, now)
            if upstream.fd in rlist:
                data = upstream.read()
                if not data:
                    return
                if data is not _WOULD_BLOCK:
                    self.stats.bytes_from_device += len(data)
                    up.push(data, now)
            if upstream.fd in wlist and down.ready:
                try:
                    sent = upstream.write(down.ready)
                except OSError:
                    return
                del down.ready[:sent]
            if client.fileno() in wlist and up.ready:
                try:
                    sent = client.send(up.ready)
                except BlockingIOError:
                    sent = 0
                except OSError:
                    return
                del up.ready[:sent]


# --------------------------------------------------------------------------------------------------
# The simulated device


_live: weakref.WeakSet[SimDevice] = weakref.WeakSet()


def _stop_all() -> None:
    for sim in list(_live):
        with contextlib.suppress(Exception):
            sim.stop()


atexit.register(_stop_all)


@dataclass
class _Backend:
    proc: subprocess.Popen[bytes]
    log_path: Path
    endpoint: str  # pty path or "host:port"
    started: float = field(default_factory=time.monotonic)


def _kill_group(proc: subprocess.Popen[bytes], grace_s: float = 2.0) -> None:
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        proc.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=grace_s)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class SimDevice:
    """A running simulated board. Use as a context manager, or call `stop()`."""

    def __init__(
        self,
        board: Board,
        *,
        fault: FaultSpec | None = None,
        startup_timeout_s: float = 30.0,
        extra_args: tuple[str, ...] = (),
    ) -> None:
        if board not in ("host", "qemu"):
            raise ValueError(f"unknown simulated board {board!r} (host or qemu)")
        self.board: Board = board
        self.startup_timeout_s = startup_timeout_s
        self.extra_args = extra_args
        self._workdir = Path(tempfile.mkdtemp(prefix=f"rnnpool-sim-{board}-"))
        self._backend: _Backend | None = None
        self._lock = threading.RLock()
        self._restarts = 0
        self.binary = ensure_firmware(board)
        # A weak reference, so the relay's threads do not keep an abandoned SimDevice alive.
        self_ref = weakref.WeakMethod(self._connect_upstream)
        self._relay = FaultRelay(lambda: (m := self_ref()) and m(), fault)
        _live.add(self)
        self._finalizer = weakref.finalize(self, SimDevice._finalize, self._relay, [None], self._workdir)
        self._start_backend()

    # -- public ------------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """Stable URL for pyserial / DeviceSession, unchanged by `restart()`."""
        return f"socket://127.0.0.1:{self._relay.port}"

    @property
    def raw_url(self) -> str | None:
        """The backend's own endpoint (bypasses the relay; changes on restart)."""
        backend = self._backend
        if backend is None:
            return None
        return backend.endpoint if self.board == "host" else f"socket://{backend.endpoint}"

    @property
    def relay_stats(self) -> RelayStats:
        return self._relay.stats

    @property
    def log_path(self) -> Path | None:
        return self._backend.log_path if self._backend else None

    @property
    def pid(self) -> int | None:
        return self._backend.proc.pid if self._backend else None

    def alive(self) -> bool:
        backend = self._backend
        return backend is not None and backend.proc.poll() is None

    def log_tail(self, n: int = 4000) -> str:
        path = self.log_path
        if path is None or not path.exists():
            return ""
        return path.read_bytes()[-n:].decode(errors="replace")

    def set_fault(self, fault: FaultSpec | None) -> None:
        self._relay.set_fault(fault)

    def crash(self) -> None:
        """Kill the device process (power loss). The URL stays; connections fail until `restart()`."""
        with self._lock:
            self._stop_backend()
            self._relay.kick()

    def restart(self) -> None:
        """Kill the device process if running and boot a fresh one behind the same URL."""
        with self._lock:
            self._stop_backend()
            self._relay.kick()
            self._restarts += 1
            self._start_backend()

    def stop(self) -> None:
        with self._lock:
            self._stop_backend()
            self._relay.close()
            _live.discard(self)
            shutil.rmtree(self._workdir, ignore_errors=True)

    def __enter__(self) -> SimDevice:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"SimDevice(board={self.board!r}, url={self.url!r}, alive={self.alive()})"

    # -- backend -----------------------------------------------------------------------------------

    def _start_backend(self) -> None:
        log_path = self._workdir / f"device-{self._restarts}.log"
        with open(log_path, "wb") as log:
            if self.board == "host":
                cmd = [str(self.binary), "--pty", *self.extra_args]
                endpoint_re = _PTY_LINE
                port = 0
            else:
                qemu = shutil.which("qemu-system-arm")
                if qemu is None:
                    raise SimUnavailableError("qemu-system-arm is not installed")
                port = _free_port()
                cmd = [
                    qemu, "-M", "netduinoplus2", "-icount", "shift=0", "-nographic", "-monitor", "none",
                    "-semihosting-config", "enable=on,target=native",
                    "-serial", f"tcp:127.0.0.1:{port},server=on,wait=on",
                    "-kernel", str(self.binary), *self.extra_args,
                ]  # fmt: skip
                endpoint_re = _QEMU_WAITING
            proc = subprocess.Popen(
                cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        backend = _Backend(proc=proc, log_path=log_path, endpoint="")
        self._backend = backend
        self._finalizer.detach()
        self._finalizer = weakref.finalize(self, SimDevice._finalize, self._relay, [proc], self._workdir)
        deadline = time.monotonic() + self.startup_timeout_s
        while True:
            match = endpoint_re.search(log_path.read_bytes())
            if match:
                break
            if proc.poll() is not None:
                tail = self.log_tail()
                self._backend = None
                raise SimUnavailableError(f"{self.board} firmware exited with status {proc.returncode}:\n{tail}")
            if time.monotonic() > deadline:
                self._stop_backend()
                raise SimUnavailableError(f"{self.board} firmware not up within {self.startup_timeout_s:.0f} s")
            time.sleep(_POLL_S)
        if self.board == "host":
            backend.endpoint = match.group(1).decode()
        else:
            backend.endpoint = f"127.0.0.1:{port}"

    @staticmethod
    def _open_pty(path: str) -> int:
        """Open the pty as a serial client would: raw mode, then flush the input queue.

        The flush mirrors pyserial's open(): it discards what the board sent while nobody was
        listening (a real UART sends that into the void), and it is what the host board waits
        for before it boots (see firmware/boards/host/board.c).
        """
        fd = os.open(path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
        try:
            tty.setraw(fd, termios.TCSANOW)
            termios.tcflush(fd, termios.TCIFLUSH)
        except BaseException:
            os.close(fd)
            raise
        return fd

    def _stop_backend(self) -> None:
        backend, self._backend = self._backend, None
        if backend is None:
            return
        _kill_group(backend.proc)

    def _connect_upstream(self) -> Upstream | None:
        backend = self._backend
        if backend is None or backend.proc.poll() is not None:
            return None
        if self.board == "host":
            # One open per client, closed when it leaves: the board then sees a hang-up and drops
            # its output, as a UART with nobody on the line does.
            return Upstream(self._open_pty(backend.endpoint), close=True)
        host, port = backend.endpoint.rsplit(":", 1)
        return Upstream.tcp(host, int(port))

    @staticmethod
    def _finalize(relay: FaultRelay, procs: list[subprocess.Popen[bytes] | None], workdir: Path) -> None:
        for proc in procs:
            if proc is not None:
                with contextlib.suppress(Exception):
                    _kill_group(proc, grace_s=0.5)
        with contextlib.suppress(Exception):
            relay.close()
        shutil.rmtree(workdir, ignore_errors=True)


def start_sim(board: Board = "host", *, fault: FaultSpec | None = None, startup_timeout_s: float = 30.0) -> SimDevice:
    """Start a simulated board (building its firmware if needed); stop it with `.stop()` or `with`."""
    return SimDevice(board, fault=fault, startup_timeout_s=startup_timeout_s)


def is_sim_url(url: str) -> bool:
    return url.strip().lower() in SIM_URLS


@contextlib.contextmanager
def resolved_url(url: str, *, fault: FaultSpec | None = None) -> Iterator[str]:
    """A real device URL for `url`, starting a simulated board for the duration when it says `sim`/`qemu`."""
    board = SIM_URLS.get(url.strip().lower())
    if board is None:
        yield url
        return
    with start_sim(board, fault=fault) as sim:
        yield sim.url
