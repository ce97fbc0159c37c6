/* QEMU target test and benchmark of the engine (make -C firmware BOARD=qemu test; the bench
 * script bench/engine_bench.py runs the same ELF and parses its report).
 *
 * One golden vector's frame is linked into flash (.incbin, so no generated source), streamed
 * through the engine row by row as the UART would, and the boxes are compared with the vector's
 * boxes.txt (also linked in). Under -icount shift=0 board_ticks() counts guest instructions, so
 * the per-stage figures are exact instruction counts. The report lines are "key value ..." so the
 * bench script can parse them; the exit status (semihosting) is the verdict. */
#include "board.h"
#include "engine/engine.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef ENGINE_QEMU_VECTOR
#define ENGINE_QEMU_VECTOR "scene"
#endif

#define INCBIN(sym, file) \
    __asm__(".section .rodata." #sym ",\"a\"\n.balign 4\n.global " #sym "\n" #sym ":\n.incbin \"" file \
            "\"\n.global " #sym "_end\n" #sym "_end:\n.byte 0\n.previous\n")

INCBIN(vec_input, "tests/vectors/" ENGINE_QEMU_VECTOR "/input.u8");
INCBIN(vec_boxes, "tests/vectors/" ENGINE_QEMU_VECTOR "/boxes.txt");
extern const uint8_t vec_input[], vec_input_end[];
extern const char vec_boxes[], vec_boxes_end[];

static void say(const char *s)
{
    board_uart_write((const uint8_t *)s, strlen(s));
}

static engine_result_t s_res;

int main(void)
{
    board_init();
    char line[160];
    int failures = 0;
    if (vec_input_end - vec_input != (long)(ENGINE_INPUT_W * ENGINE_INPUT_H)) {
        say("FAIL input vector has the wrong size\r\n");
        board_exit(1);
    }
    snprintf(line, sizeof line, "vector %s\r\n", ENGINE_QEMU_VECTOR);
    say(line);

    /* Twice: the second image shows that reset really restarts (and its counts are reported). */
    for (int run = 0; run < 2; run++) {
        board_stack_paint();
        uint64_t t0 = board_ticks64();
        engine_reset();
        for (uint32_t y = 0; y < ENGINE_INPUT_H; y++) {
            if (engine_push_row(vec_input + y * ENGINE_INPUT_W) != 0) {
                failures++;
            }
        }
        if (engine_finish(&s_res) != 0) {
            failures++;
        }
        uint64_t t1 = board_ticks64();
        snprintf(line, sizeof line, "run %d instructions %lu\r\n", run, (unsigned long)(t1 - t0));
        say(line);
    }

    const engine_stage_stats_t *st = engine_stage_stats();
    for (int s = 0; s < ENGINE_ST_COUNT; s++) {
        snprintf(line, sizeof line, "stage %s ticks %lu macs %lu\r\n", engine_stage_name((engine_stage_t)s),
                 (unsigned long)st->ticks[s], (unsigned long)st->macs[s]);
        say(line);
    }
    snprintf(line, sizeof line, "engine_ticks %lu total_ticks %lu\r\n", (unsigned long)st->engine_ticks,
             (unsigned long)st->total_ticks);
    say(line);
    snprintf(line, sizeof line, "memory engine_ram %lu static_ram %lu stack_high_water %lu ram %lu\r\n",
             (unsigned long)engine_ram_bytes(), (unsigned long)board_static_ram_bytes(),
             (unsigned long)board_stack_high_water(), (unsigned long)board_ram_bytes());
    say(line);
    snprintf(line, sizeof line, "optimised_layers %lu candidates %lu boxes %lu\r\n",
             (unsigned long)engine_optimised_layers(), (unsigned long)s_res.candidates,
             (unsigned long)s_res.count);
    say(line);

    /* boxes.txt: "x y w h score anchor" lines */
    const char *p = vec_boxes;
    uint32_t n = 0;
    for (;;) {
        char *end;
        long v[6];
        int k;
        for (k = 0; k < 6; k++) {
            v[k] = strtol(p, &end, 10);
            if (end == p) {
                break;
            }
            p = end;
        }
        if (k < 6) {
            break;
        }
        if (n < s_res.count) {
            const engine_box_t *b = &s_res.boxes[n];
            long got[6] = {b->x, b->y, b->w, b->h, b->score_q15, b->anchor};
            if (memcmp(got, v, sizeof got) != 0) {
                failures++;
            }
        }
        n++;
    }
    for (uint32_t i = 0; i < s_res.count; i++) {
        const engine_box_t *b = &s_res.boxes[i];
        snprintf(line, sizeof line, "box %d %d %d %d %u %u\r\n", b->x, b->y, b->w, b->h, b->score_q15, b->anchor);
        say(line);
    }
    if (n != s_res.count) {
        failures++;
    }
    snprintf(line, sizeof line, "%s: %lu boxes, %lu expected, %d failure(s)\r\n", failures ? "FAIL" : "ok",
             (unsigned long)s_res.count, (unsigned long)n, failures);
    say(line);
    return failures;
}
