#!/usr/bin/env python3
"""Writes docs/protocol-vectors.json, the test vectors shared by the C and the Python codecs.

The file is the reference, not this script: the C suite (test_protocol.c) and the Python suite
(tests/test_protocol_vectors.py) both read the JSON. tests/test_protocol_vectors.py also checks
that this script still reproduces the file byte for byte, so a change to the wire format has to be
made here, deliberately, and then passes or fails in both languages.

    python3 firmware/tests/protocol/gen_vectors.py            # rewrite the file
    python3 firmware/tests/protocol/gen_vectors.py --check    # exit 1 if it would change
"""

from __future__ import annotations

import json
import struct
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT))

from gateway import protocol as P  # noqa: E402

OUT = ROOT / "docs" / "protocol-vectors.json"


def raw_frame(msg_type: int, payload: bytes, seq: int = 0, flags: int = 0, length: int | None = None) -> bytes:
    """Header + payload + CRC, before COBS; ``length`` lets a vector lie in the header."""
    n = len(payload) if length is None else length
    raw = struct.pack("<BBHH", msg_type, flags, seq, n) + payload
    return raw + struct.pack("<I", P.crc32(raw))


def wire(raw: bytes) -> bytes:
    return P.cobs_encode(raw) + b"\x00"


def hello(reason: int, nonce: int, board: str, unit: int, clock: int, ram: int, baud: int, credit: int) -> P.Hello:
    return P.Hello(
        nonce=nonce,
        reason=reason,
        protocol_version=P.PROTOCOL_VERSION,
        tick_unit=unit,
        pixel_format=P.PixelFormat.MONO8,
        input_width=320,
        input_height=320,
        clock_hz=clock,
        ram_bytes=ram,
        max_baud=baud,
        model_hash=0x9C3A51E7,
        rx_credit=credit,
        firmware_version="0.1.0+g1a2b3c4",
        board=board,
        model_id="rnnpool-face-m4",
    )


def nonzero_pattern(n: int, start: int = 0) -> bytes:
    return bytes(1 + (start + i) % 255 for i in range(n))


def tail_run_254() -> tuple[P.Packet, bytes]:
    """A DATA frame whose last 254 raw bytes (pixels + CRC) are non-zero and preceded by a zero,
    so the COBS encoding ends with a full 0xFF block and no trailing 0x01 block."""
    for k in range(256):
        pixels = bytearray(nonzero_pattern(300, k))
        pixels[-251] = 0
        pkt = P.Packet(P.Data(first_row=0x0102, pixels=bytes(pixels)), seq=0x0203, flags=0)
        raw = raw_frame(P.MsgType.DATA, pkt.msg.encode_payload(), seq=pkt.seq)
        if 0 not in raw[-254:]:
            return pkt, raw
    raise RuntimeError("no CRC without zero bytes found")


