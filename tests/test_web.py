"""The web viewer in a real headless Chromium, against the real gateway and a simulated board.

The gateway runs as `rnnpool serve --device sim` (uvicorn, the host firmware build on a pty) on a free
port; Playwright drives Debian's chromium. Every test records every request the page makes and fails
if one leaves localhost. Screenshots of each view at 390 and 1440 px wide land in
artifacts/screenshots/ for a person to look at.

The page's Content-Security-Policy forbids eval, which Playwright's wait_for_function needs, so
conditions are polled with page.evaluate (bounded) instead.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

pytestmark = pytest.mark.browser

REPO_ROOT = Path(__file__).resolve().parent.parent
DATASET = REPO_ROOT.parent / "shared" / "datasets" / "faces"
CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOTS = REPO_ROOT / "artifacts" / "screenshots"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# Only for the camera test: with the fake capture device, Chromium no longer opens file choosers from
# the keyboard, which the keyboard test needs.
CAMERA_ARGS = ["--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream"]
LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1", "[::1]"}
# The host build answers in well under a second; these bounds only stop a broken run from hanging.
SERVER_START_S = 240.0
DETECT_S = 120.0
BENCH_S = 240.0
CAMERA_S = 120.0
WIDTHS = (1440, 390)

try:
    from playwright.sync_api import Browser, BrowserContext, FileChooser, Page, Playwright, sync_playwright
except ImportError:  # pragma: no cover - depends on the environment
    sync_playwright = None


def _require_browser() -> None:
    if sync_playwright is None:
        pytest.skip("the playwright Python package is not installed (pip install playwright)")
    if not CHROMIUM.exists():
        pytest.skip(f"Debian chromium is not installed at {CHROMIUM}")


# --------------------------------------------------------------------------------------------------
# Gateway


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _get_json(url: str, timeout_s: float = 10.0) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


@contextlib.contextmanager
def running_gateway(devices: list[str], *, ready: bool, log_name: str, token: str | None = None) -> Iterator[str]:
    """`rnnpool serve` on a free port; yields its base URL once it answers (and, if `ready`, has a device up)."""
    port = _free_port()
    log_path = REPO_ROOT / "artifacts" / log_name
    log_path.parent.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, RNNPOOL_HEARTBEAT_S="1.0")
    cmd = [sys.executable, "-m", "gateway.cli", "serve", "--host", "127.0.0.1", "--port", str(port),
           "--log-level", "warning"]  # fmt: skip
    for device in devices:
        cmd += ["--device", device]
    if token:
        cmd += ["--token", token]
    with log_path.open("wb") as log:
        proc = subprocess.Popen(cmd, cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + SERVER_START_S
        detail = "no answer"
        while True:
            if proc.poll() is not None:
                pytest.fail(f"the gateway exited with {proc.returncode}:\n{log_path.read_text()[-3000:]}")
            try:
                status, body = _get_json(f"{base}/readyz", timeout_s=5.0)
                if status == 200 or not ready:
                    break
                detail = str(body)
            except (OSError, ValueError) as exc:
                detail = f"{type(exc).__name__}: {exc}"
            if time.monotonic() > deadline:
                pytest.fail(f"the gateway's devices were not ready in {SERVER_START_S:.0f} s: {detail}")
            time.sleep(0.25)
        yield base
    finally:
        # The gateway runs in its own session: stop it (and any sim board it started) as one group.
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGINT)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)


@pytest.fixture(scope="module")
def gateway() -> Iterator[str]:
    """`rnnpool serve --device sim`, once its simulated board has answered the handshake."""
    _require_browser()
    with running_gateway(["sim"], ready=True, log_name="web-gateway.log") as base:
        yield base


DEVICELESS_TOKEN = "web-test-token"


@pytest.fixture(scope="module")
def deviceless_gateway() -> Iterator[str]:
    """`rnnpool serve --token ...` with no device at all: /v1 needs the token, then refuses detections (503)."""
    _require_browser()
    with running_gateway([], ready=False, log_name="web-gateway-deviceless.log", token=DEVICELESS_TOKEN) as base:
        yield base


# --------------------------------------------------------------------------------------------------
# Browser


@pytest.fixture(scope="module")
def playwright(gateway: str) -> Iterator[Playwright]:
    assert sync_playwright is not None
    with sync_playwright() as pw:
        yield pw


@pytest.fixture(scope="module")
def browser(playwright: Playwright) -> Iterator[Browser]:
    b = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, timeout=60_000)
    try:
        yield b
    finally:
        b.close()


@pytest.fixture(scope="module")
def camera_browser(playwright: Playwright) -> Iterator[Browser]:
    b = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS + CAMERA_ARGS, timeout=60_000)
    try:
        yield b
    finally:
        b.close()


class Session:
    """One browser context: its page, what it requested, and its JavaScript errors."""

    def __init__(self, context: BrowserContext, page: Page, base: str) -> None:
        self.context = context
        self.page = page
        self.base = base
        self.requests: list[str] = []
        self.page_errors: list[str] = []
        context.on("request", lambda r: self.requests.append(r.url))
        page.on("pageerror", lambda e: self.page_errors.append(str(e)))

    @property
    def width(self) -> int:
        size = self.page.viewport_size
        assert size is not None
        return int(size["width"])

    def foreign_requests(self) -> list[str]:
        out = []
        for url in self.requests:
            parts = urlsplit(url)
            if parts.scheme in ("data", "blob"):
                continue
            if parts.scheme not in ("http", "https", "ws", "wss") or parts.hostname not in LOCAL_HOSTS:
                out.append(url)
        return out


@pytest.fixture
def open_page(request: pytest.FixtureRequest, gateway: str) -> Iterator[Callable[..., Session]]:
    sessions: list[Session] = []

    def make(width: int = 1440, path: str = "/", *, camera: bool = False, base: str | None = None) -> Session:
        # Looked up lazily so that only the camera test starts the camera-flagged browser.
        browser: Browser = request.getfixturevalue("camera_browser" if camera else "browser")
        context = browser.new_context(viewport={"width": width, "height": 900}, accept_downloads=True)
        # The viewer hides boxes below 0.5 by default; these tests compare every box the API returned.
        context.add_init_script("localStorage.setItem('rnnpool.minScore', '0')")
        context.set_default_timeout(30_000)
        session = Session(context, context.new_page(), base or gateway)
        sessions.append(session)
        session.page.goto(session.base + path)
        session.page.wait_for_selector("body[data-ready=true]", timeout=15_000)
        return session

    yield make
    for s in sessions:
        s.context.close()
    for s in sessions:
        assert not s.foreign_requests(), f"requests left localhost: {s.foreign_requests()}"
        assert not s.page_errors, f"JavaScript errors: {s.page_errors}"


def wait_until(page: Page, expression: str, timeout_s: float, what: str) -> Any:
    """Poll a JavaScript expression until it is truthy; return its value."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = page.evaluate(expression)
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what} ({expression})")
        time.sleep(0.1)


