/* Per-pixel L2 normalisation with a learned per-channel scale (the S3FD-style source norms):
 *   ss = sum q^2; norm = isqrt(ss << 10); recip = (2^30 + (norm >> 1)) / norm;
 *   y_c = sat8(rq(q_c * recip, m_c, s_c)); all zero when ss = 0. */
#include "eng_kernels.h"

void l2norm_ref(const norm_layer_t *L, const int8_t *in, int8_t *out)
{
    int64_t ss = 0;
    for (uint16_t c = 0; c < L->c; c++) {
        ss += in[c] * in[c];
    }
    if (ss == 0) {
        for (uint16_t c = 0; c < L->c; c++) {
            out[c] = 0;
        }
        return;
    }
    uint64_t norm = isqrt64_ref((uint64_t)ss << 10);
    int64_t recip = (int64_t)(((1u << 30) + (norm >> 1)) / norm);
    for (uint16_t c = 0; c < L->c; c++) {
        int64_t y = rq_ref(in[c] * recip, L->m[c], L->s[c]);
        out[c] = (int8_t)(y < -128 ? -128 : y > 127 ? 127 : y);
    }
}

/* ss by SMLAD of the widened channel pairs with themselves; 32-bit square root (ss << 10 is at
 * most 64 * 2^14 * 2^10 = 2^30 for up to 64 channels); one hardware division. q * recip fits
 * int32: |q| <= sqrt(ss) and recip <= 2^30 / (32 sqrt(ss) - 1) + 1/2, so the product stays near
 * 2^25. */
void l2norm_opt(const norm_layer_t *L, const int8_t *in, int8_t *out)
{
    uint16_t n = L->c;
    if (n > 64 || (n & 3u) != 0) {
        l2norm_ref(L, in, out);
        return;
    }
    int32_t ss = 0;
    for (uint16_t k = 0; k < n; k += 4) {
        uint32_t v = dsp_load32(in + k);
        uint32_t e = dsp_sxtb16(v), o = dsp_sxtb16_ror8(v);
        ss = dsp_smlad(e, e, ss);
        ss = dsp_smlad(o, o, ss);
    }
    if (ss == 0) {
        for (uint16_t c = 0; c < n; c++) {
            out[c] = 0;
        }
        return;
    }
    uint32_t norm = isqrt32((uint32_t)ss << 10);
    int32_t recip = (int32_t)(((1u << 30) + (norm >> 1)) / norm);
    for (uint16_t c = 0; c < n; c++) {
        out[c] = (int8_t)rq_clamp_k(in[c] * recip, L->m[c], L->s[c], CLAMP_S8, -128, 127);
    }
}