def build() -> list[dict[str, Any]]:
    vectors: list[dict[str, Any]] = []

    def ok(name: str, pkt: P.Packet, note: str = "") -> None:
        hx = P.encode(pkt.msg, seq=pkt.seq, flags=pkt.flags).hex()
        v: dict[str, Any] = {"name": name}
        if note:
            v["note"] = note
        v["hex"] = hx
        v["message"] = P.packet_to_fields(pkt)
        vectors.append(v)

    def bad(name: str, data: bytes, error: str, note: str) -> None:
        vectors.append({"name": name, "note": note, "hex": data.hex(), "error": error})

    def stream(name: str, data: bytes, expect: list[P.Packet | str], note: str) -> None:
        exp = [{"error": e} if isinstance(e, str) else {"message": P.packet_to_fields(e)} for e in expect]
        vectors.append({"name": name, "note": note, "hex": data.hex(), "expect": exp})

    pk = P.Packet
    # --- one of each message type
    ok("ack", pk(P.Ack(ack_seq=5, credit=3)))
    ok(
        "ack_wrapped_seq",
        pk(P.Ack(ack_seq=0xFFFF, credit=0)),
        "sequence number 65535 (the next is 0); credit 0 is read as 1",
    )
    ok("nak_crc", pk(P.Nak(expected_seq=7, reason=P.NakReason.CRC, credit=3)))
    ok("nak_gap", pk(P.Nak(expected_seq=0x1234, reason=P.NakReason.GAP, credit=2)))
    ok("hello_request", pk(P.HelloRequest(nonce=0xDEADBEEF)))
    ok(
        "hello_boot_nucleo",
        pk(hello(P.HelloReason.BOOT, 0, "nucleo-f439zi", P.TickUnit.CYCLES, 168_000_000, 196_608, 2_000_000, 3)),
    )
    ok(
        "hello_reply_qemu",
        pk(
            hello(
                P.HelloReason.REPLY,
                0x01020304,
                "qemu-netduinoplus2",
                P.TickUnit.INSTRUCTIONS,
                168_000_000,
                131_072,
                921_600,
                3,
            )
        ),
    )
    ok(
        "hello_not_synced_host",
        pk(hello(P.HelloReason.NOT_SYNCED, 0, "host", P.TickUnit.NS, 1_000_000_000, 0, 4_000_000, 8)),
    )
    ok("ping", pk(P.Ping(token=0x11223344), seq=0))
    ok("pong", pk(P.Pong(token=0x11223344), seq=1))
    ok("detect", pk(P.Detect(request_id=42, width=320, height=320, pixel_format=1, options=0), seq=1))
    ok("detect_with_stats", pk(P.Detect(request_id=0xFFFFFFFF, width=320, height=320, options=1), seq=2))
    ok("data_three_rows", pk(P.Data(first_row=3, pixels=bytes((7 * i) & 0xFF for i in range(960))), seq=3))
    ok("data_last_two_rows", pk(P.Data(first_row=318, pixels=nonzero_pattern(640)), seq=109))
    ok("data_retransmit_flag", pk(P.Data(first_row=0, pixels=b"\x80" * 320), seq=2, flags=P.Flag.RETRANSMIT))
    ok("cancel", pk(P.Cancel(request_id=42), seq=60))
    ok("set_baud", pk(P.SetBaud(baud=921_600), seq=4))
    ok("link_config", pk(P.LinkConfig(mtu=48), seq=5), "fragment payloads of at most 48 bytes from the next message on")
    ok(
        "data_first_fragment_more",
        pk(P.Data(first_row=3, pixels=bytes(range(1, 31))), seq=6, flags=P.Flag.MORE),
        "flag MORE (0x02): the first fragment of a DATA message; on its own it decodes as a short DATA",
    )
    ok("reset", pk(P.Reset(), seq=5), "empty payload")
    ok("result_empty", pk(P.Result(42, 1_000_000, 9_000_000, 10_000_000, 40_000, 3_000), seq=0))
    ok(
        "result_two_boxes",
        pk(
            P.Result(
                request_id=7,
                ticks_receive=0x1_0000_0000,
                ticks_compute=1_755_000_000,
                ticks_total=0x1_2345_6789,
                peak_ram_bytes=61_234,
                stack_high_water_bytes=2_816,
                boxes=(P.RawBox(1600, 800, 640, 768, 65535), P.RawBox(-24, 5100, 130, 20, 3277)),
            ),
            seq=9,
        ),
        "ticks above 2^32 (a slow image in ns), a box starting left of the frame",
    )
    boxes = tuple(P.RawBox(i * 80, 5120 - i * 80, 256 + i, 256 + 2 * i, 65535 - i * 1000) for i in range(64))
    ok("result_max_boxes", pk(P.Result(0x0A0B0C0D, 1, 2, 3, 4, 5, boxes), seq=0x8000))
    ok(
        "stats",
        pk(P.Stats(request_id=42, stages=tuple((s, 1000 * (s + 1) ** 3) for s in range(12))), seq=2),
    )
    ok("error_timeout", pk(P.Error(code=P.ErrorCode.TIMEOUT, request_id=42, text="no DATA for 5000 ms"), seq=3))
    ok("error_utf8_text", pk(P.Error(code=P.ErrorCode.BAD_SIZE, request_id=0, text="größe 640×480 ≠ 320×320"), seq=4))
    ok("error_no_text", pk(P.Error(code=P.ErrorCode.INTERNAL), seq=5))

    # --- sizes and COBS edge cases
    ok(
        "data_max_payload",
        pk(P.Data(first_row=0x0101, pixels=nonzero_pattern(1022)), seq=0x0101, flags=1),
        "1024-byte payload, no zero bytes in it: several full 254-byte COBS blocks",
    )
    ok("data_all_zero_pixels", pk(P.Data(first_row=0, pixels=bytes(960)), seq=6), "every zero costs one code byte")
    # DATA header + row index are 8 non-zero bytes here (flags 1, seq 0x0101, length 0x0110, row 0x0101).
    for run in (254, 255):
        pixels = nonzero_pattern(run - 8) + b"\x00" + nonzero_pattern(270 - (run - 8) - 1, 7)
        pkt = pk(P.Data(first_row=0x0101, pixels=pixels), seq=0x0101, flags=1)
        r = raw_frame(P.MsgType.DATA, pkt.msg.encode_payload(), seq=0x0101, flags=1)
        assert 0 not in r[:run] and r[run] == 0, run
        ok(f"cobs_run_{run}", pkt, f"the frame starts with exactly {run} non-zero bytes, then a zero")
    ok(
        "cobs_long_run",
        pk(P.Data(first_row=0x0101, pixels=nonzero_pattern(600)), seq=0x0101, flags=1),
        "runs longer than 254: 0xFF blocks with no implied zero between them",
    )
    tail_pkt, tail_raw = tail_run_254()
    ok("cobs_run_254_at_end", tail_pkt, "frame ends with a full 0xFF block: no trailing 0x01 block")
    stream(
        "cobs_noncanonical_trailing_block",
        P.cobs_encode(tail_raw) + b"\x01\x00",
        [tail_pkt],
        "encoders that append an empty 0x01 block after a final 0xFF block are accepted",
    )

    # --- damaged frames
    good = P.encode(P.Ack(ack_seq=5, credit=3))
    raw = bytearray(raw_frame(P.MsgType.ACK, P.Ack(5, 3).encode_payload()))
    raw[7] ^= 0x01
    bad("bad_crc", wire(bytes(raw)), "crc", "one payload bit flipped after the CRC was computed")
    det = P.encode(P.Detect(1, 320, 320), seq=1)
    bad("truncated_cobs", det[:-5] + b"\x00", "cobs", "bytes lost at the end: the last COBS block is incomplete")
    bad("truncated_crc", det[:4] + det[5:], "crc", "one byte lost from the middle of the frame")
    bad("truncated_short", wire(bytes([0x01, 0x00, 0x00, 0x00, 0x03])), "short", "fewer than header + CRC bytes")
    bad("lone_code_byte", b"\x01\x00", "short", "a single code byte decodes to nothing")
    bad(
        "length_mismatch",
        wire(raw_frame(P.MsgType.ACK, P.Ack(5, 3).encode_payload(), length=4)),
        "length",
        "CRC is good but the header length disagrees with the frame",
    )
    bad("overflow", bytes([0x42]) * 1100 + b"\x00", "overflow", "longer than the largest frame")
    bad(
        "overflow_bigger_payload",
        wire(raw_frame(P.MsgType.DATA, b"\x00\x00" + bytes(1023))),
        "overflow",
        "1025-byte payload",
    )
    bad("unknown_type", wire(raw_frame(0x7F, b"\x01\x02", seq=3)), "unknown_type", "sequenced type 0x7f")
    bad("unknown_control_type", wire(raw_frame(0x05, b"")), "unknown_type", "control type 0x05")
    bad("ack_short_payload", wire(raw_frame(P.MsgType.ACK, b"\x05\x00")), "bad_payload", "ACK needs 3 bytes")
    bad("ping_long_payload", wire(raw_frame(P.MsgType.PING, bytes(5), seq=1)), "bad_payload", "PING needs 4 bytes")
    bad("data_no_pixels", wire(raw_frame(P.MsgType.DATA, b"\x00\x00", seq=1)), "bad_payload", "DATA without rows")
    res = bytearray(P.Result(1, 0, 0, 0, 0, 0).encode_payload())
    res[-1] = 65
    bad("result_too_many_boxes", wire(raw_frame(P.MsgType.RESULT, bytes(res) + bytes(650))), "bad_payload", "65 boxes")
    res[-1] = 2
    bad(
        "result_box_count_mismatch",
        wire(raw_frame(P.MsgType.RESULT, bytes(res) + bytes(10))),
        "bad_payload",
        "says 2 boxes, carries 1",
    )
    st = P.Stats(1, ((1, 2),)).encode_payload()
    bad("stats_truncated", wire(raw_frame(P.MsgType.STATS, st[:-1])), "bad_payload", "last stage cut short")
    hp = bytearray(hello(0, 0, "b", 0, 1, 2, 3, 1).encode_payload())
    name_at = 29 + 1 + len("0.1.0+g1a2b3c4")
    hp[name_at] = 33
    bad("hello_name_too_long", wire(raw_frame(P.MsgType.HELLO, bytes(hp))), "bad_payload", "board name of 33 bytes")
    bad(
        "hello_truncated_strings",
        wire(raw_frame(P.MsgType.HELLO, bytes(hp[:31]))),
        "bad_payload",
        "ends inside firmware_version",
    )
    bad(
        "error_nul_in_text",
        wire(raw_frame(P.MsgType.ERROR, b"\x01\x00" + bytes(4) + b"a\x00b")),
        "bad_payload",
        "NUL inside text",
    )
    bad(
        "error_text_too_long",
        wire(raw_frame(P.MsgType.ERROR, b"\x01\x00" + bytes(4) + b"x" * 121)),
        "bad_payload",
        "121 bytes of text",
    )

    # --- streams: resynchronisation
    ack = P.Packet(P.Ack(5, 3))
    stream(
        "garbage_before_frame",
        b"\x55\xaa\x13\x37\x00" + good,
        ["cobs", ack],
        "line noise, then a delimiter: the noise is one bad frame, the next frame is intact",
    )
    stream(
        "garbage_glued_to_frame",
        b"\x55\xaa\x13\x37" + good,
        ["cobs"],
        "noise with no delimiter before the frame costs that frame (the sender retransmits)",
    )
    stream(
        "empty_frames_ignored",
        b"\x00\x00\x00" + good + b"\x00\x00" + good,
        [ack, ack],
        "extra delimiters are allowed anywhere and are not errors",
    )
    pong = P.Packet(P.Pong(9), seq=4)
    stream("bad_then_good", wire(bytes(raw)) + P.encode(pong.msg, seq=4), ["crc", pong], "recovery after a CRC error")
    stream(
        "overflow_then_good",
        bytes([0x42]) * 2000 + b"\x00" + good,
        ["overflow", ack],
        "an overlong frame is dropped without buffering it",
    )
    hx = hello(P.HelloReason.REPLY, 5, "future", 0, 1, 2, 3, 1)
    stream(
        "hello_with_extension",
        wire(raw_frame(P.MsgType.HELLO, hx.encode_payload() + b"\x01\x02\x03")),
        [P.Packet(hx)],
        "bytes after the three strings are ignored (room for later versions)",
    )
    stream(
        "reserved_flags_ignored",
        P.encode(P.Ping(1), seq=8, flags=0xFE),
        [P.Packet(P.Ping(1), 8, 0xFE)],
        "unknown flag bits are carried through, not rejected",
    )

    # --- streams through the receiver and the reassembler (flag MORE, docs/protocol.md section 1)
    def frags(msg_type: int, payload: bytes, mtu: int, seq: int, last_flags: int = 0) -> tuple[bytes, int]:
        """Wire bytes of one message cut at `mtu` (P.fragment), seqs from `seq`; the last seq."""
        out = b""
        pieces = P.fragment(payload, mtu)
        for i, (piece, flags) in enumerate(pieces):
            extra = last_flags if i == len(pieces) - 1 else 0
            out += P.encode_raw_frame(msg_type, piece, seq=(seq + i) % 65536, flags=flags | extra)
        return out, (seq + len(pieces) - 1) % 65536

    def reasm(name: str, data: bytes, expect: list[P.Packet | str], note: str) -> None:
        stream(name, data, expect, note)
        vectors[-1]["reassemble"] = True

    rows3 = P.Data(first_row=3, pixels=bytes((7 * i + 1) & 0xFF for i in range(960)))
    data, last = frags(P.MsgType.DATA, rows3.encode_payload(), 256, 10)
    reasm(
        "reasm_data_three_rows_mtu256",
        data,
        [pk(rows3, seq=last)],
        "962-byte DATA at MTU 256: 256+256+256+194, MORE on all but the last; the message has the last seq",
    )
    res64 = P.Result(0x0A0B0C0D, 1, 2, 3, 4, 5, boxes)
    data, last = frags(P.MsgType.RESULT, res64.encode_payload(), 128, 0xFFFD, last_flags=P.Flag.RETRANSMIT)
    reasm(
        "reasm_result_64_boxes_mtu128",
        data,
        [pk(res64, seq=last, flags=P.Flag.RETRANSMIT)],
        "677-byte RESULT at MTU 128 (6 fragments, seq wraps 65535 -> 0); the flags are the last fragment's",
    )
    small = P.Data(first_row=7, pixels=nonzero_pattern(60))
    head, tail = small.encode_payload()[:40], small.encode_payload()[40:]
    reasm(
        "reasm_control_frame_between_fragments",
        P.encode_raw_frame(P.MsgType.DATA, head, seq=4, flags=P.Flag.MORE)
        + good
        + P.encode_raw_frame(P.MsgType.DATA, tail, seq=5),
        [ack, pk(small, seq=5)],
        "control frames are never fragments: an ACK between two fragments comes out on its own",
    )
    full = P.Data(first_row=0x0101, pixels=nonzero_pattern(1022, 3)).encode_payload()
    reasm(
        "reasm_max_message",
        P.encode_raw_frame(P.MsgType.DATA, full[:600], seq=1, flags=P.Flag.MORE)
        + P.encode_raw_frame(P.MsgType.DATA, full[600:], seq=2),
        [pk(P.Data.decode_payload(full), seq=2)],
        "600 + 424 = 1024 bytes: the largest message (the C receiver's buffer exactly full)",
    )
    reasm(
        "reasm_empty_last_fragment",
        P.encode_raw_frame(P.MsgType.DATA, small.encode_payload(), seq=8, flags=P.Flag.MORE)
        + P.encode_raw_frame(P.MsgType.DATA, b"", seq=9),
        [pk(small, seq=9)],
        "a last fragment may be empty: it only ends the message",
    )
    over = bytes(2) + nonzero_pattern(1023, 5)
    reasm(
        "reasm_overflow",
        P.encode_raw_frame(P.MsgType.DATA, over[:600], seq=1, flags=P.Flag.MORE)
        + P.encode_raw_frame(P.MsgType.DATA, over[600:], seq=2)
        + good,
        ["overflow", ack],
        "600 + 425 = 1025 bytes: no message. The C receiver cannot take the second frame at all (it "
        "keeps the 600 bytes, the sender may retry); the Python reassembler drops the message. Either "
        "way the link goes on: a control frame still arrives",
    )
    ping = P.Ping(0x0BADF00D)
    reasm(
        "reasm_wrong_type_continuation",
        P.encode_raw_frame(P.MsgType.DATA, head, seq=20, flags=P.Flag.MORE)
        + P.encode(ping, seq=21)
        + P.encode(ping, seq=22),
        ["fragment", pk(ping, seq=22)],
        "a PING where the DATA should continue: both are lost (error 'fragment'), the next message is whole",
    )
    return vectors


