/* Kernel families of the streaming engine. Each family has a plain reference version (`_ref`,
 * written to read like docs/model-format.md) and an optimised version (`_opt`) built on the
 * primitives of eng_dsp.h: real Cortex-M4 DSP instructions when RNNPOOL_ARM_DSP is defined,
 * their portable emulation otherwise, so both versions are compiled and compared on the host.
 *
 * The engine calls the optimised versions on the ARM boards and whichever eng_set_kernels()
 * selects on the host (reference by default). The optimised versions have preconditions on the
 * model's scales (documented per family); eng_*_ok() checks them once per model and the engine
 * falls back to the reference version where one does not hold, so no model value can make the
 * engine wrong, only slower.
 *
 * Layouts are HWC with channel fastest, as in the golden vectors. */
#ifndef ENG_KERNELS_H
#define ENG_KERNELS_H

#include <stdbool.h>
#include <stdint.h>

/* ---- requantisation (eng_requant.c) ------------------------------------------------------ */

/* rq(acc, m, s) = (acc * m + 2^(s-1)) >> s in 64 bits, for any s in [1, 62]. */
int64_t rq_ref(int64_t acc, int32_t m, int32_t s);

/* Same for s >= 32 and any int32 acc, from the high word of the 32x32 product (SMMLA/SMMULR):
 * (acc*m + 2^(s-1)) >> s == (hi32(acc*m) + 2^(s-33)) >> (s-32) because the dropped low word is
 * below one unit of the high word, so it can never carry into the floor. */
static inline int32_t rq_hi(int32_t acc, int32_t m, int32_t s);

/* rq then clamp to [lo, hi]; uses rq_hi when s >= 32, rq_ref otherwise. */
static inline int32_t rq_clamp(int32_t acc, int32_t m, int32_t s, int32_t lo, int32_t hi);

/* Output clamps: the two ranges every layer of this model uses are one SSAT/USAT instruction;
 * the kind is a compile-time function of the layer's lo/hi (CLAMP_KIND), and the optimised kernels
 * are instantiated per kind so the test is not in the inner loops. Any other range still works. */
enum { CLAMP_ANY = 0, CLAMP_S8 = 1, CLAMP_U7 = 2 };
#define CLAMP_KIND(lo, hi) ((lo) == -128 && (hi) == 127 ? CLAMP_S8 : (lo) == 0 && (hi) == 127 ? CLAMP_U7 : CLAMP_ANY)
static inline int32_t clamp_k(int32_t v, int kind, int32_t lo, int32_t hi);

/* rq_clamp with the clamp kind known: one SMMLA, one shift, one saturation when s >= 33. */
static inline int32_t rq_clamp_k(int32_t acc, int32_t m, int32_t s, int kind, int32_t lo, int32_t hi);

/* Requantise and clamp two accumulators of one channel: for s >= 33 (every layer here) one SMMLA
 * and one shift each (rq_hi), with the channel's rounding constant derived once for both. */
static inline void rq2_clamp(int32_t a0, int32_t a1, int32_t m, int32_t s, int kind, int32_t lo, int32_t hi,
                             int8_t *o0, int8_t *o1);

/* rq for operands known to satisfy |acc| <= bound, prepared once: (SMMLA(acc << pre, m, rnd) >> sh).
 * Shifting acc left by pre = 33 - s (when s < 33) turns the shift into s' = 33, and from 33 up
 * the high word of the product holds every bit that can reach the result (see rq_hi). Exact while
 * bound << pre < 2^31; rqp_prepare returns false otherwise (or for s outside [1, 62]). */
typedef struct {
    int32_t m, rnd, sh, pre;
} rqp_t;

bool rqp_prepare(int32_t m, int32_t s, int64_t bound, rqp_t *q);
static inline int32_t rqp(const rqp_t *q, int32_t acc);

/* ---- LUT and square root (eng_lut.c) ------------------------------------------------------ */

/* The spec's LUT(table, v) on a 257-entry Q15 table over [-8, 8) in Q10. */
int32_t lut_ref(const int16_t *table, int64_t v);
/* Same, one unaligned load of the two neighbouring entries and one SMLAD for the
 * interpolation: t[k]*(64-f) + t[k+1]*f + 32 = 64*t[k] + (t[k+1]-t[k])*f + 32, and 64*t[k]
 * passes through the >> 6 exactly. `mid` is &table[128]; v any int32. */
static inline int32_t lut_opt(const int16_t *mid, int32_t v);

uint32_t isqrt64_ref(uint64_t n); /* exact floor(sqrt(n)) */
uint32_t isqrt32(uint32_t n);     /* exact floor(sqrt(n)), digit by digit */

/* ---- conv1: 3x3 stride 2, 1 -> 4 channels, from raw pixels (eng_conv3x3.c) ---------------- */

typedef struct {
    const int8_t *w; /* (cout, 3, 3, cin) */
    const int32_t *b, *m, *s;
    int32_t lo, hi;
    uint16_t cin, cout;
    uint8_t kind; /* CLAMP_KIND(lo, hi) */
} conv_layer_t;

