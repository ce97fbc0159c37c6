/* Bit-exactness of the streaming engine against every golden vector (tests/vectors/<name>/), at
 * every stage: the engine's taps fill full-size tensors (here, on the host, where memory is free),
 * which are compared element by element with the <stage>.bin files (the first mismatch is printed
 * with its row, column and channel) and by SHA-256 with manifest.json for every stage, including
 * the ones without a .bin (blockK.expand, blockK.depthwise, rnnpool.h). Then the final boxes and
 * the candidate count. Each vector runs through the reference kernels and through the optimised
 * kernels (DSP instructions emulated on the host), and each tapped element must arrive exactly
 * once. Runs with cwd = firmware/. */
#define _POSIX_C_SOURCE 200809L

#include "board.h"
#include "engine/engine.h"
#include "vec_util.h"

#include <dirent.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define VEC_DIR "tests/vectors"

typedef struct {
    uint8_t *data[ENGINE_TAP_COUNT];
    uint8_t *seen[ENGINE_TAP_COUNT]; /* one flag per pixel */
    int errors;
} capture_t;

static void on_tap(void *ctx, engine_tap_t t, uint16_t row, uint16_t col, const void *data, uint32_t bytes)
{
    capture_t *cap = ctx;
    const engine_tap_info_t *ti = engine_tap_info(t);
    uint32_t px_bytes = (uint32_t)ti->c * ti->elem_bytes;
    if (row >= ti->h || col >= ti->w || bytes % px_bytes != 0 || col + bytes / px_bytes > ti->w) {
        if (cap->errors++ < 10) {
            printf("  tap %s: bad delivery row %u col %u bytes %u\n", ti->name, row, col, bytes);
        }
        return;
    }
    uint32_t px = (uint32_t)row * ti->w + col;
    for (uint32_t i = 0; i < bytes / px_bytes; i++) {
        if (cap->seen[t][px + i]++ && cap->errors++ < 10) {
            printf("  tap %s: pixel (%u, %u) delivered twice\n", ti->name, row, col + i);
        }
    }
    memcpy(cap->data[t] + (size_t)px * px_bytes, data, bytes);
}

