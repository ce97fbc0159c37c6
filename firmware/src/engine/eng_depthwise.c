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

/* Each channel's nine weights are loaded once for both pixels (two words and a byte, widened
 * with SXTB16 into the pairs (w0,w2) (w1,w3) (w4,w6) (w5,w7)); the inputs of a pair of taps are
 * packed the same way with PKHBT so one SMLAD does two taps. */
void dw3x3x2_opt(const dw_layer_t *L, const int8_t *const taps0[9], const int8_t *const taps1[9],
                 int8_t *out0, int8_t *out1)
{
    const int8_t *const *tp[2] = {taps0, taps1};
    int8_t *outs[2] = {out0, out1};
    for (uint16_t c = 0; c < L->c; c++) {
        const int8_t *w = L->w + c * 9;
        uint32_t wa = dsp_load32(w), wb = dsp_load32(w + 4);
        uint32_t w02 = dsp_sxtb16(wa), w13 = dsp_sxtb16_ror8(wa);
        uint32_t w46 = dsp_sxtb16(wb), w57 = dsp_sxtb16_ror8(wb);
        int32_t w8 = w[8];
        int32_t b = L->b[c], m = L->m[c], s = L->s[c];
        for (int p = 0; p < 2; p++) {
            const int8_t *const *t = tp[p];
            int32_t x0 = t[0][c], x1 = t[1][c], x2 = t[2][c], x3 = t[3][c];
            int32_t x4 = t[4][c], x5 = t[5][c], x6 = t[6][c], x7 = t[7][c];
            int32_t acc = b + w8 * t[8][c];
            acc = dsp_smlad(dsp_pack16(x0, x2), w02, acc);
            acc = dsp_smlad(dsp_pack16(x1, x3), w13, acc);
            acc = dsp_smlad(dsp_pack16(x4, x6), w46, acc);
            acc = dsp_smlad(dsp_pack16(x5, x7), w57, acc);
            outs[p][c] = (int8_t)rq_clamp(acc, m, s, L->lo, L->hi);
        }
    }
}
