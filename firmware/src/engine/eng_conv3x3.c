/* 3x3 convolutions: conv1 (stride 2, one input channel, raw pixels in) and the detection heads
 * (stride 1, run as a scatter of input pixels into output accumulators). */
#include "eng_dot.h"
#include "eng_kernels.h"

#include <string.h>

/* ---- conv1 -------------------------------------------------------------------------------- */

void conv1_row_ref(const conv_layer_t *L, const uint8_t *r0, const uint8_t *r1, const uint8_t *r2,
                   uint16_t width, int8_t *out)
{
    const uint8_t *rows[3] = {r0, r1, r2};
    uint16_t wo = width / 2;
    for (uint16_t j = 0; j < wo; j++) {
        for (uint16_t o = 0; o < L->cout; o++) {
            int32_t acc = L->b[o];
            for (int ky = 0; ky < 3; ky++) {
                if (rows[ky] == NULL) {
                    continue;
                }
                for (int kx = 0; kx < 3; kx++) {
                    int32_t col = 2 * j - 1 + kx;
                    if (col < 0 || col >= width) {
                        continue;
                    }
                    acc += L->w[(o * 3 + ky) * 3 + kx] * ((int32_t)rows[ky][col] - 128);
                }
            }
            out[j * L->cout + o] = (int8_t)rq_clamp(acc, L->m[o], L->s[o], L->lo, L->hi);
        }
    }
}

/* Works on the raw pixels p = x + 128, with the bias corrected by -128 * sum(w) once: then the
 * zero padding (x = 0) is p = 128, so the left edge tap adds 128 * w instead of being skipped. Interior
 * pixels read their 3x3 window as one halfword-aligned word per row: bytes 2j-2 .. 2j+1, whose
 * UXTB16 forms are (p[2j-2], p[2j]) and (p[2j-1], p[2j+1]): the second pairs with the packed
 * outer weights (w0, w2) in one SMLAD, the top half of the first with w1 in an SMLABT. */
typedef struct {
    uint32_t wpair[4][3], wmid[4][3];
    int32_t bias[4], m[4], rnd[4], r[4];
} conv1_prep_t;

__attribute__((always_inline)) static inline void conv1_body(const conv1_prep_t *P, const uint8_t *const rows[3],
                                                              uint16_t wo, int8_t *out, int kind, int32_t lo,
                                                              int32_t hi)
{
    for (uint16_t j = 1; j < wo; j++) {
        uint32_t even[3], odd[3];
#pragma GCC unroll 3
        for (int ky = 0; ky < 3; ky++) {
            uint32_t v = dsp_load32(rows[ky] + 2 * j - 2);
            even[ky] = v & 0x00FF00FFu;        /* (p[2j-2], p[2j]) */
            odd[ky] = (v >> 8) & 0x00FF00FFu;  /* (p[2j-1], p[2j+1]) */
        }
        int8_t *po = out + j * 4;
#pragma GCC unroll 4
        for (int o = 0; o < 4; o++) {
            int32_t acc = P->bias[o];
#pragma GCC unroll 3
            for (int ky = 0; ky < 3; ky++) {
                acc = dsp_smlad(odd[ky], P->wpair[o][ky], acc);
                acc = dsp_smlabt(P->wmid[o][ky], even[ky], acc);
            }
            po[o] = (int8_t)clamp_k(dsp_smmla(acc, P->m[o], P->rnd[o]) >> P->r[o], kind, lo, hi);
        }
    }
}

