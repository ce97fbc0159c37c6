"""Hostile and malformed uploads: each gets its precise 4xx, and the gateway keeps serving.

Run twice: against a gateway with no device (validation must still answer first; accepted images
then get 503), and against the real simulated board (accepted images get 200 with boxes).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from fixtures.app import fast_settings, running_app
from fixtures.images import Upload, hostile_uploads, jpeg

from gateway.sim import SimDevice

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
def uploads() -> list[Upload]:
    # Built per module, not at import: two of them are 60 MB bodies.
    return hostile_uploads()


def test_corpus_is_big_enough(uploads: list[Upload]) -> None:
    refused = [u for u in uploads if u.status is not None]
    assert len(refused) >= 25
    assert {u.status for u in refused} == {413, 415, 422}


async def _check(client: httpx.AsyncClient, upload: Upload, accepted_status: int) -> None:
    response = await client.post("/v1/detect", **upload.request_kwargs())  # type: ignore[arg-type]
    expected = upload.status if upload.status is not None else accepted_status
    assert response.status_code == expected, f"{upload.name}: {response.status_code} {response.text[:300]}"
    if response.status_code >= 400:
        error = response.json()["error"]
        assert set(error) == {"code", "message"} and error["message"]
        if upload.codes:
            assert error["code"] in upload.codes, f"{upload.name}: {error}"
    else:
        body = response.json()
        assert body["image"]["width"] > 0 and isinstance(body["boxes"], list)


async def test_corpus_without_device(uploads: list[Upload]) -> None:
    async with running_app(fast_settings([])) as (_, client):
        for upload in uploads:
            await _check(client, upload, accepted_status=503)
        health = await client.get("/healthz")
        assert health.status_code == 200
        metrics = (await client.get("/metrics")).text
        assert 'rnnpool_rejected_uploads_total{code="too_many_pixels"}' in metrics


async def test_corpus_with_device(sim_device: SimDevice, uploads: list[Upload]) -> None:
    async with running_app(fast_settings([sim_device.url]), wait_ready_s=20) as (_, client):
        for upload in uploads:
            await _check(client, upload, accepted_status=200)
        # Still serving, and the device was never disturbed by the refused ones.
        response = await client.post("/v1/detect", content=jpeg(320, 240), headers={"content-type": "image/jpeg"})
        assert response.status_code == 200
        devices = (await client.get("/v1/devices")).json()["devices"]
        assert devices[0]["state"] in ("ready", "busy") and devices[0]["requests_failed"] == 0


async def test_declared_length_over_limit_is_refused_before_reading() -> None:
    async with running_app(fast_settings([], max_upload_bytes=1000)) as (_, client):

        async def body() -> AsyncIterator[bytes]:
            yield b"\xff\xd8\xff" + bytes(500)
            raise AssertionError("the gateway read past the declared length check")

        response = await client.post(
            "/v1/detect", content=body(), headers={"content-type": "image/jpeg", "content-length": "5000000"}
        )
        assert response.status_code == 413
        assert response.json()["error"]["code"] == "upload_too_large"


async def test_streamed_body_is_cut_off_at_the_limit() -> None:
    async with running_app(fast_settings([], max_upload_bytes=10_000)) as (_, client):
        sent = 0

        async def body() -> AsyncIterator[bytes]:
            nonlocal sent
            for _ in range(1000):
                sent += 4096
                yield bytes(4096)

        response = await client.post("/v1/detect", content=body(), headers={"content-type": "image/jpeg"})
        assert response.status_code == 413
        assert sent < 100 * 4096, "the body must be abandoned soon after the limit, not read to the end"
