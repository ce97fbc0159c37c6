/* Kernel edge cases: every optimised kernel (DSP instructions emulated on the host) against its
 * reference on random data and on the cases that break fixed-point code: first/last rows and
 * padding, stride 2, saturation at both ends, LUT ends and clamps, exact square roots, requant with
 * extreme shifts, FastGRNN with extreme states, and top-K ordering with ties and overflow.
 * The reference kernels themselves are pinned to the numpy reference by test_engine_vectors. */
#include "engine/eng_kernels.h"
#include "engine/eng_post.h"
#include "rnnpool_model.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int g_fail;
static long g_checks;
static uint64_t g_rng = 0x9E3779B97F4A7C15ull;

#define CHECK(cond, ...) \
    do { \
        g_checks++; \
        if (!(cond)) { \
            if (g_fail++ < 20) { \
                printf("FAIL %s:%d: ", __func__, __LINE__); \
                printf(__VA_ARGS__); \
                printf("\n"); \
            } \
        } \
    } while (0)

static uint32_t rnd32(void)
{
    g_rng = g_rng * 6364136223846793005ull + 1442695040888963407ull;
    return (uint32_t)(g_rng >> 32);
}

static int32_t rnd_range(int32_t lo, int32_t hi) /* inclusive */
{
    return (int32_t)(lo + (int64_t)(rnd32() % (uint64_t)((int64_t)hi - lo + 1)));
}

/* int8 data: uniform, or stuck at the extremes a third of the time (saturation paths). */
static void fill8(int8_t *p, size_t n, int mode)
{
    for (size_t i = 0; i < n; i++) {
        p[i] = mode == 0 ? (int8_t)rnd32() : mode == 1 ? (rnd32() & 1 ? 127 : -128) : (int8_t)rnd_range(0, 127);
    }
}

/* ---- requantisation ---------------------------------------------------------------------------- */

static void test_requant(void)
{
    static const int32_t accs[] = {0, 1, -1, 2, -2, 127, -128, 65535, -65536, 0x3FFFFFFF, -0x40000000,
                                   INT32_MAX, INT32_MIN, INT32_MIN + 1};
    for (int32_t s = 32; s <= 62; s++) {
        for (size_t i = 0; i < sizeof accs / sizeof accs[0]; i++) {
            for (int mi = 0; mi < 3; mi++) {
                int32_t m = mi == 0 ? (1 << 30) : mi == 1 ? INT32_MAX : (int32_t)(0x40000000u + (rnd32() >> 2));
                int64_t want = rq_ref(accs[i], m, s);
                CHECK(rq_hi(accs[i], m, s) == want, "rq_hi(%d, %d, %d) = %d, want %lld", accs[i], m, s,
                      rq_hi(accs[i], m, s), (long long)want);
            }
        }
    }
    for (int n = 0; n < 200000; n++) {
        int32_t acc = (int32_t)rnd32(), m = (int32_t)(0x40000000u + (rnd32() >> 2)), s = rnd_range(32, 62);
        CHECK(rq_hi(acc, m, s) == rq_ref(acc, m, s), "rq_hi random %d %d %d", acc, m, s);
    }
    /* rq_clamp: every shift, including the small ones where the result overflows 32 bits */
    for (int32_t s = 1; s <= 62; s++) {
        for (size_t i = 0; i < sizeof accs / sizeof accs[0]; i++) {
            int32_t m = (int32_t)(0x40000000u + (rnd32() >> 2));
            int64_t v = rq_ref(accs[i], m, s);
            int32_t want = v < -128 ? -128 : v > 127 ? 127 : (int32_t)v;
            CHECK(rq_clamp(accs[i], m, s, -128, 127) == want, "rq_clamp(%d, %d, %d)", accs[i], m, s);
            int8_t o0, o1;
            for (int kind = CLAMP_ANY; kind <= CLAMP_U7; kind++) {
                int32_t lo = kind == CLAMP_U7 ? 0 : kind == CLAMP_S8 ? -128 : -7;
                int32_t hi = kind == CLAMP_ANY ? 96 : 127;
                int32_t w = v < lo ? lo : v > hi ? hi : (int32_t)v;
                rq2_clamp(accs[i], accs[i] == INT32_MIN ? 0 : -accs[i], m, s, kind, lo, hi, &o0, &o1);
                CHECK(o0 == w, "rq2_clamp kind %d s %d acc %d: %d want %d", kind, s, accs[i], o0, w);
            }
        }
    }
    /* rqp: exact within its bound for every shift it accepts; refuses what it cannot do */
    for (int32_t s = 1; s <= 62; s++) {
        for (int64_t bound = 1; bound <= (1ll << 30); bound <<= 3) {
            rqp_t q;
            int32_t m = (int32_t)(0x40000000u + (rnd32() >> 2));
            bool ok = rqp_prepare(m, s, bound, &q);
            int32_t pre = s < 33 ? 33 - s : 0;
            CHECK(ok == ((bound << pre) < (1ll << 31)), "rqp_prepare(s=%d, bound=%lld) = %d", s, (long long)bound, ok);
            if (!ok) {
                continue;
            }
            int32_t tests[] = {(int32_t)bound, (int32_t)-bound, 0, 1, -1, rnd_range((int32_t)-bound, (int32_t)bound)};
            for (size_t i = 0; i < sizeof tests / sizeof tests[0]; i++) {
                CHECK(rqp(&q, tests[i]) == rq_ref(tests[i], m, s), "rqp s=%d acc=%d", s, tests[i]);
            }
        }
    }
    CHECK(!rqp_prepare(1 << 30, 0, 1, &(rqp_t){0}), "s = 0 must be refused");
    CHECK(!rqp_prepare(1 << 30, 63, 1, &(rqp_t){0}), "s = 63 must be refused");
}