def snap(session: Session, name: str, widths: tuple[int, ...] = WIDTHS) -> None:
    """Full-page screenshots at each width; also checks the page does not scroll sideways."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page = session.page
    for width in widths:
        page.set_viewport_size({"width": width, "height": 900})
        page.evaluate("window.scrollTo(0, 0)")
        page.wait_for_timeout(300)  # let the resize-driven redraws (benchmark chart) settle
        overflow = page.evaluate("document.documentElement.scrollWidth")
        assert overflow <= width, f"{name}: the page is {overflow} px wide at a {width} px viewport"
        page.screenshot(path=str(SCREENSHOTS / f"{name}-{width}.png"), full_page=True)


# --------------------------------------------------------------------------------------------------
# Data


def dev_photo_paths(count: int) -> list[Path]:
    """Paths of the first dev-split photos (read at test time; never copied into the repository)."""
    index = DATASET / "dev.jsonl"
    if not index.exists():
        pytest.skip(f"dataset not found at {DATASET}")
    out = []
    with index.open() as fh:
        for line in fh:
            out.append(DATASET / json.loads(line)["image"])
            if len(out) == count:
                break
    return out


def overlay_boxes(page: Page) -> list[dict[str, float]]:
    raw = page.evaluate(
        """() => Array.from(document.querySelectorAll('#detect-overlay .box')).map((g) => ({
            x: Number(g.dataset.x), y: Number(g.dataset.y), w: Number(g.dataset.w), h: Number(g.dataset.h),
            score: Number(g.dataset.score)}))"""
    )
    return list(raw)


def assert_same_boxes(drawn: list[dict[str, float]], expected: list[dict[str, float]]) -> None:
    assert len(drawn) == len(expected)
    for d, e in zip(drawn, expected, strict=True):
        for key in ("x", "y", "w", "h", "score"):
            assert d[key] == pytest.approx(e[key], abs=1e-9), (key, d, e)


def detect_via_picker(session: Session, photo: Path) -> dict[str, Any]:
    """Upload through the file input, wait for the job to finish, return the job's result from the API."""
    page = session.page
    page.set_input_files("#file-input", str(photo))
    page.wait_for_selector("#detect-stage[data-state=done]", timeout=DETECT_S * 1000)
    return finished_job(session)


