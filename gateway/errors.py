"""Errors the gateway reports to clients, each with a stable machine code and an HTTP status.

Every failure a client can see is a `GatewayError`; the API turns it into
`{"error": {"code": ..., "message": ...}}`. Codes are part of the API contract (docs/api.md): rename
one and clients break, so add new codes rather than changing old ones.
"""

from __future__ import annotations


class GatewayError(Exception):
    status: int = 500
    code: str = "internal_error"

    def __init__(
        self, message: str, *, code: str | None = None, status: int | None = None, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        if status is not None:
            self.status = status
        self.headers = headers or {}


class BadRequestError(GatewayError):
    status = 400
    code = "bad_request"


class UnauthorizedError(GatewayError):
    status = 401
    code = "unauthorized"


class NotFoundError(GatewayError):
    status = 404
    code = "not_found"


class PayloadTooLargeError(GatewayError):
    status = 413
    code = "payload_too_large"


class UnsupportedMediaTypeError(GatewayError):
    status = 415
    code = "unsupported_media_type"


class InvalidImageError(GatewayError):
    """The bytes are an image of an accepted format, but not one the device can be given."""

    status = 422
    code = "invalid_image"


class InvalidParametersError(GatewayError):
    status = 422
    code = "invalid_parameters"


class QueueFullError(GatewayError):
    status = 429
    code = "queue_full"

    def __init__(self, message: str, *, retry_after_s: float) -> None:
        # Retry-After takes whole seconds; rounding up keeps clients from retrying too early.
        seconds = max(1, int(-(-retry_after_s // 1)))
        super().__init__(message, headers={"Retry-After": str(seconds)})
        self.retry_after_s = seconds


class TooManyJobsError(GatewayError):
    status = 429
    code = "too_many_jobs"

    def __init__(self, message: str, *, retry_after_s: float = 5.0) -> None:
        super().__init__(message, headers={"Retry-After": str(max(1, int(retry_after_s)))})


class ClientGoneError(GatewayError):
    """The client disconnected before the answer was ready (never sent: nobody is listening)."""

    status = 499
    code = "client_closed_request"


class DeviceFailedError(GatewayError):
    """The device answered with an error, or the link broke and could not be recovered in time."""

    status = 502
    code = "device_error"


class NoDeviceReadyError(GatewayError):
    status = 503
    code = "no_device_ready"

    def __init__(self, message: str = "no device is ready; try again later", *, retry_after_s: float = 5.0) -> None:
        super().__init__(message, headers={"Retry-After": str(max(1, int(retry_after_s)))})


class DeadlineExceededError(GatewayError):
    status = 504
    code = "device_deadline_exceeded"
