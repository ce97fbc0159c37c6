"""Simulated boards and the fault-injecting relay.

The relay is tested against a plain TCP echo server (it is a byte pipe; what is behind it does not
matter); the board lifecycle against the real firmware binaries.
"""

from __future__ import annotations

import contextlib
import gc
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.sim import FaultRelay, FaultSpec, SimDevice, SimUnavailableError, Upstream, resolved_url, start_sim


@contextlib.contextmanager
def echo_server() -> Iterator[int]:
    """TCP echo on 127.0.0.1; yields its port."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.1)
    stop = threading.Event()

    def serve(conn: socket.socket) -> None:
        conn.settimeout(0.1)
        with conn:
            while not stop.is_set():
                try:
                    data = conn.recv(65536)
                except TimeoutError:
                    continue
                except OSError:
                    return
                if not data:
                    return
                conn.sendall(data)

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=serve, args=(conn,), daemon=True).start()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        stop.set()
        thread.join(2)
        listener.close()


@contextlib.contextmanager
def relay_to_echo(fault: FaultSpec | None = None) -> Iterator[tuple[FaultRelay, socket.socket]]:
    with echo_server() as port:
        relay = FaultRelay(lambda: Upstream.tcp("127.0.0.1", port), fault)
        try:
            client = socket.create_connection(("127.0.0.1", relay.port), timeout=5)
            with client:
                yield relay, client
        finally:
            relay.close()


def exchange(client: socket.socket, payload: bytes, settle_s: float = 0.3, limit_s: float = 10.0) -> bytes:
    """Send `payload` and collect what comes back until the line has been quiet for `settle_s`."""
    client.sendall(payload)
    client.settimeout(settle_s)
    received = bytearray()
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline and len(received) < len(payload):
        try:
            chunk = client.recv(65536)
        except TimeoutError:
            break
        if not chunk:
            break
        received += chunk
    return bytes(received)


PAYLOAD = bytes(range(256)) * 400  # 102,400 bytes: one 320x320 frame


def test_relay_is_transparent_without_faults() -> None:
    with relay_to_echo() as (relay, client):
        assert exchange(client, PAYLOAD) == PAYLOAD
        assert relay.stats.bytes_to_device == len(PAYLOAD) == relay.stats.bytes_from_device


def test_relay_drops_at_the_given_rate_and_repeats_with_the_seed() -> None:
    outputs = []
    for _ in range(2):
        with relay_to_echo(FaultSpec(drop_rate=0.1, direction="to_device", seed=7)) as (relay, client):
            outputs.append(exchange(client, PAYLOAD))
            assert 0.08 < relay.stats.dropped / len(PAYLOAD) < 0.12
    assert outputs[0] == outputs[1]
    assert (
        len(outputs[0]) == len(PAYLOAD) - round(len(PAYLOAD) * 0.1) or 0.08 < 1 - len(outputs[0]) / len(PAYLOAD) < 0.12
    )


def test_relay_corrupts_single_bits() -> None:
    with relay_to_echo(FaultSpec(corrupt_rate=0.05, direction="from_device", seed=3)) as (relay, client):
        out = exchange(client, PAYLOAD)
    assert len(out) == len(PAYLOAD)
    flipped = [a ^ b for a, b in zip(out, PAYLOAD, strict=True) if a != b]
    assert 0.04 < len(flipped) / len(PAYLOAD) < 0.06
    assert all(bin(x).count("1") == 1 for x in flipped)
    assert relay.stats.corrupted == len(flipped)


def test_relay_delays_each_direction() -> None:
    with relay_to_echo(FaultSpec(delay_s=0.2)) as (_, client):
        started = time.monotonic()
        assert exchange(client, b"ping", settle_s=1.0) == b"ping"
        assert time.monotonic() - started >= 0.4  # 0.2 s there, 0.2 s back


def test_relay_closes_clients_when_the_device_is_down() -> None:
    relay = FaultRelay(lambda: None)
    try:
        with socket.create_connection(("127.0.0.1", relay.port), timeout=5) as client:
            client.settimeout(5)
            assert client.recv(10) == b""
    finally:
        relay.close()


def test_a_new_client_replaces_the_old_one() -> None:
    with echo_server() as port:
        relay = FaultRelay(lambda: Upstream.tcp("127.0.0.1", port))
        try:
            first = socket.create_connection(("127.0.0.1", relay.port), timeout=5)
            assert exchange(first, b"one") == b"one"
            second = socket.create_connection(("127.0.0.1", relay.port), timeout=5)
            assert exchange(second, b"two") == b"two"
            first.settimeout(5)
            assert first.recv(10) == b""
            first.close()
            second.close()
        finally:
            relay.close()


def test_fault_spec_validation() -> None:
    with pytest.raises(ValueError):
        FaultSpec(drop_rate=1.5)
    with pytest.raises(ValueError):
        FaultSpec(delay_s=-1)


# ------------------------------------------------------------------------------------------------
# Board lifecycle (real firmware processes)


def _gone(pid: int) -> bool:
    return not Path(f"/proc/{pid}").exists()


def _port(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


def _refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return True
    return False


def test_host_board_lifecycle(host_firmware: Path) -> None:
    sim = start_sim("host")
    try:
        assert sim.alive() and sim.url.startswith("socket://127.0.0.1:")
        first_pid = sim.pid
        assert first_pid is not None and sim.raw_url is not None and sim.raw_url.startswith("/dev/pts/")
        url = sim.url

        sim.restart()
        assert sim.url == url, "the URL survives a restart, as a USB port survives an MCU reset"
        assert sim.alive() and sim.pid != first_pid and _gone(first_pid)

        crashed_pid = sim.pid
        assert crashed_pid is not None
        sim.crash()
        assert not sim.alive() and _gone(crashed_pid)
        with socket.create_connection(("127.0.0.1", _port(url)), timeout=5) as client:
            client.settimeout(5)
            assert client.recv(10) == b"", "a dead board's port closes at once"
        sim.restart()
        assert sim.alive()
    finally:
        last_pid = sim.pid
        sim.stop()
    assert last_pid is not None and _gone(last_pid)
    assert _refused(_port(url))


def test_abandoned_board_is_killed(host_firmware: Path) -> None:
    sim = start_sim("host")
    pid = sim.pid
    assert pid is not None
    del sim
    gc.collect()
    deadline = time.monotonic() + 5
    while not _gone(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _gone(pid)


def test_resolved_url(host_firmware: Path) -> None:
    with resolved_url("socket://127.0.0.1:1234") as url:
        assert url == "socket://127.0.0.1:1234"
    with resolved_url("sim") as url:
        assert url.startswith("socket://127.0.0.1:")
        port = _port(url)
    assert _refused(port)


def test_unknown_board() -> None:
    with pytest.raises(ValueError):
        SimDevice("avr")  # type: ignore[arg-type]


@pytest.mark.qemu
def test_qemu_board_lifecycle() -> None:
    if shutil.which("qemu-system-arm") is None:
        pytest.skip("qemu-system-arm is not installed")
    try:
        sim = start_sim("qemu")
    except SimUnavailableError as exc:
        pytest.skip(f"QEMU firmware unavailable: {exc}")
    try:
        assert sim.alive() and sim.raw_url is not None and sim.raw_url.startswith("socket://127.0.0.1:")
        pid = sim.pid
        assert pid is not None
        url = sim.url
        sim.restart()
        assert sim.url == url and _gone(pid) and sim.alive()
    finally:
        last = sim.pid
        sim.stop()
    assert last is not None and _gone(last)
