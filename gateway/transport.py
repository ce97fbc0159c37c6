"""Byte transport to a device: a thin, counted wrapper over pyserial's ``serial_for_url``.

Accepts everything pyserial does: ``/dev/ttyACM0``, ``/dev/pts/N``, ``socket://host:port`` (QEMU's
``-serial tcp:...``, the simulator relay), ``rfc2217://host:port``, ``loop://``. The protocol layer
above never blocks longer than the timeout it passes to :meth:`Transport.read`.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
import time

import serial

log = logging.getLogger("gateway.transport")


class TransportError(OSError):
    """The port cannot be opened or has failed (unplugged, connection refused, closed)."""


class Transport:
    def __init__(self, url: str, *, baudrate: int = 115200, read_timeout_s: float = 0.05) -> None:
        self.url = url
        self._baudrate = baudrate
        self._read_timeout_s = read_timeout_s
        self._port: serial.SerialBase | None = None
        # Counters are read by other threads (metrics); the lock keeps the pair consistent.
        self._count_lock = threading.Lock()
        self.bytes_tx = 0
        self.bytes_rx = 0
        self.last_tx = 0.0  # time.monotonic() of the last write

    # ------------------------------------------------------------------------------------ lifecycle

    def open(self) -> None:
        if self._port is not None:
            return
        try:
            # Configure before opening, so the port never runs with pyserial's blocking default.
            port = serial.serial_for_url(self.url, do_not_open=True, baudrate=self._baudrate)
            port.timeout = self._read_timeout_s
            port.write_timeout = 10.0
            port.open()
        except (serial.SerialException, OSError, ValueError) as e:
            raise TransportError(f"cannot open {self.url}: {e}") from e
        sock = getattr(port, "_socket", None)  # socket:// (QEMU, simulator relay)
        if isinstance(sock, socket.socket):
            # Small frames and their ACKs must not wait for Nagle + delayed ACK (40 ms per round trip).
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._port = port
        log.debug("opened %s at %d baud", self.url, self._baudrate)

    def close(self) -> None:
        port, self._port = self._port, None
        if port is not None:
            try:
                port.close()
            except (serial.SerialException, OSError) as e:  # closing a dead port must not mask the real error
                log.debug("closing %s: %s", self.url, e)

    @property
    def is_open(self) -> bool:
        return self._port is not None

    def __enter__(self) -> Transport:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------------------------------ I/O

    def _require(self) -> serial.SerialBase:
        if self._port is None:
            raise TransportError(f"{self.url} is not open")
        return self._port

    def write(self, data: bytes) -> None:
        port = self._require()
        try:
            n = port.write(data)
        except (serial.SerialException, OSError) as e:
            raise TransportError(f"write to {self.url} failed: {e}") from e
        with self._count_lock:
            self.bytes_tx += len(data) if n is None else n
            self.last_tx = time.monotonic()

    def read(self, max_bytes: int = 4096, timeout_s: float | None = None) -> bytes:
        """Whatever is available; if nothing is, wait up to about timeout_s for the first byte.

        The port's own timeout stays fixed (changing it reconfigures a real tty every call), so a
        wait is the port timeout at most; callers loop on their own deadlines.
        """
        port = self._require()
        try:
            waiting = port.in_waiting
            if waiting:
                data = port.read(min(max_bytes, waiting))
            elif timeout_s is not None and timeout_s <= 0:
                return b""
            else:
                data = port.read(1)
                if data and (more := port.in_waiting):
                    data += port.read(min(max_bytes - 1, more))
        except (serial.SerialException, OSError) as e:
            raise TransportError(f"read from {self.url} failed: {e}") from e
        if data:
            with self._count_lock:
                self.bytes_rx += len(data)
        return bytes(data)

    def flush(self) -> None:
        """Block until written bytes have left the host (as far as the OS can tell)."""
        try:
            self._require().flush()
        except (serial.SerialException, OSError) as e:
            raise TransportError(f"flush of {self.url} failed: {e}") from e

    def discard_input(self) -> None:
        try:
            self._require().reset_input_buffer()
        except (serial.SerialException, OSError) as e:
            raise TransportError(f"reset of {self.url} failed: {e}") from e

    # ------------------------------------------------------------------------------------ baud rate

    @property
    def baudrate(self) -> int:
        return self._baudrate

    def set_baudrate(self, baud: int) -> None:
        """Change the host side's rate (a no-op for socket:// and loop://, where there is none)."""
        self._baudrate = baud
        port = self._port
        if port is None:
            return
        try:
            port.baudrate = baud
        except (serial.SerialException, OSError, ValueError) as e:
            raise TransportError(f"cannot set {self.url} to {baud} baud: {e}") from e

    def seconds_for(self, n_bytes: int) -> float:
        """Wire time of n bytes at the current rate (8N1: 10 bits per byte)."""
        return n_bytes * 10.0 / max(1, self._baudrate)