def finished_job(session: Session) -> dict[str, Any]:
    job_id = session.page.get_attribute("#detect-stage", "data-job-id")
    assert job_id
    status, job = _get_json(f"{session.base}/v1/jobs/{job_id}")
    assert status == 200 and job["state"] == "done", job
    result: dict[str, Any] = job["result"]
    return result


# --------------------------------------------------------------------------------------------------
# Tests


def test_upload_draws_the_api_boxes_over_the_photo(open_page: Callable[..., Session]) -> None:
    session = open_page(1440)
    page = session.page
    result = detect_via_picker(session, dev_photo_paths(1)[0])

    # Progress came from the job's event stream, stage by stage.
    seen = (page.get_attribute("#detect-progress", "data-seen") or "").split(",")
    assert {"uploading", "queued", "transmitting", "computing", "done"} <= set(seen), seen

    assert page.get_attribute("#detect-overlay", "data-space") == "original"
    image = result["image"]
    assert page.get_attribute("#detect-overlay", "viewBox") == f"0 0 {image['width']} {image['height']}"
    drawn = overlay_boxes(page)
    assert_same_boxes(drawn, result["boxes"])

    # The boxes sit where the API says on the displayed photo, at the displayed scale.
    image_box = page.locator("#detect-overlay image").bounding_box()
    assert image_box is not None
    scale = image_box["width"] / result["image"]["width"]
    edges = page.locator("#detect-overlay .box rect.edge")
    for i, b in enumerate(result["boxes"][:8]):
        rect = edges.nth(i).bounding_box()
        assert rect is not None
        assert rect["x"] == pytest.approx(image_box["x"] + b["x"] * scale, abs=2.5)
        assert rect["y"] == pytest.approx(image_box["y"] + b["y"] * scale, abs=2.5)
        assert rect["width"] == pytest.approx(b["w"] * scale, abs=2.5)

    # Latency bar: the four measured parts plus the remainder, with the API's figures.
    segments = page.evaluate(
        "Object.fromEntries(Array.from(document.querySelectorAll('.latency-bar span'))"
        ".map((s) => [s.dataset.key, Number(s.dataset.seconds)]))"
    )
    for key in ("decode_s", "queue_wait_s", "transfer_s", "device_compute_s"):
        assert segments[key] == pytest.approx(max(0.0, result["latency"][key]))
    assert result["views"] == 2 and "ran 2 passes" in page.inner_text("#latency-body")
    # RAM gauge and identity.
    assert int(page.get_attribute("#ram-body .gauge", "data-peak") or 0) == result["memory"]["peak_ram_bytes"]
    identity = page.inner_text("#identity-body")
    for value in (result["device"]["board"], result["device"]["firmware_version"], result["device"]["model_id"]):
        assert value in identity
    count = page.inner_text("#detect-count")
    assert str(len(result["boxes"])) in count or (not result["boxes"] and "No faces" in count)
    snap(session, "detect")

    # The minimum-score filter hides weak boxes without asking the device again.
    page.set_viewport_size({"width": 1440, "height": 900})
    page.fill("#score-filter", "0.25")
    kept = [b for b in result["boxes"] if b["score"] >= 0.25]
    assert_same_boxes(overlay_boxes(page), kept)
    page.fill("#score-filter", "0")
    assert_same_boxes(overlay_boxes(page), result["boxes"])


