"""Property tests for the Python codec: round trips, resynchronisation, robustness against noise."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway import protocol as P

u8 = st.integers(0, 0xFF)
u16 = st.integers(0, 0xFFFF)
u32 = st.integers(0, 0xFFFFFFFF)
u64 = st.integers(0, (1 << 64) - 1)
i16 = st.integers(-0x8000, 0x7FFF)


def name(max_bytes: int) -> st.SearchStrategy[str]:
    return st.text(st.characters(exclude_characters="\x00", exclude_categories=["Cs"]), max_size=12).filter(
        lambda s: len(s.encode()) <= max_bytes
    )


messages: st.SearchStrategy[P.AnyMessage] = st.one_of(
    st.builds(P.Ack, u16, u8),
    st.builds(P.Nak, u16, u8, u8),
    st.builds(P.HelloRequest, u32),
    st.builds(P.Hello, u32, *[u8] * 4, u16, u16, *[u32] * 4, u8, *[name(P.MAX_NAME_BYTES)] * 3),
    st.builds(P.Ping, u32),
    st.builds(P.Pong, u32),
    st.builds(P.Detect, u32, u16, u16, u8, u8),
    st.builds(P.Data, u16, st.binary(min_size=1, max_size=P.MAX_PAYLOAD - 2)),
    st.builds(P.Cancel, u32),
    st.builds(P.SetBaud, u32),
    st.just(P.Reset()),
    st.builds(
        P.Result,
        u32,
        *[u64] * 3,
        u32,
        u32,
        st.lists(st.builds(P.RawBox, i16, i16, i16, i16, u16), max_size=P.MAX_BOXES).map(tuple),
    ),
    st.builds(P.Stats, u32, st.lists(st.tuples(u8, u64), max_size=P.MAX_STAGES).map(tuple)),
    st.builds(P.Error, u16, u32, name(P.MAX_TEXT_BYTES)),
)
packets = st.builds(P.Packet, messages, u16, u8)


@settings(max_examples=400, deadline=None)
@given(packets)
def test_round_trip(pkt: P.Packet) -> None:
    wire = P.encode(pkt.msg, seq=pkt.seq, flags=pkt.flags)
    assert wire.endswith(b"\x00") and 0 not in wire[:-1]
    assert len(wire) <= P.MAX_WIRE
    assert P.decode(wire) == pkt
    assert P.packet_from_fields(P.packet_to_fields(pkt)) == pkt


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=3000))
def test_cobs_round_trip(data: bytes) -> None:
    enc = P.cobs_encode(data)
    assert 0 not in enc
    assert len(enc) <= len(data) + 1 + len(data) // 254
    assert P.cobs_decode(enc) == data


@settings(max_examples=200, deadline=None)
@given(st.lists(packets, min_size=1, max_size=6), st.binary(max_size=64), st.integers(1, 300))
def test_stream_resyncs_after_noise(pkts: list[P.Packet], noise: bytes, chunk: int) -> None:
    """Noise followed by a delimiter never costs a frame after it, whatever the chunking."""
    stream = noise + b"\x00" + b"".join(P.encode(p.msg, seq=p.seq, flags=p.flags) for p in pkts)
    rx = P.FrameReceiver()
    got: list[P.Packet] = []
    for i in range(0, len(stream), chunk):
        got += [P.decode_frame(ev) for ev in rx.feed(stream[i : i + chunk]) if isinstance(ev, P.Frame)]
    # Noise can itself be a valid frame only with a 1-in-2^32 CRC match; hypothesis will not find one.
    assert got == pkts
    assert rx.idle


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=4000))
def test_receiver_never_raises(data: bytes) -> None:
    rx = P.FrameReceiver()
    for ev in rx.feed(data):
        if isinstance(ev, P.Frame):
            assert len(ev.payload) <= P.MAX_PAYLOAD
            try:
                P.decode_frame(ev)
            except P.ProtocolError as e:
                assert e.kind in ("unknown_type", "bad_payload")
        else:
            assert ev.kind in ("overflow", "cobs", "short", "crc", "length")


def test_corruption_is_detected() -> None:
    """Every single-byte corruption of a frame is caught (CRC-32 detects all burst errors <= 32 bits)."""
    rnd = random.Random(1)
    wire = P.encode(P.Data(5, bytes(rnd.randrange(256) for _ in range(960))), seq=77)
    for _ in range(2000):
        bad = bytearray(wire)
        i = rnd.randrange(len(bad) - 1)
        bad[i] ^= rnd.randrange(1, 256)
        events = P.FrameReceiver().feed(bytes(bad))
        assert all(isinstance(ev, P.FrameError) for ev in events), i


def test_sequence_arithmetic() -> None:
    assert P.seq_add(0xFFFF, 1) == 0
    assert P.seq_diff(0, 0xFFFF) == 1
    assert P.seq_diff(0xFFFF, 0) == -1
    assert P.seq_diff(100, 90) == 10
    assert list(P.iter_rows_frames(320, 320)) == [(r, min(3, 320 - r)) for r in range(0, 320, 3)]
    assert P.max_rows_per_frame(320) == 3
