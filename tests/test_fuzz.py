"""A short libFuzzer run of the C protocol codec (frame receiver, COBS, message decoding, reassembly).

CI runs it for 10 s; docs/protocol.md describes a longer run (`run_fuzz.sh 3600 4`).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SECONDS = 10


@pytest.mark.skipif(shutil.which("clang") is None, reason="libFuzzer needs clang (apt-get install clang)")
def test_protocol_codec_survives_a_fuzzing_run() -> None:
    proc = subprocess.run(
        ["sh", str(ROOT / "firmware/tests/protocol/run_fuzz.sh"), str(SECONDS)],
        capture_output=True,
        text=True,
        timeout=SECONDS + 180,
    )
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-4000:]
    assert "Done" in log and "number_of_executed_units" in log, log[-2000:]
    runs = int(log.split("stat::number_of_executed_units:")[1].split()[0])
    assert runs > 1000, f"only {runs} inputs executed"