/* ---- LUT and square roots ------------------------------------------------------------------------ */

static void test_lut(void)
{
    int16_t synth[257];
    for (int k = 0; k < 257; k++) { /* the worst neighbours an int16 table can have */
        synth[k] = (int16_t)(k & 1 ? 32767 : -32768);
    }
    const int16_t *tables[] = {rnnpool_lut_sigmoid, rnnpool_lut_tanh, synth};
    for (int t = 0; t < 3; t++) {
        for (int32_t v = -8300; v <= 8300; v++) {
            CHECK(lut_opt(tables[t] + 128, v) == lut_ref(tables[t], v), "lut table %d v %d", t, v);
        }
        static const int32_t far[] = {INT32_MIN, -1000000, -8193, 8192, 8193, 1000000, INT32_MAX};
        for (size_t i = 0; i < sizeof far / sizeof far[0]; i++) {
            CHECK(lut_opt(tables[t] + 128, far[i]) == lut_ref(tables[t], far[i]), "lut table %d v %d", t, far[i]);
        }
        /* ends: the clamp lands exactly on the first and the last entry */
        CHECK(lut_ref(tables[t], -8192) == tables[t][0], "lut low end");
        CHECK(lut_ref(tables[t], INT32_MIN) == tables[t][0], "lut clamps low");
        CHECK(lut_ref(tables[t], 8191) == tables[t][255] + (((tables[t][256] - tables[t][255]) * 63 + 32) >> 6),
              "lut high end");
    }
}

static void test_isqrt(void)
{
    for (uint32_t r = 0; r < 65536; r++) {
        uint32_t sq = r * r;
        CHECK(isqrt32(sq) == r, "isqrt32(%u^2)", r);
        if (r > 0) {
            CHECK(isqrt32(sq - 1) == r - 1, "isqrt32(%u^2 - 1)", r);
        }
        if (r < 65535) {
            CHECK(isqrt32(sq + 2 * r) == r, "isqrt32((%u+1)^2 - 1)", r);
        }
    }
    CHECK(isqrt32(UINT32_MAX) == 65535, "isqrt32(max)");
    for (int n = 0; n < 100000; n++) {
        uint32_t v = rnd32();
        CHECK(isqrt32(v) == isqrt64_ref(v), "isqrt32(%u)", v);
    }
    CHECK(isqrt64_ref((1ull << 52) - 1) == (1u << 26) - 1, "isqrt64 top");
    CHECK(isqrt64_ref(0) == 0 && isqrt64_ref(1) == 1 && isqrt64_ref(3) == 1 && isqrt64_ref(4) == 2, "isqrt64 small");
}

