"""One device, one session: handshake, streamed detection, recovery (protocol: docs/protocol.md).

`DeviceSession` is blocking and thread-safe: a lock keeps one operation on the wire at a time. There
is no reader thread; every operation pumps the link itself (read with a short timeout, feed the
frame receiver, react to ACK / NAK / HELLO / messages, run the retransmission timer) until its own
deadline. Every wait is bounded, and nothing that failed its CRC is ever used.

Link layer, host side (mirrors section "Reliability" of the spec):
- sequenced frames (type >= 0x10) carry seq 0, 1, 2... from the last handshake; the device ACKs them
  cumulatively and returns a credit: the host may send up to seq ``ack_seq + credit``;
- the device's receiver only takes frames in order (go-back-N): after a NAK(e) or a retransmission
  of e, everything after e that was sent before it is sent again;
- the retransmission timeout adapts to the measured ACK delay (which includes the device's compute
  time per DATA frame) and doubles on every timeout; ``max_retries`` timeouts of one frame, or
  ``NAK_RETRY_FACTOR * max_retries`` NAKs of it, give a LinkError;
- messages longer than the current MTU travel as fragments (flag MORE), each its own sequenced
  frame; `MtuController` halves the MTU while the frame error rate is high and doubles it back once
  the link has been clean for a while, always between messages (LINK_CONFIG tells the device).
"""

from __future__ import annotations

import collections
import contextlib
import logging
import random
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np

from gateway import protocol as P
from gateway.transport import Transport, TransportError

log = logging.getLogger("gateway.device")

ProgressFn = Callable[[str, dict[str, Any]], None]

# Timing constants (seconds). The device-side ones are fixed by the spec; the host must stay inside them.
DEVICE_STALL_TIMEOUT_S = 5.0  # device drops a request when no DATA arrives for this long
DEVICE_BAUD_CONFIRM_S = 1.0  # device reverts a SET_BAUD unless a good frame arrives at the new rate
HELLO_RETRY_S = 0.25  # HELLO_REQUEST repetition while handshaking (a HELLO often is lost on a noisy link)
IDLE_FLUSH_S = 0.05  # after this much silence the host sends a 0x00 first (cuts off line noise)
NAK_HOLDOFF_S = 0.05  # at most one host NAK per this interval
RTO_MAX_S = 2.0  # keeps retransmissions well inside the device's stall timeout
RTO_MIN_S = 0.5  # QEMU and a busy engine answer a DATA frame in up to ~0.4 s; spurious resends fill the ring
HOST_CREDIT = 255  # the host never runs out of buffer
# Noisy-link window: about this many frames sent per expected error (window = this / error rate).
HOST_NOISY_WINDOW = 1.0
POLL_S = 0.02  # longest single read; bounds the reaction time to cancel and timers
CANCEL_WAIT_S = 2.0  # how long a cancelled request waits for the device to confirm
# NAK-triggered resends of one frame allowed per timeout allowed: on a link where a third of the
# small frames are damaged a frame often needs several copies, but a frame NAKed forever must end.
NAK_RETRY_FACTOR = 4


# ------------------------------------------------------------------------------------------- errors


class DeviceError(Exception):
    """Base of everything a device session raises (besides ValueError for bad arguments)."""


class DeviceTimeout(DeviceError):  # noqa: N818 - names are the public API
    """The device missed the deadline or stopped answering."""


class DeviceReset(DeviceError):  # noqa: N818 - names are the public API
    """The device rebooted (an unsolicited HELLO) while a request was in progress."""


class DeviceRejected(DeviceError):  # noqa: N818 - names are the public API
    """The device answered with ERROR."""

    def __init__(self, code: int, message: str, request_id: int = 0) -> None:
        try:
            name = P.ErrorCode(code).name
        except ValueError:
            name = f"code {code}"
        super().__init__(f"{name}: {message}" if message else name)
        self.code = code
        self.message = message
        self.request_id = request_id


class LinkError(DeviceError):
    """The link does not work: too many retransmissions, port failure, protocol violation."""


class Cancelled(DeviceError):  # noqa: N818 - names are the public API
    """The caller's cancel event was set."""


# -------------------------------------------------------------------------------------------- data


TICK_UNITS = {int(P.TickUnit.CYCLES): "cycles", int(P.TickUnit.INSTRUCTIONS): "instructions", int(P.TickUnit.NS): "ns"}


