"""DeviceSession against a scripted fake device speaking protocol v1 over a TCP socket.

`FakeDevice` follows the device side of docs/protocol.md (state machines, credits, ACK/NAK,
retransmission, stall timeout, SET_BAUD fallback, RESET) and can inject faults: corrupted and lost
bytes both ways, a bounded receive ring that overflows if the host ignores its credit, slow rows,
reboots in the middle of an image, a device that goes silent. It stands in for the firmware until
the real app loop exists, and doubles as an executable sketch of what that loop has to do.
"""

from __future__ import annotations

import collections
import contextlib
import random
import socket
import threading
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import pytest

from gateway import device as dev
from gateway import protocol as P

pytestmark = pytest.mark.timeout(120)


@dataclass
class Faults:
    rx_drop: float = 0.0  # per byte, host -> device
    rx_corrupt: float = 0.0
    tx_drop: float = 0.0  # per byte, device -> host
    tx_corrupt: float = 0.0


@dataclass
class _Outstanding:
    seq: int
    msg: P.AnyMessage
    last_sent: float
    sends: int


@dataclass
class _Request:
    rid: int
    options: int
    started: float
    next_row: int = 0
    last_data: float = 0.0
    image: bytearray = field(default_factory=bytearray)


def fake_boxes(image: bytes) -> tuple[P.RawBox, ...]:
    """What the fake 'detects': derived from the pixels, so a damaged image gives different boxes."""
    c = zlib.crc32(image)
    return (P.RawBox(c & 0x0FFF, (c >> 12) & 0x0FFF, 160, 320, 60000), P.RawBox(16, 32, 48, 64, 65535))