/* ---- random layers --------------------------------------------------------------------------- */

static int8_t g_w[9 * 128 * 8 + 9 * 64 * 8];
static int32_t g_b[256], g_m[256], g_s[256];

static void random_params(size_t nw, int n, int mode)
{
    fill8(g_w, nw, mode == 1 ? 1 : 0);
    for (int i = 0; i < n; i++) {
        g_b[i] = rnd_range(-20000, 20000);
        g_m[i] = (int32_t)(0x40000000u + (rnd32() >> 2));
        /* mostly the >= 33 fast path, sometimes 32 and below (generic path) */
        g_s[i] = mode == 2 ? rnd_range(20, 33) : rnd_range(33, 44);
    }
}

static void test_conv1(void)
{
    uint8_t rows[3][320];
    int8_t o_ref[640], o_opt[640];
    for (int trial = 0; trial < 60; trial++) {
        random_params(36, 4, trial % 3);
        int32_t lo = trial % 4 == 0 ? -128 : 0, hi = trial % 5 == 0 ? 90 : 127;
        conv_layer_t L = {g_w, g_b, g_m, g_s, lo, hi, 1, 4, (uint8_t)CLAMP_KIND(lo, hi)};
        for (int r = 0; r < 3; r++) {
            for (int x = 0; x < 320; x++) {
                rows[r][x] = trial % 7 == 1 ? 255 : trial % 7 == 2 ? 0 : (uint8_t)rnd32();
            }
        }
        for (int top = 0; top < 2; top++) { /* the first output row has padding above */
            const uint8_t *r0 = top ? NULL : rows[0];
            conv1_row_ref(&L, r0, rows[1], rows[2], 320, o_ref);
            conv1_row_opt(&L, r0, rows[1], rows[2], 320, o_opt);
            for (int i = 0; i < 640; i++) {
                CHECK(o_ref[i] == o_opt[i], "conv1 trial %d top %d col %d ch %d: %d vs %d", trial, top, i / 4, i % 4,
                      o_opt[i], o_ref[i]);
            }
        }
    }
}

static void test_scatter(void)
{
    int8_t p0[64], p1[64];
    int32_t acc_ref[2][9][8], acc_opt[2][9][8];
    for (int trial = 0; trial < 200; trial++) {
        uint16_t cin = trial & 1 ? 64 : 32, cout = trial & 2 ? 8 : 6;
        random_params((size_t)cout * 9 * cin, cout, trial % 3);
        conv_layer_t L = {g_w, g_b, g_m, g_s, -128, 127, cin, cout, CLAMP_S8};
        fill8(p0, cin, trial % 3);
        fill8(p1, cin, trial % 3);
        int32_t *a_ref[2][9], *a_opt[2][9];
        for (int d = 0; d < 2; d++) {
            for (int t = 0; t < 9; t++) {
                bool outside = (trial % 4 == 3) && (rnd32() % 3 == 0); /* border: some taps feed nothing */
                for (int o = 0; o < 8; o++) {
                    acc_ref[d][t][o] = acc_opt[d][t][o] = rnd_range(-1000000, 1000000);
                }
                a_ref[d][t] = outside ? NULL : acc_ref[d][t];
                a_opt[d][t] = outside ? NULL : acc_opt[d][t];
            }
        }
        conv3x3_scatter2_ref(&L, p0, p1, a_ref[0], a_ref[1]);
        conv3x3_scatter2_opt(&L, p0, p1, a_opt[0], a_opt[1]);
        CHECK(memcmp(acc_ref, acc_opt, sizeof acc_ref) == 0, "scatter trial %d", trial);
        int8_t f_ref[8], f_opt[8];
        conv_finish(&L, acc_ref[0][4], f_ref);
        conv_finish(&L, acc_opt[0][4], f_opt);
        CHECK(memcmp(f_ref, f_opt, cout) == 0, "conv_finish trial %d", trial);
    }
}

