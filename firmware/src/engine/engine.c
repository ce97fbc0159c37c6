/* Streaming integer engine: schedule and buffers. The arithmetic lives in the kernel files
 * (eng_*.c); this file decides when each output can be computed and where its inputs are kept.
 *
 * Data flow and what each stage keeps (sizes for the 320x320 model; see ENGINE MEMORY below):
 *
 *  input rows --conv1 (3x3 s2)--> conv1 rows, 8-row ring
 *    conv1 row y = 2i+1 arrives -> conv1 row i. Keeps the previous even and odd input rows.
 *  RNNPool, once per 4 conv1 rows (conv1 row 4k+3 completes the rows of patch row k-1):
 *    - RNN1 row segments of conv1 rows 4k..4k+3 (39 per row). Patch row k-1 needs those and the
 *      segments of rows 4k-4..4k-1, kept from the previous burst in `A` (4 rows x 39 x 16 int16):
 *      each segment feeds two patch rows and is computed once.
 *    - RNN1 column segments over conv1 rows 4k-4..4k+3 (the ring), 4 new columns per patch,
 *      kept in an 8-column ring so each column segment feeds the two patches that share it.
 *    - RNN2 over each patch's 8 row and 8 column summaries, both directions; pool requant.
 *    Patch (k-1, j) is then pixel (k-1, j) of the 40x40x64 map; column 39 and row 39 repeat
 *    column/row 38 (row 38 is kept in A's space, free by then).
 *  40x40 and 20x20 maps: pixels stream in raster order, in horizontal pairs, into
 *    MBConv k: expand (1x1) -> ring of the last 2W+5 expanded pixels -> depthwise 3x3 (a pair of
 *      outputs as soon as the input pixel right-below the pair's right tap exists) -> project ->
 *      (+ residual, from a ring of the last W+4 block inputs) -> block output pair ->
 *      norm -> head k, and block k+1.
 *    Head k (3x3 s1): each input pixel is scattered into the int32 accumulators of the up to 9
 *      outputs it touches; a ring of 2W+4 accumulators holds every output still open; an output
 *      is finished when its last input (right-below) has arrived, then decoded into the top-K.
 *  engine_finish: order the top-K, decode boxes, NMS.
 */
#include "engine.h"

#include "board.h"
#include "eng_kernels.h"
#include "eng_post.h"
#include "rnnpool_model.h"

#include <stddef.h>
#include <string.h>

/* ---- shapes ----------------------------------------------------------------------------------- */

#define IN_W 320
#define IN_H 320
#define C1_W 160
#define C1_C 4
#define C1_ROW (C1_W * C1_C)
#define C1_RING 8
#define PATCH 8
#define NP 39 /* patches per side: (160 - 8) / 4 + 1 */
#define HID 16
#define MAP 40
#define POOL_C 64
#define MAP2 20
#define N_ANCHORS 4000

#define SZ(a) (sizeof(a) / sizeof((a)[0]))
_Static_assert(RNNPOOL_INPUT_WIDTH == IN_W && RNNPOOL_INPUT_HEIGHT == IN_H, "input size");
_Static_assert(SZ(rnnpool_conv1_w) == 4 * 9, "conv1 shape");
_Static_assert(SZ(rnnpool_rnn1_W) == HID * C1_C && SZ(rnnpool_rnn1_U) == HID * HID, "rnn1 shape");
_Static_assert(SZ(rnnpool_rnn2_W) == HID * HID && SZ(rnnpool_rnn2_U) == HID * HID, "rnn2 shape");
_Static_assert(SZ(rnnpool_block1_expand_w) == 128 * 64 && SZ(rnnpool_block1_project_w) == 32 * 128, "b1");
_Static_assert(SZ(rnnpool_block2_expand_w) == 64 * 32 && SZ(rnnpool_block2_project_w) == 32 * 64, "b2");
_Static_assert(SZ(rnnpool_block3_expand_w) == 64 * 32 && SZ(rnnpool_block3_project_w) == 64 * 64, "b3");
_Static_assert(SZ(rnnpool_block4_expand_w) == 128 * 64 && SZ(rnnpool_block4_project_w) == 64 * 128, "b4");
_Static_assert(SZ(rnnpool_head1_w) == 8 * 9 * 32 && SZ(rnnpool_head2_w) == 6 * 9 * 32, "heads 1-2");
_Static_assert(SZ(rnnpool_head3_w) == 6 * 9 * 64 && SZ(rnnpool_head4_w) == 6 * 9 * 64, "heads 3-4");
_Static_assert(SZ(rnnpool_lut_sigmoid) == 257 && SZ(rnnpool_lut_tanh) == 257, "LUTs");
_Static_assert(RNNPOOL_TOP_K == ENGINE_TOP_K && RNNPOOL_MAX_BOXES == ENGINE_MAX_BOXES, "post limits");

/* Ring lengths in pixels (see the derivations at block_push and head_push). */
#define ERING(w) (2 * (w) + 5)
#define RRING(w) ((w) + 4)
#define HRING(w) (2 * (w) + 4)

/* ---- layer tables ------------------------------------------------------------------------------ */

static const conv_layer_t k_conv1 = {rnnpool_conv1_w, rnnpool_conv1_b, rnnpool_conv1_m, rnnpool_conv1_s,
                                     RNNPOOL_CONV1_LO, RNNPOOL_CONV1_HI, 1, 4,
                                     CLAMP_KIND(RNNPOOL_CONV1_LO, RNNPOOL_CONV1_HI)};

