# syntax=docker/dockerfile:1
# Three targets:
#   gateway     the HTTP service (rnnpool serve); devices from RNNPOOL_DEVICES
#   board-qemu  the firmware on QEMU's netduinoplus2, UART on tcp 4000 (a simulated board)
#   firmware    build stage for board-qemu (arm-none-eabi toolchain)
# docker-compose.yml runs gateway + board-qemu together.

FROM debian:bookworm-slim AS firmware
RUN apt-get update \
 && apt-get install -y --no-install-recommends make gcc-arm-none-eabi libnewlib-arm-none-eabi binutils-arm-none-eabi \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY firmware/ firmware/
RUN rm -rf firmware/build && make -C firmware BOARD=qemu

FROM debian:bookworm-slim AS board-qemu
RUN apt-get update \
 && apt-get install -y --no-install-recommends qemu-system-arm \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --no-create-home board
COPY --from=firmware /src/firmware/build/qemu/rnnpool.elf /opt/rnnpool/rnnpool.elf
USER board
EXPOSE 4000
# -icount shift=0: deterministic, 1 instruction = 1 ns of virtual time, so tick counts repeat exactly.
# wait=on: the guest boots when the gateway connects, so the gateway sees the boot HELLO.
CMD ["qemu-system-arm", "-M", "netduinoplus2", "-icount", "shift=0", "-nographic", "-monitor", "none", \
     "-semihosting-config", "enable=on,target=native", \
     "-serial", "tcp:0.0.0.0:4000,server=on,wait=on", \
     "-kernel", "/opt/rnnpool/rnnpool.elf"]

FROM python:3.11-slim AS gateway
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    RNNPOOL_HOST=0.0.0.0 \
    RNNPOOL_PORT=8000 \
    RNNPOOL_WEB_DIR=/app/web
WORKDIR /app
COPY pyproject.toml README.md ./
COPY gateway/ gateway/
RUN pip install . && useradd --system --no-create-home --groups dialout gateway
COPY web/ web/
USER gateway
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
  CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=2)"]
CMD ["rnnpool", "serve"]