class FakeDevice:
    RETX_S = 0.5
    MAX_SENDS = 8

    def __init__(
        self,
        *,
        width: int = 320,
        height: int = 320,
        credit: int = 2,
        ring_bytes: int = 2048,
        row_delay_s: float = 0.0,
        finish_delay_s: float = 0.0,
        faults: Faults | None = None,
        seed: int = 1,
        reset_at_rows: tuple[int, ...] = (),
        die_at_row: int | None = None,
        boot_delay_s: float = 0.0,
        baud_switch_works: bool = True,
        max_baud: int = 921_600,
        reject_detect: int | None = None,
        stall_s: float = 5.0,
    ) -> None:
        self.width, self.height, self.credit, self.ring_bytes = width, height, credit, ring_bytes
        self.row_delay_s, self.finish_delay_s = row_delay_s, finish_delay_s
        self.faults = faults or Faults()
        self.rnd = random.Random(seed)
        self.reset_at_rows = list(reset_at_rows)
        self.die_at_row = die_at_row
        self.boot_delay_s = boot_delay_s
        self.baud_switch_works = baud_switch_works
        self.max_baud = max_baud
        self.reject_detect = reject_detect
        self.stall_s = stall_s
        # observable results
        self.images: dict[int, bytes] = {}
        self.overruns = 0
        self.boots = 0
        self.cancelled: list[int] = []
        self.baud = 115_200
        self.dead = False
        # internals
        self._ring: collections.deque[int] = collections.deque()
        self._cv = threading.Condition()
        self._conn: socket.socket | None = None
        self._stop = threading.Event()
        self._srv = socket.socket()
        self._srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._srv.bind(("127.0.0.1", 0))
        self._srv.listen(4)
        self._srv.settimeout(0.05)  # so the accept loop notices stop()
        self.url = f"socket://127.0.0.1:{self._srv.getsockname()[1]}"
        self._threads = [
            threading.Thread(target=self._accept_loop, daemon=True),
            threading.Thread(target=self._main_loop, daemon=True),
        ]
        self._deaf_until = 0.0
        self._inject: collections.deque[P.AnyMessage] = collections.deque()

    def inject(self, msg: P.AnyMessage) -> None:
        """Have the device send `msg` (thread-safe)."""
        self._inject.append(msg)

    def __enter__(self) -> FakeDevice:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        with self._cv:
            self._cv.notify_all()
        self._srv.close()
        if self._conn is not None:
            with contextlib.suppress(OSError):
                self._conn.close()
        for t in self._threads:
            t.join(timeout=5)

    # ------------------------------------------------------------------- "UART": socket + RX ring (ISR)

    def _accept_loop(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._srv.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            conn.settimeout(None)
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            old, self._conn = self._conn, conn
            if old is not None:
                with contextlib.suppress(OSError):
                    old.close()
            threading.Thread(target=self._reader, args=(conn,), daemon=True).start()

    def _reader(self, conn: socket.socket) -> None:
        f = self.faults
        while not self._stop.is_set():
            try:
                data = conn.recv(4096)
            except OSError:
                return
            if not data:
                return
            with self._cv:
                for b in data:
                    if self.dead or time.monotonic() < self._deaf_until:
                        continue
                    if f.rx_drop and self.rnd.random() < f.rx_drop:
                        continue
                    if f.rx_corrupt and self.rnd.random() < f.rx_corrupt:
                        b ^= self.rnd.randrange(1, 256)
                    if len(self._ring) >= self.ring_bytes:
                        self.overruns += 1  # the ring is full: the newest byte is lost
                        continue
                    self._ring.append(b)
                self._cv.notify_all()

    def _write(self, data: bytes) -> None:
        if self.dead:
            return
        f = self.faults
        out = bytearray()
        for b in data:
            if f.tx_drop and self.rnd.random() < f.tx_drop:
                continue
            if f.tx_corrupt and self.rnd.random() < f.tx_corrupt:
                b ^= self.rnd.randrange(1, 256)
            out.append(b)
        conn = self._conn
        if conn is not None:
            with contextlib.suppress(OSError):
                conn.sendall(bytes(out))

    # ------------------------------------------------------------------------------- the device loop

    def _boot(self) -> None:
        self.boots += 1
        with self._cv:
            self._ring.clear()
        self.synced = False
        self.rx = P.FrameReceiver()
        self.rx_expected = 0
        self.tx_seq = 0
        self.txq: collections.deque[P.AnyMessage] = collections.deque()
        self.outstanding: _Outstanding | None = None
        self.req: _Request | None = None
        self.gap_nak_for: int | None = None
        self.reasm = P.Reassembler()
        self.mtu = P.MTU_MAX
        self.last_not_synced = 0.0
        self.baud_probe_until = 0.0
        self.old_baud = self.baud = 115_200
        if self.boot_delay_s:
            self._deaf_until = time.monotonic() + self.boot_delay_s
            time.sleep(self.boot_delay_s)
        self._write(b"\x00" + P.encode(self._hello(P.HelloReason.BOOT, 0)))

    def _hello(self, reason: int, nonce: int) -> P.Hello:
        return P.Hello(
            nonce, reason, P.PROTOCOL_VERSION, P.TickUnit.NS, P.PixelFormat.MONO8, self.width, self.height,
            1_000_000_000, 65536, self.max_baud, 0x1234ABCD, self.credit, "fake-1", "fake", "rnnpool-face-m4",
        )  # fmt: skip

    def _main_loop(self) -> None:
        self._boot()
        while not self._stop.is_set():
            with self._cv:
                if not self._ring:
                    self._cv.wait(0.01)
                data = bytes(self._ring)
                self._ring.clear()
            for ev in self.rx.feed(data) if data else []:
                self._on_event(ev)
                if self.dead:
                    break
            self._timers()

    def _timers(self) -> None:
        while self._inject:
            self.txq.append(self._inject.popleft())
        now = time.monotonic()
        o = self.outstanding
        if o is not None and now - o.last_sent > self.RETX_S:
            if o.sends >= self.MAX_SENDS:
                self.outstanding = None  # give up on this message
            else:
                self._send_seq(o)
        if self.req is not None and now - self.req.last_data > self.stall_s:
            rid = self.req.rid
            self.req = None
            self._queue(P.Error(P.ErrorCode.TIMEOUT, rid, f"no DATA for {self.stall_s * 1000:.0f} ms"))
        if self.baud_probe_until and now > self.baud_probe_until:
            self.baud_probe_until = 0.0
            self.baud = self.old_baud  # nothing good heard at the new rate: revert
        self._pump_tx()

    def _queue(self, msg: P.AnyMessage) -> None:
        self.txq.append(msg)
        self._pump_tx()

    def _pump_tx(self) -> None:
        # Window of one: the next reliable message goes out when the previous one is ACKed.
        if self.outstanding is None and self.txq:
            self.outstanding = _Outstanding(self.tx_seq, self.txq.popleft(), 0.0, 0)
            self.tx_seq = P.seq_add(self.tx_seq, 1)
            self._send_seq(self.outstanding)

    def _send_seq(self, o: _Outstanding) -> None:
        flags = P.Flag.RETRANSMIT if o.sends else 0
        self._write(P.encode(o.msg, seq=o.seq, flags=flags))
        o.sends += 1
        o.last_sent = time.monotonic()

    def _control(self, msg: P.AnyMessage) -> None:
        self._write(P.encode(msg))

    def _on_event(self, ev: P.Frame | P.FrameError) -> None:
        if isinstance(ev, P.FrameError):
            if self.synced:
                reason = P.NakReason.CRC if ev.kind == "crc" else P.NakReason.FRAMING
                self._control(P.Nak(self.rx_expected, reason, self.credit))
            return
        if self.baud_probe_until:
            self.baud_probe_until = 0.0  # a good frame at the new rate: keep it
        if ev.type < 0x10:
            with contextlib.suppress(P.ProtocolError):
                self._on_control(P.decode_frame(ev).msg)
            return
        if not self.synced:
            now = time.monotonic()
            if now - self.last_not_synced > 0.2:
                self.last_not_synced = now
                self._control(self._hello(P.HelloReason.NOT_SYNCED, 0))
            return
        d = P.seq_diff(ev.seq, self.rx_expected)
        if d > 0:
            if self.gap_nak_for != self.rx_expected:  # one NAK per gap, not one per frame after it
                self.gap_nak_for = self.rx_expected
                self._control(P.Nak(self.rx_expected, P.NakReason.GAP, self.credit))
            return
        self._control(P.Ack(ev.seq, self.credit))
        if d < 0:
            return  # duplicate: re-ACKed, not processed again
        self.rx_expected = P.seq_add(self.rx_expected, 1)
        self.gap_nak_for = None
        try:
            whole = self.reasm.feed(ev)
            if whole is None:
                return  # a fragment (flag MORE): the message continues in the next frame
            msg = P.decode_frame(whole).msg
        except P.ProtocolError as e:
            self._queue(P.Error(P.ErrorCode.BAD_FRAME, 0, str(e)[:100]))
            return
        self._dispatch(msg)

    def _on_control(self, msg: P.AnyMessage) -> None:
        if isinstance(msg, P.HelloRequest):
            self.synced = True
            self.rx_expected = 0
            self.reasm.reset()
            self.mtu = P.MTU_MAX
            self.tx_seq = 0
            self.gap_nak_for = None
            self.txq.clear()
            self.outstanding = None
            self.req = None
            self._control(self._hello(P.HelloReason.REPLY, msg.nonce))
        elif isinstance(msg, P.Ack):
            o = self.outstanding
            if o is not None and P.seq_diff(msg.ack_seq, o.seq) >= 0:
                self.outstanding = None
                self._pump_tx()
        elif isinstance(msg, P.Nak):
            o = self.outstanding
            if o is not None and P.seq_diff(o.seq, msg.expected_seq) >= 0:
                self._send_seq(o)

    def _dispatch(self, msg: P.AnyMessage) -> None:
        now = time.monotonic()
        if isinstance(msg, P.Ping):
            self._queue(P.Pong(msg.token))
        elif isinstance(msg, P.Detect):
            if self.reject_detect is not None:
                self._queue(P.Error(self.reject_detect, msg.request_id, "rejected by the test"))
            elif self.req is not None:
                self._queue(P.Error(P.ErrorCode.BUSY, msg.request_id, f"busy with {self.req.rid}"))
            elif (msg.width, msg.height, msg.pixel_format) != (self.width, self.height, P.PixelFormat.MONO8):
                self._queue(P.Error(P.ErrorCode.BAD_SIZE, msg.request_id, f"{msg.width}x{msg.height}"))
            else:
                self.req = _Request(msg.request_id, msg.options, now, last_data=now)
        elif isinstance(msg, P.Data):
            r = self.req
            if r is None:
                return  # leftovers of an aborted request: ACKed, dropped
            if msg.first_row != r.next_row or len(msg.pixels) % self.width:
                self.req = None
                self._queue(P.Error(P.ErrorCode.BAD_ROW, r.rid, f"row {msg.first_row}, want {r.next_row}"))
                return
            rows = len(msg.pixels) // self.width
            r.image += msg.pixels
            r.last_data = now
            if self.row_delay_s:
                time.sleep(self.row_delay_s * rows)  # streaming compute: the ring fills meanwhile
            r.next_row += rows
            if self.die_at_row is not None and r.next_row >= self.die_at_row:
                self.dead = True
                return
            if self.reset_at_rows and r.next_row >= self.reset_at_rows[0]:
                self.reset_at_rows.pop(0)
                self._boot()
                return
            if r.next_row >= self.height:
                self._finish(r)
        elif isinstance(msg, P.Cancel):
            if self.req is not None and self.req.rid == msg.request_id:
                self.req = None
                self.cancelled.append(msg.request_id)
                self._queue(P.Error(P.ErrorCode.CANCELLED, msg.request_id, "cancelled"))
        elif isinstance(msg, P.SetBaud):
            self.old_baud = self.baud
            if msg.baud > self.max_baud or not self.baud_switch_works:
                # The new rate does not work: the host's probes arrive as noise until we revert.
                self._deaf_until = now + 1.0
            else:
                self.baud = msg.baud
            self.baud_probe_until = now + 1.0
        elif isinstance(msg, P.LinkConfig):
            self.mtu = msg.mtu  # the fake's own messages stay whole: the host takes either
        elif isinstance(msg, P.Reset):
            time.sleep(0.02)
            self._boot()
        else:
            self._queue(P.Error(P.ErrorCode.BAD_FRAME, 0, f"unexpected {msg.TYPE.name}"))

    def _finish(self, r: _Request) -> None:
        if self.finish_delay_s:
            time.sleep(self.finish_delay_s)
        self.req = None
        image = bytes(r.image)
        self.images[r.rid] = image
        t = int((time.monotonic() - r.started) * 1e9)
        if r.options & P.DetectOption.STATS:
            self._queue(P.Stats(r.rid, ((1, 1000), (3, 2_000_000_000), (99, 7))))
        self._queue(P.Result(r.rid, t // 2, t // 3, t, 40_000, 1_234, fake_boxes(image)))


# ------------------------------------------------------------------------------------------- helpers


def image(seed: int = 0, shape: tuple[int, int] = (320, 320)) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


@contextlib.contextmanager
def session(fake: FakeDevice, **kw: object) -> Iterator[dev.DeviceSession]:
    s = dev.DeviceSession(fake.url, **kw)  # type: ignore[arg-type]
    try:
        s.open()
        yield s
    finally:
        s.close()


def check_result(fake: FakeDevice, img: np.ndarray, res: dev.DetectResult) -> None:
    assert fake.images[res.request_id] == img.tobytes()
    want = [dev.Box.from_raw(b) for b in fake_boxes(img.tobytes())]
    assert res.boxes == want


# --------------------------------------------------------------------------------------------- tests


def test_handshake_ping_and_detect() -> None:
    with FakeDevice() as fake, session(fake) as s:
        info = s.info
        assert info is not None
        assert (info.board, info.input_width, info.input_height, info.tick_unit) == ("fake", 320, 320, "ns")
        assert (info.model_hash, info.rx_credit, info.protocol_version) == (0x1234ABCD, 2, P.PROTOCOL_VERSION)
        assert 0 < s.ping() < 1.0
        events: list[tuple[str, dict[str, int]]] = []
        img = image(1)
        res = s.detect(img, progress=lambda stage, d: events.append((stage, dict(d))))
        check_result(fake, img, res)
        assert res.tick_unit == "ns" and res.ticks_total > 0 and res.stage_ticks is None
        assert res.peak_ram_bytes == 40_000 and res.stack_high_water_bytes == 1_234
        assert res.boxes[1] == dev.Box(1.0, 2.0, 3.0, 4.0, 1.0)
        sent = [d["bytes_sent"] for st, d in events if st == "transmitting"]
        assert sent[0] == 0 and sent[-1] == 320 * 320 and sent == sorted(sent)
        assert events[-1] == ("computing", {})
        assert fake.overruns == 0
        assert s.stats.retransmits == 0 and s.stats.crc_errors == 0
        assert s.stats.frames_tx > 107 and s.stats.bytes_tx > 320 * 320


def test_stats_are_reported() -> None:
    with FakeDevice() as fake, session(fake) as s:
        img = image(2)
        res = s.detect(img, stats=True)
        check_result(fake, img, res)
        assert res.stage_ticks == {"conv1": 1000, "rnn2": 2_000_000_000, "stage_99": 7}


def test_credit_is_respected_by_a_slow_device() -> None:
    # A ring of two frames and a device that computes while receiving: overrunning it would lose bytes.
    with FakeDevice(credit=2, ring_bytes=2 * 977 + 64, row_delay_s=0.002) as fake, session(fake) as s:
        img = image(3)
        check_result(fake, img, s.detect(img))
        assert fake.overruns == 0
        assert s.stats.crc_errors == 0


def test_several_requests_in_a_row() -> None:
    with FakeDevice(credit=3, ring_bytes=4096) as fake, session(fake) as s:
        for k in range(4):
            img = image(10 + k)
            check_result(fake, img, s.detect(img))
        assert len(fake.images) == 4 and fake.overruns == 0


@pytest.mark.parametrize(
    "faults",
    [
        Faults(rx_corrupt=2e-4),
        Faults(rx_drop=2e-4),
        Faults(tx_corrupt=2e-3, tx_drop=1e-3),
        Faults(rx_corrupt=1e-4, rx_drop=1e-4, tx_corrupt=1e-3, tx_drop=1e-3),
    ],
    ids=["rx-corrupt", "rx-drop", "tx-noise", "both"],
)
def test_noisy_link_gives_the_right_answer(faults: Faults) -> None:
    with FakeDevice(faults=faults, seed=7) as fake, session(fake, timeout_s=10.0) as s:
        for k in range(2):
            img = image(20 + k)
            check_result(fake, img, s.detect(img))
        st = s.stats
        assert st.retransmits + st.crc_errors + st.resyncs > 0  # the faults did happen


def test_noise_and_a_slow_device_with_a_small_ring() -> None:
    # Go-back resends can duplicate frames in the ring; overruns are then just more damaged frames.
    faults = Faults(rx_corrupt=1e-4, tx_corrupt=5e-4)
    fake = FakeDevice(faults=faults, ring_bytes=2 * 977 + 64, row_delay_s=0.0005, seed=3)
    with fake, session(fake, timeout_s=10.0) as s:
        img = image(25)
        check_result(fake, img, s.detect(img))


def test_device_reset_mid_image_is_retried_once() -> None:
    with FakeDevice(reset_at_rows=(150,)) as fake, session(fake) as s:
        img = image(4)
        res = s.detect(img)
        check_result(fake, img, res)
        assert s.stats.device_resets == 1
        assert fake.boots == 2


def test_device_resetting_twice_raises() -> None:
    with FakeDevice(reset_at_rows=(60, 90)) as fake, session(fake) as s:
        with pytest.raises(dev.DeviceReset):
            s.detect(image(5))
        assert s.stats.device_resets == 2
        s.open()  # the session recovers with a new handshake
        img = image(6)
        check_result(fake, img, s.detect(img))


def test_device_error_is_raised() -> None:
    with FakeDevice(reject_detect=P.ErrorCode.BUSY) as fake, session(fake) as s:
        with pytest.raises(dev.DeviceRejected) as ei:
            s.detect(image(7))
        assert ei.value.code == P.ErrorCode.BUSY and "rejected by the test" in ei.value.message
        fake.reject_detect = None
        assert s.ping() > 0  # the link is still in step after the frames that were in flight
        img = image(8)
        check_result(fake, img, s.detect(img))


def test_silent_device_gives_a_bounded_error() -> None:
    with FakeDevice(die_at_row=100) as fake, session(fake, timeout_s=2.0, max_retries=3) as s:
        t0 = time.monotonic()
        with pytest.raises((dev.LinkError, dev.DeviceTimeout)):
            s.detect(image(9), deadline_s=30.0)
        assert time.monotonic() - t0 < 15.0
        assert fake.dead


def test_deadline_while_computing() -> None:
    with FakeDevice(finish_delay_s=2.0) as fake, session(fake) as s:
        t0 = time.monotonic()
        with pytest.raises(dev.DeviceTimeout):
            s.detect(image(10), deadline_s=0.8)
        assert time.monotonic() - t0 < 1.5
        # The device finishes, sees the CANCEL, and the session is usable again.
        assert s.ping() > 0
        img = image(11)
        check_result(fake, img, s.detect(img))


def test_cancel_while_transmitting() -> None:
    with FakeDevice(row_delay_s=0.001) as fake, session(fake) as s:
        cancel = threading.Event()

        def progress(stage: str, d: dict[str, int]) -> None:
            if stage == "transmitting" and d["bytes_sent"] > 30_000:
                cancel.set()

        with pytest.raises(dev.Cancelled):
            s.detect(image(12), progress=progress, cancel=cancel)
        assert len(fake.cancelled) == 1
        img = image(13)
        check_result(fake, img, s.detect(img))


def test_wrong_frame_shape_is_refused_locally() -> None:
    with FakeDevice() as fake, session(fake) as s:
        with pytest.raises(ValueError):
            s.detect(image(14, (240, 320)))
        with pytest.raises(ValueError):
            s.detect(image(14).astype(np.int16))


def test_baud_negotiation() -> None:
    with FakeDevice() as fake, session(fake, target_baud=921_600) as s:
        assert fake.baud == 921_600 and s.baudrate == 921_600
        img = image(15)
        check_result(fake, img, s.detect(img))


def test_baud_negotiation_falls_back() -> None:
    with FakeDevice(baud_switch_works=False) as fake, session(fake, target_baud=921_600) as s:
        assert fake.baud == 115_200 and s.baudrate == 115_200
        img = image(16)
        check_result(fake, img, s.detect(img))


def test_baud_above_device_max_is_not_requested() -> None:
    with FakeDevice(max_baud=460_800) as fake, session(fake, target_baud=921_600) as s:
        assert s.baudrate == 115_200 and fake.baud == 115_200


def test_handshake_waits_for_a_booting_device() -> None:
    with FakeDevice(boot_delay_s=1.2) as fake, session(fake, timeout_s=5.0) as s:
        assert s.info is not None and s.ping() > 0
        assert fake.boots == 1


def test_no_device_times_out() -> None:
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    try:
        s = dev.DeviceSession(f"socket://127.0.0.1:{srv.getsockname()[1]}", timeout_s=1.0)
        t0 = time.monotonic()
        with pytest.raises(dev.DeviceTimeout):
            s.open()
        assert time.monotonic() - t0 < 2.0
        s.close()
    finally:
        srv.close()


def test_unreachable_port_is_a_link_error() -> None:
    s = dev.DeviceSession("socket://127.0.0.1:1", timeout_s=1.0)
    with pytest.raises(dev.LinkError):
        s.open()


def test_reset_command() -> None:
    with FakeDevice() as fake, session(fake) as s:
        info = s.reset()
        assert info.board == "fake" and fake.boots == 2
        assert s.stats.device_resets == 0
        img = image(17)
        check_result(fake, img, s.detect(img))


def test_concurrent_callers_are_serialised() -> None:
    with FakeDevice(credit=3, ring_bytes=4096) as fake, session(fake) as s:
        imgs = [image(30 + k) for k in range(4)]
        results: dict[int, dev.DetectResult] = {}
        errors: list[BaseException] = []

        def work(k: int) -> None:
            try:
                results[k] = s.detect(imgs[k])
                s.ping()
            except BaseException as e:
                errors.append(e)

        threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert not errors
        for k in range(4):
            check_result(fake, imgs[k], results[k])


def test_stale_result_is_ignored() -> None:
    with FakeDevice() as fake, session(fake) as s:
        # A RESULT for a request the session never made must not be taken for the next one.
        fake.inject(P.Result(12345, 1, 1, 1, 1, 1, (P.RawBox(1, 1, 1, 1, 1),)))
        img = image(18)
        res = s.detect(img)
        check_result(fake, img, res)
        assert res.request_id != 12345


# ------------------------------------------------------------------------------------ MtuController


def feed(ctl: dev.MtuController, frames: int, errors_every: int = 0) -> None:
    for i in range(frames):
        ctl.on_sent()
        if errors_every and i % errors_every == 0:
            ctl.on_error()


def test_mtu_controller_shrinks_on_errors_and_grows_back_when_clean() -> None:
    ctl = dev.MtuController(window=16, clean_frames=200)
    assert ctl.update() == P.MTU_MAX  # no history: no change
    feed(ctl, 15, errors_every=1)
    assert ctl.update() == P.MTU_MAX  # a window is judged only once it is full
    feed(ctl, 1, errors_every=1)
    assert ctl.update() == P.MTU_MAX // 4  # every frame damaged: severe, a quarter at once
    feed(ctl, 16, errors_every=2)  # rate 0.5: above `high`, below `severe`
    assert ctl.update() == P.MTU_MAX // 8
    for _ in range(10):
        feed(ctl, 16, errors_every=1)
        ctl.update()
    assert ctl.mtu == 32  # the floor
    feed(ctl, 16, errors_every=1)
    assert ctl.update() == 32
    # Clean frames: doubled back only after `clean_frames` of them, one step at a time.
    for _ in range(12):
        feed(ctl, 16)
        assert ctl.update() == 32
    feed(ctl, 16)
    assert ctl.update() == 64
    # A moderately noisy window (between low and high) restarts the clean count.
    feed(ctl, 16, errors_every=8)
    assert ctl.update() == 64
    for _ in range(12):
        feed(ctl, 16)
        assert ctl.update() == 64
    feed(ctl, 16)
    assert ctl.update() == 128


def test_mtu_controller_rejects_bad_limits() -> None:
    with pytest.raises(ValueError):
        dev.MtuController(min_mtu=P.MTU_MIN - 1)
    with pytest.raises(ValueError):
        dev.MtuController(min_mtu=512, max_mtu=256)


class _StubTransport:
    """Just enough of Transport for _Link bookkeeping without a wire."""

    last_tx = 0.0
    baudrate = 115200

    def __init__(self) -> None:
        self.sent: list[bytes] = []

    def seconds_for(self, n: int) -> float:
        return n * 10 / self.baudrate

    def write(self, data: bytes) -> None:
        self.sent.append(data)


def test_drop_queue_takes_back_an_unsent_link_config() -> None:
    """A LINK_CONFIG dropped before it was sent never reached the device: the host must keep
    fragmenting at the old size (the device credits and reassembles for it)."""
    ctl = dev.MtuController()
    link = dev._Link(_StubTransport(), dev.LinkStats(), 8, ctl)  # type: ignore[arg-type]
    link.restart(credit=1)
    link.enqueue(P.Ping(1))
    link.fill_window()  # seq 0 in flight; with credit 1 nothing else may go
    feed(ctl, 16, errors_every=1)
    link.adapt_mtu()  # LINK_CONFIG queued as seq 1, behind the window
    assert link.mtu == P.MTU_MAX // 4 and link.tx_next == 2
    link.drop_queue()
    assert link.mtu == P.MTU_MAX and link.stats.mtu == P.MTU_MAX and link.tx_next == 1
    assert list(link.unacked) == [0]
