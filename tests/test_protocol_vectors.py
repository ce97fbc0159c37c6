"""The Python codec against docs/protocol-vectors.json (the C codec reads the same file)."""

from __future__ import annotations

import json
import subprocess
import sys
import zlib
from pathlib import Path
from typing import Any

import pytest

from gateway import protocol as P

ROOT = Path(__file__).resolve().parents[1]
VECTORS_PATH = ROOT / "docs" / "protocol-vectors.json"
DOC = json.loads(VECTORS_PATH.read_text(encoding="utf-8"))
VECTORS: list[dict[str, Any]] = DOC["vectors"]


def outcomes(data: bytes, *, chunk: int | None = None, reassemble: bool = False) -> list[dict[str, Any]]:
    """Feed a byte stream, return what came out in the vectors' form. With ``reassemble`` the
    sequenced frames go through a Reassembler first, as the link layer does (control frames never
    carry MORE and bypass it)."""
    rx = P.FrameReceiver()
    reasm = P.Reassembler()
    events: list[P.Frame | P.FrameError] = []
    step = chunk or max(1, len(data))
    for i in range(0, len(data), step):
        events += rx.feed(data[i : i + step])
    out: list[dict[str, Any]] = []
    for ev in events:
        if isinstance(ev, P.FrameError):
            out.append({"error": ev.kind})
            continue
        if reassemble and P.is_sequenced(ev.type):
            try:
                whole = reasm.feed(ev)
            except P.ProtocolError as e:
                out.append({"error": e.kind})
                continue
            if whole is None:
                continue  # a fragment with MORE: nothing comes out yet
            ev = whole
        try:
            out.append({"message": P.packet_to_fields(P.decode_frame(ev))})
        except P.ProtocolError as e:
            out.append({"error": e.kind})
    return out


def expected(v: dict[str, Any]) -> list[dict[str, Any]]:
    if "message" in v:
        return [{"message": v["message"]}]
    if "error" in v:
        return [{"error": v["error"]}]
    return list(v["expect"])


def ref_cobs_decode(enc: bytes) -> bytes:
    """A second, non-streaming COBS decoder so the vectors are not checked only by the code that made them."""
    out = bytearray()
    i = 0
    while i < len(enc):
        code = enc[i]
        block = enc[i + 1 : i + code]
        assert len(block) == code - 1 and 0 not in block
        out += block
        i += code
        if code != 0xFF and i < len(enc):
            out.append(0)
    return bytes(out)


def test_file_shape() -> None:
    assert DOC["protocol_version"] == P.PROTOCOL_VERSION
    names = [v["name"] for v in VECTORS]
    assert len(names) == len(set(names))
    seen_types = {v["message"]["type"] for v in VECTORS if "message" in v}
    assert seen_types == {t.name for t in P.MsgType}
    kinds = {v["error"] for v in VECTORS if "error" in v}
    # "fragment" is a reassembly outcome, not a single-frame one: it appears in the reassembly streams.
    assert kinds == set(P.ProtocolError.KINDS) - {"fragment"}
    reasm = [v for v in VECTORS if v.get("reassemble")]
    reasm_errors = {e["error"] for v in reasm for e in v["expect"] if "error" in e}
    assert {"overflow", "fragment"} <= reasm_errors
    assert {e["message"]["type"] for v in reasm for e in v["expect"] if "message" in e} >= {"DATA", "RESULT"}


def test_reassembly_vectors_are_fragmented() -> None:
    """The reassembly vectors really are cut into several frames (a vector that never sets MORE would
    pass without a reassembler), and each whole message came from more than one frame."""
    for v in (v for v in VECTORS if v.get("reassemble")):
        frames = [ev for ev in P.FrameReceiver().feed(bytes.fromhex(v["hex"])) if isinstance(ev, P.Frame)]
        seqd = [f for f in frames if P.is_sequenced(f.type)]
        assert len(seqd) >= 2 and seqd[0].flags & P.Flag.MORE, v["name"]
        for e in v["expect"]:
            if "message" in e and P.is_sequenced(int(P.MsgType[e["message"]["type"]])):
                whole = P.packet_from_fields(e["message"]).msg.encode_payload()
                parts = [f for f in seqd if f.type == int(P.MsgType[e["message"]["type"]])]
                assert len(parts) >= 2 and sum(len(f.payload) for f in parts) >= len(whole), v["name"]


@pytest.mark.parametrize("v", VECTORS, ids=lambda v: v["name"])
def test_decode(v: dict[str, Any]) -> None:
    data = bytes.fromhex(v["hex"])
    want = expected(v)
    reasm = bool(v.get("reassemble", False))
    assert outcomes(data, reassemble=reasm) == want
    assert outcomes(data, chunk=1, reassemble=reasm) == want  # byte at a time, as the firmware sees it
    assert outcomes(data, chunk=7, reassemble=reasm) == want


@pytest.mark.parametrize("v", [v for v in VECTORS if "message" in v], ids=lambda v: v["name"])
def test_encode_is_canonical(v: dict[str, Any]) -> None:
    pkt = P.packet_from_fields(v["message"])
    wire = P.encode(pkt.msg, seq=pkt.seq, flags=pkt.flags)
    assert wire.hex() == v["hex"]
    assert P.decode(wire) == pkt
    # Independent check of the layout: COBS, then header | payload | CRC-32 (zlib's, little-endian).
    raw = ref_cobs_decode(wire[:-1])
    assert wire[-1] == 0 and 0 not in wire[:-1]
    assert int.from_bytes(raw[-4:], "little") == zlib.crc32(raw[:-4])
    assert raw[0] == int(P.MsgType[v["message"]["type"]])
    assert int.from_bytes(raw[2:4], "little") == v["message"]["seq"]
    assert int.from_bytes(raw[4:6], "little") == len(raw) - 10
    assert len(wire) <= P.MAX_WIRE


def test_max_payload_vector_is_max() -> None:
    v = next(v for v in VECTORS if v["name"] == "data_max_payload")
    raw = ref_cobs_decode(bytes.fromhex(v["hex"])[:-1])
    assert len(raw) == P.MAX_RAW
    assert len(bytes.fromhex(v["hex"])) <= P.MAX_WIRE


def test_vectors_file_is_reproducible() -> None:
    gen = ROOT / "firmware" / "tests" / "protocol" / "gen_vectors.py"
    r = subprocess.run([sys.executable, str(gen), "--check"], capture_output=True, text=True, check=False)
    assert r.returncode == 0, r.stderr