def render(vectors: list[dict[str, Any]]) -> str:
    # One vector per line keeps diffs readable while the hex stays greppable.
    lines = [json.dumps(v, ensure_ascii=False, separators=(", ", ": ")) for v in vectors]
    head = {
        "protocol_version": P.PROTOCOL_VERSION,
        "about": "Shared test vectors for docs/protocol.md. hex = bytes on the wire (COBS, with 0x00 delimiters). "
        "'message': the one frame decodes to it and encoding it gives exactly hex. 'error': feeding hex gives "
        "exactly this error and no message. 'expect': feeding hex gives these outcomes in order. 'reassemble': the "
        "sequenced frames of the stream also go through the reassembler (flag MORE): only whole messages come out, "
        "and the error 'fragment' is a continuation of another type.",
    }
    head_s = json.dumps(head, ensure_ascii=False)[:-1]
    return head_s + ', "vectors": [\n' + ",\n".join(lines) + "\n]}\n"


def main() -> int:
    text = render(build())
    if "--check" in sys.argv:
        if OUT.read_text(encoding="utf-8") != text:
            print(f"{OUT} is out of date; run {Path(__file__).name}", file=sys.stderr)
            return 1
        return 0
    OUT.write_text(text, encoding="utf-8")
    print(f"wrote {OUT} ({len(build())} vectors)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