static void test_depthwise(void)
{
    static int8_t px[12][128];
    static const int8_t zeros[128];
    for (int trial = 0; trial < 300; trial++) {
        uint16_t c = trial % 3 == 0 ? 128 : 64;
        random_params((size_t)c * 9, c, trial % 3);
        int32_t lo = trial % 4 == 0 ? -128 : 0, hi = trial % 5 == 0 ? 77 : 127;
        dw_layer_t L = {g_w, g_b, g_m, g_s, lo, hi, c, (uint8_t)CLAMP_KIND(lo, hi)};
        for (int i = 0; i < 12; i++) {
            fill8(px[i], c, trial % 3);
        }
        const int8_t *t0[9], *t1[9];
        bool stride2 = trial & 1;
        for (int ky = 0; ky < 3; ky++) {
            for (int kx = 0; kx < 3; kx++) {
                /* stride 1: columns x-1..x+1 and x..x+2; stride 2: 2x-1..2x+1 and 2x+1..2x+3 */
                int c0 = kx, c1 = stride2 ? kx + 2 : kx + 1;
                t0[ky * 3 + kx] = px[ky * 4 + (c0 < 4 ? c0 : 3)];
                t1[ky * 3 + kx] = px[ky * 4 + (c1 < 4 ? c1 : 3)];
            }
        }
        if (trial % 5 == 1) { /* first row: padding above */
            t0[0] = t0[1] = t0[2] = t1[0] = t1[1] = t1[2] = zeros;
        }
        if (trial % 5 == 2) { /* first column and last column */
            t0[0] = t0[3] = t0[6] = zeros;
            t1[2] = t1[5] = t1[8] = zeros;
        }
        int8_t r0[128], r1[128], o0[128], o1[128];
        dw3x3_ref(&L, t0, r0);
        dw3x3_ref(&L, t1, r1);
        dw3x3x2_opt(&L, t0, t1, o0, o1);
        CHECK(memcmp(r0, o0, c) == 0 && memcmp(r1, o1, c) == 0, "depthwise trial %d", trial);
        if (!stride2) { /* the same pair from rows of four consecutive pixels */
            static int8_t win[3][4 * 128];
            const int8_t *rows[3];
            for (int ky = 0; ky < 3; ky++) {
                for (int j = 0; j < 4; j++) {
                    const int8_t *src = j < 3 ? t0[ky * 3 + j] : t1[ky * 3 + 2];
                    memcpy(win[ky] + j * c, src, c);
                }
                rows[ky] = win[ky];
            }
            memset(o0, 0x55, sizeof o0);
            dw3x3s1x2_opt(&L, rows, o0, o1);
            CHECK(memcmp(r0, o0, c) == 0 && memcmp(r1, o1, c) == 0, "depthwise s1 rows trial %d", trial);
        }
    }
}

static void test_pointwise(void)
{
    int8_t in0[128], in1[128], r0[128], r1[128], o0[128], o1[128];
    static const uint16_t shapes[][2] = {{64, 128}, {128, 32}, {32, 64}, {64, 32}, {64, 64}, {128, 64}, {12, 6}};
    for (int trial = 0; trial < 300; trial++) {
        uint16_t cin = shapes[trial % 7][0], cout = shapes[trial % 7][1];
        random_params((size_t)cin * cout, cout, trial % 3);
        int32_t lo = trial % 4 == 0 ? -128 : 0, hi = trial % 5 == 0 ? 100 : 127;
        pw_layer_t L = {g_w, g_b, g_m, g_s, lo, hi, cin, cout, (uint8_t)CLAMP_KIND(lo, hi)};
        fill8(in0, cin, trial % 3);
        fill8(in1, cin, (trial + 1) % 3);
        pw_ref(&L, in0, r0);
        pw_ref(&L, in1, r1);
        pw2_opt(&L, in0, in1, o0, o1);
        CHECK(memcmp(r0, o0, cout) == 0 && memcmp(r1, o1, cout) == 0, "pointwise %ux%u trial %d", cin, cout, trial);
    }
}