def test_frame_toggle_shows_the_device_frame_and_its_boxes(open_page: Callable[..., Session]) -> None:
    session = open_page(1440)
    page = session.page
    result = detect_via_picker(session, dev_photo_paths(2)[1])
    frame = result["frame"]
    assert frame is not None

    page.click("label.switch:has(#frame-toggle)")
    assert page.is_checked("#frame-toggle")
    assert page.get_attribute("#detect-overlay", "data-space") == "frame"
    assert page.get_attribute("#detect-overlay", "viewBox") == f"0 0 {frame['width']} {frame['height']}"
    href = page.get_attribute("#detect-overlay image", "href") or ""
    assert href.startswith("data:image/png;base64,")
    assert_same_boxes(overlay_boxes(page), frame["boxes"])
    snap(session, "detect-frame")

    page.set_viewport_size({"width": 1440, "height": 900})
    page.click("label.switch:has(#frame-toggle)")
    assert page.get_attribute("#detect-overlay", "data-space") == "original"
    assert_same_boxes(overlay_boxes(page), result["boxes"])


def test_views_switch_asks_for_one_pass(open_page: Callable[..., Session]) -> None:
    """Two views by default; switching them off sends ?views=1 and the answer is the single pass."""
    session = open_page(1440)
    page = session.page
    assert page.is_checked("#views-toggle")
    page.click("label.switch:has(#views-toggle)")
    assert not page.is_checked("#views-toggle")
    result = detect_via_picker(session, dev_photo_paths(1)[0])
    assert result["views"] == 1
    assert "passes" not in page.inner_text("#latency-body")
    assert_same_boxes(overlay_boxes(page), result["boxes"])


def test_non_image_upload_shows_a_human_error(open_page: Callable[..., Session]) -> None:
    session = open_page(1440)
    page = session.page
    not_a_photo = {"name": "notes.txt", "mimeType": "text/plain", "buffer": b"not a photo\n" * 10}
    page.set_input_files("#file-input", not_a_photo)
    page.wait_for_selector("#detect-error:not([hidden])", timeout=30_000)
    assert page.get_attribute("#detect-error", "data-code") == "not_an_image"
    text = page.inner_text("#detect-error")
    assert "That file is not an image." in text
    assert "JPEG" in text
    assert page.is_hidden("#detect-progress")
    snap(session, "detect-error")


def test_keyboard_only_upload(open_page: Callable[..., Session]) -> None:
    session = open_page(1440)
    page = session.page
    photo = dev_photo_paths(1)[0]

    def tab_to(element_id: str, limit: int = 40) -> None:
        for _ in range(limit):
            page.keyboard.press("Tab")
            if page.evaluate("document.activeElement && document.activeElement.id") == element_id:
                return
        raise AssertionError(f"#{element_id} is not reachable with Tab")

    # Listening before the key press: expect_file_chooser arms its interception too late for a chooser
    # that opens on keydown, and the chooser is then missed now and then.
    choosers: list[FileChooser] = []
    page.on("filechooser", lambda chooser: choosers.append(chooser))
    tab_to("file-input")
    # The visually hidden input shows its focus on the drop zone around it.
    outline = page.evaluate("getComputedStyle(document.querySelector('#dropzone')).outlineStyle")
    assert outline != "none"
    page.keyboard.press("Enter")
    deadline = time.monotonic() + 10
    while not choosers and time.monotonic() < deadline:
        page.wait_for_timeout(50)
    assert len(choosers) == 1, "Enter on the focused file input did not open exactly one file chooser"
    choosers[0].set_files(str(photo))
    page.wait_for_selector("#detect-stage[data-state=done]", timeout=DETECT_S * 1000)
    result = finished_job(session)
    assert_same_boxes(overlay_boxes(page), result["boxes"])

    tab_to("frame-toggle")
    page.keyboard.press("Space")
    assert page.get_attribute("#detect-overlay", "data-space") == "frame"

    # The views are reachable from the keyboard too.
    page.evaluate("window.scrollTo(0, 0)")
    page.focus("a.brand")
    for _ in range(6):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.dataset.view") == "devices":
            break
    page.keyboard.press("Enter")
    page.wait_for_selector("#view-devices:not([hidden])", timeout=5_000)
    assert page.evaluate("document.activeElement.id") == "devices-title"


