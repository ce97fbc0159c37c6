"""`rnnpool` command line: parser, `sim`, `serve` under a real uvicorn on 127.0.0.1, `bench`."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from fixtures.images import jpeg

from gateway.bench import synthetic_images
from gateway.cli import _settings_from, build_parser, main
from gateway.schemas import BenchmarkReport
from gateway.sim import SimDevice

ROOT = Path(__file__).resolve().parent.parent


def test_subcommands() -> None:
    parser, runners = build_parser()
    assert {"serve", "sim", "bench"} <= set(runners)
    has_detect = importlib.util.find_spec("gateway.detect_cli") is not None
    assert ("detect" in runners) == has_detect
    args = parser.parse_args(["serve", "--device", "sim", "--device", "socket://127.0.0.1:4000", "--port", "9000"])
    assert args.devices == ["sim", "socket://127.0.0.1:4000"] and args.port == 9000
    with pytest.raises(SystemExit):
        parser.parse_args(["bench", "--device", "sim", "--server", "http://127.0.0.1:1"])
    assert _settings_from(parser.parse_args(["serve", "--views", "1"]), ["views"]).views == 1
    assert _settings_from(parser.parse_args(["serve"]), ["views"]).views == 2
    for command in (["serve"], ["bench"], ["detect", "x.jpg"]):
        with pytest.raises(SystemExit):  # argparse: "invalid choice"
            parser.parse_args([*command, "--views", "3"])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def cli_process(*args: str, env: dict[str, str] | None = None) -> Iterator[subprocess.Popen[str]]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "gateway.cli", *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
    )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)


def _stop(proc: subprocess.Popen[str]) -> tuple[int, str]:
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=20)
    return proc.returncode, err


def test_sim_command_prints_url_and_cleans_up(host_firmware: Path) -> None:
    with cli_process("sim", "--board", "host") as proc:
        assert proc.stdout is not None
        url = proc.stdout.readline().strip()
        assert re.fullmatch(r"socket://127\.0\.0\.1:\d+", url), url
        port = int(url.rsplit(":", 1)[1])
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
        code, err = _stop(proc)
    assert code == 0, err
    pid = int(re.search(r"pid (\d+)", err).group(1))  # type: ignore[union-attr]
    assert not Path(f"/proc/{pid}").exists(), "the firmware process must die with `rnnpool sim`"


def _wait_http(url: str, status: int, timeout_s: float) -> httpx.Response:
    deadline = time.monotonic() + timeout_s
    last: object = None
    while time.monotonic() < deadline:
        try:
            response = httpx.get(url, timeout=2)
            if response.status_code == status:
                return response
            last = response.status_code
        except httpx.HTTPError as exc:
            last = exc
        time.sleep(0.1)
    raise AssertionError(f"{url} not {status} within {timeout_s} s (last: {last})")


def test_serve_without_devices_answers_health() -> None:
    port = _free_port()
    with cli_process("serve", "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning") as proc:
        _wait_http(f"http://127.0.0.1:{port}/healthz", 200, 30)
        assert httpx.get(f"http://127.0.0.1:{port}/readyz").status_code == 503
        code, err = _stop(proc)
    assert code == 0, err


def test_serve_with_env_device_and_token(sim_device: SimDevice) -> None:
    port = _free_port()
    env = {"RNNPOOL_DEVICES": sim_device.url, "RNNPOOL_TOKEN": "t0k"}
    with cli_process("serve", "--port", str(port), "--log-level", "warning", env=env) as proc:
        base = f"http://127.0.0.1:{port}"
        _wait_http(f"{base}/readyz", 200, 30)
        refused = httpx.post(f"{base}/v1/detect", content=jpeg(), headers={"content-type": "image/jpeg"})
        assert refused.status_code == 401
        ok = httpx.post(
            f"{base}/v1/detect",
            content=jpeg(),
            headers={"content-type": "image/jpeg", "authorization": "Bearer t0k"},
            timeout=60,
        )
        assert ok.status_code == 200, ok.text
        code, err = _stop(proc)
    assert code == 0, err


def test_serve_sim_owns_its_board(protocol_firmware: Path) -> None:
    port = _free_port()
    with cli_process("serve", "--device", "sim", "--port", str(port), "--log-level", "warning") as proc:
        base = f"http://127.0.0.1:{port}"
        _wait_http(f"{base}/readyz", 200, 60)
        url = httpx.get(f"{base}/v1/devices").json()["devices"][0]["url"]
        relay_port = int(url.rsplit(":", 1)[1])
        code, err = _stop(proc)
    assert code == 0, err
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", relay_port), timeout=1).close()


def test_bench_direct(sim_device: SimDevice, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "bench.json"
    assert (
        main(["bench", "--device", sim_device.url, "-n", "2", "--warmup", "1", "--count", "2", "--out", str(out)]) == 0
    )
    report = BenchmarkReport.model_validate(json.loads(out.read_text()))
    assert report.n == 2 and len(report.samples) == 2 and report.device.board == "host"
    assert "end to end median" in capsys.readouterr().err


def test_bench_through_a_server(sim_device: SimDevice, tmp_path: Path) -> None:
    port = _free_port()
    with cli_process("serve", "--device", sim_device.url, "--port", str(port), "--log-level", "warning") as proc:
        _wait_http(f"http://127.0.0.1:{port}/readyz", 200, 30)
        out = tmp_path / "bench.json"
        images = []
        for name, data in synthetic_images(2, seed=1):
            path = tmp_path / name
            path.write_bytes(data)
            images.append(str(path))
        code = main(["bench", "--server", f"http://127.0.0.1:{port}", "-n", "2", "--warmup", "0", "--out", str(out),
                     "--images", *images])  # fmt: skip
        assert code == 0
        report = BenchmarkReport.model_validate(json.loads(out.read_text()))
        assert report.image_source == "uploaded" and len(report.samples) == 2
        _stop(proc)