static void test_l2norm(void)
{
    int8_t in[64], r[64], o[64];
    static int32_t m[64], s[64];
    for (int trial = 0; trial < 3000; trial++) {
        uint16_t c = trial & 1 ? 64 : 32;
        for (int i = 0; i < c; i++) {
            m[i] = (int32_t)(0x40000000u + (rnd32() >> 2));
            s[i] = rnd_range(44, 50);
        }
        norm_layer_t L = {m, s, c};
        int kind = trial % 6;
        memset(in, 0, sizeof in);
        if (kind == 1) { /* one element of +-1: the smallest non-zero norm */
            in[rnd32() % c] = rnd32() & 1 ? 1 : -1;
        } else if (kind == 2) { /* all -128: the largest */
            memset(in, -128, sizeof in);
        } else if (kind >= 3) {
            fill8(in, c, kind == 3 ? 1 : 0);
        }
        l2norm_ref(&L, in, r);
        l2norm_opt(&L, in, o);
        CHECK(memcmp(r, o, c) == 0, "l2norm trial %d kind %d", trial, kind);
    }
}

/* ---- FastGRNN -------------------------------------------------------------------------------- */

static void check_fg_layer(const fg_layer_t *L, const char *what, int trials)
{
    static fg_prep_t P;
    static uint32_t wblk[16 * FG_WBLK(16)];
    if (!fg_prepare(L, &P, wblk)) {
        CHECK(0, "%s: fg_prepare refused a layer it should take", what);
        return;
    }
    for (int trial = 0; trial < trials; trial++) {
        int32_t x[8 * 16]; /* step t at x + t * nin, as fg_seq_ref takes it */
        int8_t x8[8][4];
        _Alignas(4) int16_t x16[8][16];
        int mode = trial % 4;
        for (int t = 0; t < 8; t++) {
            for (int j = 0; j < L->nin; j++) {
                int32_t v;
                if (L->nin == 4) {
                    v = mode == 1 ? (rnd32() & 1 ? 127 : -128) : mode == 2 ? 0 : (int8_t)rnd32();
                    x8[t][j] = (int8_t)v;
                } else {
                    v = mode == 1 ? (rnd32() & 1 ? 32767 : -32768) : mode == 2 ? 0 : rnd_range(-9000, 9000);
                    x16[t][j] = (int16_t)v;
                }
                x[t * L->nin + j] = v;
            }
        }
        int32_t wxz[8][16];
        for (int t = 0; t < 8; t++) {
            if (L->nin == 4) {
                fg_wxz4_opt(&P, x8[t], 4, 1, &wxz[t]);
            } else {
                fg_wxz16_opt(&P, x16[t], wxz[t]);
            }
        }
        const int32_t *steps[8];
        for (int t = 0; t < 8; t++) {
            steps[t] = wxz[t];
        }
        for (int rev = 0; rev < 2; rev++) {
            int16_t h_ref[16], h_opt[16];
            fg_seq_ref(L, x, 8, rev, h_ref);
            fg_run_opt(&P, steps, rev, h_opt);
            CHECK(memcmp(h_ref, h_opt, sizeof h_ref) == 0, "%s trial %d reverse %d: h[0] %d vs %d", what, trial, rev,
                  h_opt[0], h_ref[0]);
        }
    }
}