static int check_vector(const char *name, bool opt)
{
    char path[512];
    int fails = 0;
    snprintf(path, sizeof path, VEC_DIR "/%s/input.u8", name);
    size_t in_len = 0;
    uint8_t *input = vu_load(path, &in_len);
    snprintf(path, sizeof path, VEC_DIR "/%s/manifest.json", name);
    char *manifest = (char *)vu_load(path, NULL);
    if (input == NULL || manifest == NULL || in_len != ENGINE_INPUT_W * ENGINE_INPUT_H) {
        printf("FAIL %s: cannot read input.u8 / manifest.json\n", name);
        free(input);
        free(manifest);
        return 1;
    }

    capture_t cap = {0};
    for (int t = 0; t < ENGINE_TAP_COUNT; t++) {
        const engine_tap_info_t *ti = engine_tap_info((engine_tap_t)t);
        cap.data[t] = calloc((size_t)ti->h * ti->w * ti->c, ti->elem_bytes);
        cap.seen[t] = calloc((size_t)ti->h * ti->w, 1);
    }
    engine_use_optimised(opt);
    engine_set_tap(on_tap, &cap);
    engine_reset();
    for (uint32_t y = 0; y < ENGINE_INPUT_H; y++) {
        if (engine_push_row(input + y * ENGINE_INPUT_W) != 0) {
            printf("FAIL %s: push_row %u refused\n", name, y);
            fails++;
        }
    }
    if (engine_push_row(input) != ENGINE_E_TOO_MANY_ROWS) {
        printf("FAIL %s: a 321st row was accepted\n", name);
        fails++;
    }
    engine_result_t res;
    memset(&res, 0xA5, sizeof res);
    int rc = engine_finish(&res);
    engine_set_tap(NULL, NULL);
    if (rc != 0) {
        printf("FAIL %s: engine_finish returned %d\n", name, rc);
        fails++;
    }
    fails += cap.errors != 0;

    const char *mode = opt ? "opt" : "ref";
    for (int t = 0; t < ENGINE_TAP_COUNT; t++) {
        const engine_tap_info_t *ti = engine_tap_info((engine_tap_t)t);
        size_t npx = (size_t)ti->h * ti->w, nbytes = npx * ti->c * ti->elem_bytes;
        size_t missing = 0;
        for (size_t i = 0; i < npx; i++) {
            missing += cap.seen[t][i] == 0;
        }
        if (missing != 0) {
            printf("FAIL %s/%s %s: %zu pixels never delivered\n", name, mode, ti->name, missing);
            fails++;
        }
        /* element-wise against the .bin, where the vector has one */
        char file[96];
        snprintf(file, sizeof file, "%s.bin", ti->name);
        snprintf(path, sizeof path, VEC_DIR "/%s/%s", name, file);
        size_t elen = 0;
        uint8_t *expect = vu_load(path, &elen);
        if (expect != NULL) {
            if (elen != nbytes) {
                printf("FAIL %s/%s %s: .bin has %zu bytes, expected %zu\n", name, mode, ti->name, elen, nbytes);
                fails++;
            } else if (memcmp(expect, cap.data[t], nbytes) != 0) {
                for (size_t e = 0; e < npx * ti->c; e++) {
                    int32_t got, want;
                    if (ti->elem_bytes == 1) {
                        got = ((int8_t *)cap.data[t])[e];
                        want = ((int8_t *)expect)[e];
                    } else {
                        int16_t g16, w16;
                        memcpy(&g16, cap.data[t] + 2 * e, 2);
                        memcpy(&w16, expect + 2 * e, 2);
                        got = g16;
                        want = w16;
                    }
                    if (got != want) {
                        size_t px = e / ti->c;
                        printf("FAIL %s/%s %s: first mismatch at row %zu col %zu channel %zu: got %d, expected %d\n",
                               name, mode, ti->name, px / ti->w, px % ti->w, e % ti->c, got, want);
                        break;
                    }
                }
                fails++;
            }
            free(expect);
        }
        /* every stage by hash */
        char want_hex[65], got_hex[65];
        if (vu_manifest_sha(manifest, ti->name, want_hex) != 0) {
            printf("FAIL %s: manifest has no sha256 for %s\n", name, ti->name);
            fails++;
        } else {
            vu_sha256(cap.data[t], nbytes, got_hex);
            if (strcmp(want_hex, got_hex) != 0) {
                printf("FAIL %s/%s %s: sha256 %s, manifest %s\n", name, mode, ti->name, got_hex, want_hex);
                fails++;
            }
        }
        free(cap.data[t]);
        free(cap.seen[t]);
    }

    /* final detections */
    int32_t want[ENGINE_MAX_BOXES + 1][6];
    snprintf(path, sizeof path, VEC_DIR "/%s/boxes.txt", name);
    int nwant = vu_load_boxes(path, want, ENGINE_MAX_BOXES + 1);
    long cands = vu_manifest_int(manifest, "candidates");
    if (nwant < 0 || (uint32_t)nwant != res.count) {
        printf("FAIL %s/%s: %u boxes, boxes.txt has %d\n", name, mode, res.count, nwant);
        fails++;
    } else {
        for (int i = 0; i < nwant; i++) {
            const engine_box_t *b = &res.boxes[i];
            int32_t got[6] = {b->x, b->y, b->w, b->h, b->score_q15, b->anchor};
            if (memcmp(got, want[i], sizeof got) != 0) {
                printf("FAIL %s/%s box %d: got %d %d %d %d %d %d, expected %d %d %d %d %d %d\n", name, mode, i,
                       got[0], got[1], got[2], got[3], got[4], got[5], want[i][0], want[i][1], want[i][2],
                       want[i][3], want[i][4], want[i][5]);
                fails++;
                break;
            }
        }
    }
    if ((long)res.candidates != cands) {
        printf("FAIL %s/%s: %u candidates, manifest says %ld\n", name, mode, res.candidates, cands);
        fails++;
    }
    if (fails == 0) {
        printf("ok   %s/%s: %d stages bit-exact, %u boxes, %u candidates\n", name, mode, ENGINE_TAP_COUNT,
               res.count, res.candidates);
    }
    free(input);
    free(manifest);
    return fails;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

int main(void)
{
    /* no board_init(): it would put the terminal in raw mode; board_ticks() needs none */
    char *names[64];
    int n = 0;
    DIR *d = opendir(VEC_DIR);
    if (d == NULL) {
        printf("FAIL: no %s (run from firmware/)\n", VEC_DIR);
        return 1;
    }
    struct dirent *e;
    while ((e = readdir(d)) != NULL && n < 64) {
        if (e->d_name[0] != '.') {
            names[n++] = strdup(e->d_name);
        }
    }
    closedir(d);
    qsort(names, (size_t)n, sizeof names[0], cmp_str);
    int fails = 0;
    for (int i = 0; i < n; i++) {
        fails += check_vector(names[i], false);
        fails += check_vector(names[i], true);
        free(names[i]);
    }
    if (n < 4) {
        printf("FAIL: expected at least 4 golden vectors, found %d\n", n);
        fails++;
    }
    printf("%s: %d vectors x 2 kernel sets, %d failure(s); engine RAM %u B\n", fails ? "FAIL" : "PASS", n, fails,
           engine_ram_bytes());
    return fails != 0;
}