/* One output row of conv1 from input rows 2i-1, 2i, 2i+1 given as raw pixels (x = p - 128);
 * r0 == NULL is the zero padding above the image. out: width/2 x cout. */
void conv1_row_ref(const conv_layer_t *L, const uint8_t *r0, const uint8_t *r1, const uint8_t *r2,
                   uint16_t width, int8_t *out);
void conv1_row_opt(const conv_layer_t *L, const uint8_t *r0, const uint8_t *r1, const uint8_t *r2,
                   uint16_t width, int8_t *out);

/* ---- 3x3 stride-1 conv as a scatter of input pixels into output accumulators --------------- */

/* Adds input pixels p0 and p1 (cin int8 each) into the int32 accumulators (cout each) of the
 * outputs they touch: acc0[ky*3+kx] is the output that tap (ky, kx) of pixel p0 feeds (the output
 * at row r+1-ky, column c+1-kx), NULL where that output lies outside the map; acc1 likewise for
 * p1. Bias and requantisation come later (conv_finish), when an output has all its inputs. */
void conv3x3_scatter2_ref(const conv_layer_t *L, const int8_t *p0, const int8_t *p1,
                          int32_t *const acc0[9], int32_t *const acc1[9]);
void conv3x3_scatter2_opt(const conv_layer_t *L, const int8_t *p0, const int8_t *p1,
                          int32_t *const acc0[9], int32_t *const acc1[9]);
/* out[o] = clamp(rq(acc[o] + b[o])); one family with the convs, shared by ref and opt. */
void conv_finish(const conv_layer_t *L, const int32_t *acc, int8_t *out);

/* ---- depthwise 3x3 (eng_depthwise.c) ------------------------------------------------------ */

typedef struct {
    const int8_t *w; /* (c, 3, 3) */
    const int32_t *b, *m, *s;
    int32_t lo, hi;
    uint16_t c;
    uint8_t kind; /* CLAMP_KIND(lo, hi) */
} dw_layer_t;

/* One output pixel: taps[ky*3+kx] points at the input pixel (c channels) under that tap, or at
 * zeros for the padding. */
void dw3x3_ref(const dw_layer_t *L, const int8_t *const taps[9], int8_t *out);
/* Two horizontally adjacent output pixels (taps0 and taps1), sharing each channel's weights. */
void dw3x3x2_opt(const dw_layer_t *L, const int8_t *const taps0[9], const int8_t *const taps1[9],
                 int8_t *out0, int8_t *out1);
/* The same for stride 1 when each kernel row's four input pixels (columns X-1..X+2) lie c bytes
 * apart from rows[k] (zeros included): the engine's common case, with shared loads. */
void dw3x3s1x2_opt(const dw_layer_t *L, const int8_t *const rows[3], int8_t *out0, int8_t *out1);

/* ---- pointwise 1x1 (eng_pointwise.c) ------------------------------------------------------ */

typedef struct {
    const int8_t *w; /* (cout, cin) */
    const int32_t *b, *m, *s;
    int32_t lo, hi;
    uint16_t cin, cout; /* cin a multiple of 4, cout a multiple of 2 */
    uint8_t kind;       /* CLAMP_KIND(lo, hi) */
} pw_layer_t;

#define PW_MAX_CIN 128

void pw_ref(const pw_layer_t *L, const int8_t *in, int8_t *out);
/* Two pixels at once: each weight word is loaded and sign-extended once for both. */
void pw2_opt(const pw_layer_t *L, const int8_t *in0, const int8_t *in1, int8_t *out0, int8_t *out1);

/* ---- FastGRNN (eng_fastgrnn.c) ------------------------------------------------------------ */

#define FG_HIDDEN 16
#define FG_STEPS 8
#define FG_MAX_IN 16

typedef struct {
    const int8_t *W, *U; /* (hidden, nin), (hidden, hidden) */
    const int32_t *mw, *sw, *mu, *su, *bz, *bc;
    int32_t zeta, nu;
    const int16_t *sig, *tanh; /* 257-entry Q15 tables */
    uint16_t nin;
} fg_layer_t;

/* The spec, literally: final hidden state of one sequence x[t][nin] (t in 0..steps-1), run
 * forwards or backwards (reverse). */
void fg_seq_ref(const fg_layer_t *L, const int32_t *x, int steps, bool reverse, int16_t h[FG_HIDDEN]);

/* Optimised form, prepared once per model (fg_prepare) into RAM:
 *  - U (and W of a 16-input layer) widened to int16 pairs, the SMLAD operand;
 *  - per unit: the rq constants of U h and W x as rqp_t, exact for any operands because the
 *    bounds come from the operand types alone (U h needs su >= 33, so that it takes no pre-shift:
 *    |U h| may reach 2^26);
 *  - biases as bz and bc - bz, since both gates see the same pre-activation.
 * W x is computed once per input vector ("wxz" = rq(W x) + bz, int32), so a sequence run
 * forwards and backwards, or an input shared by two patches, pays for it once. */
typedef struct {
    int32_t m, rnd, sh, dbc; /* rq of U h (as rqp_t with pre = 0), and bc - bz */
} fg_unit_t;

