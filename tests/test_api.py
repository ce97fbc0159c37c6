"""The HTTP API without a device: contract, errors, auth, health, metrics, static files, OpenAPI."""

from __future__ import annotations

from pathlib import Path

import pytest
from fixtures.app import fast_settings, running_app
from fixtures.images import jpeg

pytestmark = pytest.mark.anyio


async def test_health_and_readiness_without_devices() -> None:
    async with running_app(fast_settings([])) as (_, client):
        health = await client.get("/healthz")
        assert health.status_code == 200 and health.json()["status"] == "ok"
        ready = await client.get("/readyz")
        assert ready.status_code == 503
        assert ready.json() == {
            "ready": False,
            "devices_ready": 0,
            "devices_total": 0,
            "detail": "no devices configured",
        }


async def test_unreachable_device_is_offline_and_requests_get_503() -> None:
    # Port 9 on 127.0.0.1: nothing listens, so every connection attempt is refused at once.
    url = "socket://127.0.0.1:9"
    async with running_app(fast_settings([url])) as (_, client):
        devices = (await client.get("/v1/devices")).json()
        assert [d["url"] for d in devices["devices"]] == [url]
        assert devices["devices"][0]["state"] in ("offline", "quarantined")
        assert (await client.get("/readyz")).status_code == 503
        response = await client.post("/v1/detect", content=jpeg(), headers={"content-type": "image/jpeg"})
        assert response.status_code == 503
        assert response.json()["error"]["code"] == "no_device_ready"
        assert int(response.headers["retry-after"]) >= 1
        jobs = await client.post("/v1/jobs", content=jpeg(), headers={"content-type": "image/jpeg"})
        assert jobs.status_code == 503
        bench = await client.post("/v1/benchmark?n=1&warmup=0")
        assert bench.status_code == 503


async def test_error_envelope_for_framework_errors() -> None:
    async with running_app(fast_settings([])) as (_, client):
        missing = await client.get("/v1/nothing-here")
        assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
        wrong_method = await client.get("/v1/detect")
        assert wrong_method.status_code == 405 and wrong_method.json()["error"]["code"] == "method_not_allowed"
        bad_param = await client.post("/v1/detect?include_frame=maybe", content=jpeg())
        assert bad_param.status_code == 422
        assert bad_param.json()["error"]["code"] == "invalid_parameters"
        assert "include_frame" in bad_param.json()["error"]["message"]
        bad_timeout = await client.post("/v1/detect?timeout_s=-1", content=jpeg())
        assert bad_timeout.status_code == 422
        too_many = await client.post("/v1/benchmark?n=1000")
        assert too_many.status_code == 422 and too_many.json()["error"]["code"] == "too_many_runs"
        unknown_job = await client.get("/v1/jobs/0123456789abcdef")
        assert unknown_job.status_code == 404 and unknown_job.json()["error"]["code"] == "job_not_found"
        unknown_events = await client.get("/v1/jobs/0123456789abcdef/events")
        assert unknown_events.status_code == 404


async def test_bearer_token() -> None:
    async with running_app(fast_settings([], token="s3cret")) as (_, client):
        refused = await client.get("/v1/devices")
        assert refused.status_code == 401 and refused.json()["error"]["code"] == "unauthorized"
        assert refused.headers["www-authenticate"].startswith("Bearer")
        wrong = await client.get("/v1/devices", headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401
        ok = await client.get("/v1/devices", headers={"Authorization": "Bearer s3cret"})
        assert ok.status_code == 200
        # Probes and scrapers need no secret.
        assert (await client.get("/healthz")).status_code == 200
        assert (await client.get("/metrics")).status_code == 200
        assert (await client.get("/readyz")).status_code == 503


async def test_metrics_exposition() -> None:
    async with running_app(fast_settings(["socket://127.0.0.1:9"])) as (_, client):
        await client.get("/healthz")
        await client.post("/v1/detect", content=b"not an image", headers={"content-type": "image/jpeg"})
        text = (await client.get("/metrics")).text
    for name in (
        "rnnpool_http_requests_total",
        "rnnpool_http_request_seconds_bucket",
        "rnnpool_queue_depth",
        "rnnpool_device_busy",
        "rnnpool_device_up",
        "rnnpool_link_bytes_tx_total",
        "rnnpool_link_bytes_rx_total",
        "rnnpool_link_crc_errors_total",
        "rnnpool_link_retransmits_total",
        "rnnpool_link_resyncs_total",
        "rnnpool_link_timeouts_total",
        "rnnpool_rejected_uploads_total",
    ):
        assert name in text, name
    assert 'route="/healthz"' in text
    assert 'rnnpool_device_up{device="socket://127.0.0.1:9"} 0.0' in text


async def test_openapi_documents_every_route_and_model() -> None:
    async with running_app(fast_settings([])) as (_, client):
        spec = (await client.get("/openapi.json")).json()
    paths = spec["paths"]
    for path, method in [
        ("/v1/detect", "post"),
        ("/v1/jobs", "post"),
        ("/v1/jobs/{job_id}", "get"),
        ("/v1/jobs/{job_id}/events", "get"),
        ("/v1/devices", "get"),
        ("/v1/benchmark", "post"),
        ("/healthz", "get"),
        ("/readyz", "get"),
        ("/metrics", "get"),
    ]:
        assert method in paths[path], (path, method)
    detect = paths["/v1/detect"]["post"]
    assert {"multipart/form-data", "image/*", "application/octet-stream"} <= set(detect["requestBody"]["content"])
    for status in ("413", "415", "422", "429", "503", "504"):
        assert status in detect["responses"], status
    schemas = spec["components"]["schemas"]
    for model in ("DetectResponse", "ErrorResponse", "JobStatus", "JobCreated", "DevicesResponse", "BenchmarkReport"):
        assert model in schemas
    assert "HTTPBearer" in spec["components"]["securitySchemes"]


async def test_static_viewer(tmp_path: Path) -> None:
    async with running_app(fast_settings([], web_dir=tmp_path)) as (_, client):
        placeholder = await client.get("/")
        assert placeholder.status_code == 200 and placeholder.json()["docs"] == "/docs"
        (tmp_path / "index.html").write_text("<!doctype html><title>viewer</title>")
        (tmp_path / "app.js").write_text("console.log(1)")
        index = await client.get("/")
        assert index.status_code == 200 and "viewer" in index.text
        assert (await client.get("/app.js")).text == "console.log(1)"
        assert (await client.get("/missing.js")).status_code == 404
        assert (await client.get("/healthz")).status_code == 200  # routes win over static files


def test_settings_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from gateway.settings import Settings

    monkeypatch.setenv("RNNPOOL_DEVICES", "sim, socket://127.0.0.1:4000")
    monkeypatch.setenv("RNNPOOL_TOKEN", "abc")
    monkeypatch.setenv("RNNPOOL_QUEUE_SIZE", "3")
    settings = Settings()
    assert settings.devices == ["sim", "socket://127.0.0.1:4000"]
    assert settings.token == "abc" and settings.queue_size == 3
    assert Settings(devices=["qemu"]).devices == ["qemu"]  # explicit values beat the environment