static void test_fastgrnn(void)
{
    const fg_layer_t rnn1 = {rnnpool_rnn1_W, rnnpool_rnn1_U, rnnpool_rnn1_mw, rnnpool_rnn1_sw, rnnpool_rnn1_mu,
                             rnnpool_rnn1_su, rnnpool_rnn1_bz, rnnpool_rnn1_bc, RNNPOOL_RNN1_ZETA, RNNPOOL_RNN1_NU,
                             rnnpool_lut_sigmoid, rnnpool_lut_tanh, 4};
    const fg_layer_t rnn2 = {rnnpool_rnn2_W, rnnpool_rnn2_U, rnnpool_rnn2_mw, rnnpool_rnn2_sw, rnnpool_rnn2_mu,
                             rnnpool_rnn2_su, rnnpool_rnn2_bz, rnnpool_rnn2_bc, RNNPOOL_RNN2_ZETA, RNNPOOL_RNN2_NU,
                             rnnpool_lut_sigmoid, rnnpool_lut_tanh, 16};
    check_fg_layer(&rnn1, "rnn1 (model)", 400);
    check_fg_layer(&rnn2, "rnn2 (model)", 400);

    /* synthetic layers: extreme weights, biases that drive the gates to both clamps, zeta/nu at
     * their ends, the shift ranges the preconditions allow */
    static int8_t W[256], U[256];
    static int32_t mw[16], sw[16], mu[16], su[16], bz[16], bc[16];
    for (int trial = 0; trial < 40; trial++) {
        uint16_t nin = trial & 1 ? 16 : 4;
        fill8(W, 256, trial % 3 == 1);
        fill8(U, 256, trial % 3 == 2);
        for (int i = 0; i < 16; i++) {
            mw[i] = (int32_t)(0x40000000u + (rnd32() >> 2));
            mu[i] = (int32_t)(0x40000000u + (rnd32() >> 2));
            sw[i] = nin == 4 ? rnd_range(25, 40) : rnd_range(33, 45);
            su[i] = rnd_range(33, 45);
            bz[i] = rnd_range(-12000, 12000);
            bc[i] = rnd_range(-12000, 12000);
        }
        int32_t zeta = trial % 5 == 0 ? 32768 : trial % 5 == 1 ? 0 : rnd_range(0, 32768);
        int32_t nu = trial % 7 == 0 ? 32768 : rnd_range(0, 4000);
        fg_layer_t L = {W, U, mw, sw, mu, su, bz, bc, zeta, nu, rnnpool_lut_sigmoid, rnnpool_lut_tanh, nin};
        char what[40];
        snprintf(what, sizeof what, "synthetic %d (nin %u)", trial, nin);
        check_fg_layer(&L, what, 40);
    }
    /* preconditions: a U shift too small for the fast path must be refused */
    for (int i = 0; i < 16; i++) {
        su[i] = 40;
    }
    su[3] = 20;
    fg_layer_t bad = {W, U, mw, sw, mu, su, bz, bc, 1000, 100, rnnpool_lut_sigmoid, rnnpool_lut_tanh, 16};
    static fg_prep_t P;
    static uint32_t wblk[16 * FG_WBLK(16)];
    CHECK(!fg_prepare(&bad, &P, wblk), "fg_prepare accepted su = 20");
}

/* ---- top-K and NMS ---------------------------------------------------------------------------- */

static int cmp_cand(const void *a, const void *b)
{
    return cand_worse(a, b) ? 1 : cand_worse(b, a) ? -1 : 0;
}