def test_benchmark_run_charts_and_tabulates(open_page: Callable[..., Session]) -> None:
    n = 3
    session = open_page(1440, "/#benchmark")
    page = session.page
    page.fill("#bench-n", str(n))
    page.fill("#bench-warmup", "0")
    page.click("#bench-start")
    page.wait_for_selector("#bench-results[data-state=done]", timeout=BENCH_S * 1000)

    assert page.locator("#bench-chart svg .bar").count() == 2 * n
    assert page.locator("#bench-chart svg .bar[data-kind=end_to_end]").count() == n
    assert page.locator("#bench-chart svg .bar[data-kind=device_compute]").count() == n
    counts = page.evaluate(
        "Array.from(document.querySelectorAll('#bench-summary td[data-count]')).map((td) => Number(td.dataset.count))"
    )
    assert counts and all(c == n for c in counts), counts
    assert page.locator("#bench-samples tbody tr").count() == n

    with page.expect_download(timeout=15_000) as download:
        page.click("#bench-download")
    path = download.value.path()
    assert path is not None
    report = json.loads(Path(path).read_text())
    assert report["n"] == n and len(report["samples"]) == n
    heights = page.evaluate(
        "Array.from(document.querySelectorAll('#bench-chart .bar[data-kind=end_to_end]'))"
        ".map((r) => Number(r.dataset.seconds))"
    )
    assert heights == pytest.approx([s["end_to_end_s"] for s in report["samples"]])
    snap(session, "benchmark")


def test_camera_mode_processes_frames_one_at_a_time(open_page: Callable[..., Session]) -> None:
    session = open_page(1440, "/#camera", camera=True)
    page = session.page
    detect_calls: list[float] = []
    overlapping: list[int] = []
    in_flight = [0]

    def on_request(request: Any) -> None:
        if "/v1/detect" in request.url:
            in_flight[0] += 1
            overlapping.append(in_flight[0])
            detect_calls.append(time.monotonic())

    def on_done(request: Any) -> None:
        if "/v1/detect" in request.url:
            in_flight[0] -= 1

    page.on("request", on_request)
    page.on("requestfinished", on_done)
    page.on("requestfailed", on_done)
    page.click("#camera-start")
    wait_until(page, "Number(document.querySelector('#camera-stats').dataset.frames) >= 3", CAMERA_S, "3 camera frames")
    assert page.inner_text("#cam-fps") != "–"
    assert page.inner_text("#cam-device") != "–"
    assert page.get_attribute("#camera-overlay", "data-space") == "camera"
    # Never more than one frame on its way to the device.
    assert max(overlapping) == 1, overlapping
    snap(session, "camera")
    page.click("#camera-stop")
    assert page.inner_text("#cam-state") == "Stopped"