static const fg_layer_t k_rnn[2] = {
    {rnnpool_rnn1_W, rnnpool_rnn1_U, rnnpool_rnn1_mw, rnnpool_rnn1_sw, rnnpool_rnn1_mu, rnnpool_rnn1_su,
     rnnpool_rnn1_bz, rnnpool_rnn1_bc, RNNPOOL_RNN1_ZETA, RNNPOOL_RNN1_NU, rnnpool_lut_sigmoid, rnnpool_lut_tanh,
     C1_C},
    {rnnpool_rnn2_W, rnnpool_rnn2_U, rnnpool_rnn2_mw, rnnpool_rnn2_sw, rnnpool_rnn2_mu, rnnpool_rnn2_su,
     rnnpool_rnn2_bz, rnnpool_rnn2_bc, RNNPOOL_RNN2_ZETA, RNNPOOL_RNN2_NU, rnnpool_lut_sigmoid, rnnpool_lut_tanh,
     HID},
};

typedef struct {
    pw_layer_t ex, pr;
    dw_layer_t dw;
    int32_t res_mp, res_sp, res_mx, res_sx; /* residual blocks only */
    uint8_t win, hin, stride, residual;
    engine_tap_t tap_ex, tap_dw, tap_out;
} block_layer_t;

#define BLOCK(k, ci, ce, co, w, st, res, mp, sp, mx, sx) \
    {{rnnpool_block##k##_expand_w, rnnpool_block##k##_expand_b, rnnpool_block##k##_expand_m, \
      rnnpool_block##k##_expand_s, RNNPOOL_BLOCK##k##_EXPAND_LO, RNNPOOL_BLOCK##k##_EXPAND_HI, ci, ce, \
      CLAMP_KIND(RNNPOOL_BLOCK##k##_EXPAND_LO, RNNPOOL_BLOCK##k##_EXPAND_HI)}, \
     {rnnpool_block##k##_project_w, rnnpool_block##k##_project_b, rnnpool_block##k##_project_m, \
      rnnpool_block##k##_project_s, RNNPOOL_BLOCK##k##_PROJECT_LO, RNNPOOL_BLOCK##k##_PROJECT_HI, ce, co, \
      CLAMP_KIND(RNNPOOL_BLOCK##k##_PROJECT_LO, RNNPOOL_BLOCK##k##_PROJECT_HI)}, \
     {rnnpool_block##k##_depthwise_w, rnnpool_block##k##_depthwise_b, rnnpool_block##k##_depthwise_m, \
      rnnpool_block##k##_depthwise_s, RNNPOOL_BLOCK##k##_DEPTHWISE_LO, RNNPOOL_BLOCK##k##_DEPTHWISE_HI, ce, \
      CLAMP_KIND(RNNPOOL_BLOCK##k##_DEPTHWISE_LO, RNNPOOL_BLOCK##k##_DEPTHWISE_HI)}, \
     mp, sp, mx, sx, w, w, st, res, \
     ENGINE_TAP_B##k##_EXPAND, ENGINE_TAP_B##k##_DW, ENGINE_TAP_B##k##_OUT}

static const block_layer_t k_blocks[4] = {
    BLOCK(1, 64, 128, 32, MAP, 1, 0, 0, 1, 0, 1),
    BLOCK(2, 32, 64, 32, MAP, 1, 1, RNNPOOL_BLOCK2_RES_MP, RNNPOOL_BLOCK2_RES_SP, RNNPOOL_BLOCK2_RES_MX,
          RNNPOOL_BLOCK2_RES_SX),
    BLOCK(3, 32, 64, 64, MAP, 2, 0, 0, 1, 0, 1),
    BLOCK(4, 64, 128, 64, MAP2, 1, 1, RNNPOOL_BLOCK4_RES_MP, RNNPOOL_BLOCK4_RES_SP, RNNPOOL_BLOCK4_RES_MX,
          RNNPOOL_BLOCK4_RES_SX),
};

static const norm_layer_t k_norms[3] = {
    {rnnpool_norm1_m, rnnpool_norm1_s, 32},
    {rnnpool_norm2_m, rnnpool_norm2_s, 32},
    {rnnpool_norm3_m, rnnpool_norm3_s, 64},
};

typedef struct {
    conv_layer_t conv;
    const int16_t *wlut;
    int32_t dc_m, dc_s, score_m, score_s;
    uint16_t anchor0;
    uint8_t grid, step;
    engine_tap_t tap;
} head_layer_t;

#define HEAD(k, ci, co, g, st, a0) \
    {{rnnpool_head##k##_w, rnnpool_head##k##_b, rnnpool_head##k##_m, rnnpool_head##k##_s, RNNPOOL_HEAD##k##_LO, \
      RNNPOOL_HEAD##k##_HI, ci, co, CLAMP_KIND(RNNPOOL_HEAD##k##_LO, RNNPOOL_HEAD##k##_HI)}, \
     rnnpool_head##k##_wlut, RNNPOOL_HEAD##k##_DC_M, RNNPOOL_HEAD##k##_DC_S, RNNPOOL_HEAD##k##_SCORE_M, \
     RNNPOOL_HEAD##k##_SCORE_S, a0, g, st, ENGINE_TAP_HEAD##k}

static const head_layer_t k_heads[4] = {
    HEAD(1, 32, 8, MAP, 8, 0),
    HEAD(2, 32, 6, MAP, 8, MAP * MAP),
    HEAD(3, 64, 6, MAP2, 16, 2 * MAP * MAP),
    HEAD(4, 64, 6, MAP2, 16, 2 * MAP * MAP + MAP2 * MAP2),
};
_Static_assert(2 * MAP * MAP + 2 * MAP2 * MAP2 == N_ANCHORS, "anchor count");

static const engine_tap_info_t k_tap_info[ENGINE_TAP_COUNT] = {
    [ENGINE_TAP_CONV1] = {"conv1", C1_W, C1_W, C1_C, 1},
    [ENGINE_TAP_RNNPOOL_H] = {"rnnpool.h", NP, NP, POOL_C, 2},
    [ENGINE_TAP_RNNPOOL] = {"rnnpool", MAP, MAP, POOL_C, 1},
    [ENGINE_TAP_B1_EXPAND] = {"block1.expand", MAP, MAP, 128, 1},
    [ENGINE_TAP_B1_DW] = {"block1.depthwise", MAP, MAP, 128, 1},
    [ENGINE_TAP_B1_OUT] = {"block1.out", MAP, MAP, 32, 1},
    [ENGINE_TAP_NORM1] = {"norm1", MAP, MAP, 32, 1},
    [ENGINE_TAP_HEAD1] = {"head1", MAP, MAP, 8, 1},
    [ENGINE_TAP_B2_EXPAND] = {"block2.expand", MAP, MAP, 64, 1},
    [ENGINE_TAP_B2_DW] = {"block2.depthwise", MAP, MAP, 64, 1},
    [ENGINE_TAP_B2_OUT] = {"block2.out", MAP, MAP, 32, 1},
    [ENGINE_TAP_NORM2] = {"norm2", MAP, MAP, 32, 1},
    [ENGINE_TAP_HEAD2] = {"head2", MAP, MAP, 6, 1},
    [ENGINE_TAP_B3_EXPAND] = {"block3.expand", MAP, MAP, 64, 1},
    [ENGINE_TAP_B3_DW] = {"block3.depthwise", MAP2, MAP2, 64, 1},
    [ENGINE_TAP_B3_OUT] = {"block3.out", MAP2, MAP2, 64, 1},
    [ENGINE_TAP_NORM3] = {"norm3", MAP2, MAP2, 64, 1},
    [ENGINE_TAP_HEAD3] = {"head3", MAP2, MAP2, 6, 1},
    [ENGINE_TAP_B4_EXPAND] = {"block4.expand", MAP2, MAP2, 128, 1},
    [ENGINE_TAP_B4_DW] = {"block4.depthwise", MAP2, MAP2, 128, 1},
    [ENGINE_TAP_B4_OUT] = {"block4.out", MAP2, MAP2, 64, 1},
    [ENGINE_TAP_HEAD4] = {"head4", MAP2, MAP2, 6, 1},
};

/* Dense MACs per stage (see engine.h). */
#define MACS_RNN1 ((uint64_t)NP * C1_W * PATCH * (HID * C1_C + HID * HID))
static const uint64_t k_stage_macs[ENGINE_ST_COUNT] = {
    [ENGINE_ST_CONV1] = (uint64_t)C1_W * C1_W * 4 * 9,
    [ENGINE_ST_RNN1_ROWS] = MACS_RNN1,
    [ENGINE_ST_RNN1_COLS] = MACS_RNN1,
    [ENGINE_ST_RNN2] = (uint64_t)NP * NP * 4 * PATCH * (2 * HID * HID),
    [ENGINE_ST_BLOCK1] = (uint64_t)MAP * MAP * (128 * 64 + 128 * 9 + 32 * 128),
    [ENGINE_ST_BLOCK2] = (uint64_t)MAP * MAP * (64 * 32 + 64 * 9 + 32 * 64),
    [ENGINE_ST_BLOCK3] = (uint64_t)MAP * MAP * 64 * 32 + (uint64_t)MAP2 * MAP2 * (64 * 9 + 64 * 64),
    [ENGINE_ST_BLOCK4] = (uint64_t)MAP2 * MAP2 * (128 * 64 + 128 * 9 + 64 * 128),
    [ENGINE_ST_HEADS] = (uint64_t)MAP * MAP * 9 * 32 * (8 + 6) + (uint64_t)MAP2 * MAP2 * 9 * 64 * (6 + 6) +
                        (uint64_t)MAP * MAP * (32 + 32) + (uint64_t)MAP2 * MAP2 * 64,
};

static const char *const k_stage_names[ENGINE_ST_COUNT] = {
    "conv1", "rnn1_rows", "rnn1_cols", "rnn2", "block1", "block2",
    "block3", "block4", "heads", "decode_topk", "nms",
};

/* Zero padding for any tap outside a map: a row of four pixels of the widest map (128 channels). */
static const int8_t k_zeros[4 * 128];

/* ---- ENGINE MEMORY: everything the engine keeps between calls --------------------------------- */

typedef struct {
    /* input: the two rows above the current one */
    uint8_t img_even[IN_W], img_odd[IN_W];
    /* conv1: 8-row ring (row y in slot y % 8), the column segments' window */
    int8_t c1[C1_RING][C1_ROW];
    /* RNN1 row summaries of the 4 rows above the current burst, per patch column; after the last
     * patch row the same space keeps pooled row 38, which is repeated as row 39. */
    union {
        int16_t h[4][HID];
        int8_t px[POOL_C];
        uint32_t align; /* the optimised RNN2 loads summaries with LDM */
    } a[NP];
    /* RNN1 column summaries of the 8 columns of the current patch, column c in slot c % 8: as
     * rq(W2 h) + bz (optimised path) or h (reference path). */
    union {
        int32_t wxz[PATCH][HID];
        int16_t h[PATCH][HID];
    } col;
    int8_t pend[POOL_C]; /* pooled pixel waiting for its right neighbour */
    /* Scratch shared by stages that are never live at the same time. The 40x40 and 20x20 stages
     * call each other (block k's output pair runs norm k, head k and block k+1 before block k
     * returns), so per-call buffers on the stack would be stacked four deep; these are not. */
    union {
        struct { /* rnnpool_burst, dead before the pooled pixel enters block 1 */
            int16_t b[4][HID];
            int16_t hp[4 * HID];
            int8_t q[POOL_C];
        } burst;
        int8_t dw[2][128]; /* block_out: depthwise pair, dead before the project output moves on */
        uint32_t align;    /* b feeds fg_wxz16_opt, which loads with LDM */
    } tmp;
    int8_t norm[2][64];    /* source_push: the normalised pair, dead before the next block runs */
    int8_t bout[2][2][64]; /* block outputs, ping-pong by block parity: block k+1 reads block k's
                            * pair only on entry, before block k+2 can overwrite it */
    /* MBConv rings: expanded pixels, and block inputs for the residual */
    int8_t e1[ERING(MAP) * 128], e2[ERING(MAP) * 64], e3[ERING(MAP) * 64], e4[ERING(MAP2) * 128];
    int8_t r2[RRING(MAP) * 32], r4[RRING(MAP2) * 64];
    /* head accumulators */
    int32_t h1[HRING(MAP) * 8], h2[HRING(MAP) * 6], h3[HRING(MAP2) * 6], h4[HRING(MAP2) * 6];
    /* top-K candidates (eng_post.c) */
    cand_t topk_items[ENGINE_TOP_K];
    topk_t topk;
    uint32_t candidates;
    /* prepared optimised-kernel constants */
    fg_prep_t fg[2];
    uint32_t fg_w1[HID * FG_WBLK(C1_C)], fg_w2[HID * FG_WBLK(HID)];
    rqp_t res_p[4], res_x[4], pool_q, score_q[4];
    /* state */
    uint16_t rows_in;
    bool opt, fg_opt[2], res_opt[4], pool_opt, score_opt[4];
    engine_stage_stats_t stats;
    engine_stage_t st_cur;
    uint32_t st_last;
    uint64_t t_reset;
} engine_mem_t;

static engine_mem_t g;
static engine_tap_fn s_tap;
static void *s_tap_ctx;
static bool s_want_opt = DSP_NATIVE;

typedef struct {
    int8_t *ering, *rring;
    uint16_t elen, rlen;
} block_bufs_t;

static const block_bufs_t k_block_bufs[4] = {
    {g.e1, NULL, ERING(MAP), 0},
    {g.e2, g.r2, ERING(MAP), RRING(MAP)},
    {g.e3, NULL, ERING(MAP), 0},
    {g.e4, g.r4, ERING(MAP2), RRING(MAP2)},
};
static int32_t *const k_head_acc[4] = {g.h1, g.h2, g.h3, g.h4};
static const uint16_t k_head_len[4] = {HRING(MAP), HRING(MAP), HRING(MAP2), HRING(MAP2)};

uint32_t engine_ram_bytes(void)
{
    return (uint32_t)(sizeof g + sizeof s_tap + sizeof s_tap_ctx + sizeof s_want_opt);
}

/* ---- stats ------------------------------------------------------------------------------------ */

/* Charges the time since the last switch to the running stage and makes `st` the running one. */
static engine_stage_t st_switch(engine_stage_t st)
{
    uint32_t now = board_ticks();
    g.stats.ticks[g.st_cur] += now - g.st_last;
    g.st_last = now;
    engine_stage_t prev = g.st_cur;
    g.st_cur = st;
    return prev;
}

static void st_begin(engine_stage_t st)
{
    g.st_last = board_ticks();
    g.st_cur = st;
}

static void tap(engine_tap_t t, uint16_t row, uint16_t col, const void *data, uint32_t bytes)
{
    if (s_tap != NULL) {
        s_tap(s_tap_ctx, t, row, col, data, bytes);
    }
}

/* ---- heads: finish an output, decode, top-K ------------------------------------------------------ */

static void decode(int k, uint16_t R, uint16_t X, const int8_t *raw)
{
    const head_layer_t *Hd = &k_heads[k];
    uint16_t n = Hd->conv.cout;
    int32_t bg = raw[4];
    for (uint16_t c = 5; c + 1 < n; c++) {
        bg = raw[c] > bg ? raw[c] : bg;
    }
    int32_t diff = raw[n - 1] - bg, score;
    if (g.score_opt[k]) {
        score = lut_opt(rnnpool_lut_sigmoid + 128, rqp(&g.score_q[k], diff));
    } else {
        score = lut_ref(rnnpool_lut_sigmoid, rq_ref(diff, Hd->score_m, Hd->score_s));
    }
    if (score < RNNPOOL_SCORE_MIN_Q15) {
        return;
    }
    g.candidates++;
    cand_t c = {(uint16_t)score, (uint16_t)(Hd->anchor0 + R * Hd->grid + X), {raw[0], raw[1], raw[2], raw[3]}};
    topk_offer(&g.topk, &c);
}

static void head_complete(int k, uint16_t R, uint16_t X)
{
    const head_layer_t *Hd = &k_heads[k];
    uint16_t cout = Hd->conv.cout;
    int32_t *acc = k_head_acc[k] + ((uint32_t)R * Hd->grid + X) % k_head_len[k] * cout;
    int8_t raw[8];
    conv_finish(&Hd->conv, acc, raw);
    memset(acc, 0, cout * sizeof *acc); /* the slot's next output starts from zero */
    tap(Hd->tap, R, X, raw, cout);
    decode(k, R, X, raw);
}

/* Input pixels (r, x) and (r, x+1) of head k's source map. Pixel (r, c) feeds outputs (r+1-ky,
 * c+1-kx). Output (R, X) is complete once input (min(R+1, H-1), min(X+1, W-1)) is in: after the
 * pair at x that is outputs (r-1, x-1) and (r-1, x), plus (r-1, W-1) at the row's end, and the
 * whole last row after the last pair. Open outputs then span (r-1, x-1) .. (r+1, x+2): 2W+4. */
static void head_push(int k, uint16_t r, uint16_t x, const int8_t *p0, const int8_t *p1)
{
    const head_layer_t *Hd = &k_heads[k];
    int32_t *base = k_head_acc[k];
    uint16_t len = k_head_len[k], cout = Hd->conv.cout;
    int n = Hd->grid;
    int32_t *acc[2][9];
    for (int d = 0; d < 2; d++) {
        for (int ky = 0; ky < 3; ky++) {
            for (int kx = 0; kx < 3; kx++) {
                int R = r + 1 - ky, X = x + d + 1 - kx;
                acc[d][ky * 3 + kx] =
                    R < 0 || R >= n || X < 0 || X >= n ? NULL : base + (uint32_t)(R * n + X) % len * cout;
            }
        }
    }
    if (g.opt) {
        conv3x3_scatter2_opt(&Hd->conv, p0, p1, acc[0], acc[1]);
    } else {
        conv3x3_scatter2_ref(&Hd->conv, p0, p1, acc[0], acc[1]);
    }
    engine_stage_t prev = st_switch(ENGINE_ST_DECODE);
    if (r >= 1) {
        if (x >= 1) {
            head_complete(k, r - 1, x - 1);
        }
        head_complete(k, r - 1, x);
        if (x == n - 2) {
            head_complete(k, r - 1, n - 1);
        }
    }
    if (r == n - 1 && x == n - 2) {
        for (uint16_t X = 0; X < n; X++) {
            head_complete(k, r, X);
        }
    }
    st_switch(prev);
}

/* ---- MBConv blocks ----------------------------------------------------------------------------- */

static void block_push(int k, uint16_t r, uint16_t x, const int8_t *p0, const int8_t *p1);

/* Block k's output pair (R, X), (R, X+1): feeds its norm and head, then the next block. */
static void source_push(int k, uint16_t R, uint16_t X, const int8_t *o0, const int8_t *o1)
{
    engine_stage_t prev = st_switch(ENGINE_ST_HEADS);
    if (k < 3) {
        int8_t *n0 = g.norm[0], *n1 = g.norm[1];
        const norm_layer_t *N = &k_norms[k];
        if (g.opt) {
            l2norm_opt(N, o0, n0);
            l2norm_opt(N, o1, n1);
        } else {
            l2norm_ref(N, o0, n0);
            l2norm_ref(N, o1, n1);
        }
        engine_tap_t t = k == 0 ? ENGINE_TAP_NORM1 : k == 1 ? ENGINE_TAP_NORM2 : ENGINE_TAP_NORM3;
        tap(t, R, X, n0, N->c);
        tap(t, R, (uint16_t)(X + 1), n1, N->c);
        head_push(k, R, X, n0, n1);
        st_switch(ENGINE_ST_BLOCK1 + k + 1);
        block_push(k + 1, R, X, o0, o1);
    } else {
        head_push(3, R, X, o0, o1);
    }
    st_switch(prev);
}

static int8_t *ering_px(int k, int r, int c)
{
    const block_bufs_t *bb = &k_block_bufs[k];
    return bb->ering + (uint32_t)(r * k_blocks[k].win + c) % bb->elen * k_blocks[k].ex.cout;
}

/* Output pair (R, X), (R, X+1) of block k: depthwise from the expanded ring, project, residual. */
static void block_out(int k, uint16_t R, uint16_t X)
{
    const block_layer_t *B = &k_blocks[k];
    const int8_t *taps[2][9];
    int hin = B->hin, win = B->win;
    for (int d = 0; d < 2; d++) {
        for (int ky = 0; ky < 3; ky++) {
            for (int kx = 0; kx < 3; kx++) {
                int ir = R * B->stride + ky - 1, ic = (X + d) * B->stride + kx - 1;
                taps[d][ky * 3 + kx] = ir < 0 || ir >= hin || ic < 0 || ic >= win ? k_zeros : ering_px(k, ir, ic);
            }
        }
    }
    int8_t *dw0 = g.tmp.dw[0], *dw1 = g.tmp.dw[1], *o0 = g.bout[k & 1][0], *o1 = g.bout[k & 1][1];
    if (g.opt) {
        /* Stride 1 away from the left and right edges: each kernel row's four input pixels are
         * consecutive in the ring unless they straddle its end. */
        const int8_t *rows[3];
        bool regular = B->stride == 1 && X >= 1 && X + 2 < win;
        for (int ky = 0; ky < 3 && regular; ky++) {
            int ir = R + ky - 1;
            uint32_t pos = (uint32_t)(ir * win + X - 1) % k_block_bufs[k].elen;
            rows[ky] = ir < 0 || ir >= hin ? k_zeros : ering_px(k, ir, X - 1);
            regular = rows[ky] == k_zeros || pos + 4 <= k_block_bufs[k].elen;
        }
        if (regular) {
            dw3x3s1x2_opt(&B->dw, rows, dw0, dw1);
        } else {
            dw3x3x2_opt(&B->dw, taps[0], taps[1], dw0, dw1);
        }
        pw2_opt(&B->pr, dw0, dw1, o0, o1);
    } else {
        dw3x3_ref(&B->dw, taps[0], dw0);
        dw3x3_ref(&B->dw, taps[1], dw1);
        pw_ref(&B->pr, dw0, o0);
        pw_ref(&B->pr, dw1, o1);
    }
    uint16_t cout = B->pr.cout;
    if (B->residual) {
        const block_bufs_t *bb = &k_block_bufs[k];
        int8_t *out[2] = {o0, o1};
        for (int d = 0; d < 2; d++) {
            const int8_t *xin = bb->rring + (uint32_t)(R * win + X + d) % bb->rlen * B->ex.cin;
            for (uint16_t c = 0; c < cout; c++) {
                int64_t v;
                if (g.res_opt[k]) {
                    v = (int64_t)rqp(&g.res_p[k], out[d][c]) + rqp(&g.res_x[k], xin[c]);
                } else {
                    v = rq_ref(out[d][c], B->res_mp, B->res_sp) + rq_ref(xin[c], B->res_mx, B->res_sx);
                }
                out[d][c] = (int8_t)(v < -128 ? -128 : v > 127 ? 127 : v);
            }
        }
    }
    tap(B->tap_dw, R, X, dw0, B->dw.c);
    tap(B->tap_dw, R, (uint16_t)(X + 1), dw1, B->dw.c);
    tap(B->tap_out, R, X, o0, cout);
    tap(B->tap_out, R, (uint16_t)(X + 1), o1, cout);
    source_push(k, R, X, o0, o1);
}

/* Input pair (r, x), (r, x+1) of block k (x even). Stride 1: output (R, X) needs input
 * (min(R+1, H-1), min(X+1, W-1)), so after the pair at x the output pair (r-1, x-2) is ready, plus
 * (r-1, W-2) at the row's end and the whole last row after the last pair; its taps reach back to
 * (r-2, x-3): a ring of 2W+5 pixels. Stride 2: output pair (R, X) reads rows 2R-1..2R+1 and
 * columns 2X-1..2X+3, ready after input pair (2R+1, 2X+2), reaching back to (r-2, x-3) too.
 * The residual needs input (R, X) while (r, x+1) is the newest: W+4 pixels. */
static void block_push(int k, uint16_t r, uint16_t x, const int8_t *p0, const int8_t *p1)
{
    const block_layer_t *B = &k_blocks[k];
    const block_bufs_t *bb = &k_block_bufs[k];
    int8_t *e0 = ering_px(k, r, x), *e1 = ering_px(k, r, x + 1);
    if (g.opt) {
        pw2_opt(&B->ex, p0, p1, e0, e1);
    } else {
        pw_ref(&B->ex, p0, e0);
        pw_ref(&B->ex, p1, e1);
    }
    tap(B->tap_ex, r, x, e0, B->ex.cout);
    tap(B->tap_ex, r, (uint16_t)(x + 1), e1, B->ex.cout);
    if (B->residual) {
        uint16_t cin = B->ex.cin;
        memcpy(bb->rring + (uint32_t)(r * B->win + x) % bb->rlen * cin, p0, cin);
        memcpy(bb->rring + (uint32_t)(r * B->win + x + 1) % bb->rlen * cin, p1, cin);
    }
    int w = B->win, h = B->hin;
    if (B->stride == 1) {
        if (r >= 1) {
            if (x >= 2) {
                block_out(k, r - 1, x - 2);
            }
            if (x == w - 2) {
                block_out(k, r - 1, (uint16_t)(w - 2));
            }
        }
        if (r == h - 1 && x == w - 2) {
            for (uint16_t X = 0; X < w; X += 2) {
                block_out(k, r, X);
            }
        }
    } else if ((r & 1) && x >= 2 && ((x - 2) & 3) == 0) {
        block_out(k, (r - 1) / 2, (x - 2) / 2);
    }
}

/* ---- RNNPool ----------------------------------------------------------------------------------- */

/* Pooled pixel (r, c) of the 40x40 map: tap, then into block 1 in pairs. */
static void pool_emit(uint16_t r, uint16_t c, const int8_t *px)
{
    tap(ENGINE_TAP_RNNPOOL, r, c, px, POOL_C);
    if ((c & 1) == 0) {
        memcpy(g.pend, px, POOL_C);
        return;
    }
    engine_stage_t prev = st_switch(ENGINE_ST_BLOCK1);
    block_push(0, r, c - 1, g.pend, px);
    st_switch(prev);
}

/* RNN1 over 8 conv1 pixels, given as two runs of 4 with a fixed stride each (a column segment
 * wraps around the conv1 ring halfway). Reference path: the summary h. */
static void rnn1_ref(const int8_t *x0, const int8_t *x1, uint32_t stride, int16_t h[HID])
{
    int32_t x[PATCH][C1_C];
    for (int t = 0; t < PATCH; t++) {
        const int8_t *p = (t < 4 ? x0 + t * stride : x1 + (t - 4) * stride);
        for (int c = 0; c < C1_C; c++) {
            x[t][c] = p[c];
        }
    }
    fg_seq_ref(&k_rnn[0], &x[0][0], PATCH, false, h);
}

static void rnn1_opt(const int8_t *x0, const int8_t *x1, uint32_t stride, int16_t h[HID])
{
    int32_t wxz[PATCH][HID];
    fg_wxz4_opt(&g.fg[0], x0, stride, 4, wxz);
    fg_wxz4_opt(&g.fg[0], x1, stride, 4, wxz + 4);
    const int32_t *steps[PATCH];
    for (int t = 0; t < PATCH; t++) {
        steps[t] = wxz[t];
    }
    fg_run_opt(&g.fg[0], steps, false, h);
}

static void rnn1(const int8_t *x0, const int8_t *x1, uint32_t stride, int16_t h[HID])
{
    if (g.fg_opt[0]) {
        rnn1_opt(x0, x1, stride, h);
    } else {
        rnn1_ref(x0, x1, stride, h);
    }
}

/* Row segment j of conv1 row y. */
static void row_segment(uint16_t y, uint16_t j, int16_t h[HID])
{
    const int8_t *x = g.c1[y % C1_RING] + j * 4 * C1_C;
    rnn1(x, x + 4 * C1_C, C1_C, h);
}

/* Column segment of column c over conv1 rows 4i..4i+7, into the column ring. */
static void col_segment(uint16_t i, uint16_t c)
{
    _Alignas(4) int16_t h[HID];
    const int8_t *x0 = g.c1[(4 * i) % C1_RING] + c * C1_C, *x1 = g.c1[(4 * i + 4) % C1_RING] + c * C1_C;
    rnn1(x0, x1, C1_ROW, h);
    if (g.fg_opt[1]) {
        fg_wxz16_opt(&g.fg[1], h, g.col.wxz[c % PATCH]);
    } else {
        memcpy(g.col.h[c % PATCH], h, sizeof h);
    }
}

/* RNN2 over patch (i, j): rows = the 8 row summaries (4 kept in A, 4 new), cols = the column
 * ring. Output [rows fwd, rows bwd, cols fwd, cols bwd]. */
static void rnn2_patch(uint16_t j, const int16_t (*a)[HID], const int16_t (*b)[HID], int16_t out[4 * HID])
{
    if (g.fg_opt[1]) {
        int32_t wr[PATCH][HID];
        const int32_t *rows[PATCH], *cols[PATCH];
        for (int t = 0; t < PATCH; t++) {
            fg_wxz16_opt(&g.fg[1], t < 4 ? a[t] : b[t - 4], wr[t]);
            rows[t] = wr[t];
            cols[t] = g.col.wxz[(4 * j + t) % PATCH];
        }
        fg_run_opt(&g.fg[1], rows, false, out);
        fg_run_opt(&g.fg[1], rows, true, out + HID);
        fg_run_opt(&g.fg[1], cols, false, out + 2 * HID);
        fg_run_opt(&g.fg[1], cols, true, out + 3 * HID);
    } else {
        int32_t xr[PATCH][HID], xc[PATCH][HID];
        for (int t = 0; t < PATCH; t++) {
            for (int c = 0; c < HID; c++) {
                xr[t][c] = t < 4 ? a[t][c] : b[t - 4][c];
                xc[t][c] = g.col.h[(4 * j + t) % PATCH][c];
            }
        }
        fg_seq_ref(&k_rnn[1], &xr[0][0], PATCH, false, out);
        fg_seq_ref(&k_rnn[1], &xr[0][0], PATCH, true, out + HID);
        fg_seq_ref(&k_rnn[1], &xc[0][0], PATCH, false, out + 2 * HID);
        fg_seq_ref(&k_rnn[1], &xc[0][0], PATCH, true, out + 3 * HID);
    }
}

/* After conv1 row 4k+3: the RNN1 row segments of rows 4k..4k+3 and, for k >= 1, patch row k-1. */
static void rnnpool_burst(uint16_t k)
{
    if (k == 0) {
        st_switch(ENGINE_ST_RNN1_ROWS);
        for (uint16_t j = 0; j < NP; j++) {
            for (uint16_t t = 0; t < 4; t++) {
                row_segment(t, j, g.a[j].h[t]);
            }
        }
        return;
    }
    uint16_t pi = k - 1;
    for (uint16_t j = 0; j < NP; j++) {
        int16_t(*b)[HID] = g.tmp.burst.b;
        st_switch(ENGINE_ST_RNN1_ROWS);
        for (uint16_t t = 0; t < 4; t++) {
            row_segment(4 * k + t, j, b[t]);
        }
        st_switch(ENGINE_ST_RNN1_COLS);
        for (uint16_t c = j == 0 ? 0 : 4 * j + 4; c < 4 * j + 8; c++) {
            col_segment(pi, c);
        }
        st_switch(ENGINE_ST_RNN2);
        int16_t *hp = g.tmp.burst.hp;
        rnn2_patch(j, (const int16_t(*)[HID])g.a[j].h, (const int16_t(*)[HID])b, hp);
        tap(ENGINE_TAP_RNNPOOL_H, pi, j, hp, sizeof g.tmp.burst.hp);
        int8_t *q = g.tmp.burst.q;
        for (int c = 0; c < POOL_C; c++) {
            int64_t v = g.pool_opt ? rqp(&g.pool_q, hp[c]) : rq_ref(hp[c], RNNPOOL_POOL_M, RNNPOOL_POOL_S);
            q[c] = (int8_t)(v < -128 ? -128 : v > 127 ? 127 : v);
        }
        if (pi < NP - 1) {
            memcpy(g.a[j].h, b, sizeof g.tmp.burst.b);
        } else {
            memcpy(g.a[j].px, q, POOL_C);
        }
        pool_emit(pi, j, q);
        if (j == NP - 1) {
            pool_emit(pi, NP, q);
        }
    }
    if (pi == NP - 1) {
        for (uint16_t j = 0; j <= NP; j++) {
            pool_emit(NP, j, g.a[j < NP ? j : NP - 1].px);
        }
    }
}

/* ---- API ------------------------------------------------------------------------------------- */

void engine_use_optimised(bool on)
{
    s_want_opt = DSP_NATIVE ? true : on;
}

bool engine_optimised(void)
{
    return s_want_opt;
}

uint32_t engine_optimised_layers(void)
{
    uint32_t n = 0;
    if (g.opt) {
        n += 1u + 3u * 4u + 3u + 4u; /* conv1, block layers, norms, heads: no value preconditions */
        n += (uint32_t)g.fg_opt[0] + (uint32_t)g.fg_opt[1];
    }
    return n;
}

void engine_set_tap(engine_tap_fn fn, void *ctx)
{
    s_tap = fn;
    s_tap_ctx = ctx;
}

const engine_tap_info_t *engine_tap_info(engine_tap_t t)
{
    return (unsigned)t < ENGINE_TAP_COUNT ? &k_tap_info[t] : NULL;
}

const char *engine_stage_name(engine_stage_t st)
{
    return (unsigned)st < ENGINE_ST_COUNT ? k_stage_names[st] : "?";
}

const engine_stage_stats_t *engine_stage_stats(void)
{
    return &g.stats;
}

void engine_reset(void)
{
    bool opt = s_want_opt;
    /* Only the state that must start clean: the rings are always written before they are read,
     * except the head accumulators, which are added to. */
    memset(g.h1, 0, sizeof g.h1);
    memset(g.h2, 0, sizeof g.h2);
    memset(g.h3, 0, sizeof g.h3);
    memset(g.h4, 0, sizeof g.h4);
    topk_init(&g.topk, g.topk_items, ENGINE_TOP_K);
    g.candidates = 0;
    g.rows_in = 0;
    g.opt = opt;
    g.fg_opt[0] = opt && fg_prepare(&k_rnn[0], &g.fg[0], g.fg_w1);
    g.fg_opt[1] = opt && fg_prepare(&k_rnn[1], &g.fg[1], g.fg_w2);
    for (int k = 0; k < 4; k++) {
        const block_layer_t *B = &k_blocks[k];
        /* residual operands are int8 */
        g.res_opt[k] = opt && B->residual && rqp_prepare(B->res_mp, B->res_sp, 128, &g.res_p[k]) &&
                       rqp_prepare(B->res_mx, B->res_sx, 128, &g.res_x[k]);
    }
    g.pool_opt = opt && rqp_prepare(RNNPOOL_POOL_M, RNNPOOL_POOL_S, 32768, &g.pool_q);
    for (int k = 0; k < 4; k++) { /* face - background of two int8 logits */
        g.score_opt[k] = opt && rqp_prepare(k_heads[k].score_m, k_heads[k].score_s, 255, &g.score_q[k]);
    }
    memset(&g.stats, 0, sizeof g.stats);
    for (int s = 0; s < ENGINE_ST_COUNT; s++) {
        g.stats.macs[s] = k_stage_macs[s];
    }
    g.t_reset = board_ticks64();
}

int engine_push_row(const uint8_t *row)
{
    if (row == NULL) {
        return ENGINE_E_ARG;
    }
    if (g.rows_in >= IN_H) {
        return ENGINE_E_TOO_MANY_ROWS;
    }
    st_begin(ENGINE_ST_CONV1);
    uint32_t t_entry = g.st_last;
    uint16_t y = g.rows_in++;
    if ((y & 1) == 0) {
        memcpy(g.img_even, row, IN_W);
    } else {
        uint16_t i = y / 2;
        int8_t *out = g.c1[i % C1_RING];
        const uint8_t *above = i == 0 ? NULL : g.img_odd;
        if (g.opt) {
            conv1_row_opt(&k_conv1, above, g.img_even, row, IN_W, out);
        } else {
            conv1_row_ref(&k_conv1, above, g.img_even, row, IN_W, out);
        }
        tap(ENGINE_TAP_CONV1, i, 0, out, C1_ROW);
        memcpy(g.img_odd, row, IN_W);
        if (i % 4 == 3) {
            rnnpool_burst(i / 4);
        }
    }
    st_switch(ENGINE_ST_CONV1);
    uint32_t spent = g.st_last - t_entry;
    g.stats.max_row_ticks = spent > g.stats.max_row_ticks ? spent : g.stats.max_row_ticks;
    return 0;
}

/* Box of a kept candidate, clipped corners in Q4 (spec: "Decoding"). */
static void decode_box(const cand_t *c, int32_t box[4])
{
    int k = c->anchor < k_heads[1].anchor0 ? 0 : c->anchor < k_heads[2].anchor0 ? 1 : c->anchor < k_heads[3].anchor0 ? 2 : 3;
    const head_layer_t *Hd = &k_heads[k];
    int32_t idx = c->anchor - Hd->anchor0, i = idx / Hd->grid, j = idx % Hd->grid;
    int32_t step = Hd->step;
    int32_t cx = ((j * step) << 4) + (step << 3) + (int32_t)rq_ref(c->raw[0], Hd->dc_m, Hd->dc_s);
    int32_t cy = ((i * step) << 4) + (step << 3) + (int32_t)rq_ref(c->raw[1], Hd->dc_m, Hd->dc_s);
    int32_t w = Hd->wlut[c->raw[2] + 128], h = Hd->wlut[c->raw[3] + 128];
    int32_t x1 = cx - (w >> 1), y1 = cy - (h >> 1);
    int32_t v[4] = {x1, y1, x1 + w, y1 + h};
    const int32_t limit = IN_W << 4;
    for (int n = 0; n < 4; n++) {
        box[n] = v[n] < 0 ? 0 : v[n] > limit ? limit : v[n];
    }
}

int engine_finish(engine_result_t *out)
{
    if (out == NULL) {
        return ENGINE_E_ARG;
    }
    if (g.rows_in != IN_H) {
        return ENGINE_E_INCOMPLETE;
    }
    st_begin(ENGINE_ST_NMS);
    uint32_t n = topk_sort(&g.topk);
    out->count = nms_select(g.topk_items, n, decode_box, RNNPOOL_NMS_NUM, RNNPOOL_NMS_DEN, out->boxes,
                            ENGINE_MAX_BOXES);
    out->candidates = g.candidates;
    st_switch(ENGINE_ST_NMS);
    uint64_t sum = 0;
    for (int s = 0; s < ENGINE_ST_COUNT; s++) {
        sum += g.stats.ticks[s];
    }
    g.stats.engine_ticks = sum;
    g.stats.total_ticks = board_ticks64() - g.t_reset;
    g.rows_in = IN_H + 1; /* a second finish or push needs a reset */
    return 0;
}