@dataclass(frozen=True)
class DeviceInfo:
    protocol_version: int
    firmware_version: str
    board: str
    model_id: str
    model_hash: int
    input_width: int
    input_height: int
    pixel_format: int
    clock_hz: int
    tick_unit: str  # "cycles" | "instructions" | "ns"
    ram_bytes: int
    max_baud: int
    rx_credit: int

    @classmethod
    def from_hello(cls, h: P.Hello) -> DeviceInfo:
        return cls(
            protocol_version=h.protocol_version,
            firmware_version=h.firmware_version,
            board=h.board,
            model_id=h.model_id,
            model_hash=h.model_hash,
            input_width=h.input_width,
            input_height=h.input_height,
            pixel_format=h.pixel_format,
            clock_hz=h.clock_hz,
            tick_unit=TICK_UNITS.get(h.tick_unit, f"unit_{h.tick_unit}"),
            ram_bytes=h.ram_bytes,
            max_baud=h.max_baud,
            rx_credit=h.rx_credit,
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class LinkStats:
    bytes_tx: int = 0
    bytes_rx: int = 0
    frames_tx: int = 0
    frames_rx: int = 0
    crc_errors: int = 0
    naks: int = 0  # NAKs received from the device
    retransmits: int = 0
    resyncs: int = 0  # framing errors other than CRC (noise, lost bytes, overlong frames)
    timeouts: int = 0  # retransmission timer expiries
    device_resets: int = 0  # unexpected HELLOs (reboots we did not ask for)
    mtu: int = P.MTU_MAX  # current fragment payload size, both ways (a gauge, not a counter)
    mtu_changes: int = 0
    fragments_tx: int = 0  # new frames sent with MORE (a message cut at the MTU)
    fragments_rx: int = 0  # device frames taken with MORE

    def to_dict(self) -> dict[str, int]:
        return asdict(self)


@dataclass(frozen=True)
class Box:
    """A detection in device-frame pixels (float), score in [0, 1]."""

    x: float
    y: float
    w: float
    h: float
    score: float

    @classmethod
    def from_raw(cls, b: P.RawBox) -> Box:
        return cls(b.x / 16.0, b.y / 16.0, b.w / 16.0, b.h / 16.0, b.score / 65535.0)


@dataclass(frozen=True)
class DetectResult:
    request_id: int
    boxes: list[Box]
    ticks_receive: int
    ticks_compute: int
    ticks_total: int
    tick_unit: str
    peak_ram_bytes: int
    stack_high_water_bytes: int
    stage_ticks: dict[str, int] | None = None
    clock_hz: int = 0
    host_seconds: float = 0.0  # wall time of the whole call, as the host saw it

    def seconds(self, ticks: int) -> float | None:
        """Ticks to seconds on the target (None when the clock is unknown)."""
        return ticks / self.clock_hz if self.clock_hz else None


# ---------------------------------------------------------------------------------------- link layer


class MtuController:
    """Chooses the fragment size from the frame error rate (docs/protocol.md section 3).

    Every frame sent is one trial; every sign of a damaged frame (a NAK from the device, a
    retransmission timeout, a frame from the device that failed its checks) is one error. Over the
    last ``window`` frames sent: an error rate above ``high`` halves the MTU (down to ``min_mtu``);
    one below ``low`` for ``clean_frames`` frames in a row doubles it (up to ``max_mtu``). After a
    change the history starts again, so each size is judged on its own frames.

    Why these numbers: a frame of n bytes on a link that damages a fraction b of the bytes survives
    with probability (1 - b)^(n + 12). At 1 % corrupted + 0.1 % lost bytes a 1,024-byte frame never
    arrives, 64 bytes arrive 43 % of the time and 32 bytes 61 %; payload per wire byte times the
    chance to arrive peaks near 30 bytes, hence the floor of 32. On a clean link (b < 1e-4) full
    frames lose under 10 % and the MTU stays at 1,024: small frames cost about 12 bytes each.
    """

    def __init__(
        self,
        *,
        max_mtu: int = P.MTU_MAX,
        min_mtu: int = 32,
        window: int = 16,
        high: float = 0.3,
        low: float = 0.06,
        severe: float = 0.9,
        clean_frames: int = 200,
    ) -> None:
        if not P.MTU_MIN <= min_mtu <= max_mtu <= P.MTU_MAX:
            raise ValueError("need MTU_MIN <= min_mtu <= max_mtu <= MTU_MAX")
        self.max_mtu, self.min_mtu = max_mtu, min_mtu
        self.window, self.high, self.low, self.clean_frames = window, high, low, clean_frames
        self.severe = severe
        self.mtu = max_mtu
        self._sent: collections.deque[int] = collections.deque(maxlen=window)  # errors charged per frame
        self._clean_run = 0

    def on_sent(self) -> None:
        self._sent.append(0)

    def on_error(self) -> None:
        if self._sent:
            self._sent[-1] += 1
        else:
            self._sent.append(1)
        self._clean_run = 0

    @property
    def error_rate(self) -> float:
        return sum(self._sent) / len(self._sent) if self._sent else 0.0

    def update(self) -> int:
        """The MTU for the next message (call between messages)."""
        if len(self._sent) >= self.window:
            rate = self.error_rate
            if rate > self.high and self.mtu > self.min_mtu:
                # Nearly every frame lost: the MTU is far too large (halving once per window would
                # take several windows of hopeless frames to get there).
                step = 4 if rate >= self.severe else 2
                return self._set(max(self.min_mtu, self.mtu // step))
            if rate < self.low:
                self._clean_run += len(self._sent)
                self._sent.clear()
                if self._clean_run >= self.clean_frames and self.mtu < self.max_mtu:
                    return self._set(min(self.max_mtu, self.mtu * 2))
            elif rate >= self.low:
                self._clean_run = 0
        return self.mtu

    def _set(self, mtu: int) -> int:
        log.info("link MTU %d -> %d (frame error rate %.2f)", self.mtu, mtu, self.error_rate)
        self.mtu = mtu
        self._sent.clear()
        self._clean_run = 0
        return mtu


@dataclass
class _Out:
    """One sequenced frame: a whole message, or one fragment of it."""

    seq: int
    msg: P.AnyMessage
    wire: bytes
    payload: bytes = b""  # this frame's piece of the message payload
    flags: int = 0  # MORE on every fragment but the last
    pixels: int = 0  # image bytes it carries (progress)
    first_sent: float = 0.0
    last_sent: float = 0.0
    sends: int = 0
    naks: int = 0  # resends caused by a NAK naming it
    timeouts: int = 0  # retransmission timer expiries while it was the oldest
    stamp: int = 0  # order of its latest transmission among all transmissions
    prev_mtu: int = 0  # LINK_CONFIG: the MTU before it (restored if it is dropped unsent)


class _Reset(Exception):  # noqa: N818 - internal signal, converted to DeviceReset
    pass


class _Link:
    """Host side of the link layer. Not thread-safe: DeviceSession serialises access."""

    def __init__(
        self, transport: Transport, stats: LinkStats, max_retries: int, mtu_ctl: MtuController | None = None
    ) -> None:
        self.t = transport
        self.stats = stats
        self.max_retries = max_retries
        self.mtu_ctl = mtu_ctl or MtuController()
        self.rx = P.FrameReceiver()
        self.reasm = P.Reassembler()
        self.inbox: collections.deque[P.Packet] = collections.deque()
        self.pending_nonce: int | None = None
        self.hello: P.Hello | None = None
        self.reset_seen: P.Hello | None = None
        self.heard_frame = False  # any good frame since the last clear (baud probing)
        self.timer_enabled = True
        self._last_nak = 0.0
        self._last_nak_seq = -1
        self.restart(credit=1)

    # ---------------------------------------------------------------------------------------- state

    def restart(self, credit: int) -> None:
        """Sequence numbers start again at 0 on both sides (after a handshake)."""
        self.tx_next = 0
        self.acked_upto = P.seq_add(0, -1)
        self.credit = max(1, credit)
        self.rx_expected = 0
        self.reasm.reset()
        # The device starts every session at MTU_MAX; the controller's choice is sent again before
        # the next message (adapt_mtu).
        self.mtu = P.MTU_MAX
        self.stats.mtu = self.mtu
        self.barrier: int | None = None  # seq of a LINK_CONFIG nothing may pass until it is ACKed
        self.open_message = False  # the last new frame sent was a fragment with MORE
        self.unacked: collections.OrderedDict[int, _Out] = collections.OrderedDict()
        self.queue: collections.deque[_Out] = collections.deque()
        self.inbox.clear()
        self._stamp = 0
        frame_s = self.t.seconds_for(P.MAX_WIRE)
        self.wire_floor = 2 * frame_s  # a full frame there and its answer back
        self.srtt: float | None = None
        self.min_rtt: float | None = None  # fastest ACK seen: the floor of any answer's delay
        self.rttvar = 0.0
        self.rto = max(1.0, 3 * frame_s)
        self.backoff = 1.0
        self.acked_pixels = 0

    @property
    def idle(self) -> bool:
        return not self.unacked and not self.queue

    def current_rto(self) -> float:
        # The floor covers the device computing a whole DATA message (~0.4 s on QEMU) before it
        # reads on. With small fragments that happens once per many frames, and a lost frame whose
        # NAK is lost too would otherwise cost half a second each: the floor shrinks with the MTU,
        # from RTO_MIN_S at the largest down to a fifth of it.
        floor = self.wire_floor + RTO_MIN_S * (0.2 + 0.8 * self.mtu / P.MTU_MAX)
        return min(RTO_MAX_S, max(floor, self.rto) * self.backoff)

    # ---------------------------------------------------------------------------------------- sending

    def _write(self, data: bytes) -> None:
        # A 0x00 in front after a quiet line cuts off noise; on a noisy link (small MTU) always:
        # a damaged delimiter then ends the frame at once (a NAK) instead of after the next frame,
        # which with a window of one or two is a retransmission timeout away.
        if time.monotonic() - self.t.last_tx > IDLE_FLUSH_S or self.mtu < P.MTU_MAX:
            data = b"\x00" + data
        try:
            self.t.write(data)
        except TransportError as e:
            raise LinkError(str(e)) from e
        self.stats.bytes_tx += len(data)

    def send_control(self, msg: P.AnyMessage) -> None:
        self._write(P.encode(msg))
        self.stats.frames_tx += 1

    def enqueue(self, msg: P.AnyMessage, pixels: int = 0) -> _Out:
        """Queue a sequenced message, in fragments of the current MTU; returns its last frame."""
        pieces = P.fragment(msg.encode_payload(), self.mtu)
        out: _Out | None = None
        for i, (piece, flags) in enumerate(pieces):
            wire = P.encode_raw_frame(int(msg.TYPE), piece, seq=self.tx_next, flags=flags)
            out = _Out(seq=self.tx_next, msg=msg, wire=wire, payload=piece, flags=flags)
            if i == len(pieces) - 1:
                out.pixels = pixels  # progress counts the rows once the whole message is ACKed
            self.tx_next = P.seq_add(self.tx_next, 1)
            self.queue.append(out)
        assert out is not None
        return out

    def adapt_mtu(self) -> None:
        """Between messages: follow the controller; a change goes to the device as LINK_CONFIG."""
        want = self.mtu_ctl.update()
        if want == self.mtu:
            return
        out = self.enqueue(P.LinkConfig(want))
        out.prev_mtu = self.mtu
        # Frames of the new size wait until the device has taken the LINK_CONFIG: its ACK carries
        # the credit for the new size (a larger MTU means fewer frames fit in the device's ring).
        self.barrier = out.seq
        self.mtu = want
        self.stats.mtu = want
        self.stats.mtu_changes += 1

    def window(self) -> int:
        """Frames that may be in flight. Go-back-N throws away every frame sent behind a lost one,
        so while the error rate is high the window shrinks to what one damaged frame should cost."""
        rate = self.mtu_ctl.error_rate
        if rate <= 0.1:
            return self.credit
        return max(1, min(self.credit, int(HOST_NOISY_WINDOW / rate)))

    def _transmit(self, out: _Out) -> None:
        now = time.monotonic()
        self.mtu_ctl.on_sent()
        if out.sends:
            self.stats.retransmits += 1
            wire = P.encode_raw_frame(int(out.msg.TYPE), out.payload, seq=out.seq, flags=out.flags | P.Flag.RETRANSMIT)
        else:
            out.first_sent = now
            wire = out.wire
            self.open_message = bool(out.flags & P.Flag.MORE)
            self.stats.fragments_tx += self.open_message
        self._write(wire)
        self.stats.frames_tx += 1
        out.sends += 1
        out.last_sent = now
        self._stamp += 1
        out.stamp = self._stamp

    def fill_window(self) -> None:
        if self.barrier is not None and P.seq_diff(self.acked_upto, self.barrier) >= 0:
            self.barrier = None
        window = self.window()
        while self.queue and P.seq_diff(self.queue[0].seq, self.acked_upto) <= window:
            if self.barrier is not None and P.seq_diff(self.queue[0].seq, self.barrier) > 0:
                break
            out = self.queue.popleft()
            self.unacked[out.seq] = out
            self._transmit(out)

    def drop_queue(self) -> None:
        """Forget frames not sent yet; their sequence numbers are reused (the device never saw them)."""
        # A message is never cut between fragments: the device would join what follows to it. The
        # rest of a message already partly sent stays queued.
        keep = 0
        if self.open_message:
            for out in self.queue:
                keep += 1
                if not out.flags & P.Flag.MORE:
                    break
        if len(self.queue) > keep:
            self.tx_next = self.queue[keep].seq
            while len(self.queue) > keep:
                out = self.queue.pop()
                if out.prev_mtu:
                    # The device never got this LINK_CONFIG: it still fragments (and credits) at
                    # the old size, and so must we; adapt_mtu asks again before the next message.
                    self.mtu = self.stats.mtu = out.prev_mtu
        if self.barrier is not None and P.seq_diff(self.barrier, self.tx_next) >= 0:
            self.barrier = None

    def resend(self, out: _Out) -> None:
        self._transmit(out)

    def _go_back(self, from_seq: int, sent_before: int | None = None) -> None:
        """Resend unacked frames from `from_seq` on (only those last sent before stamp `sent_before`)."""
        for seq, out in list(self.unacked.items()):
            if P.seq_diff(seq, from_seq) < 0:
                continue
            if sent_before is not None and out.stamp >= sent_before:
                continue
            self._transmit(out)

    def service_timer(self) -> None:
        if not self.unacked or not self.timer_enabled:
            return
        oldest = next(iter(self.unacked.values()))
        if time.monotonic() - oldest.last_sent < self.current_rto():
            return
        self.stats.timeouts += 1
        self.mtu_ctl.on_error()
        oldest.timeouts += 1
        if oldest.timeouts > self.max_retries:
            raise LinkError(f"no ACK for {oldest.msg.TYPE.name} seq {oldest.seq} after {oldest.sends} transmissions")
        self.backoff = min(self.backoff * 2.0, 64.0)
        log.debug("retransmit %s seq %d (try %d)", oldest.msg.TYPE.name, oldest.seq, oldest.sends + 1)
        self._transmit(oldest)

    # -------------------------------------------------------------------------------------- receiving

    def poll(self, timeout_s: float) -> None:
        """Read once (up to timeout_s), process what arrived, run the timers, send what the window allows."""
        try:
            data = self.t.read(4096, timeout_s=max(0.0, min(timeout_s, POLL_S)))
        except TransportError as e:
            raise LinkError(str(e)) from e
        if data:
            self.stats.bytes_rx += len(data)
            for ev in self.rx.feed(data):
                self._on_event(ev)
        self.service_timer()
        self.fill_window()

    def _nak(self, reason: int) -> None:
        now = time.monotonic()
        # At most one NAK per NAK_HOLDOFF_S for the same expected frame; a new expected frame may
        # be NAKed at once (with small frames the device sends a fragment every few ms, and a
        # swallowed NAK costs a device retransmission timeout).
        if now - self._last_nak < NAK_HOLDOFF_S and self._last_nak_seq == self.rx_expected:
            return
        self._last_nak = now
        self._last_nak_seq = self.rx_expected
        self.send_control(P.Nak(self.rx_expected, reason, HOST_CREDIT))

    def _on_event(self, ev: P.Frame | P.FrameError) -> None:
        if isinstance(ev, P.FrameError):
            self.mtu_ctl.on_error()
            if ev.kind == "crc":
                self.stats.crc_errors += 1
                self._nak(P.NakReason.CRC)
            else:
                self.stats.resyncs += 1
                self._nak(P.NakReason.OVERFLOW if ev.kind == "overflow" else P.NakReason.FRAMING)
            return
        self.stats.frames_rx += 1
        self.heard_frame = True
        if ev.type >= 0x20:
            self._on_sequenced(ev)
            return
        if P.is_sequenced(ev.type):
            return  # host -> device types: our own frames echoed (loop://)
        try:
            msg = P.decode_frame(ev).msg
        except P.ProtocolError as e:
            log.warning("ignoring undecodable control frame from the device: %s", e)
            return
        if isinstance(msg, P.Ack):
            self._on_ack(msg.ack_seq, msg.credit)
        elif isinstance(msg, P.Nak):
            self._on_nak(msg)
        elif isinstance(msg, P.Hello):
            self._on_hello(msg)

    def _on_ack(self, ack_seq: int, credit: int) -> None:
        d = P.seq_diff(ack_seq, self.acked_upto)
        highest_sent = next(reversed(self.unacked)) if self.unacked else self.acked_upto
        if d < 0 or d > P.seq_diff(highest_sent, self.acked_upto):
            return  # stale, or for a frame never sent (an old session)
        self.credit = max(1, credit)
        if d == 0:
            return
        now = time.monotonic()
        acked: _Out | None = None
        while self.unacked:
            seq, out = next(iter(self.unacked.items()))
            if P.seq_diff(seq, ack_seq) > 0:
                break
            del self.unacked[seq]
            self.acked_pixels += out.pixels
            acked = out
        self.acked_upto = ack_seq
        if acked is None:
            return
        if acked.sends == 1:  # Karn: only unambiguous samples
            self._rtt_sample(now - acked.first_sent)
        self.backoff = 1.0
        # In-order receiver: frames sent before this one's latest copy, but after it in sequence,
        # reached the device before it and were dropped. Send them again now rather than after an RTO.
        if acked.sends > 1:
            self._go_back(P.seq_add(ack_seq, 1), sent_before=acked.stamp)

    def _rtt_sample(self, rtt: float) -> None:
        self.min_rtt = rtt if self.min_rtt is None else min(self.min_rtt, rtt)
        if self.srtt is None:
            self.srtt, self.rttvar = rtt, rtt / 2
        else:
            self.rttvar = 0.75 * self.rttvar + 0.25 * abs(self.srtt - rtt)
            self.srtt = 0.875 * self.srtt + 0.125 * rtt
        self.rto = self.srtt + 4 * self.rttvar

    def _on_nak(self, nak: P.Nak) -> None:
        self.stats.naks += 1
        self.mtu_ctl.on_error()
        # Everything before `expected` has arrived.
        self._on_ack(P.seq_add(nak.expected_seq, -1), nak.credit)
        out = self.unacked.get(nak.expected_seq)
        if out is None:
            return
        # A NAK sooner than the latest copy of `expected` could have been answered is about an
        # older copy, or about another damaged frame (the device NAKs every bad frame, and the
        # frames in flight behind a lost one draw GAP NAKs): acting on each of them resent the
        # whole window once per NAK, the resends drew more NAKs, and on a noisy link the storm
        # filled the device's ring so that one fragment was NAKed dozens of times in a row.
        if out.sends > 0 and time.monotonic() - out.last_sent < self.nak_holdoff(out):
            return
        # NAK-triggered resends count toward the retry budget too: a frame NAKed forever (the
        # device keeps rejecting it) must end in a LinkError, not in a resend loop until the deadline.
        out.naks += 1
        if out.naks > NAK_RETRY_FACTOR * self.max_retries:
            raise LinkError(f"{out.msg.TYPE.name} seq {out.seq} NAKed {out.naks} times")
        self._go_back(nak.expected_seq)

    def nak_holdoff(self, out: _Out) -> float:
        """How long after sending a frame a NAK naming it may still be about an earlier copy."""
        wire = self.t.seconds_for(len(out.wire) + 16)  # the frame there, the NAK back
        if self.min_rtt is None:
            return wire + 0.02
        return max(wire, 0.8 * self.min_rtt)

    def _on_hello(self, h: P.Hello) -> None:
        if h.reason == P.HelloReason.REPLY:
            if self.pending_nonce is not None and h.nonce == self.pending_nonce:
                self.hello = h
            return  # a late reply to an earlier request: harmless
        if self.pending_nonce is not None:
            return  # handshaking anyway; our HELLO_REQUEST will sync it
        self.stats.device_resets += 1
        self.reset_seen = h
        raise _Reset()

    def _on_sequenced(self, frame: P.Frame) -> None:
        d = P.seq_diff(frame.seq, self.rx_expected)
        if d > 0:
            self._nak(P.NakReason.GAP)
            return
        # New or duplicate (our ACK was lost): ACK either way, process only the new one.
        self.send_control(P.Ack(frame.seq, HOST_CREDIT))
        if d < 0:
            return
        self.rx_expected = P.seq_add(self.rx_expected, 1)
        try:
            whole = self.reasm.feed(frame)
        except P.ProtocolError as e:
            raise LinkError(f"device sent a bad fragment sequence: {e}") from e
        if whole is None:
            self.stats.fragments_rx += 1
            return  # more fragments to come
        frame = whole
        try:
            pkt = P.decode_frame(frame)
        except P.ProtocolError as e:
            if e.kind == "bad_payload":
                raise LinkError(f"device sent a malformed {frame.type:#04x} frame: {e}") from e
            log.warning("ignoring a device message of unknown type %#04x", frame.type)
            return
        self.inbox.append(pkt)


# ------------------------------------------------------------------------------------------ session


class DeviceSession:
    """A blocking, thread-safe session with one device.

    ``timeout_s`` bounds every wait for an answer that should come promptly (handshake, PONG, the
    end of a cancelled request); ``max_retries`` bounds retransmissions of one frame; a detection
    is bounded by its ``deadline_s`` (a duration, seconds from the call). When ``deadline_s`` is None
    it is ``compute_timeout_s`` plus three times the image's wire time plus ``timeout_s``.

    ``mtu`` pins the fragment size (16..1024, sent to the device as LINK_CONFIG after every
    handshake) and turns the adaptive MTU off; None (the default) lets ``MtuController`` follow the
    link's error rate. Pinning is for tests and for links whose quality is known in advance.
    """

    def __init__(
        self,
        url: str,
        *,
        baudrate: int = 115200,
        target_baud: int | None = None,
        timeout_s: float = 5.0,
        max_retries: int = 8,
        compute_timeout_s: float = 60.0,
        mtu: int | None = None,
    ) -> None:
        if mtu is not None and not P.MTU_MIN <= mtu <= P.MTU_MAX:
            raise ValueError(f"mtu must be in {P.MTU_MIN}..{P.MTU_MAX}, got {mtu}")
        self.url = url
        self.initial_baud = baudrate
        self.target_baud = target_baud
        self.timeout_s = timeout_s
        self.max_retries = max_retries
        self.compute_timeout_s = compute_timeout_s
        self.info: DeviceInfo | None = None
        self.stats = LinkStats()
        # Kept across reconnections: the link's noise outlives one session. A pinned MTU is a
        # controller whose only size is that one (it never moves, and adapt_mtu still sends it).
        self._mtu_ctl = MtuController() if mtu is None else MtuController(max_mtu=mtu, min_mtu=mtu)
        self._lock = threading.RLock()
        self._transport: Transport | None = None
        self._link: _Link | None = None
        self._rng = random.Random()
        self._request_id = self._rng.randrange(1, 1 << 31)
        # A request ended with frames of it still unacknowledged: start the next one with a handshake.
        self._resync = False

    # ------------------------------------------------------------------------------------ lifecycle

    @property
    def baudrate(self) -> int | None:
        return self._transport.baudrate if self._transport is not None else None

    @property
    def is_open(self) -> bool:
        return self._link is not None and self.info is not None

    def open(self) -> DeviceInfo:
        """Open the port, handshake (HELLO_REQUEST -> HELLO), then negotiate ``target_baud`` if set."""
        with self._lock:
            if self._transport is None:
                t = Transport(self.url, baudrate=self.initial_baud, read_timeout_s=POLL_S)
                try:
                    t.open()
                except TransportError as e:
                    raise LinkError(str(e)) from e
                self._transport = t
                self._link = _Link(t, self.stats, self.max_retries, self._mtu_ctl)
            return self._sync(time.monotonic() + self.timeout_s)

    def close(self) -> None:
        with self._lock:
            t, self._transport, self._link = self._transport, None, None
            self.info = None
            if t is not None:
                t.close()

    def __enter__(self) -> DeviceSession:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _require(self) -> _Link:
        if self._link is None or self.info is None:
            raise DeviceError("session is not open")
        return self._link

    # ------------------------------------------------------------------------------------ handshake

    def _sync(self, deadline: float) -> DeviceInfo:
        info = self._handshake(deadline)
        if self.target_baud and self.target_baud != self._transport_baud():
            self._negotiate_baud(self.target_baud, max(deadline, time.monotonic() + 3 * DEVICE_BAUD_CONFIRM_S))
        return info

    def _transport_baud(self) -> int:
        assert self._transport is not None
        return self._transport.baudrate

    def _handshake(self, deadline: float) -> DeviceInfo:
        link = self._link
        assert link is not None and self._transport is not None
        # Rates the device may be at: where we are, its power-on rate, and the rate we negotiate.
        candidates = list(
            dict.fromkeys(b for b in (self._transport.baudrate, self.initial_baud, self.target_baud) if b)
        )
        nonce = self._rng.randrange(1, 1 << 32)
        link.pending_nonce, link.hello, link.reset_seen = nonce, None, None
        link.restart(credit=1)
        link.rx.reset()
        attempt = 0
        try:
            while True:
                now = time.monotonic()
                if now >= deadline:
                    raise DeviceTimeout(f"no HELLO from {self.url} (tried {', '.join(map(str, candidates))} baud)")
                # Two tries per rate before moving to the next: one may be lost to a booting UART.
                baud = candidates[(attempt // 2) % len(candidates)]
                if baud != self._transport.baudrate:
                    self._transport.set_baudrate(baud)
                    link.rx.reset()
                attempt += 1
                link.send_control(P.HelloRequest(nonce))
                until = min(deadline, now + HELLO_RETRY_S)
                while link.hello is None and time.monotonic() < until:
                    link.poll(until - time.monotonic())
                if link.hello is not None:
                    break
        finally:
            link.pending_nonce = None
        hello = link.hello
        if hello.protocol_version != P.PROTOCOL_VERSION:
            raise LinkError(f"device speaks protocol {hello.protocol_version}, gateway {P.PROTOCOL_VERSION}")
        link.restart(credit=hello.rx_credit)
        self._resync = False  # both sides start from sequence number 0
        self.info = DeviceInfo.from_hello(hello)
        log.info(
            "%s: %s %s, model %s (%08x), %dx%d, credit %d, %d baud",
            self.url, self.info.board, self.info.firmware_version, self.info.model_id, self.info.model_hash,
            self.info.input_width, self.info.input_height, self.info.rx_credit, self._transport.baudrate,
        )  # fmt: skip
        return self.info

    def _negotiate_baud(self, target: int, deadline: float) -> None:
        link = self._link
        t = self._transport
        assert link is not None and t is not None and self.info is not None
        old = t.baudrate
        if self.info.max_baud and target > self.info.max_baud:
            log.warning("%s: %d baud requested, device allows %d; staying at %d", self.url, target,
                        self.info.max_baud, old)  # fmt: skip
            return
        self._send_reliably([P.SetBaud(target)], deadline)
        acked_at = time.monotonic()
        # The device ACKed at the old rate and switches right after; give its ACK time to drain.
        t.flush()
        time.sleep(0.01)
        t.set_baudrate(target)
        link.rx.reset()
        link.heard_frame = False
        token = self._rng.randrange(1 << 32)
        out = link.enqueue(P.Ping(token))
        # Probe by hand (the normal timer would back off and count retries), well inside the device's 1 s.
        link.timer_enabled = False
        try:
            link.fill_window()
            confirm_by = acked_at + 0.8 * DEVICE_BAUD_CONFIRM_S
            next_probe = time.monotonic() + 0.15
            while not link.heard_frame and time.monotonic() < confirm_by:
                if time.monotonic() >= next_probe and out.seq in link.unacked:
                    link.resend(out)
                    next_probe = time.monotonic() + 0.15
                self._poll(link, min(confirm_by, next_probe) - time.monotonic())
            if not link.heard_frame:
                # The device reverts at 1 s; go back after it has, and resend from scratch.
                log.warning("%s: no answer at %d baud; falling back to %d", self.url, target, old)
                time.sleep(max(0.0, acked_at + 1.2 * DEVICE_BAUD_CONFIRM_S - time.monotonic()))
                t.set_baudrate(old)
                link.rx.reset()
                for o in link.unacked.values():
                    o.sends, o.last_sent = 1, 0.0
        finally:
            link.timer_enabled = True
        self._wait_message(lambda p: isinstance(p.msg, P.Pong) and p.msg.token == token, deadline, "PONG")
        if t.baudrate == target:
            log.info("%s: now at %d baud", self.url, target)

    # ----------------------------------------------------------------------------------- primitives

    def _poll(self, link: _Link, timeout_s: float) -> None:
        try:
            link.poll(timeout_s)
        except _Reset:
            why = link.reset_seen.reason if link.reset_seen is not None else -1
            raise DeviceReset(f"{self.url} rebooted (unsolicited HELLO, reason {why})") from None

    def _send_reliably(
        self,
        msgs: Iterable[P.AnyMessage],
        deadline: float,
        *,
        cancel: threading.Event | None = None,
        on_ack: Callable[[int], None] | None = None,
        request_id: int | None = None,
        pixels: Callable[[P.AnyMessage], int] | None = None,
    ) -> None:
        """Send messages in order, keeping the window full, until all are ACKed."""
        link = self._require_link()
        it: Iterator[P.AnyMessage] = iter(msgs)
        exhausted = False
        last_acked = link.acked_pixels
        while True:
            # Keep a few frames queued beyond the window so fill_window never starves.
            while not exhausted and len(link.queue) < link.credit + 1:
                try:
                    m = next(it)
                except StopIteration:
                    exhausted = True
                    break
                link.adapt_mtu()  # only ever between messages
                link.enqueue(m, pixels(m) if pixels else 0)
            link.fill_window()
            if exhausted and link.idle:
                return
            if cancel is not None and cancel.is_set():
                raise Cancelled("cancelled while transmitting")
            now = time.monotonic()
            if now >= deadline:
                raise DeviceTimeout("deadline passed while transmitting")
            self._poll(link, deadline - now)
            if request_id is not None:
                self._check_errors(link, request_id)
            if on_ack is not None and link.acked_pixels != last_acked:
                last_acked = link.acked_pixels
                on_ack(last_acked)

    def _require_link(self) -> _Link:
        if self._link is None:
            raise DeviceError("session is not open")
        return self._link

    def _check_errors(self, link: _Link, request_id: int) -> None:
        for pkt in list(link.inbox):
            if isinstance(pkt.msg, P.Error) and pkt.msg.request_id == request_id:
                link.inbox.remove(pkt)
                raise DeviceRejected(pkt.msg.code, pkt.msg.text, request_id)

    def _wait_message(self, match: Callable[[P.Packet], bool], deadline: float, what: str) -> P.Packet:
        link = self._require_link()
        while True:
            while link.inbox:
                pkt = link.inbox.popleft()
                if match(pkt):
                    return pkt
                self._discard(pkt)
            now = time.monotonic()
            if now >= deadline:
                raise DeviceTimeout(f"no {what} from {self.url}")
            self._poll(link, deadline - now)

    def _discard(self, pkt: P.Packet) -> None:
        if isinstance(pkt.msg, P.Error):
            log.warning("%s: device error (not for the current operation): %s", self.url, pkt.msg)
        else:
            log.debug("%s: dropping %s seq %d (stale)", self.url, pkt.msg.TYPE.name, pkt.seq)

    # ------------------------------------------------------------------------------------- requests

    def ping(self) -> float:
        """Round-trip time of PING -> PONG, in seconds."""
        with self._lock:
            self._require()
            token = self._rng.randrange(1 << 32)
            start = time.monotonic()
            deadline = start + self.timeout_s
            self._resync_if_needed(deadline)
            self._send_reliably([P.Ping(token)], deadline)
            self._wait_message(lambda p: isinstance(p.msg, P.Pong) and p.msg.token == token, deadline, "PONG")
            return time.monotonic() - start

    def reset(self) -> DeviceInfo:
        """Reboot the device (RESET) and handshake again; it comes back at its power-on baud rate."""
        with self._lock:
            link = self._require()
            assert self._transport is not None
            deadline = time.monotonic() + self.timeout_s
            resets = self.stats.device_resets
            with contextlib.suppress(DeviceReset):  # it rebooted before its ACK reached us
                self._send_reliably([P.Reset()], deadline)
            self.stats.device_resets = resets  # asked for: not a fault
            link.restart(credit=1)
            self._transport.set_baudrate(self.initial_baud)
            link.rx.reset()
            return self._sync(time.monotonic() + self.timeout_s)

    def detect(
        self,
        frame: np.ndarray,
        *,
        deadline_s: float | None = None,
        progress: ProgressFn | None = None,
        cancel: threading.Event | None = None,
        stats: bool = False,
    ) -> DetectResult:
        """Run the detector on one (H, W) uint8 frame. ``stats`` also asks for per-stage ticks."""
        with self._lock:
            self._require()
            assert self.info is not None
            img = np.ascontiguousarray(frame)
            if img.dtype != np.uint8 or img.shape != (self.info.input_height, self.info.input_width):
                raise ValueError(
                    f"frame must be uint8 {self.info.input_height}x{self.info.input_width}, got {img.dtype} {img.shape}"
                )
            start = time.monotonic()
            if deadline_s is None:
                wire_s = self._transport.seconds_for(img.size * 102 // 100) if self._transport else 0.0
                deadline_s = self.compute_timeout_s + 3 * wire_s + self.timeout_s
            deadline = start + deadline_s
            for attempt in (1, 2):
                try:
                    self._resync_if_needed(deadline)
                    result = self._detect_once(img, deadline, progress, cancel, stats)
                    return replace(result, host_seconds=time.monotonic() - start)
                except DeviceReset:
                    if attempt == 2 or time.monotonic() >= deadline:
                        raise
                    log.warning("%s: device reset during a request; handshaking and retrying once", self.url)
                    self._sync(min(deadline, time.monotonic() + self.timeout_s))
            raise AssertionError("unreachable")

    def _resync_if_needed(self, deadline: float) -> None:
        """Handshake again if the last request ended in the middle of the sequence space.

        Frames already sent keep their sequence numbers and their size: the in-order receiver takes
        nothing after them, so they must get through first, and once the MTU has shrunk they may be
        far too large to ever arrive whole (a 977-byte DATA frame at 1 % damaged bytes). Keeping that
        old sequence space alive wedged the link; a HELLO_REQUEST resets both sides (sequence
        numbers, reassembly, MTU, the request) and costs one round trip.
        """
        if not self._resync:
            return
        link = self._require_link()
        if link.idle and not link.open_message:
            self._resync = False
            return
        self._sync(max(deadline, time.monotonic() + self.timeout_s))
        self._resync = False

    def _mark_resync(self) -> None:
        link = self._link
        if link is not None and not link.idle:
            self._resync = True

    def _next_request_id(self) -> int:
        self._request_id = self._request_id % 0xFFFFFFFF + 1
        return self._request_id

    def _detect_once(
        self,
        img: np.ndarray,
        deadline: float,
        progress: ProgressFn | None,
        cancel: threading.Event | None,
        want_stats: bool,
    ) -> DetectResult:
        link = self._require()
        assert self.info is not None
        h, w = img.shape
        rid = self._next_request_id()
        total = h * w
        opts = int(P.DetectOption.STATS) if want_stats else 0

        def messages() -> Iterator[P.AnyMessage]:
            yield P.Detect(rid, w, h, P.PixelFormat.MONO8, opts)
            for row, n in P.iter_rows_frames(h, w):
                yield P.Data(row, img[row : row + n].tobytes())

        base = link.acked_pixels

        def on_ack(acked: int) -> None:
            if progress is not None:
                progress("transmitting", {"bytes_sent": min(total, acked - base), "bytes_total": total})

        if progress is not None:
            progress("transmitting", {"bytes_sent": 0, "bytes_total": total})
        try:
            self._send_reliably(
                messages(), deadline, cancel=cancel, on_ack=on_ack, request_id=rid,
                pixels=lambda m: len(m.pixels) if isinstance(m, P.Data) else 0,
            )  # fmt: skip
            if progress is not None:
                progress("computing", {})
            stage_ticks: dict[str, int] | None = None
            while True:
                pkt = self._wait_request(link, rid, deadline, cancel)
                if isinstance(pkt.msg, P.Stats):
                    stage_ticks = {P.stage_name(s): t for s, t in pkt.msg.stages}
                    continue
                assert isinstance(pkt.msg, P.Result)
                r = pkt.msg
                return DetectResult(
                    request_id=rid,
                    boxes=[Box.from_raw(b) for b in r.boxes],
                    ticks_receive=r.ticks_receive,
                    ticks_compute=r.ticks_compute,
                    ticks_total=r.ticks_total,
                    tick_unit=self.info.tick_unit,
                    peak_ram_bytes=r.peak_ram_bytes,
                    stack_high_water_bytes=r.stack_high_water_bytes,
                    stage_ticks=stage_ticks if want_stats else None,
                    clock_hz=self.info.clock_hz,
                )
        except Cancelled:
            self._abort(rid)
            self._mark_resync()
            raise
        except DeviceTimeout:
            self._abort(rid, wait=False)
            self._mark_resync()
            raise
        except DeviceRejected:
            self._drop_queued()
            self._mark_resync()
            raise

    def _wait_request(self, link: _Link, rid: int, deadline: float, cancel: threading.Event | None) -> P.Packet:
        """The next STATS / RESULT / ERROR of request `rid`; stale ones of other requests are dropped."""
        while True:
            while link.inbox:
                pkt = link.inbox.popleft()
                m = pkt.msg
                if isinstance(m, P.Result | P.Stats) and m.request_id == rid:
                    return pkt
                if isinstance(m, P.Error) and m.request_id == rid:
                    raise DeviceRejected(m.code, m.text, rid)
                self._discard(pkt)
            if cancel is not None and cancel.is_set():
                raise Cancelled("cancelled while the device computed")
            now = time.monotonic()
            if now >= deadline:
                raise DeviceTimeout(f"no RESULT from {self.url} before the deadline")
            self._poll(link, deadline - now)

    def _drop_queued(self) -> None:
        """Forget frames not yet sent (the request is over). Sent ones stay: the sequence must not skip."""
        if self._link is not None:
            self._link.drop_queue()

    def _abort(self, rid: int, *, wait: bool = True) -> None:
        """Tell the device to drop request `rid`; with wait, until it confirms (best effort, bounded)."""
        link = self._link
        if link is None:
            return
        self._drop_queued()
        try:
            link.enqueue(P.Cancel(rid))
            link.fill_window()
            if not wait:
                return
            until = time.monotonic() + min(CANCEL_WAIT_S, self.timeout_s)
            idle_since: float | None = None
            # Every DETECT the device accepted ends in one RESULT or ERROR; the CANCEL's ACK means the
            # device has seen it, and that answer (ERROR CANCELLED, or a RESULT that crossed) follows.
            while (now := time.monotonic()) < until:
                while link.inbox:
                    pkt = link.inbox.popleft()
                    if isinstance(pkt.msg, P.Result | P.Error) and pkt.msg.request_id == rid:
                        return
                    self._discard(pkt)
                if link.idle:
                    idle_since = idle_since or now
                    if now - idle_since > 0.2 + (link.srtt or 0.0):
                        return  # the request had already ended
                self._poll(link, until - now)
        except DeviceError as e:
            log.debug("%s: cancelling request %d: %s", self.url, rid, e)
