/* The inner product shared by the pointwise convolutions and the 3x3 heads: two weight rows (int8,
 * wa and wb) against two pixels, each pixel's channels already widened into SXTB16 order and
 * interleaved per 4 channels as {p0 ch 0,2 | p1 ch 0,2 | p0 ch 1,3 | p1 ch 1,3}. Per 4 channels:
 * two weight words loaded and widened once each, eight SMLADs. */
#ifndef ENG_DOT_H
#define ENG_DOT_H

#include "eng_dsp.h"

#include <stdint.h>

/* Widens the pixels p0, p1 (n channels, n a multiple of 4) into x[n] words. */
static inline void dot_widen2(const int8_t *p0, const int8_t *p1, uint32_t n, uint32_t *x)
{
    for (uint32_t k = 0; k < n; k += 4, x += 4) {
        uint32_t a = dsp_load32(p0 + k), b = dsp_load32(p1 + k);
        x[0] = dsp_sxtb16(a);
        x[1] = dsp_sxtb16(b);
        x[2] = dsp_sxtb16_ror8(a);
        x[3] = dsp_sxtb16_ror8(b);
    }
}

/* s[0] += wa.p0, s[1] += wa.p1, s[2] += wb.p0, s[3] += wb.p1 over n channels (n a multiple of 8). */
static inline void dot_2x2(const int8_t *wa, const int8_t *wb, const uint32_t *x, uint32_t n, int32_t s[4])
{
    int32_t s00 = s[0], s01 = s[1], s10 = s[2], s11 = s[3];
#if DSP_NATIVE && defined(__OPTIMIZE__)
    uint32_t iters = n / 8;
    uint32_t va, vb, xa, xb, t;
#define DOT_STEP \
    "ldr     %[va], [%[wa]], #4\n\t" \
    "ldr     %[vb], [%[wb]], #4\n\t" \
    "ldrd    %[xa], %[xb], [%[x]], #8\n\t" \
    "sxtb16  %[t], %[va]\n\t" \
    "smlad   %[s00], %[t], %[xa], %[s00]\n\t" \
    "smlad   %[s01], %[t], %[xb], %[s01]\n\t" \
    "sxtb16  %[t], %[vb]\n\t" \
    "smlad   %[s10], %[t], %[xa], %[s10]\n\t" \
    "smlad   %[s11], %[t], %[xb], %[s11]\n\t" \
    "ldrd    %[xa], %[xb], [%[x]], #8\n\t" \
    "sxtb16  %[va], %[va], ror #8\n\t" \
    "smlad   %[s00], %[va], %[xa], %[s00]\n\t" \
    "smlad   %[s01], %[va], %[xb], %[s01]\n\t" \
    "sxtb16  %[vb], %[vb], ror #8\n\t" \
    "smlad   %[s10], %[vb], %[xa], %[s10]\n\t" \
    "smlad   %[s11], %[vb], %[xb], %[s11]\n\t"
    __asm__ volatile("1:\n\t" DOT_STEP DOT_STEP
                     "subs    %[n], %[n], #1\n\t"
                     "bne     1b\n\t"
                     : [s00] "+r"(s00), [s01] "+r"(s01), [s10] "+r"(s10), [s11] "+r"(s11), [wa] "+r"(wa),
                       [wb] "+r"(wb), [x] "+r"(x), [n] "+r"(iters), [va] "=&r"(va), [vb] "=&r"(vb),
                       [xa] "=&r"(xa), [xb] "=&r"(xb), [t] "=&r"(t)
                     :
                     : "cc", "memory");
#undef DOT_STEP
#else
    for (uint32_t k = 0; k < n; k += 4, x += 4) {
        uint32_t va = dsp_load32(wa + k), vb = dsp_load32(wb + k);
        uint32_t ae = dsp_sxtb16(va), ao = dsp_sxtb16_ror8(va);
        uint32_t be = dsp_sxtb16(vb), bo = dsp_sxtb16_ror8(vb);
        s00 = dsp_smlad(ae, x[0], s00);
        s01 = dsp_smlad(ae, x[1], s01);
        s10 = dsp_smlad(be, x[0], s10);
        s11 = dsp_smlad(be, x[1], s11);
        s00 = dsp_smlad(ao, x[2], s00);
        s01 = dsp_smlad(ao, x[3], s01);
        s10 = dsp_smlad(bo, x[2], s10);
        s11 = dsp_smlad(bo, x[3], s11);
    }
#endif
    s[0] = s00;
    s[1] = s01;
    s[2] = s10;
    s[3] = s11;
}

#endif /* ENG_DOT_H */
