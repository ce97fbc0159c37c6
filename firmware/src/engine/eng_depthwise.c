/* Depthwise 3x3 convolution, one output pixel (or two) at a time; the caller resolves strides and
 * padding into the nine tap pointers. */
#include "eng_kernels.h"

void dw3x3_ref(const dw_layer_t *L, const int8_t *const taps[9], int8_t *out)
{
    for (uint16_t c = 0; c < L->c; c++) {
        int32_t acc = L->b[c];
        for (int t = 0; t < 9; t++) {
            acc += L->w[c * 9 + t] * taps[t][c];
        }
        out[c] = (int8_t)rq_clamp(acc, L->m[c], L->s[c], L->lo, L->hi);
    }
}

/* Two output pixels per call, channel by channel, each channel's nine weights loaded once for
 * both: three unaligned words at 9c, 9c+3 and 9c+5 widened with SXTB16 give the pairs (w0,w2),
 * (w3,w5), (w6,w8) for the outer taps of each kernel row and w1, w4, w7 in a half of their
 * rotated forms; the outer inputs of a row are packed into one pair (PKHBT), so a kernel row
 * costs one SMLAD and one 16x16 MAC. (The word at 9c+5 is used rather than 9c+6 so the last
 * channel reads no byte past its own nine.) */
__attribute__((always_inline)) static inline void dw2_body(const dw_layer_t *L, const int8_t *const t0[9], const int8_t *const t1[9],
                            int8_t *out0, int8_t *out1, int kind)
{
    const int8_t *w = L->w;
    int32_t lo = L->lo, hi = L->hi;
    for (uint16_t c = 0; c < L->c; c++, w += 9) {
        uint32_t wa = dsp_load32(w), wb = dsp_load32(w + 3), wc = dsp_load32(w + 5);
        uint32_t w02 = dsp_sxtb16(wa), w1x = dsp_sxtb16_ror8(wa);  /* (w0, w2), (w1, w3) */
        uint32_t w35 = dsp_sxtb16(wb), w4x = dsp_sxtb16_ror8(wb);  /* (w3, w5), (w4, w6) */
        uint32_t w57 = dsp_sxtb16(wc), w68 = dsp_sxtb16_ror8(wc);  /* (w5, w7), (w6, w8) */
        int32_t b = L->b[c];
        int32_t a0 = dsp_smlabb(w1x, (uint32_t)(int32_t)t0[1][c], b);
        a0 = dsp_smlad(dsp_pack16(t0[0][c], t0[2][c]), w02, a0);
        a0 = dsp_smlabb(w4x, (uint32_t)(int32_t)t0[4][c], a0);
        a0 = dsp_smlad(dsp_pack16(t0[3][c], t0[5][c]), w35, a0);
        a0 = dsp_smlatb(w57, (uint32_t)(int32_t)t0[7][c], a0);
        a0 = dsp_smlad(dsp_pack16(t0[6][c], t0[8][c]), w68, a0);
        int32_t a1 = dsp_smlabb(w1x, (uint32_t)(int32_t)t1[1][c], b);
        a1 = dsp_smlad(dsp_pack16(t1[0][c], t1[2][c]), w02, a1);
        a1 = dsp_smlabb(w4x, (uint32_t)(int32_t)t1[4][c], a1);
        a1 = dsp_smlad(dsp_pack16(t1[3][c], t1[5][c]), w35, a1);
        a1 = dsp_smlatb(w57, (uint32_t)(int32_t)t1[7][c], a1);
        a1 = dsp_smlad(dsp_pack16(t1[6][c], t1[8][c]), w68, a1);
        rq2_clamp(a0, a1, L->m[c], L->s[c], kind, lo, hi, &out0[c], &out1[c]);
    }
}

void dw3x3x2_opt(const dw_layer_t *L, const int8_t *const taps0[9], const int8_t *const taps1[9],
                 int8_t *out0, int8_t *out1)
{
    switch (L->kind) {
    case CLAMP_S8:
        dw2_body(L, taps0, taps1, out0, out1, CLAMP_S8);
        break;
    case CLAMP_U7:
        dw2_body(L, taps0, taps1, out0, out1, CLAMP_U7);
        break;
    default:
        dw2_body(L, taps0, taps1, out0, out1, CLAMP_ANY);
        break;
    }
}

