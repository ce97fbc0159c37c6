"""`rnnpool` command line: serve, sim, bench (and detect, from gateway/detect_cli.py when present)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import json
import logging
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from gateway.settings import Settings, gateway_version
from gateway.views import DEFAULT_VIEWS, MAX_VIEWS


def _add_serve(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "serve",
        help="run the HTTP gateway",
        description="Run the HTTP gateway. Every option also reads RNNPOOL_<NAME> from the environment "
        "(e.g. RNNPOOL_DEVICES=sim,/dev/ttyACM0, RNNPOOL_TOKEN); flags win.",
    )
    p.add_argument(
        "--device",
        action="append",
        dest="devices",
        metavar="URL",
        help="device URL (/dev/ttyACM0, socket://host:port, rfc2217://...) or sim / qemu; repeatable",
    )
    p.add_argument("--host", default=None, help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=None, help="port (default 8000)")
    p.add_argument("--token", default=None, help="require `Authorization: Bearer TOKEN` on /v1/*")
    p.add_argument("--baudrate", type=int, default=None, help="UART rate the devices boot at")
    p.add_argument("--target-baud", type=int, default=None, help="negotiate this UART rate after the handshake")
    p.add_argument("--queue-size", type=int, default=None, help="requests that may wait for a device before 429")
    p.add_argument("--timeout", type=float, default=None, dest="request_timeout_s", help="default deadline, s")
    p.add_argument(
        "--views",
        type=int,
        choices=range(1, MAX_VIEWS + 1),
        default=None,
        help=f"device passes fused per image by default ({DEFAULT_VIEWS})",
    )
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])  # fmt: skip


def _settings_from(args: argparse.Namespace, names: Sequence[str]) -> Settings:
    overrides = {name: getattr(args, name) for name in names if getattr(args, name, None) is not None}
    return Settings(**overrides)


def _run_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from gateway.api import create_app

    settings = _settings_from(
        args,
        ("devices", "host", "port", "token", "baudrate", "target_baud", "queue_size", "request_timeout_s", "views"),
    )
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not settings.devices:
        print("warning: no devices configured (--device URL|sim|qemu); /readyz will say 503", file=sys.stderr)
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_level=args.log_level)
    return 0


def _add_sim(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("sim", help="run a simulated board and print its URL",
                       description="Start the firmware on the host (pty) or under QEMU behind a TCP relay on "
                       "127.0.0.1, print its URL, and run until Ctrl-C.")  # fmt: skip
    p.add_argument("--board", choices=["host", "qemu"], default="host")
    p.add_argument("--drop-rate", type=float, default=0.0, help="fault injection: drop each byte with this probability")
    p.add_argument("--corrupt-rate", type=float, default=0.0, help="fault injection: flip a bit of each byte")
    p.add_argument("--delay", type=float, default=0.0, help="fault injection: seconds added to every chunk")
    p.add_argument("--seed", type=int, default=0, help="seed of the fault injection RNG")


def _run_sim(args: argparse.Namespace) -> int:
    from gateway.sim import FaultSpec, SimUnavailableError, start_sim

    fault = None
    if args.drop_rate or args.corrupt_rate or args.delay:
        fault = FaultSpec(drop_rate=args.drop_rate, corrupt_rate=args.corrupt_rate, delay_s=args.delay, seed=args.seed)
    try:
        sim = start_sim(args.board, fault=fault)
    except SimUnavailableError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    # Ctrl-C may land anywhere from here on; the board is stopped whatever it interrupts.
    with sim, contextlib.suppress(KeyboardInterrupt):
        print(f"{args.board} board running (pid {sim.pid}, log {sim.log_path}); Ctrl-C stops it", file=sys.stderr)
        print(sim.url, flush=True)
        stop = threading.Event()
        while not stop.wait(0.5):
            if not sim.alive():
                print(f"the simulated board exited:\n{sim.log_tail()}", file=sys.stderr)
                return 1
    return 0


def _add_bench(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "bench",
        help="time N detections on a device; writes a JSON report",
        description="Time detections on one device, directly (--device, default: a simulated board) or through "
        "a running gateway (--server). Without --images, a deterministic synthetic set is generated.",
    )
    where = p.add_mutually_exclusive_group()
    where.add_argument("--device", default=None, help="device URL, or sim / qemu (default: sim)")
    where.add_argument("--server", default=None, help="gateway base URL, e.g. http://127.0.0.1:8000")
    p.add_argument("-n", type=int, default=5, help="measured runs (default 5)")
    p.add_argument("--warmup", type=int, default=1, help="unrecorded runs first (default 1)")
    p.add_argument("--images", nargs="+", type=Path, default=None, help="image files to use instead of synthetic ones")
    p.add_argument("--count", type=int, default=8, help="synthetic images to generate (default 8)")
    p.add_argument("--seed", type=int, default=0, help="seed of the synthetic images (default 0)")
    p.add_argument("--timeout", type=float, default=None, help="deadline per detection, seconds")
    p.add_argument("--target-baud", type=int, default=None, help="negotiate this UART rate (direct mode)")
    p.add_argument(
        "--views",
        type=int,
        choices=range(1, MAX_VIEWS + 1),
        default=None,
        help=f"device passes fused per detection, as /v1/detect?views= (default: the gateway's, {DEFAULT_VIEWS})",
    )
    p.add_argument("--token", default=None, help="bearer token for --server")
    p.add_argument("--out", type=Path, default=None, help="write the JSON report here (default: stdout)")


def _bench_local(args: argparse.Namespace) -> dict[str, Any]:
    from gateway import bench
    from gateway.errors import GatewayError
    from gateway.pool import DevicePool
    from gateway.validation import UploadLimits

    overrides: dict[str, Any] = {"devices": [args.device or "sim"]}
    if args.target_baud:
        overrides["target_baud"] = args.target_baud
    settings = Settings(**overrides)
    limits = UploadLimits(settings.max_upload_bytes, settings.max_pixels, settings.max_aspect_ratio)
    with DevicePool(settings.devices, settings) as pool:
        if not pool.wait_ready(60.0):
            reasons = "; ".join(pool.start_errors + [f"{s.url}: {s.last_error}" for s in pool.snapshots()])
            raise SystemExit(f"error: device not ready after 60 s ({reasons})")
        if args.images:
            named = [(path.name, path.read_bytes()) for path in args.images]
            source, seed = "uploaded", None
        else:
            named = bench.synthetic_images(args.count, args.seed)
            source, seed = "synthetic", args.seed
        try:
            images = bench.prepare_images(named, limits, pool.frame_size())
            report = asyncio.run(
                bench.run_benchmark(
                    pool,
                    images,
                    n=args.n,
                    warmup=args.warmup,
                    image_source=source,
                    seed=seed,
                    timeout_s=args.timeout,
                    views=args.views or settings.views,
                )
            )
        except GatewayError as exc:
            raise SystemExit(f"error: {exc.code}: {exc.message}") from exc
    return report.model_dump(mode="json")


def _multipart(field: str, files: Sequence[Path]) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    body = bytearray()
    for path in files:
        body += f"--{boundary}\r\n".encode()
        body += f'Content-Disposition: form-data; name="{field}"; filename="{path.name}"\r\n'.encode()
        body += b"Content-Type: application/octet-stream\r\n\r\n" + path.read_bytes() + b"\r\n"
    body += f"--{boundary}--\r\n".encode()
    return bytes(body), f"multipart/form-data; boundary={boundary}"


def _bench_server(args: argparse.Namespace) -> dict[str, Any]:
    query: dict[str, Any] = {"n": args.n, "warmup": args.warmup, "seed": args.seed, "count": args.count}
    if args.timeout:
        query["timeout_s"] = args.timeout
    if args.views:
        query["views"] = args.views
    url = args.server.rstrip("/") + "/v1/benchmark?" + urllib.parse.urlencode(query)
    headers = {"Accept": "application/json"}
    data = None
    if args.images:
        data, headers["Content-Type"] = _multipart("images", args.images)
    if args.token:
        headers["Authorization"] = f"Bearer {args.token}"
    request = urllib.request.Request(url, data=data, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=3600) as response:
            result: dict[str, Any] = json.load(response)
            return result
    except urllib.error.HTTPError as exc:
        raise SystemExit(f"error: HTTP {exc.code}: {exc.read().decode(errors='replace')}") from exc
    except urllib.error.URLError as exc:
        raise SystemExit(f"error: cannot reach {args.server}: {exc.reason}") from exc


def _run_bench(args: argparse.Namespace) -> int:
    if args.n < 1 or args.warmup < 0:
        print("error: -n must be >= 1 and --warmup >= 0", file=sys.stderr)
        return 2
    started = time.perf_counter()
    report = _bench_server(args) if args.server else _bench_local(args)
    text = json.dumps(report, indent=2) + "\n"
    if args.out:
        args.out.write_text(text)
    else:
        sys.stdout.write(text)
    e2e = report["summary"]["end_to_end_s"]
    dev = report["device"]
    print(
        f"{report['n']} runs of {report.get('views', 1)} view(s) on {dev['board']} "
        f"(firmware {dev['firmware_version']}, model {dev['model_hash']}): "
        f"end to end median {e2e['median']:.3f} s, p95 {e2e['p95']:.3f} s; peak RAM {report['peak_ram_bytes']} B "
        f"[{time.perf_counter() - started:.1f} s]",
        file=sys.stderr,
    )
    return 0


def build_parser() -> tuple[argparse.ArgumentParser, dict[str, Any]]:
    parser = argparse.ArgumentParser(prog="rnnpool", description="RNNPool-Face-M4 gateway and tools")
    parser.add_argument("--version", action="version", version=f"rnnpool-gateway {gateway_version()}")
    sub = parser.add_subparsers(dest="command", required=True)
    runners: dict[str, Any] = {"serve": _run_serve, "sim": _run_sim, "bench": _run_bench}
    _add_serve(sub)
    _add_sim(sub)
    _add_bench(sub)
    # ---- `rnnpool detect` lives in gateway/detect_cli.py (another module's job): it provides
    # ---- add_parser(subparsers) and run(args). Imported lazily so the CLI works without it.
    try:
        detect_cli: Any = importlib.import_module("gateway.detect_cli")
    except ModuleNotFoundError as exc:
        if exc.name != "gateway.detect_cli":
            raise
    else:
        detect_cli.add_parser(sub)
        runners["detect"] = detect_cli.run
    return parser, runners


def main(argv: Sequence[str] | None = None) -> int:
    parser, runners = build_parser()
    args = parser.parse_args(argv)
    result = runners[args.command](args)
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
