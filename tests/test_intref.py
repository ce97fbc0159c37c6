"""The numpy integer reference: golden vectors, primitives, and export determinism."""

from __future__ import annotations

import hashlib
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from training import intref
from training.intref import IntegerModel, isqrt, lut, rq

ROOT = Path(__file__).resolve().parents[1]
MODEL_DIR = ROOT / "firmware/model"
VECTORS = ROOT / "firmware/tests/vectors"
CHECKPOINT = ROOT / "training/checkpoints/best.pt"
HAS_TORCH = importlib.util.find_spec("torch") is not None


@pytest.fixture(scope="module")
def model() -> IntegerModel:
    return IntegerModel.load(MODEL_DIR)


def vector_names() -> list[str]:
    return sorted(p.name for p in VECTORS.iterdir() if (p / "manifest.json").exists())


def test_committed_model_hash_matches_header(model: IntegerModel) -> None:
    header = (MODEL_DIR / "rnnpool_model.h").read_text()
    assert header.startswith("/* GENERATED")
    assert f'#define RNNPOOL_MODEL_HASH "{model.hash}"' in header


@pytest.mark.parametrize("name", vector_names())
def test_reference_reproduces_golden_vector_at_every_stage(model: IntegerModel, name: str) -> None:
    folder = VECTORS / name
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["model_sha256"] == model.hash
    frame = np.frombuffer((folder / "input.u8").read_bytes(), dtype=np.uint8).reshape(320, 320)
    stages, det = model.run(frame)
    assert set(stages) == set(manifest["stages"])
    for stage, entry in manifest["stages"].items():
        a = np.ascontiguousarray(stages[stage])
        assert list(a.shape) == entry["shape"], stage
        assert a.dtype.name == entry["dtype"], stage
        assert hashlib.sha256(a.tobytes()).hexdigest() == entry["sha256"], f"stage {stage} differs"
        if "file" in entry:
            stored = np.frombuffer((folder / entry["file"]).read_bytes(), dtype=a.dtype).reshape(a.shape)
            np.testing.assert_array_equal(stored, a)
    got = [
        {"x": int(b[0]), "y": int(b[1]), "w": int(b[2]), "h": int(b[3]), "score_q15": int(s), "anchor": int(i)}
        for b, s, i in zip(det.boxes_q4, det.scores_q15, det.anchors, strict=True)
    ]
    assert got == manifest["detections"]
    assert det.candidates == manifest["candidates"]
    assert len(got) <= 64


def test_detections_are_ordered_and_bounded(model: IntegerModel) -> None:
    frame = np.frombuffer((VECTORS / "noise/input.u8").read_bytes(), dtype=np.uint8).reshape(320, 320)
    _, det = model.run(frame)
    assert det.candidates > 64, "the noise vector must exercise the 64-box cap"
    assert len(det.boxes_q4) <= 64
    order = np.lexsort((det.anchors, -det.scores_q15))
    assert order.tolist() == list(range(len(order)))
    assert (det.boxes_q4[:, :2] >= 0).all() and (det.boxes_q4[:, :2] + det.boxes_q4[:, 2:] <= 320 * 16).all()


def test_requant_rounds_half_up_and_floors_negative_shift() -> None:
    m = 1 << 30  # 0.5 at s = 31
    assert rq(np.array([3, -3, 1, -1, 0]), m, 31).tolist() == [2, -1, 1, 0, 0]
    assert rq(np.array([2**31 - 1]), (1 << 31) - 1, 62).tolist() == [1]


def test_lut_matches_the_function_and_clamps() -> None:
    sig, tanh = intref.lut_tables()
    v = np.arange(-9000, 9000, 7)
    real = 1 / (1 + np.exp(-np.clip(v, -8192, 8191) / 1024))
    assert np.abs(lut(sig, v) / 32768 - real).max() < 2e-4
    assert np.abs(lut(tanh, v) / 32768 - np.tanh(np.clip(v, -8192, 8191) / 1024)).max() < 2e-3
    assert lut(sig, np.array([-(10**6)]))[0] == sig[0] and lut(sig, np.array([10**6]))[0] <= sig[-1]


def test_isqrt_is_exact() -> None:
    n = np.array([0, 1, 2, 3, 4, 15, 16, 17, 2**30 - 1, 2**30, 2**40 + 12345, (2**26 - 1) ** 2])
    r = isqrt(n)
    assert ((r * r <= n) & ((r + 1) * (r + 1) > n)).all()


def test_l2norm_is_scale_free(model: IntegerModel) -> None:
    x = np.zeros((2, 2, 32), dtype=np.int8)
    x[0, 0, 0] = 10
    x[0, 1, 0] = 100
    y = intref.l2norm(model.params, 1, x)
    assert y[0, 0, 0] == y[0, 1, 0]  # same direction, different length -> same normalised value
    assert (y[1] == 0).all()  # an all-zero pixel stays zero


@pytest.mark.train
@pytest.mark.skipif(not HAS_TORCH, reason="export needs torch (pip install -e '.[train]')")
def test_export_is_reproducible_byte_for_byte(tmp_path: Path) -> None:
    from training.export import export
    from training.quantize import quantize_checkpoint

    model = IntegerModel(quantize_checkpoint(CHECKPOINT))
    export(model, "training/checkpoints/best.pt", tmp_path / "model", tmp_path / "vectors")
    for name in ("rnnpool_model.h", "rnnpool_model.c", "rnnpool_face_int.npz"):
        assert (tmp_path / "model" / name).read_bytes() == (MODEL_DIR / name).read_bytes(), name
    for path in sorted((tmp_path / "vectors").rglob("*")):
        if path.is_file():
            rel = path.relative_to(tmp_path / "vectors")
            assert path.read_bytes() == (VECTORS / rel).read_bytes(), str(rel)