/* Stride 1, both pixels of a pair from one set of loads: kernel row k reads input columns X-1..X+2
 * of its row, four pixels C bytes apart from rows[k]. Packed as E = (x[X-1], x[X+1]) and
 * O = (x[X], x[X+2]), the left output is SMLAD(E, (w0, w2)) + w1 * O.lo and the right one
 * SMLAD(O, (w0, w2)) + w1 * E.hi: 12 byte loads and 12 MACs (6 of them dual) per channel for 18
 * multiply-accumulates. */
__attribute__((always_inline)) static inline void dws1_body(const dw_layer_t *L, const int8_t *const rows[3],
                                                             int8_t *out0, int8_t *out1, int kind)
{
    const int8_t *w = L->w, *p0 = rows[0], *p1 = rows[1], *p2 = rows[2];
    const int32_t *bias = L->b, *mul = L->m, *sft = L->s;
    int32_t lo = L->lo, hi = L->hi;
    uint32_t c1 = L->c, c2 = 2u * L->c, c3 = 3u * L->c;
    for (uint16_t c = 0; c < L->c; c++, w += 9, p0++, p1++, p2++) {
        /* row by row, so that only one row's weights and inputs are live at a time */
        uint32_t wa = dsp_load32(w);
        uint32_t e = dsp_pkhbt((uint32_t)(int32_t)p0[0], (uint32_t)(int32_t)p0[c2], 16);
        uint32_t o = dsp_pkhbt((uint32_t)(int32_t)p0[c1], (uint32_t)(int32_t)p0[c3], 16);
        uint32_t wp = dsp_sxtb16(wa), wm = dsp_sxtb16_ror8(wa); /* (w0, w2), (w1, w3) */
        int32_t a0 = dsp_smlabb(wm, o, dsp_smlad(e, wp, *bias));
        int32_t a1 = dsp_smlabt(wm, e, dsp_smlad(o, wp, *bias));
        wa = dsp_load32(w + 3);
        e = dsp_pkhbt((uint32_t)(int32_t)p1[0], (uint32_t)(int32_t)p1[c2], 16);
        o = dsp_pkhbt((uint32_t)(int32_t)p1[c1], (uint32_t)(int32_t)p1[c3], 16);
        wp = dsp_sxtb16(wa);       /* (w3, w5) */
        wm = dsp_sxtb16_ror8(wa);  /* (w4, w6) */
        a0 = dsp_smlabb(wm, o, dsp_smlad(e, wp, a0));
        a1 = dsp_smlabt(wm, e, dsp_smlad(o, wp, a1));
        wa = dsp_load32(w + 5);
        e = dsp_pkhbt((uint32_t)(int32_t)p2[0], (uint32_t)(int32_t)p2[c2], 16);
        o = dsp_pkhbt((uint32_t)(int32_t)p2[c1], (uint32_t)(int32_t)p2[c3], 16);
        wp = dsp_sxtb16_ror8(wa);  /* (w6, w8) */
        wm = dsp_sxtb16(wa);       /* (w5, w7): w7 in the top half */
        a0 = dsp_smlatb(wm, o, dsp_smlad(e, wp, a0));
        a1 = dsp_smlatt(wm, e, dsp_smlad(o, wp, a1));
        rq2_clamp(a0, a1, *mul++, *sft++, kind, lo, hi, &out0[c], &out1[c]);
        bias++;
    }
}

void dw3x3s1x2_opt(const dw_layer_t *L, const int8_t *const rows[3], int8_t *out0, int8_t *out1)
{
    switch (L->kind) {
    case CLAMP_S8:
        dws1_body(L, rows, out0, out1, CLAMP_S8);
        break;
    case CLAMP_U7:
        dws1_body(L, rows, out0, out1, CLAMP_U7);
        break;
    default:
        dws1_body(L, rows, out0, out1, CLAMP_ANY);
        break;
    }
}
