"""QEMU benchmark of the streaming integer engine (firmware/src/engine).

Builds the engine's QEMU test image (``make -C firmware bench-image``: the real ARM build, DSP
kernels, with the golden vectors linked into flash), runs it under
``qemu-system-arm -M netduinoplus2 -icount shift=0`` (one guest instruction = 1 ns of virtual time,
so the counts are exact and repeatable), and reports per stage: instructions, MACs, instructions per
MAC; the total; static RAM, stack high water and peak RAM; flash. Writes the same as JSON to
bench/results/engine.json.

Instruction counts are measured; cycles on a real Cortex-M4 are higher (roughly 1.2-1.5 cycles per
instruction in these loops) and are not measured here.

    python bench/engine_bench.py [--vector scene] [--no-build] [--json PATH]

stdlib only; needs qemu-system-arm and arm-none-eabi-gcc (binutils).
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FIRMWARE = ROOT / "firmware"
ELF = FIRMWARE / "build/qemu/test/tests/engine/qemu_test_engine.elf"
ENGINE_OBJ = FIRMWARE / "build/qemu/obj/src/engine"
MODEL_OBJ = FIRMWARE / "build/qemu/obj/model/rnnpool_model.o"
DEFAULT_JSON = ROOT / "bench/results/engine.json"
CORE_HZ = 168_000_000

TARGETS = {
    "instructions": 150_000_000,
    "instructions_goal": 100_000_000,
    "peak_ram_bytes": 64 * 1024 - 4 * 1024,  # 64 KB minus room for the app's UART buffers
    "flash_bytes": 128 * 1024,
}

LINE_STAGE = re.compile(r"^(\w+) stage (\w+) ticks (\d+) macs (\d+)")
LINE_INSTR = re.compile(r"^(\w+) instructions (\d+) stack_high_water (\d+)")
LINE_REPEAT = re.compile(r"^(\w+) repeat_instructions (\d+)")
LINE_TOTALS = re.compile(r"^(\w+) engine_ticks (\d+) candidates (\d+) boxes (\d+)(?: max_row (\d+))?")
LINE_BOX = re.compile(r"^(\w+) box (-?\d+) (-?\d+) (-?\d+) (-?\d+) (\d+) (\d+)")
LINE_VERDICT = re.compile(r"^(\w+): (ok|FAIL.*) \(")
LINE_MEMORY = re.compile(r"^memory engine_ram (\d+) static_ram (\d+) ram (\d+) optimised_layers (\d+)")


def tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise SystemExit(f"{name} not found on PATH")
    return path


def build() -> None:
    proc = subprocess.run(["make", "-C", str(FIRMWARE), "bench-image", "-j2"], capture_output=True, text=True)
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout[-4000:] + proc.stderr[-4000:])
        raise SystemExit("build failed")


def run_qemu(timeout: float) -> tuple[int, str]:
    cmd = ["sh", str(FIRMWARE / "tools/run-qemu.sh"), str(ELF)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    return proc.returncode, proc.stdout.replace("\r", "")


def parse(text: str) -> dict:
    vectors: dict[str, dict] = {}
    memory: dict[str, int] = {}

    def vec(name: str) -> dict:
        return vectors.setdefault(name, {"stages": {}, "boxes": []})

    for line in text.splitlines():
        if m := LINE_STAGE.match(line):
            vec(m[1])["stages"][m[2]] = {"instructions": int(m[3]), "macs": int(m[4])}
        elif m := LINE_INSTR.match(line):
            v = vec(m[1])
            v["instructions"] = int(m[2])
            v["stack_high_water_bytes"] = int(m[3])
        elif m := LINE_REPEAT.match(line):
            vec(m[1])["repeat_instructions"] = int(m[2])
        elif m := LINE_TOTALS.match(line):
            v = vec(m[1])
            v["engine_instructions"] = int(m[2])
            v["candidates"] = int(m[3])
            v["box_count"] = int(m[4])
            if m[5] is not None:
                v["max_row_instructions"] = int(m[5])
        elif m := LINE_BOX.match(line):
            vec(m[1])["boxes"].append([int(g) for g in m.groups()[1:]])
        elif m := LINE_VERDICT.match(line):
            vec(m[1])["boxes_match_golden"] = m[2] == "ok"
        elif m := LINE_MEMORY.match(line):
            memory = {
                "engine_ram_bytes": int(m[1]),
                "static_ram_bytes": int(m[2]),
                "ram_bytes": int(m[3]),
                "optimised_layers": int(m[4]),
            }
    return {"vectors": vectors, "memory": memory}


def section_sizes(path: Path) -> dict[str, int]:
    out = subprocess.run([tool("arm-none-eabi-size"), "-A", str(path)], capture_output=True, text=True, check=True)
    sizes = {}
    for line in out.stdout.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0].startswith(".") and parts[1].isdigit():
            sizes[parts[0]] = int(parts[1])
    return sizes


def symbol_sizes(path: Path, pattern: str) -> int:
    """Total size of the symbols whose name matches `pattern` (the linked-in golden vectors)."""
    out = subprocess.run([tool("arm-none-eabi-nm"), "-S", str(path)], capture_output=True, text=True, check=True)
    total = 0
    rx = re.compile(pattern)
    addrs = {}
    for line in out.stdout.splitlines():
        parts = line.split()
        if len(parts) == 3 and rx.fullmatch(parts[2]):  # no size: the .incbin labels
            addrs[parts[2]] = int(parts[0], 16)
        elif len(parts) == 4 and rx.fullmatch(parts[3]):
            total += int(parts[1], 16)
    for name, addr in addrs.items():
        if not name.endswith("_end") and f"{name}_end" in addrs:
            total += addrs[f"{name}_end"] - addr + 1
    return total


def object_flash(paths: list[Path]) -> int:
    """text + rodata + data of object files (before --gc-sections: an upper bound)."""
    total = 0
    for p in paths:
        for name, size in section_sizes(p).items():
            if name.startswith((".text", ".rodata", ".data")):
                total += size
    return total


def flash_report() -> dict:
    s = section_sizes(ELF)
    image = sum(v for k, v in s.items() if k in (".isr_vector", ".text", ".ARM.exidx", ".ARM.extab", ".data"))
    image += sum(v for k, v in s.items() if k.startswith((".preinit_array", ".init_array")))
    vectors = symbol_sizes(ELF, r"(in|bx)_\w+")
    engine = object_flash(sorted(ENGINE_OBJ.glob("*.o")))
    model = object_flash([MODEL_OBJ])
    report = {
        "bench_image_bytes": image,
        "golden_vectors_bytes": vectors,
        "bench_image_without_vectors_bytes": image - vectors,
        "engine_code_bytes": engine,
        "model_weights_bytes": model,
    }
    firmware = FIRMWARE / "build/qemu/rnnpool.elf"
    if firmware.exists():  # the real firmware, if it has been built (make -C firmware BOARD=qemu)
        fs = section_sizes(firmware)
        report["firmware_image_bytes"] = sum(
            v for k, v in fs.items() if k in (".isr_vector", ".text", ".ARM.exidx", ".ARM.extab", ".data")
        )
    return report


def static_ram() -> int:
    s = section_sizes(ELF)
    return s.get(".data", 0) + s.get(".bss", 0) + s.get(".noinit", 0)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--vector", default="scene", help="golden vector whose figures lead the table (default scene)")
    ap.add_argument("--no-build", action="store_true", help="use the ELF as it is")
    ap.add_argument("--json", type=Path, default=DEFAULT_JSON)
    ap.add_argument("--timeout", type=float, default=600.0)
    args = ap.parse_args()

    tool("qemu-system-arm")
    if not args.no_build:
        build()
    t0 = time.monotonic()
    rc, text = run_qemu(args.timeout)
    wall = time.monotonic() - t0
    parsed = parse(text)
    vectors, memory = parsed["vectors"], parsed["memory"]
    if rc != 0 or args.vector not in vectors or not memory:
        sys.stderr.write(text[-3000:])
        print(f"QEMU run failed (exit status {rc})", file=sys.stderr)
        return 1

    v = vectors[args.vector]
    stages = v["stages"]
    total_instr = v["instructions"]
    total_macs = sum(s["macs"] for s in stages.values())
    ram_static = static_ram()
    stack = max(x["stack_high_water_bytes"] for x in vectors.values())
    peak = ram_static + stack
    flash = flash_report()

    print(f"engine on QEMU netduinoplus2 (Cortex-M4, -icount shift=0), vector '{args.vector}'")
    print(f"{'stage':<14}{'instructions':>14}{'MACs':>14}{'instr/MAC':>11}{'share':>8}")
    for name, s in stages.items():
        ipm = s["instructions"] / s["macs"] if s["macs"] else float("nan")
        share = 100.0 * s["instructions"] / total_instr
        ipm_txt = f"{ipm:.2f}" if s["macs"] else "-"
        print(f"{name:<14}{s['instructions']:>14,}{s['macs']:>14,}{ipm_txt:>11}{share:>7.1f}%")
    print(f"{'total':<14}{total_instr:>14,}{total_macs:>14,}{total_instr / total_macs:>11.2f}{100:>7.1f}%")
    print(f"  (stage sum {v['engine_instructions']:,}; the rest is the caller's loop and the clock reads)")
    print(f"  {total_instr / CORE_HZ:.3f} s at 168 MHz if 1 instruction per cycle (a lower bound on silicon)")
    if "max_row_instructions" in v:
        print(f"  longest engine_push_row: {v['max_row_instructions']:,} instructions (a patch row and all it feeds)")
    for name, x in vectors.items():
        ok = "ok" if x.get("boxes_match_golden") else "MISMATCH"
        print(
            f"  vector {name:<12} {x['instructions']:>12,} instructions, {x['box_count']} boxes, "
            f"{x['candidates']} candidates, boxes vs golden: {ok}"
        )
    print("memory")
    print(f"  engine static RAM     {memory['engine_ram_bytes']:>8,} B  (engine_ram_bytes())")
    print(f"  image static RAM      {ram_static:>8,} B  (.data + .bss of the bench image, board included)")
    print(f"  stack high water      {stack:>8,} B")
    print(f"  peak RAM              {peak:>8,} B  (static + stack; target <= {TARGETS['peak_ram_bytes']:,} B)")
    print("flash")
    for k, val in flash.items():
        print(f"  {k:<34}{val:>9,} B")
    checks = {
        "instructions <= 150M": total_instr <= TARGETS["instructions"],
        "instructions <= 100M (goal)": total_instr <= TARGETS["instructions_goal"],
        "peak RAM <= 60 KB": peak <= TARGETS["peak_ram_bytes"],
        "flash (image without vectors) <= 128 KB": flash["bench_image_without_vectors_bytes"] <= TARGETS["flash_bytes"],
        "boxes match golden on every vector": all(x.get("boxes_match_golden") for x in vectors.values()),
        # The 100 Hz SysTick handler (~30 instructions every 10^7) lands in a run or not: a repeat
        # may differ by a few handler calls, nothing else.
        "repeat run identical (up to SysTick)": abs(v.get("repeat_instructions", -(10**9)) - total_instr) <= 200,
    }
    print("targets")
    for k, ok in checks.items():
        print(f"  {'PASS' if ok else 'MISS'}  {k}")

    result = {
        "what": "streaming integer engine, RNNPool-Face-M4 320x320, QEMU netduinoplus2 -icount shift=0",
        "unit": "guest instructions (measured, exact); cycles on silicon are higher and not measured",
        "vector": args.vector,
        "instructions_total": total_instr,
        "macs_total": total_macs,
        "instructions_per_mac": total_instr / total_macs,
        "seconds_at_168mhz_1ipc": total_instr / CORE_HZ,
        "max_row_instructions": v.get("max_row_instructions"),
        "stages": {
            name: {**s, "instructions_per_mac": (s["instructions"] / s["macs"]) if s["macs"] else None}
            for name, s in stages.items()
        },
        "memory": {
            **memory,
            "image_static_ram_bytes": ram_static,
            "stack_high_water_bytes": stack,
            "peak_ram_bytes": peak,
        },
        "flash": flash,
        "vectors": {
            name: {k: x[k] for k in ("instructions", "candidates", "box_count", "boxes_match_golden") if k in x}
            for name, x in vectors.items()
        },
        "targets": {k: bool(ok) for k, ok in checks.items()},
        "qemu_wall_seconds": round(wall, 2),
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {args.json.relative_to(ROOT) if args.json.is_relative_to(ROOT) else args.json}")
    return 0 if checks["boxes match golden on every vector"] else 1


if __name__ == "__main__":
    sys.exit(main())
