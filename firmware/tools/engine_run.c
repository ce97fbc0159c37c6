/* Host CLI: run the streaming engine on one 320x320 grey frame and print the detections and the
 * per-stage statistics, e.g. to compare with training/intref.py on real images.
 *
 *   build/host/engine_run [--ref | --opt] [--dump DIR] FRAME.u8
 *
 * FRAME.u8 is 102400 raw bytes, row-major (what gateway/imaging.py's letterbox produces).
 * --ref / --opt choose the reference kernels (default) or the optimised ones with the DSP
 * instructions emulated. --dump writes every stage's full tensor as DIR/<stage>.bin (little-endian
 * HWC, the golden vectors' format). Output, one item per line:
 *   # engine_run kernels=<ref|opt> ram=<bytes>
 *   # candidates <n>
 *   # stage <name> ns <t> macs <n>
 *   x y w h score_q15 anchor        (one line per box, Q4 units; the format of boxes.txt)
 * Build: make -C firmware BOARD=host engine-run */
#define _POSIX_C_SOURCE 200809L

#include "engine/engine.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    uint8_t *data[ENGINE_TAP_COUNT];
} dump_t;

static void on_tap(void *ctx, engine_tap_t t, uint16_t row, uint16_t col, const void *data, uint32_t bytes)
{
    dump_t *d = ctx;
    const engine_tap_info_t *ti = engine_tap_info(t);
    size_t px = (size_t)row * ti->w + col;
    memcpy(d->data[t] + px * ti->c * ti->elem_bytes, data, bytes);
}

static int usage(void)
{
    fprintf(stderr, "usage: engine_run [--ref | --opt] [--dump DIR] FRAME.u8\n");
    return 2;
}

int main(int argc, char **argv)
{
    const char *path = NULL, *dump_dir = NULL;
    bool opt = false;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--ref") == 0) {
            opt = false;
        } else if (strcmp(argv[i], "--opt") == 0) {
            opt = true;
        } else if (strcmp(argv[i], "--dump") == 0 && i + 1 < argc) {
            dump_dir = argv[++i];
        } else if (argv[i][0] == '-' || path != NULL) {
            return usage();
        } else {
            path = argv[i];
        }
    }
    if (path == NULL) {
        return usage();
    }
    static uint8_t frame[ENGINE_INPUT_W * ENGINE_INPUT_H];
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        perror(path);
        return 1;
    }
    size_t n = fread(frame, 1, sizeof frame, f);
    int extra = fgetc(f);
    fclose(f);
    if (n != sizeof frame || extra != EOF) {
        fprintf(stderr, "%s: expected exactly %zu bytes (320x320 grey)\n", path, sizeof frame);
        return 1;
    }

    dump_t dump = {0};
    if (dump_dir != NULL) {
        for (int t = 0; t < ENGINE_TAP_COUNT; t++) {
            const engine_tap_info_t *ti = engine_tap_info((engine_tap_t)t);
            dump.data[t] = calloc((size_t)ti->h * ti->w * ti->c, ti->elem_bytes);
        }
        engine_set_tap(on_tap, &dump);
    }
    engine_use_optimised(opt);
    engine_reset();
    for (uint32_t y = 0; y < ENGINE_INPUT_H; y++) {
        engine_push_row(frame + y * ENGINE_INPUT_W);
    }
    static engine_result_t res;
    if (engine_finish(&res) != 0) {
        fprintf(stderr, "engine_finish failed\n");
        return 1;
    }

    printf("# engine_run kernels=%s ram=%u\n", engine_optimised() ? "opt" : "ref", engine_ram_bytes());
    printf("# candidates %u\n", res.candidates);
    const engine_stage_stats_t *st = engine_stage_stats();
    for (int s = 0; s < ENGINE_ST_COUNT; s++) {
        printf("# stage %s ns %llu macs %llu\n", engine_stage_name((engine_stage_t)s),
               (unsigned long long)st->ticks[s], (unsigned long long)st->macs[s]);
    }
    for (uint32_t i = 0; i < res.count; i++) {
        const engine_box_t *b = &res.boxes[i];
        printf("%d %d %d %d %u %u\n", b->x, b->y, b->w, b->h, b->score_q15, b->anchor);
    }

    if (dump_dir != NULL) {
        engine_set_tap(NULL, NULL);
        for (int t = 0; t < ENGINE_TAP_COUNT; t++) {
            const engine_tap_info_t *ti = engine_tap_info((engine_tap_t)t);
            char out[1024];
            snprintf(out, sizeof out, "%s/%s.bin", dump_dir, ti->name);
            FILE *o = fopen(out, "wb");
            if (o == NULL) {
                perror(out);
                return 1;
            }
            fwrite(dump.data[t], ti->elem_bytes, (size_t)ti->h * ti->w * ti->c, o);
            fclose(o);
            free(dump.data[t]);
        }
    }
    return 0;
}