void conv1_row_opt(const conv_layer_t *L, const uint8_t *r0, const uint8_t *r1, const uint8_t *r2,
                   uint16_t width, int8_t *out)
{
    enum { COUT = 4 };
    /* The first row (padding above) is one row in 160: the reference does it. */
    bool fast = L->cin == 1 && L->cout == COUT && r0 != NULL;
    for (int o = 0; o < COUT && fast; o++) {
        fast = L->s[o] >= 33;
    }
    if (!fast) {
        conv1_row_ref(L, r0, r1, r2, width, out);
        return;
    }
    const uint8_t *rows[3] = {r0, r1, r2};
    conv1_prep_t P;
    for (int o = 0; o < COUT; o++) {
        int32_t sum = 0;
        for (int ky = 0; ky < 3; ky++) {
            const int8_t *w = L->w + (o * 3 + ky) * 3;
            P.wpair[o][ky] = dsp_pack16(w[0], w[2]);
            P.wmid[o][ky] = (uint32_t)(int32_t)w[1];
            sum += w[0] + w[1] + w[2];
        }
        P.bias[o] = L->b[o] - 128 * sum;
        P.m[o] = L->m[o];
        P.r[o] = L->s[o] - 32;
        P.rnd[o] = (int32_t)(1u << (P.r[o] - 1));
    }
    /* j = 0: the left tap is padding. */
    for (int o = 0; o < COUT; o++) {
        int32_t acc = P.bias[o];
        for (int ky = 0; ky < 3; ky++) {
            const int8_t *w = L->w + (o * 3 + ky) * 3;
            acc += 128 * w[0] + w[1] * rows[ky][0] + w[2] * rows[ky][1];
        }
        out[o] = (int8_t)rq_clamp(acc, L->m[o], L->s[o], L->lo, L->hi);
    }
    uint16_t wo = width / 2;
    switch (L->kind) {
    case CLAMP_S8:
        conv1_body(&P, rows, wo, out, CLAMP_S8, L->lo, L->hi);
        break;
    case CLAMP_U7:
        conv1_body(&P, rows, wo, out, CLAMP_U7, L->lo, L->hi);
        break;
    default:
        conv1_body(&P, rows, wo, out, CLAMP_ANY, L->lo, L->hi);
        break;
    }
}

/* ---- 3x3 stride 1 as scatter (heads) ------------------------------------------------------ */

void conv3x3_scatter2_ref(const conv_layer_t *L, const int8_t *p0, const int8_t *p1,
                          int32_t *const acc0[9], int32_t *const acc1[9])
{
    const int8_t *px[2] = {p0, p1};
    int32_t *const *acc[2] = {acc0, acc1};
    for (int p = 0; p < 2; p++) {
        for (int t = 0; t < 9; t++) {
            int32_t *a = acc[p][t];
            if (a == NULL) {
                continue;
            }
            for (uint16_t o = 0; o < L->cout; o++) {
                const int8_t *w = L->w + ((uint32_t)o * 9u + (uint32_t)t) * L->cin;
                int32_t sum = 0;
                for (uint16_t c = 0; c < L->cin; c++) {
                    sum += w[c] * px[p][c];
                }
                a[o] += sum;
            }
        }
    }
}

/* The two pixels are widened once; then per tap, per pair of output channels, dot_2x2 (about one
 * instruction per MAC). A tap whose output is outside the map for one pixel only accumulates into
 * a scratch buffer: that happens at the borders alone. */
void conv3x3_scatter2_opt(const conv_layer_t *L, const int8_t *p0, const int8_t *p1,
                          int32_t *const acc0[9], int32_t *const acc1[9])
{
    enum { MAX_CIN = 64, MAX_COUT = 8 };
    uint16_t cin = L->cin, cout = L->cout;
    if (cin > MAX_CIN || (cin & 7u) != 0 || cout > MAX_COUT || (cout & 1u) != 0) {
        conv3x3_scatter2_ref(L, p0, p1, acc0, acc1);
        return;
    }
    uint32_t x[MAX_CIN];
    dot_widen2(p0, p1, cin, x);
    int32_t scratch[MAX_COUT];
    for (int t = 0; t < 9; t++) {
        int32_t *a0 = acc0[t], *a1 = acc1[t];
        if (a0 == NULL && a1 == NULL) {
            continue;
        }
        if (a0 == NULL) {
            a0 = scratch;
        }
        if (a1 == NULL) {
            a1 = scratch;
        }
        for (uint16_t o = 0; o < cout; o += 2) {
            const int8_t *wa = L->w + ((uint32_t)o * 9u + (uint32_t)t) * cin;
            int32_t s[4] = {a0[o], a1[o], a0[o + 1], a1[o + 1]};
            dot_2x2(wa, wa + 9u * cin, x, cin, s);
            a0[o] = s[0];
            a1[o] = s[1];
            a0[o + 1] = s[2];
            a1[o + 1] = s[3];
        }
    }
}

void conv_finish(const conv_layer_t *L, const int32_t *acc, int8_t *out)
{
    if (L->kind == CLAMP_S8) {
        for (uint16_t o = 0; o < L->cout; o++) {
            out[o] = (int8_t)rq_clamp_k(acc[o] + L->b[o], L->m[o], L->s[o], CLAMP_S8, -128, 127);
        }
        return;
    }
    for (uint16_t o = 0; o < L->cout; o++) {
        out[o] = (int8_t)rq_clamp(acc[o] + L->b[o], L->m[o], L->s[o], L->lo, L->hi);
    }
}
