"""docker-compose.yml and Dockerfile, checked for structure (no Docker engine needed)."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from gateway.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
COMPOSE_TEXT = (ROOT / "docker-compose.yml").read_text()
COMPOSE = yaml.safe_load(COMPOSE_TEXT)
DOCKERFILE = (ROOT / "Dockerfile").read_text()
STAGES = set(re.findall(r"^FROM\s+\S+\s+AS\s+(\S+)", DOCKERFILE, flags=re.MULTILINE | re.IGNORECASE))


def test_two_services_built_from_this_dockerfile() -> None:
    services = COMPOSE["services"]
    assert set(services) == {"gateway", "board"}
    for service in services.values():
        assert service["build"]["context"] == "."
        assert service["build"]["target"] in STAGES


def test_gateway_talks_to_the_board_over_its_uart_port() -> None:
    gateway, board = COMPOSE["services"]["gateway"], COMPOSE["services"]["board"]
    url = gateway["environment"]["RNNPOOL_DEVICES"]
    match = re.fullmatch(r"socket://board:(\d+)", url)
    assert match, url
    port = match.group(1)
    assert port in [str(p) for p in board["expose"]]
    # The board's QEMU listens on that port (the Dockerfile's CMD for its stage).
    assert f"tcp:0.0.0.0:{port},server=on" in DOCKERFILE
    assert "board" in gateway["depends_on"]


def test_gateway_environment_names_real_settings() -> None:
    fields = {name.upper() for name in Settings.model_fields}
    env = COMPOSE["services"]["gateway"]["environment"]
    for key in env:
        assert key.startswith("RNNPOOL_") and key.removeprefix("RNNPOOL_") in fields, key
    Settings.model_validate({k.removeprefix("RNNPOOL_").lower(): v for k, v in env.items()})
    for key in re.findall(r"^\s*(?:ENV\s+|)(RNNPOOL_[A-Z_]+)=", DOCKERFILE, flags=re.MULTILINE):
        assert key.removeprefix("RNNPOOL_") in fields, key


def test_ports_healthcheck_and_entrypoint() -> None:
    gateway = COMPOSE["services"]["gateway"]
    assert "8000:8000" in gateway["ports"][0]
    assert gateway["ports"][0].startswith("127.0.0.1:"), "publish on loopback only by default"
    assert any("/readyz" in part or "/healthz" in part for part in gateway["healthcheck"]["test"])
    assert 'CMD ["rnnpool", "serve"]' in DOCKERFILE
    assert "EXPOSE 8000" in DOCKERFILE
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert 'rnnpool = "gateway.cli:main"' in pyproject


def test_board_stage_runs_the_qemu_firmware() -> None:
    assert {"firmware", "board-qemu", "gateway"} <= STAGES
    assert "make -C firmware BOARD=qemu" in DOCKERFILE
    assert "-icount" in DOCKERFILE and "netduinoplus2" in DOCKERFILE


def test_real_board_example_is_present_but_commented() -> None:
    commented = [line for line in COMPOSE_TEXT.splitlines() if "/dev/ttyACM0" in line]
    assert commented and all(line.lstrip().startswith("#") for line in commented)
    example = "\n".join(line.split("#", 1)[1] if "#" in line else line for line in COMPOSE_TEXT.splitlines()
                        if line.lstrip().startswith("#   ") or line.lstrip().startswith("#     "))  # fmt: skip
    assert "devices:" in example and "RNNPOOL_DEVICES: /dev/ttyACM0" in example
