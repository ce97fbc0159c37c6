/* QEMU target test and benchmark of the engine (make -C firmware BOARD=qemu test, or
 * make -C firmware bench-image; bench/engine_bench.py and tests/test_engine_qemu.py run this ELF
 * and parse its report).
 *
 * The golden vectors' frames are linked into flash (.incbin, so no generated source), streamed
 * through the real ARM build of the engine row by row as the UART would deliver them, and the
 * boxes are compared with each vector's boxes.txt (also linked in). Under -icount shift=0 board_ticks() counts guest instructions, so
 * the per-stage figures are exact instruction counts. The report lines are "key value ..." so the
 * bench script can parse them; the exit status (semihosting) is the verdict. */
#include "board.h"
#include "engine/engine.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define INCBIN(sym, file) \
    __asm__(".section .rodata." #sym ",\"a\"\n.balign 4\n.global " #sym "\n" #sym ":\n.incbin \"" file \
            "\"\n.global " #sym "_end\n" #sym "_end:\n.byte 0\n.previous\n")

/* The golden vectors, linked in whole (QEMU's board has 1 MB of flash). */
#define VECTOR(name) \
    INCBIN(in_##name, "tests/vectors/" #name "/input.u8"); \
    INCBIN(bx_##name, "tests/vectors/" #name "/boxes.txt"); \
    extern const uint8_t in_##name[], in_##name##_end[]; \
    extern const char bx_##name[], bx_##name##_end[];
VECTOR(scene)
VECTOR(letterboxed)
VECTOR(black)
VECTOR(noise)

typedef struct {
    const char *name;
    const uint8_t *input, *input_end;
    const char *boxes;
} vector_t;

#define V(name) {#name, in_##name, in_##name##_end, bx_##name}
static const vector_t k_vectors[] = {V(scene), V(letterboxed), V(black), V(noise)};

static void say(const char *s)
{
    board_uart_write((const uint8_t *)s, strlen(s));
}

static engine_result_t s_res;

/* Compares s_res with a boxes.txt text; returns the number of differences. */
static int check_boxes(const char *p)
{
    int failures = 0;
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
            failures += memcmp(got, v, sizeof got) != 0;
        }
        n++;
    }
    return failures + (n != s_res.count);
}

/* One image, streamed as the UART would deliver it. Returns its instruction count. */
static uint32_t run_image(const uint8_t *frame, int *failures)
{
    uint64_t t0 = board_ticks64();
    engine_reset();
    for (uint32_t y = 0; y < ENGINE_INPUT_H; y++) {
        if (engine_push_row(frame + y * ENGINE_INPUT_W) != 0) {
            (*failures)++;
        }
    }
    if (engine_finish(&s_res) != 0) {
        (*failures)++;
    }
    return (uint32_t)(board_ticks64() - t0);
}

int main(void)
{
    board_init();
    char line[160];
    int failures = 0;
    for (size_t v = 0; v < sizeof k_vectors / sizeof k_vectors[0]; v++) {
        const vector_t *vec = &k_vectors[v];
        if (vec->input_end - vec->input != (long)(ENGINE_INPUT_W * ENGINE_INPUT_H)) {
            say("FAIL input vector has the wrong size\r\n");
            board_exit(1);
        }
        board_stack_paint();
        uint32_t instr = run_image(vec->input, &failures);
        uint32_t stack = board_stack_high_water(); /* before any printing */
        int f = check_boxes(vec->boxes);
        if (v == 0) { /* the same image again: reset must really restart, to the instruction */
            uint32_t again = run_image(vec->input, &failures);
            f += check_boxes(vec->boxes);
            snprintf(line, sizeof line, "%s repeat_instructions %lu\r\n", vec->name, (unsigned long)again);
            say(line);
        }
        failures += f;
        snprintf(line, sizeof line, "%s instructions %lu stack_high_water %lu\r\n", vec->name, (unsigned long)instr,
                 (unsigned long)stack);
        say(line);
        const engine_stage_stats_t *st = engine_stage_stats();
        for (int s = 0; s < ENGINE_ST_COUNT; s++) {
            snprintf(line, sizeof line, "%s stage %s ticks %lu macs %lu\r\n", vec->name,
                     engine_stage_name((engine_stage_t)s), (unsigned long)st->ticks[s], (unsigned long)st->macs[s]);
            say(line);
        }
        snprintf(line, sizeof line, "%s engine_ticks %lu candidates %lu boxes %lu max_row %lu\r\n", vec->name,
                 (unsigned long)st->engine_ticks, (unsigned long)s_res.candidates, (unsigned long)s_res.count,
                 (unsigned long)st->max_row_ticks);
        say(line);
        for (uint32_t i = 0; i < s_res.count; i++) {
            const engine_box_t *b = &s_res.boxes[i];
            snprintf(line, sizeof line, "%s box %d %d %d %d %u %u\r\n", vec->name, b->x, b->y, b->w, b->h,
                     b->score_q15, b->anchor);
            say(line);
        }
        snprintf(line, sizeof line, "%s: %s (%lu boxes)\r\n", vec->name, f ? "FAIL boxes differ from boxes.txt" : "ok",
                 (unsigned long)s_res.count);
        say(line);
    }
    snprintf(line, sizeof line, "memory engine_ram %lu static_ram %lu ram %lu optimised_layers %lu\r\n",
             (unsigned long)engine_ram_bytes(), (unsigned long)board_static_ram_bytes(),
             (unsigned long)board_ram_bytes(), (unsigned long)engine_optimised_layers());
    say(line);
    snprintf(line, sizeof line, "%s: %d failure(s)\r\n", failures ? "FAIL" : "ok", failures);
    say(line);
    return failures;
}