static void test_topk(void)
{
    static cand_t all[5000], heap[256], sorted[5000];
    for (int trial = 0; trial < 60; trial++) {
        uint32_t n = trial == 0 ? 0 : trial == 1 ? 1 : trial < 10 ? 255 + (uint32_t)trial : 100 + rnd32() % 4000;
        uint32_t cap = trial == 2 ? 0 : 256;
        /* few distinct scores and shuffled anchors: many ties, broken by anchor */
        for (uint32_t i = 0; i < n; i++) {
            all[i].score = (uint16_t)(1638 + rnd32() % (trial % 2 ? 5 : 3000));
            all[i].anchor = (uint16_t)i;
        }
        for (uint32_t i = n; i > 1; i--) {
            uint32_t j = rnd32() % i;
            cand_t t = all[i - 1];
            all[i - 1] = all[j];
            all[j] = t;
        }
        topk_t tk;
        topk_init(&tk, heap, cap);
        for (uint32_t i = 0; i < n; i++) {
            topk_offer(&tk, &all[i]);
        }
        uint32_t got = topk_sort(&tk);
        memcpy(sorted, all, n * sizeof all[0]);
        qsort(sorted, n, sizeof sorted[0], cmp_cand);
        uint32_t want = n < cap ? n : cap;
        CHECK(got == want, "topk trial %d: %u kept, want %u", trial, got, want);
        for (uint32_t i = 0; i < want && i < got; i++) {
            CHECK(heap[i].score == sorted[i].score && heap[i].anchor == sorted[i].anchor,
                  "topk trial %d rank %u: (%u, %u) want (%u, %u)", trial, i, heap[i].score, heap[i].anchor,
                  sorted[i].score, sorted[i].anchor);
        }
    }
}

/* Boxes for NMS tests: raw[0..3] are x1, y1 / 16 and w, h / 16 (in units of 16 Q4 = 1 px). */
static void box_of(const cand_t *c, int32_t b[4])
{
    b[0] = (uint8_t)c->raw[0] * 16;
    b[1] = (uint8_t)c->raw[1] * 16;
    b[2] = b[0] + (uint8_t)c->raw[2] * 16;
    b[3] = b[1] + (uint8_t)c->raw[3] * 16;
}

static void test_nms(void)
{
    static cand_t c[256];
    engine_box_t out[64];
    for (int trial = 0; trial < 200; trial++) {
        uint32_t n = 1 + rnd32() % 256;
        for (uint32_t i = 0; i < n; i++) {
            c[i].score = (uint16_t)(30000 - i);
            c[i].anchor = (uint16_t)i;
            for (int k = 0; k < 4; k++) {
                c[i].raw[k] = (int8_t)(k < 2 ? rnd_range(0, 60) : rnd_range(trial % 3 == 0 ? 0 : 1, 40));
            }
        }
        uint32_t kept = nms_select(c, n, box_of, 2, 5, out, 64);
        /* straightforward greedy reference in 64-bit */
        uint32_t k2 = 0;
        int32_t kb[64][4];
        for (uint32_t i = 0; i < n && k2 < 64; i++) {
            int32_t b[4];
            box_of(&c[i], b);
            bool keep = true;
            for (uint32_t q = 0; q < k2; q++) {
                int64_t iw = (b[2] < kb[q][2] ? b[2] : kb[q][2]) - (b[0] > kb[q][0] ? b[0] : kb[q][0]);
                int64_t ih = (b[3] < kb[q][3] ? b[3] : kb[q][3]) - (b[1] > kb[q][1] ? b[1] : kb[q][1]);
                int64_t inter = (iw > 0 ? iw : 0) * (ih > 0 ? ih : 0);
                int64_t uni = (int64_t)(b[2] - b[0]) * (b[3] - b[1]) +
                              (int64_t)(kb[q][2] - kb[q][0]) * (kb[q][3] - kb[q][1]) - inter;
                if (5 * inter > 2 * uni) {
                    keep = false;
                }
            }
            if (keep) {
                CHECK(k2 < kept && out[k2].anchor == c[i].anchor && out[k2].x == b[0] && out[k2].w == b[2] - b[0],
                      "nms trial %d: kept #%u differs", trial, k2);
                memcpy(kb[k2++], b, sizeof b);
            }
        }
        CHECK(k2 == kept, "nms trial %d: %u kept, want %u", trial, kept, k2);
    }
}

int main(void)
{
    test_requant();
    test_lut();
    test_isqrt();
    test_conv1();
    test_scatter();
    test_depthwise();
    test_pointwise();
    test_l2norm();
    test_fastgrnn();
    test_topk();
    test_nms();
    printf("%s: kernel tests, %ld checks, %d failure(s)\n", g_fail ? "FAIL" : "PASS", g_checks, g_fail);
    return g_fail != 0;
}
