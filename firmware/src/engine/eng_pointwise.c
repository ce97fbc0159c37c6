/* Pointwise (1x1) convolution: the MBConv expand and project layers. */
#include "eng_dot.h"
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

/* Two pixels by two output channels (dot_2x2: about one instruction per MAC), then the
 * requantisation of the four outputs with each channel's constants loaded once. */
__attribute__((always_inline)) static inline void pw2_body(const pw_layer_t *L, const uint32_t *x, int8_t *out0, int8_t *out1, int kind)
{
    uint16_t cin = L->cin, cout = L->cout;
    int32_t lo = L->lo, hi = L->hi;
    const int8_t *w = L->w;
    for (uint16_t o = 0; o < cout; o += 2, w += 2u * cin) {
        int32_t s[4] = {L->b[o], L->b[o], L->b[o + 1], L->b[o + 1]};
        dot_2x2(w, w + cin, x, cin, s);
        rq2_clamp(s[0], s[1], L->m[o], L->s[o], kind, lo, hi, &out0[o], &out1[o]);
        rq2_clamp(s[2], s[3], L->m[o + 1], L->s[o + 1], kind, lo, hi, &out0[o + 1], &out1[o + 1]);
    }
}

void pw2_opt(const pw_layer_t *L, const int8_t *in0, const int8_t *in1, int8_t *out0, int8_t *out1)
{
    uint16_t cin = L->cin, cout = L->cout;
    if (cin > PW_MAX_CIN || (cin & 7u) != 0 || (cout & 1u) != 0) {
        pw_ref(L, in0, out0);
        pw_ref(L, in1, out1);
        return;
    }
    uint32_t x[PW_MAX_CIN];
    dot_widen2(in0, in1, cin, x);
    switch (L->kind) {
    case CLAMP_S8:
        pw2_body(L, x, out0, out1, CLAMP_S8);
        break;
    case CLAMP_U7:
        pw2_body(L, x, out0, out1, CLAMP_U7);
        break;
    default:
        pw2_body(L, x, out0, out1, CLAMP_ANY);
        break;
    }
}