/* Per-unit W block: the widened weight pairs (pre-shift folded in), then m, rnd, sh, bz. */
#define FG_WBLK(nin) ((nin) / 2 + 4)

typedef struct {
    uint32_t u[FG_HIDDEN][FG_HIDDEN / 2]; /* U[i][2j] | U[i][2j+1] << 16 */
    fg_unit_t unit[FG_HIDDEN];
    const uint32_t *wblk; /* FG_HIDDEN blocks of FG_WBLK(nin) words, storage given to fg_prepare */
    int32_t nzeta2, zn;   /* -2 zeta, zeta + nu */
    const int16_t *sig_mid, *tanh_mid;
    uint16_t nin;
} fg_prep_t;

/* false when a precondition of the optimised path does not hold for this layer's values. */
bool fg_prepare(const fg_layer_t *L, fg_prep_t *P, uint32_t *wblk);
/* wxz for `steps` steps of a 4-input layer: x int8, step t at x + t * stride. */
void fg_wxz4_opt(const fg_prep_t *P, const int8_t *x, uint32_t stride, int steps, int32_t (*wxz)[FG_HIDDEN]);
/* wxz for one step of a 16-input layer, x int16 (RNN1 summaries), 4-byte aligned. */
void fg_wxz16_opt(const fg_prep_t *P, const int16_t x[FG_HIDDEN], int32_t wxz[FG_HIDDEN]);
/* 8 steps from h = 0; wxz[t] are the steps in forward order. */
void fg_run_opt(const fg_prep_t *P, const int32_t *const wxz[FG_STEPS], bool reverse, int16_t h[FG_HIDDEN]);

/* ---- L2 norm (eng_l2norm.c) --------------------------------------------------------------- */

typedef struct {
    const int32_t *m, *s;
    uint16_t c;
} norm_layer_t;

void l2norm_ref(const norm_layer_t *L, const int8_t *in, int8_t *out);
void l2norm_opt(const norm_layer_t *L, const int8_t *in, int8_t *out);

/* ---- inline definitions ------------------------------------------------------------------- */

#include "eng_dsp.h"

static inline int32_t rq_hi(int32_t acc, int32_t m, int32_t s)
{
    if (s == 32) {
        return dsp_smmulr(acc, m);
    }
    int32_t r = s - 32;
    return dsp_smmla(acc, m, (int32_t)(1u << (r - 1))) >> r;
}

static inline int32_t rq_clamp(int32_t acc, int32_t m, int32_t s, int32_t lo, int32_t hi)
{
    int32_t v;
    if (s >= 32) {
        v = rq_hi(acc, m, s);
    } else { /* 64-bit, and clamped there: below 2^-31 scale the result may not fit 32 bits */
        int64_t w = rq_ref(acc, m, s);
        v = w < lo ? lo : w > hi ? hi : (int32_t)w;
    }
    return v < lo ? lo : v > hi ? hi : v;
}

static inline int32_t clamp_k(int32_t v, int kind, int32_t lo, int32_t hi)
{
    if (kind == CLAMP_S8) {
        return dsp_ssat(v, 8);
    }
    if (kind == CLAMP_U7) {
        return dsp_usat(v, 7);
    }
    return v < lo ? lo : v > hi ? hi : v;
}

static inline int32_t rq_clamp_k(int32_t acc, int32_t m, int32_t s, int kind, int32_t lo, int32_t hi)
{
    if (s >= 33) {
        int32_t r = s - 32;
        return clamp_k(dsp_smmla(acc, m, (int32_t)(1u << (r - 1))) >> r, kind, lo, hi);
    }
    return rq_clamp(acc, m, s, lo, hi);
}

static inline void rq2_clamp(int32_t a0, int32_t a1, int32_t m, int32_t s, int kind, int32_t lo, int32_t hi,
                             int8_t *o0, int8_t *o1)
{
    if (s >= 33) {
        int32_t r = s - 32, rnd = (int32_t)(1u << (r - 1));
        *o0 = (int8_t)clamp_k(dsp_smmla(a0, m, rnd) >> r, kind, lo, hi);
        *o1 = (int8_t)clamp_k(dsp_smmla(a1, m, rnd) >> r, kind, lo, hi);
    } else {
        *o0 = (int8_t)rq_clamp(a0, m, s, lo, hi);
        *o1 = (int8_t)rq_clamp(a1, m, s, lo, hi);
    }
}

static inline int32_t rqp(const rqp_t *q, int32_t acc)
{
    return dsp_smmla((int32_t)((uint32_t)acc << q->pre), q->m, q->rnd) >> q->sh;
}

static inline int32_t lut_opt(const int16_t *mid, int32_t v)
{
    v = dsp_ssat(v, 14); /* [-8192, 8191]: the table's domain */
    int32_t k = v >> 6;
    uint32_t f = (uint32_t)v & 63u;
    uint32_t pair = dsp_load32(mid + k);   /* t[k] | t[k+1] << 16 */
    uint32_t wf = f * 0xFFFFu + 64u;      /* (64 - f) | f << 16 */
    return dsp_smlad(pair, wf, 32) >> 6;
}

#endif /* ENG_KERNELS_H */
