"""Wire protocol v2 between the gateway and the device (spec: docs/protocol.md).

A frame on the wire is ``COBS(header | payload | CRC-32) 0x00``; the header is
``type u8 | flags u8 | seq u16 | length u16``, little-endian like everything else. This module is
pure codec: no I/O, no timing. The C twin lives in ``firmware/src/protocol/``; both are checked
against the same vectors in ``docs/protocol-vectors.json``.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, fields
from enum import IntEnum
from typing import Any, ClassVar, TypeAlias

PROTOCOL_VERSION = 2
HEADER_BYTES = 6
CRC_BYTES = 4
MAX_PAYLOAD = 1024
MAX_RAW = HEADER_BYTES + MAX_PAYLOAD + CRC_BYTES  # 1034
MIN_RAW = HEADER_BYTES + CRC_BYTES
# COBS adds one code byte per started block of 254 data bytes, so n bytes never exceed n + 1 + n // 254.
MAX_ENCODED = MAX_RAW + 1 + MAX_RAW // 254  # 1039
MAX_WIRE = MAX_ENCODED + 1  # with the 0x00 delimiter
MAX_BOXES = 64
MAX_STAGES = 32
MAX_NAME_BYTES = 32
MAX_TEXT_BYTES = 120
SEQ_MOD = 1 << 16
# Largest fragment payload LINK_CONFIG may set; a message is still at most MAX_PAYLOAD bytes.
MTU_MIN = 16
MTU_MAX = MAX_PAYLOAD

_HEADER = struct.Struct("<BBHH")


class MsgType(IntEnum):
    # 0x01..0x0F: control frames, not sequenced and never acknowledged.
    ACK = 0x01
    NAK = 0x02
    HELLO_REQUEST = 0x03
    HELLO = 0x04
    # 0x10..0x1F: host -> device, sequenced. 0x20..0x2F: device -> host, sequenced.
    PING = 0x10
    DETECT = 0x11
    DATA = 0x12
    CANCEL = 0x13
    SET_BAUD = 0x14
    RESET = 0x15
    LINK_CONFIG = 0x16
    PONG = 0x20
    RESULT = 0x21
    STATS = 0x22
    ERROR = 0x23


def is_sequenced(msg_type: int) -> bool:
    """Frames of type >= 0x10 carry a sequence number and must be ACKed, even if the type is unknown."""
    return msg_type >= 0x10


class Flag(IntEnum):
    RETRANSMIT = 0x01  # informational: this copy is a retransmission
    MORE = 0x02  # the message's payload continues in the next sequenced frame (same direction)


class NakReason(IntEnum):
    CRC = 1
    FRAMING = 2  # COBS error, too short, or length field disagrees with the frame
    OVERFLOW = 3  # longer than MAX_RAW
    GAP = 4  # a sequenced frame arrived out of order (one before it was lost)


class HelloReason(IntEnum):
    REPLY = 0  # answer to HELLO_REQUEST (nonce echoed)
    BOOT = 1  # sent once after power-on / reset
    NOT_SYNCED = 2  # a sequenced frame arrived before any HELLO_REQUEST since boot


class TickUnit(IntEnum):
    CYCLES = 0
    INSTRUCTIONS = 1
    NS = 2


class PixelFormat(IntEnum):
    MONO8 = 1


class DetectOption(IntEnum):
    STATS = 0x01  # send a STATS message (per-stage ticks) just before the RESULT


class ErrorCode(IntEnum):
    BAD_FRAME = 1  # a sequenced frame with an unknown type or a malformed payload
    BAD_STATE = 2  # message not valid now (DATA while idle, DETECT while busy with another request...)
    BAD_SIZE = 3  # unsupported width / height / pixel format, or DATA not a whole number of rows
    TIMEOUT = 4  # image stalled: no DATA for the stall timeout
    CANCELLED = 5
    BUSY = 6
    BAD_ROW = 7  # DATA first_row is not the next expected row
    UNSUPPORTED = 8
    INTERNAL = 9


STAGE_NAMES: dict[int, str] = {
    0: "receive_wait",
    1: "conv1",
    2: "rnn1",
    3: "rnn2",
    4: "block1",
    5: "block2",
    6: "block3",
    7: "block4",
    8: "norm",
    9: "heads",
    10: "decode",
    11: "nms",
    12: "protocol",
}


def stage_name(stage_id: int) -> str:
    return STAGE_NAMES.get(stage_id, f"stage_{stage_id}")


class ProtocolError(Exception):
    """A frame or payload that cannot be decoded. ``kind`` is one of the names used in the vectors."""

    KINDS = ("overflow", "cobs", "short", "crc", "length", "unknown_type", "bad_payload", "fragment")

    def __init__(self, kind: str, detail: str = "") -> None:
        assert kind in self.KINDS, kind
        super().__init__(f"{kind}: {detail}" if detail else kind)
        self.kind = kind
        self.detail = detail


def crc32(data: bytes) -> int:
    return zlib.crc32(data) & 0xFFFFFFFF


# --------------------------------------------------------------------------------------------- COBS


def cobs_encode(data: bytes) -> bytes:
    """COBS without the trailing delimiter. A final run of exactly 254 non-zero bytes gets no extra
    0x01 block (the shortest encoding; decoders accept both)."""
    out = bytearray([0])
    code_pos = 0
    code = 1
    n = len(data)
    for i, b in enumerate(data):
        if b:
            out.append(b)
            code += 1
        if b == 0 or code == 0xFF:
            if b and i == n - 1:
                break  # the 0xFF block ends the data: no trailing empty block
            out[code_pos] = code
            code_pos = len(out)
            out.append(0)
            code = 1
    out[code_pos] = code
    return bytes(out)


def cobs_decode(data: bytes) -> bytes:
    rx = _CobsDecoder()
    for b in data:
        if b == 0:
            raise ProtocolError("cobs", "zero byte inside encoded data")
        rx.push(b)
    if rx.remaining:
        raise ProtocolError("cobs", "truncated block")
    return bytes(rx.out)


class _CobsDecoder:
    __slots__ = ("out", "remaining", "started", "zero_pending")

    def __init__(self) -> None:
        self.out = bytearray()
        self.remaining = 0
        self.zero_pending = False
        self.started = False

    def push(self, b: int) -> None:
        if self.remaining:
            self.out.append(b)
            self.remaining -= 1
            return
        # A code byte. The zero implied by the previous block is only real if another block follows.
        if self.zero_pending:
            self.out.append(0)
        self.remaining = b - 1
        self.zero_pending = b != 0xFF
        self.started = True


# -------------------------------------------------------------------------------------------- frames


@dataclass(frozen=True)
class Frame:
    """A CRC-checked frame: header fields plus the raw payload."""

    type: int
    flags: int
    seq: int
    payload: bytes


def encode_raw_frame(msg_type: int, payload: bytes, *, seq: int = 0, flags: int = 0) -> bytes:
    """Header + payload + CRC, COBS-encoded, with the delimiter."""
    if len(payload) > MAX_PAYLOAD:
        raise ValueError(f"payload of {len(payload)} bytes exceeds {MAX_PAYLOAD}")
    raw = _HEADER.pack(msg_type & 0xFF, flags & 0xFF, seq & 0xFFFF, len(payload)) + payload
    raw += struct.pack("<I", crc32(raw))
    return cobs_encode(raw) + b"\x00"


def parse_raw_frame(raw: bytes) -> Frame:
    """Check a COBS-decoded frame. The order of checks is part of the spec (vectors depend on it)."""
    if len(raw) < MIN_RAW:
        raise ProtocolError("short", f"{len(raw)} bytes")
    (crc,) = struct.unpack_from("<I", raw, len(raw) - CRC_BYTES)
    if crc32(raw[:-CRC_BYTES]) != crc:
        raise ProtocolError("crc")
    msg_type, flags, seq, length = _HEADER.unpack_from(raw)
    if length != len(raw) - MIN_RAW:
        raise ProtocolError("length", f"header says {length}, frame has {len(raw) - MIN_RAW}")
    return Frame(msg_type, flags, seq, bytes(raw[HEADER_BYTES:-CRC_BYTES]))


@dataclass(frozen=True)
class FrameError:
    kind: str  # overflow / cobs / short / crc / length
    raw_len: int  # decoded bytes collected (for overflow: how many before giving up)


class FrameReceiver:
    """Incremental receiver: feed any chunk of bytes, get back complete frames and framing errors.

    Memory is bounded: a frame longer than MAX_RAW is dropped (reported once, at its delimiter).
    Consecutive delimiters (empty frames) are silently ignored so that a sender may flush the line
    with extra 0x00 bytes.
    """

    def __init__(self) -> None:
        self._dec = _CobsDecoder()
        self._overflow = False

    def reset(self) -> None:
        self._dec = _CobsDecoder()
        self._overflow = False

    @property
    def idle(self) -> bool:
        """True when no partial frame is buffered."""
        return not self._dec.started and not self._overflow

    def feed(self, data: bytes) -> list[Frame | FrameError]:
        events: list[Frame | FrameError] = []
        dec = self._dec
        for b in data:
            if b == 0:
                ev = self._end_frame()
                if ev is not None:
                    events.append(ev)
                dec = self._dec
                continue
            if self._overflow:
                continue
            dec.push(b)
            if len(dec.out) > MAX_RAW:
                self._overflow = True
        return events

    def _end_frame(self) -> Frame | FrameError | None:
        dec, overflow = self._dec, self._overflow
        self.reset()
        if overflow:
            return FrameError("overflow", len(dec.out))
        if not dec.started:
            return None
        if dec.remaining:
            return FrameError("cobs", len(dec.out))
        try:
            return parse_raw_frame(bytes(dec.out))
        except ProtocolError as e:
            return FrameError(e.kind, len(dec.out))


# ------------------------------------------------------------------------------------------ messages


def _pack_name(s: str, what: str) -> bytes:
    b = s.encode("utf-8")
    if len(b) > MAX_NAME_BYTES or b"\x00" in b:
        raise ValueError(f"{what} must be at most {MAX_NAME_BYTES} UTF-8 bytes without NUL")
    return bytes([len(b)]) + b


def _text(b: bytes, what: str) -> str:
    if b"\x00" in b:
        raise ProtocolError("bad_payload", f"NUL in {what}")
    return b.decode("utf-8", errors="replace")


def _expect_len(payload: bytes, n: int, what: str) -> None:
    if len(payload) != n:
        raise ProtocolError("bad_payload", f"{what} payload must be {n} bytes, got {len(payload)}")


@dataclass(frozen=True)
class Ack:
    TYPE: ClassVar[MsgType] = MsgType.ACK
    ack_seq: int
    credit: int

    def encode_payload(self) -> bytes:
        return struct.pack("<HB", self.ack_seq, self.credit)

    @classmethod
    def decode_payload(cls, p: bytes) -> Ack:
        _expect_len(p, 3, "ACK")
        return cls(*struct.unpack("<HB", p))


@dataclass(frozen=True)
class Nak:
    TYPE: ClassVar[MsgType] = MsgType.NAK
    expected_seq: int
    reason: int
    credit: int

    def encode_payload(self) -> bytes:
        return struct.pack("<HBB", self.expected_seq, self.reason, self.credit)

    @classmethod
    def decode_payload(cls, p: bytes) -> Nak:
        _expect_len(p, 4, "NAK")
        return cls(*struct.unpack("<HBB", p))


@dataclass(frozen=True)
class HelloRequest:
    TYPE: ClassVar[MsgType] = MsgType.HELLO_REQUEST
    nonce: int

    def encode_payload(self) -> bytes:
        return struct.pack("<I", self.nonce)

    @classmethod
    def decode_payload(cls, p: bytes) -> HelloRequest:
        _expect_len(p, 4, "HELLO_REQUEST")
        return cls(*struct.unpack("<I", p))


_HELLO_FIXED = struct.Struct("<IBBBBHHIIIIB")


@dataclass(frozen=True)
class Hello:
    TYPE: ClassVar[MsgType] = MsgType.HELLO
    nonce: int
    reason: int
    protocol_version: int
    tick_unit: int
    pixel_format: int
    input_width: int
    input_height: int
    clock_hz: int
    ram_bytes: int
    max_baud: int
    model_hash: int
    rx_credit: int
    firmware_version: str
    board: str
    model_id: str

    def encode_payload(self) -> bytes:
        return (
            _HELLO_FIXED.pack(
                self.nonce,
                self.reason,
                self.protocol_version,
                self.tick_unit,
                self.pixel_format,
                self.input_width,
                self.input_height,
                self.clock_hz,
                self.ram_bytes,
                self.max_baud,
                self.model_hash,
                self.rx_credit,
            )
            + _pack_name(self.firmware_version, "firmware_version")
            + _pack_name(self.board, "board")
            + _pack_name(self.model_id, "model_id")
        )

    @classmethod
    def decode_payload(cls, p: bytes) -> Hello:
        # Trailing bytes after the three strings are ignored: later protocol versions may append fields.
        if len(p) < _HELLO_FIXED.size + 3:
            raise ProtocolError("bad_payload", "HELLO too short")
        fixed = _HELLO_FIXED.unpack_from(p)
        pos = _HELLO_FIXED.size
        names: list[str] = []
        for what in ("firmware_version", "board", "model_id"):
            if pos >= len(p):
                raise ProtocolError("bad_payload", f"HELLO ends before {what}")
            n = p[pos]
            if n > MAX_NAME_BYTES or pos + 1 + n > len(p):
                raise ProtocolError("bad_payload", f"bad {what} length {n}")
            names.append(_text(p[pos + 1 : pos + 1 + n], what))
            pos += 1 + n
        return cls(*fixed, *names)


@dataclass(frozen=True)
class Ping:
    TYPE: ClassVar[MsgType] = MsgType.PING
    token: int

    def encode_payload(self) -> bytes:
        return struct.pack("<I", self.token)

    @classmethod
    def decode_payload(cls, p: bytes) -> Ping:
        _expect_len(p, 4, "PING")
        return cls(*struct.unpack("<I", p))


@dataclass(frozen=True)
class Pong:
    TYPE: ClassVar[MsgType] = MsgType.PONG
    token: int

    def encode_payload(self) -> bytes:
        return struct.pack("<I", self.token)

    @classmethod
    def decode_payload(cls, p: bytes) -> Pong:
        _expect_len(p, 4, "PONG")
        return cls(*struct.unpack("<I", p))


@dataclass(frozen=True)
class Detect:
    TYPE: ClassVar[MsgType] = MsgType.DETECT
    request_id: int
    width: int
    height: int
    pixel_format: int = PixelFormat.MONO8
    options: int = 0

    def encode_payload(self) -> bytes:
        return struct.pack("<IHHBB", self.request_id, self.width, self.height, self.pixel_format, self.options)

    @classmethod
    def decode_payload(cls, p: bytes) -> Detect:
        _expect_len(p, 10, "DETECT")
        return cls(*struct.unpack("<IHHBB", p))


@dataclass(frozen=True)
class Data:
    """Image rows. Only the receiver knows the width, so it checks that ``pixels`` is whole rows."""

    TYPE: ClassVar[MsgType] = MsgType.DATA
    first_row: int
    pixels: bytes

    def encode_payload(self) -> bytes:
        if not self.pixels or len(self.pixels) > MAX_PAYLOAD - 2:
            raise ValueError("DATA carries 1..1022 pixel bytes")
        return struct.pack("<H", self.first_row) + self.pixels

    @classmethod
    def decode_payload(cls, p: bytes) -> Data:
        if len(p) < 3:
            raise ProtocolError("bad_payload", "DATA needs a row index and at least one pixel")
        return cls(struct.unpack_from("<H", p)[0], bytes(p[2:]))


@dataclass(frozen=True)
class Cancel:
    TYPE: ClassVar[MsgType] = MsgType.CANCEL
    request_id: int

    def encode_payload(self) -> bytes:
        return struct.pack("<I", self.request_id)

    @classmethod
    def decode_payload(cls, p: bytes) -> Cancel:
        _expect_len(p, 4, "CANCEL")
        return cls(*struct.unpack("<I", p))


@dataclass(frozen=True)
class SetBaud:
    TYPE: ClassVar[MsgType] = MsgType.SET_BAUD
    baud: int

    def encode_payload(self) -> bytes:
        return struct.pack("<I", self.baud)

    @classmethod
    def decode_payload(cls, p: bytes) -> SetBaud:
        _expect_len(p, 4, "SET_BAUD")
        return cls(*struct.unpack("<I", p))


@dataclass(frozen=True)
class LinkConfig:
    """Largest fragment payload, both ways, from the next message on (docs/protocol.md section 3)."""

    TYPE: ClassVar[MsgType] = MsgType.LINK_CONFIG
    mtu: int

    def encode_payload(self) -> bytes:
        return struct.pack("<H", self.mtu)

    @classmethod
    def decode_payload(cls, p: bytes) -> LinkConfig:
        _expect_len(p, 2, "LINK_CONFIG")
        return cls(*struct.unpack("<H", p))


@dataclass(frozen=True)
class Reset:
    TYPE: ClassVar[MsgType] = MsgType.RESET

    def encode_payload(self) -> bytes:
        return b""

    @classmethod
    def decode_payload(cls, p: bytes) -> Reset:
        _expect_len(p, 0, "RESET")
        return cls()


@dataclass(frozen=True)
class RawBox:
    """x, y, w, h in 1/16 pixel of the device frame; score = probability * 65535."""

    x: int
    y: int
    w: int
    h: int
    score: int


_BOX = struct.Struct("<hhhhH")
_RESULT_FIXED = struct.Struct("<IQQQIIB")


@dataclass(frozen=True)
class Result:
    TYPE: ClassVar[MsgType] = MsgType.RESULT
    request_id: int
    ticks_receive: int
    ticks_compute: int
    ticks_total: int
    peak_ram_bytes: int
    stack_high_water_bytes: int
    boxes: tuple[RawBox, ...] = ()

    def encode_payload(self) -> bytes:
        if len(self.boxes) > MAX_BOXES:
            raise ValueError(f"at most {MAX_BOXES} boxes")
        head = _RESULT_FIXED.pack(
            self.request_id,
            self.ticks_receive,
            self.ticks_compute,
            self.ticks_total,
            self.peak_ram_bytes,
            self.stack_high_water_bytes,
            len(self.boxes),
        )
        return head + b"".join(_BOX.pack(b.x, b.y, b.w, b.h, b.score) for b in self.boxes)

    @classmethod
    def decode_payload(cls, p: bytes) -> Result:
        if len(p) < _RESULT_FIXED.size:
            raise ProtocolError("bad_payload", "RESULT too short")
        request_id, t_rx, t_cmp, t_tot, peak, stack, n = _RESULT_FIXED.unpack_from(p)
        if n > MAX_BOXES or len(p) != _RESULT_FIXED.size + n * _BOX.size:
            raise ProtocolError("bad_payload", f"RESULT with {n} boxes has {len(p)} bytes")
        boxes = tuple(RawBox(*_BOX.unpack_from(p, _RESULT_FIXED.size + i * _BOX.size)) for i in range(n))
        return cls(request_id, t_rx, t_cmp, t_tot, peak, stack, boxes)


_STAGE = struct.Struct("<BQ")


@dataclass(frozen=True)
class Stats:
    TYPE: ClassVar[MsgType] = MsgType.STATS
    request_id: int
    stages: tuple[tuple[int, int], ...] = ()  # (stage id, ticks)

    def encode_payload(self) -> bytes:
        if len(self.stages) > MAX_STAGES:
            raise ValueError(f"at most {MAX_STAGES} stages")
        return struct.pack("<IB", self.request_id, len(self.stages)) + b"".join(
            _STAGE.pack(s, t) for s, t in self.stages
        )

    @classmethod
    def decode_payload(cls, p: bytes) -> Stats:
        if len(p) < 5:
            raise ProtocolError("bad_payload", "STATS too short")
        request_id, n = struct.unpack_from("<IB", p)
        if n > MAX_STAGES or len(p) != 5 + n * _STAGE.size:
            raise ProtocolError("bad_payload", f"STATS with {n} stages has {len(p)} bytes")
        stages = tuple(_STAGE.unpack_from(p, 5 + i * _STAGE.size) for i in range(n))
        return cls(request_id, stages)


@dataclass(frozen=True)
class Error:
    TYPE: ClassVar[MsgType] = MsgType.ERROR
    code: int
    request_id: int = 0  # 0: not about a request
    text: str = ""

    def encode_payload(self) -> bytes:
        t = self.text.encode("utf-8")
        if len(t) > MAX_TEXT_BYTES or b"\x00" in t:
            raise ValueError(f"ERROR text must be at most {MAX_TEXT_BYTES} UTF-8 bytes without NUL")
        return struct.pack("<HI", self.code, self.request_id) + t

    @classmethod
    def decode_payload(cls, p: bytes) -> Error:
        if len(p) < 6 or len(p) > 6 + MAX_TEXT_BYTES:
            raise ProtocolError("bad_payload", f"ERROR payload of {len(p)} bytes")
        code, request_id = struct.unpack_from("<HI", p)
        return cls(code, request_id, _text(p[6:], "ERROR text"))


AnyMessage: TypeAlias = (
    Ack
    | Nak
    | HelloRequest
    | Hello
    | Ping
    | Pong
    | Detect
    | Data
    | Cancel
    | SetBaud
    | LinkConfig
    | Reset
    | Result
    | Stats
    | Error
)

MESSAGE_CLASSES: dict[int, Any] = {
    int(c.TYPE): c
    for c in (
        Ack, Nak, HelloRequest, Hello, Ping, Pong, Detect, Data, Cancel, SetBaud, LinkConfig, Reset, Result, Stats,
        Error,
    )
}  # fmt: skip


@dataclass(frozen=True)
class Packet:
    """A decoded message with its frame header."""

    msg: AnyMessage
    seq: int = 0
    flags: int = 0


def encode(msg: AnyMessage, *, seq: int = 0, flags: int = 0) -> bytes:
    """The complete wire bytes of one message (ends with the 0x00 delimiter)."""
    return encode_raw_frame(int(msg.TYPE), msg.encode_payload(), seq=seq, flags=flags)


def decode_frame(frame: Frame) -> Packet:
    cls = MESSAGE_CLASSES.get(frame.type)
    if cls is None:
        raise ProtocolError("unknown_type", f"type 0x{frame.type:02x}")
    return Packet(cls.decode_payload(frame.payload), frame.seq, frame.flags)


def decode(wire: bytes) -> Packet:
    """Decode exactly one frame (trailing delimiter optional). Raises ProtocolError."""
    body = wire[:-1] if wire.endswith(b"\x00") else wire
    if not body:
        raise ProtocolError("short", "empty")
    rx = FrameReceiver()
    events = rx.feed(body + b"\x00")
    if len(events) != 1:
        raise ProtocolError("cobs", "not exactly one frame")
    ev = events[0]
    if isinstance(ev, FrameError):
        raise ProtocolError(ev.kind)
    return decode_frame(ev)


# ------------------------------------------------------------- JSON field form (vectors, logs, tests)


def packet_to_fields(pkt: Packet) -> dict[str, Any]:
    """The JSON form used by docs/protocol-vectors.json."""
    msg = pkt.msg
    out: dict[str, Any] = {"type": msg.TYPE.name, "flags": pkt.flags, "seq": pkt.seq}
    for f in fields(msg):
        v = getattr(msg, f.name)
        if isinstance(v, bytes):
            v = v.hex()
        elif f.name == "boxes":
            v = [[b.x, b.y, b.w, b.h, b.score] for b in v]
        elif f.name == "stages":
            v = [[s, t] for s, t in v]
        out[f.name] = v
    return out


def packet_from_fields(d: dict[str, Any]) -> Packet:
    d = dict(d)
    cls = MESSAGE_CLASSES[int(MsgType[d.pop("type")])]
    flags = int(d.pop("flags", 0))
    seq = int(d.pop("seq", 0))
    kwargs: dict[str, Any] = {}
    for f in fields(cls):
        v = d.pop(f.name)
        if f.name == "pixels":
            v = bytes.fromhex(v)
        elif f.name == "boxes":
            v = tuple(RawBox(*b) for b in v)
        elif f.name == "stages":
            v = tuple((int(s), int(t)) for s, t in v)
        kwargs[f.name] = v
    if d:
        raise KeyError(f"unknown fields for {cls.__name__}: {sorted(d)}")
    return Packet(cls(**kwargs), seq, flags)


def fragment(payload: bytes, mtu: int) -> list[tuple[bytes, int]]:
    """(payload piece, flags) of the frames that carry one message at this MTU: MORE on all but the
    last. An empty payload is one empty frame."""
    if mtu < 1:
        raise ValueError("mtu must be positive")
    pieces = [payload[i : i + mtu] for i in range(0, len(payload), mtu)] or [b""]
    return [(p, int(Flag.MORE) if i < len(pieces) - 1 else 0) for i, p in enumerate(pieces)]


class Reassembler:
    """Joins the fragments (flag MORE) of sequenced frames taken in order into whole messages.

    Bounded like the C receiver: a message of more than MAX_PAYLOAD bytes gives
    ProtocolError("overflow"), a fragment of another type than the message it continues gives
    ProtocolError("fragment"); either way the partial message is dropped.
    """

    def __init__(self) -> None:
        self._buf = bytearray()
        self._type: int | None = None

    def reset(self) -> None:
        self._buf.clear()
        self._type = None

    @property
    def pending(self) -> int:
        """Payload bytes of the open message taken so far."""
        return len(self._buf)

    def feed(self, frame: Frame) -> Frame | None:
        """The whole message once its last fragment arrives (flags of that fragment), else None."""
        more = bool(frame.flags & Flag.MORE)
        if self._type is None:
            if not more:
                return frame
            self._type = frame.type
        elif frame.type != self._type:
            self.reset()
            raise ProtocolError("fragment", f"type 0x{frame.type:02x} inside a 0x{self._type or 0:02x} message")
        if len(self._buf) + len(frame.payload) > MAX_PAYLOAD:
            self.reset()
            raise ProtocolError("overflow", f"message longer than {MAX_PAYLOAD} bytes")
        self._buf += frame.payload
        if more:
            return None
        whole = Frame(frame.type, frame.flags, frame.seq, bytes(self._buf))
        self.reset()
        return whole


def seq_add(a: int, n: int) -> int:
    return (a + n) % SEQ_MOD


def seq_diff(a: int, b: int) -> int:
    """a - b as a signed distance in the 16-bit sequence space (-32768..32767)."""
    d = (a - b) % SEQ_MOD
    return d - SEQ_MOD if d >= SEQ_MOD // 2 else d


def iter_rows_frames(image_rows: int, width: int, rows_per_frame: int | None = None) -> Iterator[tuple[int, int]]:
    """(first_row, row_count) of the DATA frames that carry an image, in order."""
    rpf = rows_per_frame or max_rows_per_frame(width)
    for r in range(0, image_rows, rpf):
        yield r, min(rpf, image_rows - r)


def max_rows_per_frame(width: int) -> int:
    rows = (MAX_PAYLOAD - 2) // width
    if rows < 1:
        raise ValueError(f"a row of {width} pixels does not fit in one DATA frame")
    return rows


__all__ = [
    "MAX_BOXES",
    "MAX_ENCODED",
    "MAX_PAYLOAD",
    "MAX_RAW",
    "MAX_WIRE",
    "PROTOCOL_VERSION",
    "Ack",
    "AnyMessage",
    "Cancel",
    "Data",
    "Detect",
    "DetectOption",
    "Error",
    "ErrorCode",
    "Frame",
    "FrameError",
    "FrameReceiver",
    "Hello",
    "HelloReason",
    "HelloRequest",
    "LinkConfig",
    "MsgType",
    "Nak",
    "NakReason",
    "Packet",
    "Ping",
    "PixelFormat",
    "Pong",
    "ProtocolError",
    "RawBox",
    "Reassembler",
    "Reset",
    "Result",
    "SetBaud",
    "Stats",
    "TickUnit",
    "cobs_decode",
    "cobs_encode",
    "crc32",
    "decode",
    "decode_frame",
    "encode",
    "fragment",
    "is_sequenced",
    "packet_from_fields",
    "packet_to_fields",
    "seq_add",
    "seq_diff",
]
