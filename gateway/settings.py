"""Gateway configuration: defaults, overridden by `RNNPOOL_*` environment variables, overridden by CLI flags."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parent.parent


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="RNNPOOL_", extra="ignore")

    # Device URLs: /dev/ttyACM0, socket://host:port, rfc2217://host:port, or `sim` / `qemu` for a
    # simulated board the gateway starts itself. Comma separated in RNNPOOL_DEVICES.
    devices: Annotated[list[str], NoDecode] = Field(default_factory=list)
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    # Optional bearer token for /v1/*; health, readiness, metrics and the viewer stay open so that
    # orchestrators and scrapers need no secret.
    token: str | None = None

    baudrate: int = Field(default=115200, gt=0)
    target_baud: int | None = Field(default=None, gt=0)
    device_timeout_s: float = Field(default=5.0, gt=0)
    device_max_retries: int = Field(default=8, ge=0)

    # Upload limits. The device sees 320x320; anything much larger only costs decode time.
    max_upload_bytes: int = Field(default=20 * 1024 * 1024, gt=0)
    max_pixels: int = Field(default=50_000_000, gt=0)
    max_aspect_ratio: float = Field(default=20.0, ge=1.0)

    # Scheduling. A QEMU board needs ~10 s per device pass (emulated UART), a real one at 115200 baud
    # ~10 s; an image takes `views` passes.
    queue_size: int = Field(default=16, ge=0)
    request_timeout_s: float = Field(default=120.0, gt=0)
    heartbeat_s: float = Field(default=2.0, gt=0)
    reconnect_min_s: float = Field(default=0.25, gt=0)
    reconnect_max_s: float = Field(default=10.0, gt=0)
    # How long queued requests wait for a device to come back when all are down, before 503.
    no_device_grace_s: float = Field(default=3.0, ge=0)

    max_jobs: int = Field(default=256, ge=1)
    job_ttl_s: float = Field(default=600.0, gt=0)

    # Device passes per detection, fused (gateway/views.py): 2 = the frame and its shifted mirror,
    # the more accurate default; 1 = half the device time. A request may ask for either.
    views: int = Field(default=2, ge=1, le=2)

    benchmark_max_images: int = Field(default=100, ge=1)

    web_dir: Path = REPO_ROOT / "web"

    @field_validator("devices", mode="before")
    @classmethod
    def _split_devices(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value


def gateway_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("rnnpool-gateway")
    except PackageNotFoundError:
        return "0+unknown"
