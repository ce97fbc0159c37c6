/* Streaming integer engine for RNNPool-Face-M4 (docs/model-format.md, training/intref.py).
 *
 * The caller pushes the 320x320 grey image one row at a time; every stage advances as far as its
 * inputs allow and keeps only the rows (or pixels) it still needs, so no buffer is the size of an
 * image or of an activation map. Candidate boxes go into a bounded top-K list as the heads
 * produce them; engine_finish() runs NMS. All memory is static (engine_ram_bytes()); nothing
 * allocates; no floating point.
 *
 * Typical use:
 *     engine_reset();
 *     for (y = 0; y < ENGINE_INPUT_H; y++) engine_push_row(row[y]);
 *     engine_finish(&result);
 * Not re-entrant: one image at a time, from one thread. */
#ifndef ENGINE_H
#define ENGINE_H

#include <stdbool.h>
#include <stdint.h>

#define ENGINE_INPUT_W 320u
#define ENGINE_INPUT_H 320u
#define ENGINE_MAX_BOXES 64u /* = RNNPOOL_MAX_BOXES */
#define ENGINE_TOP_K 256u    /* = RNNPOOL_TOP_K */

/* Errors (negative). */
#define ENGINE_E_TOO_MANY_ROWS (-1) /* engine_push_row after the last row */
#define ENGINE_E_INCOMPLETE (-2)    /* engine_finish before all rows were pushed */
#define ENGINE_E_ARG (-3)           /* NULL argument */

/* One detection: the box in 1/16 pixel (Q4) of the 320x320 frame, score a Q15 probability,
 * anchor the global anchor index (head 1 row-major 0..1599, head 2 1600.., head 3 3200..,
 * head 4 3600..3999). */
typedef struct {
    int16_t x, y, w, h;
    uint16_t score_q15;
    uint16_t anchor;
} engine_box_t;

typedef struct {
    engine_box_t boxes[ENGINE_MAX_BOXES]; /* score descending, then anchor ascending */
    uint32_t count;      /* boxes after NMS, <= ENGINE_MAX_BOXES */
    uint32_t candidates; /* anchors at or above the score threshold, before top-K */
} engine_result_t;

void engine_reset(void);
/* Row y (in push order) of 320 pixels. Returns 0, or ENGINE_E_TOO_MANY_ROWS after 320 rows. */
int engine_push_row(const uint8_t *row);
/* After the 320th row: NMS, fills *out. Returns 0 or a negative error. */
int engine_finish(engine_result_t *out);

/* ---- statistics ----------------------------------------------------------------------------- */

/* Time is attributed to the stage running when board_ticks() is sampled, at stage boundaries
 * (per row, per RNNPool patch, per pixel pair of the 40x40 and 20x20 maps; never per MAC).
 * MACs are the dense model's multiply-accumulates per stage, as counted in the architecture notes
 * (RNN1 12,480 segments x 8 steps x (64 + 256), ...): the engine actually executes fewer (U h is
 * skipped at the first step, where h = 0; RNN2's W x is shared by the two directions and by
 * neighbouring patches), which shows up as fewer instructions per MAC. */
typedef enum {
    ENGINE_ST_CONV1 = 0, /* input rows and conv1 */
    ENGINE_ST_RNN1_ROWS, /* RNN1 over row segments */
    ENGINE_ST_RNN1_COLS, /* RNN1 over column segments */
    ENGINE_ST_RNN2,      /* RNN2 over the patch summaries, pool requantisation */
    ENGINE_ST_BLOCK1,    /* MBConv expand + depthwise + project (+ residual) */
    ENGINE_ST_BLOCK2,
    ENGINE_ST_BLOCK3,
    ENGINE_ST_BLOCK4,
    ENGINE_ST_HEADS,  /* L2 norms and the four 3x3 heads */
    ENGINE_ST_DECODE, /* scores, thresholding, top-K insertion */
    ENGINE_ST_NMS,    /* ordering of the top-K, box decoding, NMS */
    ENGINE_ST_COUNT
} engine_stage_t;

typedef struct {
    uint64_t ticks[ENGINE_ST_COUNT]; /* board_ticks() units (see board_tick_unit()) */
    uint64_t macs[ENGINE_ST_COUNT];
    uint64_t total_ticks;            /* reset .. finish, including the caller's time between rows */
    uint64_t engine_ticks;           /* sum of ticks[] */
    uint32_t max_row_ticks;          /* the longest engine_push_row call (every 8th row runs a
                                      * patch row of RNNPool and everything downstream of it) */
} engine_stage_stats_t;

/* Stats of the last completed image (and of the one in progress, partially). */
const engine_stage_stats_t *engine_stage_stats(void);
const char *engine_stage_name(engine_stage_t st);

/* Static RAM of the engine: every buffer, ring and table it owns. */
uint32_t engine_ram_bytes(void);

/* ---- taps (tests, debugging) ---------------------------------------------------------------- */

typedef enum {
    ENGINE_TAP_CONV1 = 0, /* 160x160x4 int8; delivered a row at a time (col 0, 640 bytes) */
    ENGINE_TAP_RNNPOOL_H, /* 39x39x64 int16 Q12 */
    ENGINE_TAP_RNNPOOL,   /* 40x40x64 int8 */
    ENGINE_TAP_B1_EXPAND,
    ENGINE_TAP_B1_DW,
    ENGINE_TAP_B1_OUT,
    ENGINE_TAP_NORM1,
    ENGINE_TAP_HEAD1,
    ENGINE_TAP_B2_EXPAND,
    ENGINE_TAP_B2_DW,
    ENGINE_TAP_B2_OUT,
    ENGINE_TAP_NORM2,
    ENGINE_TAP_HEAD2,
    ENGINE_TAP_B3_EXPAND,
    ENGINE_TAP_B3_DW,
    ENGINE_TAP_B3_OUT,
    ENGINE_TAP_NORM3,
    ENGINE_TAP_HEAD3,
    ENGINE_TAP_B4_EXPAND,
    ENGINE_TAP_B4_DW,
    ENGINE_TAP_B4_OUT,
    ENGINE_TAP_HEAD4,
    ENGINE_TAP_COUNT
} engine_tap_t;

typedef struct {
    const char *name; /* the golden vectors' stage name, e.g. "block2.depthwise" */
    uint16_t h, w, c;
    uint8_t elem_bytes; /* 1 (int8) or 2 (int16) */
} engine_tap_info_t;

const engine_tap_info_t *engine_tap_info(engine_tap_t tap);

/* Called for every output the engine produces: `bytes` bytes of stage `tap`'s tensor starting at
 * (row, col), channel 0 (one pixel, or a whole row for conv1). Each element is delivered exactly
 * once per image, rows in order; within the last row of a 3x3 stage pixels may come late.
 * fn == NULL switches taps off. */
typedef void (*engine_tap_fn)(void *ctx, engine_tap_t tap, uint16_t row, uint16_t col, const void *data,
                              uint32_t bytes);
void engine_set_tap(engine_tap_fn fn, void *ctx);

/* Kernel selection. On the ARM boards (RNNPOOL_ARM_DSP) the optimised kernels are always used
 * and this only reports. On the host the reference kernels are the default and
 * engine_use_optimised(true) switches to the optimised kernels with the DSP instructions
 * emulated, so tests run both paths. Either way, an optimised kernel whose preconditions the
 * model's values do not meet is replaced by its reference version (engine_optimised_layers()
 * tells how many layers run optimised). Takes effect at the next engine_reset(). */
void engine_use_optimised(bool on);
bool engine_optimised(void);
uint32_t engine_optimised_layers(void);

#endif /* ENGINE_H */
