/* Pointwise (1x1) convolution: the MBConv expand and project layers. */
#include "eng_kernels.h"

void pw_ref(const pw_layer_t *L, const int8_t *in, int8_t *out)
{
    for (uint16_t o = 0; o < L->cout; o++) {
        const int8_t *w = L->w + (uint32_t)o * L->cin;
        int32_t acc = L->b[o];
        for (uint16_t c = 0; c < L->cin; c++) {
            acc += w[c] * in[c];
        }
        out[o] = (int8_t)rq_clamp(acc, L->m[o], L->s[o], L->lo, L->hi);
    }
}

/* Two pixels by two output channels: per 4 input channels, two weight words are loaded and
 * widened (4 SXTB16) and the four dot products advance by 8 SMLADs against the pixels' channels,
 * widened into the same (0,2) (1,3) pair order once per call. About one instruction per MAC. */
void pw2_opt(const pw_layer_t *L, const int8_t *in0, const int8_t *in1, int8_t *out0, int8_t *out1)
{
    uint16_t cin = L->cin, cout = L->cout;
    if (cin > PW_MAX_CIN || (cin & 3u) != 0 || (cout & 1u) != 0) {
        pw_ref(L, in0, out0);
        pw_ref(L, in1, out1);
        return;
    }
    uint32_t x0[PW_MAX_CIN / 2], x1[PW_MAX_CIN / 2];
    uint16_t nw = cin / 4;
    for (uint16_t k = 0; k < nw; k++) {
        uint32_t a = dsp_load32(in0 + 4 * k), b = dsp_load32(in1 + 4 * k);
        x0[2 * k] = dsp_sxtb16(a);
        x0[2 * k + 1] = dsp_sxtb16_ror8(a);
        x1[2 * k] = dsp_sxtb16(b);
        x1[2 * k + 1] = dsp_sxtb16_ror8(b);
    }
    int32_t lo = L->lo, hi = L->hi;
    for (uint16_t o = 0; o < cout; o += 2) {
        const int8_t *wa = L->w + (uint32_t)o * cin;
        const int8_t *wb = wa + cin;
        int32_t s00 = L->b[o], s01 = s00, s10 = L->b[o + 1], s11 = s10; /* s<out><pixel> */
        const uint32_t *p0 = x0, *p1 = x1;
        for (uint16_t k = 0; k < nw; k++) {
            uint32_t va = dsp_load32(wa), vb = dsp_load32(wb);
            wa += 4;
            wb += 4;
            uint32_t ae = dsp_sxtb16(va), ao = dsp_sxtb16_ror8(va);
            uint32_t be = dsp_sxtb16(vb), bo = dsp_sxtb16_ror8(vb);
            uint32_t xe0 = p0[0], xo0 = p0[1], xe1 = p1[0], xo1 = p1[1];
            p0 += 2;
            p1 += 2;
            s00 = dsp_smlad(ae, xe0, s00);
            s00 = dsp_smlad(ao, xo0, s00);
            s01 = dsp_smlad(ae, xe1, s01);
            s01 = dsp_smlad(ao, xo1, s01);
            s10 = dsp_smlad(be, xe0, s10);
            s10 = dsp_smlad(bo, xo0, s10);
            s11 = dsp_smlad(be, xe1, s11);
            s11 = dsp_smlad(bo, xo1, s11);
        }
        int32_t ma = L->m[o], sa = L->s[o], mb = L->m[o + 1], sb = L->s[o + 1];
        out0[o] = (int8_t)rq_clamp(s00, ma, sa, lo, hi);
        out1[o] = (int8_t)rq_clamp(s01, ma, sa, lo, hi);
        out0[o + 1] = (int8_t)rq_clamp(s10, mb, sb, lo, hi);
        out1[o + 1] = (int8_t)rq_clamp(s11, mb, sb, lo, hi);
    }
}
