"""The gateway end to end through the real ASGI app and the real simulated board (host firmware).

Covers: detection on real photos (boxes = the device session's boxes mapped back), the frame view,
each error status, a job followed over server-sent events, the benchmark report, readiness flipping
when the board dies and returns, 100 concurrent uploads, and recovery from a lossy line.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import shutil
import socket
import time

import httpx
import numpy as np
import pytest
from conftest import dev_photos
from fixtures.app import fast_settings, running_app, uvicorn_server, wait_status
from fixtures.images import jpeg
from PIL import Image

from gateway import imaging
from gateway.bench import synthetic_images
from gateway.device import DeviceSession
from gateway.schemas import BenchmarkReport, DetectResponse
from gateway.sim import FaultSpec, SimDevice, SimUnavailableError, ensure_firmware, start_sim
from gateway.views import DEFAULT_VIEWS, detect_views

pytestmark = pytest.mark.anyio


def direct_boxes(url: str, images: list[tuple[str, bytes]], views: int = DEFAULT_VIEWS) -> list[np.ndarray]:
    """What a DeviceSession of its own gets for each image (`views` passes fused), mapped back."""
    out = []
    with DeviceSession(url, timeout_s=5.0) as session:
        for _, data in images:
            frame, plan = imaging.letterbox_bytes(data)
            result = detect_views(lambda view_frame, _view: session.detect(view_frame), frame, views)
            raw = np.array([[b.x, b.y, b.w, b.h] for b in result.boxes], dtype=np.float64).reshape(-1, 4)
            scores = np.array([b.score for b in result.boxes], dtype=np.float64).reshape(-1, 1)
            out.append(np.hstack([plan.to_source(raw), scores]))
    return out


def response_boxes(body: dict[str, object]) -> np.ndarray:
    boxes = body["boxes"]
    assert isinstance(boxes, list)
    return np.array([[b["x"], b["y"], b["w"], b["h"], b["score"]] for b in boxes], dtype=np.float64).reshape(-1, 5)


async def post_image(
    client: httpx.AsyncClient, data: bytes, path: str = "/v1/detect", **params: str | float
) -> httpx.Response:
    return await client.post(path, files={"image": ("photo.jpg", data, "image/jpeg")}, params=params)


async def test_detect_real_photos_match_the_device_session(sim_device: SimDevice) -> None:
    photos = dev_photos(4)
    expected = direct_boxes(sim_device.url, photos)
    async with running_app(fast_settings([sim_device.url]), wait_ready_s=20) as (_, client):
        for (name, data), want in zip(photos, expected, strict=True):
            response = await post_image(client, data)
            assert response.status_code == 200, response.text
            body = response.json()
            DetectResponse.model_validate(body)
            assert body["views"] == DEFAULT_VIEWS == 2
            np.testing.assert_allclose(response_boxes(body), want, rtol=0, atol=1e-9, err_msg=name)
            with Image.open(io.BytesIO(data)) as im:
                assert (body["image"]["width"], body["image"]["height"]) == im.size
            for box in body["boxes"]:
                assert 0 <= box["x"] <= body["image"]["width"] and 0 <= box["y"] <= body["image"]["height"]
                assert 0 <= box["score"] <= 1
            timings = body["timings"]
            assert timings["ticks_total"] > 0 and timings["tick_unit"] in ("ns", "cycles", "instructions")
            assert timings["stage_ticks"] and all(t >= 0 for t in timings["stage_ticks"].values())
            if timings["clock_hz"]:
                assert timings["seconds_total"] == pytest.approx(timings["ticks_total"] / timings["clock_hz"])
            assert body["memory"]["peak_ram_bytes"] > 0
            assert body["device"]["board"] == "host" and body["device"]["model_hash"]
            latency = body["latency"]
            assert all(latency[k] >= 0 for k in ("decode_s", "queue_wait_s", "transfer_s", "device_compute_s"))
            assert latency["total_s"] >= latency["transfer_s"] + latency["device_compute_s"]


async def test_views_query_picks_one_pass_or_two(sim_device: SimDevice) -> None:
    """?views=1 is the device's own answer; the gateway's `views` setting is the default; 3 is refused."""
    photos = dev_photos(1)
    one = direct_boxes(sim_device.url, photos, views=1)[0]
    two = direct_boxes(sim_device.url, photos, views=2)[0]
    assert one.tolist() != two.tolist()
    data = photos[0][1]
    async with running_app(fast_settings([sim_device.url], views=1), wait_ready_s=20) as (_, client):
        default = (await post_image(client, data)).json()
        assert default["views"] == 1
        np.testing.assert_allclose(response_boxes(default), one, atol=1e-9)
        asked = (await post_image(client, data, views=2)).json()
        assert asked["views"] == 2
        np.testing.assert_allclose(response_boxes(asked), two, atol=1e-9)
        bad = await post_image(client, data, views=3)
        assert bad.status_code == 422 and "views" in bad.text
        report = (await client.post("/v1/benchmark", params={"n": 1, "warmup": 0, "count": 1, "views": 2})).json()
        assert report["views"] == 2 and len(report["samples"]) == 1


async def test_include_frame_shows_what_the_device_saw(sim_device: SimDevice) -> None:
    data = dev_photos(1)[0][1]
    frame, plan = imaging.letterbox_bytes(data)
    async with running_app(fast_settings([sim_device.url]), wait_ready_s=20) as (_, client):
        plain = (await post_image(client, data)).json()
        assert plain["frame"] is None
        body = (await post_image(client, data, include_frame="true")).json()
    view = body["frame"]
    assert (view["width"], view["height"]) == (320, 320)
    seen = np.asarray(Image.open(io.BytesIO(base64.b64decode(view["png_base64"]))))
    np.testing.assert_array_equal(seen, frame)
    frame_boxes = np.array([[b["x"], b["y"], b["w"], b["h"]] for b in view["boxes"]]).reshape(-1, 4)
    np.testing.assert_allclose(plan.to_source(frame_boxes), response_boxes(body)[:, :4], atol=1e-9)
    assert body["letterbox"]["pad_x"] == plan.pad_x and body["letterbox"]["pad_y"] == plan.pad_y


async def test_error_statuses(sim_device: SimDevice) -> None:
    async with running_app(fast_settings([sim_device.url], queue_size=0), wait_ready_s=20) as (_, client):
        # 504: a deadline no device can meet.
        late = await post_image(client, jpeg(), timeout_s=0.001)
        assert late.status_code == 504 and late.json()["error"]["code"] == "device_deadline_exceeded"
        # 429: one device, no queue; the second of two simultaneous requests is refused. (Wait until
        # the device is idle again: after the 504 it first checks that the board is still in step.)
        await wait_device_state(client, "ready", 10)
        first, second = await asyncio.gather(post_image(client, jpeg()), post_image(client, jpeg()))
        statuses = sorted([first.status_code, second.status_code])
        assert statuses in ([200, 429], [200, 200]), statuses
        refused = [r for r in (first, second) if r.status_code == 429]
        for r in refused:
            assert r.json()["error"]["code"] == "queue_full" and int(r.headers["retry-after"]) >= 1
        # 413 / 415 / 422 come before the device is involved.
        assert (await post_image(client, b"hello")).status_code == 415
        assert (await client.post("/v1/detect", content=b"")).status_code == 422
        # 503: the board is gone.
        sim_device.crash()
        await wait_status(client, "/readyz", 503, 10)
        gone = await post_image(client, jpeg())
        assert gone.status_code == 503 and gone.json()["error"]["code"] == "no_device_ready"


async def wait_device_state(client: httpx.AsyncClient, state: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while (await client.get("/v1/devices")).json()["devices"][0]["state"] != state:
        assert time.monotonic() < deadline, f"device not {state} within {timeout_s} s"
        await asyncio.sleep(0.05)


def parse_sse(text: str) -> list[tuple[str, dict[str, object]]]:
    events = []
    for block in text.split("\n\n"):
        name, data = None, None
        for line in block.splitlines():
            if line.startswith("event: "):
                name = line[len("event: ") :]
            elif line.startswith("data: "):
                data = json.loads(line[len("data: ") :])
        if name is not None and data is not None:
            events.append((name, data))
    return events


async def test_job_followed_over_sse(sim_device: SimDevice) -> None:
    data = dev_photos(1)[0][1]
    async with running_app(fast_settings([sim_device.url]), wait_ready_s=20) as (_, client):
        sync = (await post_image(client, data)).json()
        created = await post_image(client, data, path="/v1/jobs")
        assert created.status_code == 202, created.text
        job = created.json()
        assert created.headers["location"] == job["status_url"] == f"/v1/jobs/{job['id']}"
        async with client.stream("GET", job["events_url"]) as stream:
            assert stream.headers["content-type"].startswith("text/event-stream")
            text = ""
            async for chunk in stream.aiter_text():
                text += chunk
        events = parse_sse(text)
        names = [name for name, _ in events]
        assert names[0] == "queued" and names[-1] == "done"
        assert "transmitting" in names and "computing" in names
        # Two views: each frame is sent, then computed on; the byte count runs over both.
        last_sent = max(i for i, n in enumerate(names) if n == "transmitting")
        assert names.count("computing") == 2 and names[last_sent + 1] == "computing"
        sent = [int(d["bytes_sent"]) for n, d in events if n == "transmitting"]  # type: ignore[call-overload]
        totals = {int(d["bytes_total"]) for n, d in events if n == "transmitting"}  # type: ignore[call-overload]
        assert sent == sorted(sent) and sent[-1] == 2 * 320 * 320 and totals == {2 * 320 * 320}
        result = events[-1][1]
        assert response_boxes(result).tolist() == response_boxes(sync).tolist()
        status = (await client.get(job["status_url"])).json()
        assert status["state"] == "done" and status["expires_at"] is not None
        assert response_boxes(status["result"]).tolist() == response_boxes(sync).tolist()
        # A late follower (Last-Event-ID) gets only what it missed: here, nothing but the end.
        replay = await client.get(job["events_url"], headers={"Last-Event-ID": str(len(events) - 1)})
        assert [n for n, _ in parse_sse(replay.text)] == ["done"]


async def test_jobs_are_bounded_and_expire(sim_device: SimDevice) -> None:
    settings = fast_settings([sim_device.url], max_jobs=2, job_ttl_s=0.5)
    async with running_app(settings, wait_ready_s=20) as (_, client):
        ids = []
        for _ in range(3):
            created = await post_image(client, jpeg(), path="/v1/jobs")
            if created.status_code == 429:
                assert created.json()["error"]["code"] == "too_many_jobs"
                break
            ids.append(created.json()["id"])
        for job_id in ids:
            deadline = time.monotonic() + 60
            while (await client.get(f"/v1/jobs/{job_id}")).json()["state"] not in ("done", "failed"):
                assert time.monotonic() < deadline
                await asyncio.sleep(0.05)
        await asyncio.sleep(0.6)
        for job_id in ids:
            assert (await client.get(f"/v1/jobs/{job_id}")).status_code == 404


async def test_benchmark_report(sim_device: SimDevice) -> None:
    async with running_app(fast_settings([sim_device.url]), wait_ready_s=20) as (_, client):
        response = await client.post("/v1/benchmark", params={"n": 3, "warmup": 1, "count": 2, "seed": 5})
        assert response.status_code == 200, response.text
        report = BenchmarkReport.model_validate(response.json())
        assert report.n == 3 and len(report.samples) == 3 and report.warmup == 1
        assert report.image_source == "synthetic" and report.seed == 5 and len(report.images) == 2
        assert report.device.board == "host" and report.device.model_hash and report.device.firmware_version
        for key in ("end_to_end_s", "transfer_s", "device_compute_s"):
            s = report.summary[key]
            assert s.count == 3 and s.min <= s.median <= s.p95 <= s.max
        assert report.peak_ram_bytes == max(x.peak_ram_bytes for x in report.samples) > 0
        # The same seed gives the same frames: the report is reproducible.
        again = BenchmarkReport.model_validate(
            (await client.post("/v1/benchmark", params={"n": 1, "warmup": 0, "count": 2, "seed": 5})).json()
        )
        assert again.images[0].frame_sha256 == report.images[0].frame_sha256
        # Uploaded images instead of synthetic ones.
        files = [("images", (name, data, "image/png")) for name, data in synthetic_images(2, seed=9)]
        uploaded = await client.post("/v1/benchmark", params={"n": 2, "warmup": 0}, files=files)
        assert uploaded.status_code == 200, uploaded.text
        assert uploaded.json()["image_source"] == "uploaded" and len(uploaded.json()["images"]) == 2


async def test_readiness_flips_when_the_board_dies_and_returns(sim_device: SimDevice) -> None:
    async with running_app(fast_settings([sim_device.url]), wait_ready_s=20) as (_, client):
        device = (await client.get("/v1/devices")).json()["devices"][0]
        assert device["state"] == "ready" and device["board"] == "host" and device["input_width"] == 320
        sim_device.crash()
        await wait_status(client, "/readyz", 503, 10)
        assert (await client.get("/v1/devices")).json()["devices"][0]["state"] in ("offline", "quarantined")
        metrics = (await client.get("/metrics")).text
        assert f'rnnpool_device_up{{device="{sim_device.url}"}} 0.0' in metrics
        sim_device.restart()
        await wait_status(client, "/readyz", 200, 20)
        response = await post_image(client, jpeg())
        assert response.status_code == 200
        assert (await client.get("/v1/devices")).json()["devices"][0]["reconnects"] >= 1


async def test_100_concurrent_uploads_none_lost_or_mixed_up(sim_device: SimDevice) -> None:
    distinct = [data for _, data in synthetic_images(10, seed=3)]
    async with running_app(fast_settings([sim_device.url], queue_size=8), wait_ready_s=20) as (_, client):
        reference = []
        for data in distinct:
            r = await post_image(client, data)
            assert r.status_code == 200
            reference.append(response_boxes(r.json()).tolist())

        async def one(i: int) -> tuple[int, httpx.Response]:
            response = await client.post(
                "/v1/detect",
                files={"image": (f"{i}.png", distinct[i % 10], "image/png")},
                headers={"X-Request-ID": f"req-{i}"},
            )
            return i, response

        results = await asyncio.gather(*(one(i) for i in range(100)))
    assert len(results) == 100
    ok = 0
    for i, response in results:
        assert response.status_code in (200, 429), (i, response.status_code, response.text[:200])
        if response.status_code == 200:
            ok += 1
            body = response.json()
            assert body["request_id"] == f"req-{i}"
            assert response_boxes(body).tolist() == reference[i % 10], f"request {i} got another image's boxes"
        else:
            assert response.json()["error"]["code"] == "queue_full" and "retry-after" in response.headers
    assert ok >= 9  # at least the queue plus the device's own slot


async def test_lossy_line_recovers_with_identical_boxes(protocol_firmware: object) -> None:
    photos = dev_photos(1)
    with start_sim("host") as clean:
        expected = direct_boxes(clean.url, photos)[0]
    fault = FaultSpec(drop_rate=2e-4, corrupt_rate=2e-4, seed=11)
    with start_sim("host", fault=fault) as lossy:
        async with running_app(fast_settings([lossy.url]), wait_ready_s=30) as (_, client):
            response = await post_image(client, photos[0][1], timeout_s=120)
            assert response.status_code == 200, response.text
            np.testing.assert_allclose(response_boxes(response.json()), expected, atol=1e-9)
            link = (await client.get("/v1/devices")).json()["devices"][0]["link"]
            assert link["crc_errors"] + link["resyncs"] + link["retransmits"] + link["timeouts"] > 0, link
            assert lossy.relay_stats.dropped + lossy.relay_stats.corrupted > 0
            metrics = (await client.get("/metrics")).text
            assert "rnnpool_link_retransmits_total" in metrics


@pytest.mark.qemu
async def test_qemu_board_gives_the_host_boards_boxes(protocol_firmware: object) -> None:
    """`qemu` as a device URL: the ARM build under QEMU, through the gateway, bit-identical to the host build."""
    if shutil.which("qemu-system-arm") is None:
        pytest.skip("qemu-system-arm is not installed")
    try:
        ensure_firmware("qemu")
    except SimUnavailableError as exc:
        pytest.skip(f"QEMU firmware cannot be built: {exc}")
    photo = dev_photos(1)
    with start_sim("host") as host:
        expected = direct_boxes(host.url, photo)[0]
    async with running_app(fast_settings(["qemu"], request_timeout_s=300), wait_ready_s=60) as (_, client):
        response = await post_image(client, photo[0][1])
        assert response.status_code == 200, response.text
        body = response.json()
    assert body["device"]["board"] == "qemu"
    assert body["timings"]["tick_unit"] == "instructions" and body["timings"]["clock_hz"] == 168_000_000
    assert body["memory"]["ram_bytes"] == 131072 and 0 < body["memory"]["peak_ram_bytes"] <= 131072
    np.testing.assert_allclose(response_boxes(body), expected, atol=1e-9)


def test_client_disconnect_cancels_the_device_work(protocol_firmware: object) -> None:
    """Under a real uvicorn: a client that hangs up mid-transfer stops the device's work on its image."""
    slow = FaultSpec(delay_s=0.05, direction="to_device")  # ~2-3 s to stream one frame
    with start_sim("host", fault=slow) as sim, uvicorn_server(fast_settings([sim.url])) as base:

        def device() -> dict[str, object]:
            devices = httpx.get(f"{base}/v1/devices").json()["devices"]
            assert isinstance(devices, list)
            return dict(devices[0])

        deadline = time.monotonic() + 20
        while httpx.get(f"{base}/readyz").status_code != 200:
            assert time.monotonic() < deadline
            time.sleep(0.1)
        body = jpeg(320, 240)
        port = int(base.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
            head = (
                f"POST /v1/detect HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: image/jpeg\r\n"
                f"Content-Length: {len(body)}\r\n\r\n"
            )
            conn.sendall(head.encode() + body)
            deadline = time.monotonic() + 10
            while device()["state"] != "busy":
                assert time.monotonic() < deadline, "the request never reached the device"
                time.sleep(0.05)
        # Hung up while the frame is still streaming.
        deadline = time.monotonic() + 15
        while not (device()["requests_cancelled"] == 1 and device()["state"] == "ready"):
            assert time.monotonic() < deadline, f"device work not cancelled: {device()}"
            time.sleep(0.1)
        assert device()["requests_ok"] == 0
        # And the device serves the next client normally.
        ok = httpx.post(f"{base}/v1/detect", content=body, headers={"content-type": "image/jpeg"}, timeout=60)
        assert ok.status_code == 200


async def test_job_can_be_cancelled(sim_device: SimDevice) -> None:
    sim_device.set_fault(FaultSpec(delay_s=0.05, direction="to_device"))
    async with running_app(fast_settings([sim_device.url]), wait_ready_s=20) as (_, client):
        job = (await post_image(client, jpeg(), path="/v1/jobs")).json()
        cancelled = await client.delete(job["status_url"])
        assert cancelled.status_code == 200 and cancelled.json()["state"] == "failed"
        assert cancelled.json()["error"]["code"] == "cancelled"
        events = parse_sse((await client.get(job["events_url"])).text)
        assert events[-1][0] == "failed"
        await wait_device_state(client, "ready", 15)