def test_devices_view_lists_the_pool(open_page: Callable[..., Session], gateway: str) -> None:
    session = open_page(1440, "/#devices")
    page = session.page
    page.wait_for_selector(".device-card", timeout=10_000)
    status, body = _get_json(f"{gateway}/v1/devices")
    assert status == 200
    urls = page.evaluate("Array.from(document.querySelectorAll('.device-card')).map((c) => c.dataset.url)")
    assert urls == [d["url"] for d in body["devices"]]
    card = page.locator(".device-card").first
    assert card.get_attribute("data-state") in ("ready", "busy")
    for key in ("crc_errors", "retransmits", "naks", "timeouts"):
        assert card.locator(f"dd[data-key={key}]").count() == 1
    assert body["devices"][0]["firmware_version"] in card.inner_text()
    # Refreshed while open: the "updated" stamp changes within a few seconds.
    first = page.inner_text("#devices-updated")
    wait_until(page, f"document.querySelector('#devices-updated').textContent !== {json.dumps(first)}", 10, "refresh")
    snap(session, "devices")


def test_token_and_no_device_are_explained(open_page: Callable[..., Session], deviceless_gateway: str) -> None:
    session = open_page(1440, base=deviceless_gateway)
    page = session.page
    page.wait_for_selector("#ready-pill[data-state=down]", timeout=10_000)
    assert "No device ready" in page.inner_text("#ready-pill")
    photo = str(dev_photo_paths(1)[0])

    # Without the token: told to enter it, where.
    page.set_input_files("#file-input", photo)
    page.wait_for_selector("#detect-error[data-code=unauthorized]", timeout=30_000)
    assert "needs an access token" in page.inner_text("#detect-error")

    # With it: the request goes through and meets the empty pool, which is explained too.
    page.click(".token summary")
    page.fill("#token-input", DEVICELESS_TOKEN)
    page.press("#token-input", "Enter")
    assert page.inner_text("#token-status") == "Saved for this tab."
    page.set_input_files("#file-input", photo)
    page.wait_for_selector("#detect-error[data-code=no_device_ready]", timeout=30_000)
    text = page.inner_text("#detect-error")
    assert "No device is ready." in text and "Devices view" in text
    assert "Try again in" in text  # from the Retry-After header
    assert page.is_hidden("#detect-progress")
    snap(session, "detect-no-device")

    # A busy or missing device is worth retrying as is; the button does that, and is answered again.
    page.set_viewport_size({"width": 1440, "height": 900})
    with page.expect_response(lambda r: "/v1/jobs" in r.url and r.request.method == "POST", timeout=30_000):
        page.click("#detect-error button:has-text('Try again')")
    page.wait_for_selector("#detect-error[data-code=no_device_ready]", timeout=30_000)

    page.click("a[data-view=devices]")
    page.wait_for_selector("#devices-list .card", timeout=10_000)
    assert "No devices are configured" in page.inner_text("#devices-list")


def test_drop_and_paste_start_a_detection(open_page: Callable[..., Session]) -> None:
    session = open_page(1440)
    page = session.page
    photo = dev_photo_paths(1)[0]
    payload = base64.b64encode(photo.read_bytes()).decode("ascii")
    make_transfer = """(b64) => {
        const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
        const dt = new DataTransfer();
        dt.items.add(new File([bytes], "photo.jpg", { type: "image/jpeg" }));
        return dt;
    }"""
    transfer = page.evaluate_handle(make_transfer, payload)
    page.dispatch_event("#dropzone", "drop", {"dataTransfer": transfer})
    page.wait_for_selector("#detect-stage[data-state=done]", timeout=DETECT_S * 1000)
    first = page.get_attribute("#detect-stage", "data-job-id")
    assert_same_boxes(overlay_boxes(page), finished_job(session)["boxes"])

    page.evaluate(
        f"""(b64) => {{
            const dt = ({make_transfer})(b64);
            document.body.dispatchEvent(new ClipboardEvent("paste", {{ clipboardData: dt, bubbles: true }}));
        }}""",
        payload,
    )
    page.wait_for_selector(f"#detect-stage[data-state=done]:not([data-job-id='{first}'])", timeout=DETECT_S * 1000)
    assert_same_boxes(overlay_boxes(page), finished_job(session)["boxes"])
