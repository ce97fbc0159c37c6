/* Sigmoid/tanh table lookup with linear interpolation, and exact integer square roots. */
#include "eng_kernels.h"

#define LUT_MIN (-8192)
#define LUT_STEP_BITS 6

int32_t lut_ref(const int16_t *table, int64_t v)
{
    int64_t u = (v < LUT_MIN ? LUT_MIN : v > -LUT_MIN - 1 ? -LUT_MIN - 1 : v) - LUT_MIN;
    int32_t k = (int32_t)(u >> LUT_STEP_BITS);
    int32_t f = (int32_t)(u & ((1 << LUT_STEP_BITS) - 1));
    int32_t lo = table[k], hi = table[k + 1];
    return lo + (((hi - lo) * f + (1 << (LUT_STEP_BITS - 1))) >> LUT_STEP_BITS);
}

uint32_t isqrt64_ref(uint64_t n)
{
    /* Bisection on r*r <= n: obviously exact, and only the reference path uses it. */
    uint64_t lo = 0, hi = 1u << 26; /* n < 2^52 by the spec */
    while (hi - lo > 1) {
        uint64_t mid = (lo + hi) / 2;
        if (mid * mid <= n) {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    return (uint32_t)lo;
}

uint32_t isqrt32(uint32_t n)
{
    /* Binary digit-by-digit method: each step decides one bit of the root from the remainder,
     * 16 iterations with no multiply or divide. */
    uint32_t r = 0, bit = 1u << 30;
    while (bit > n) {
        bit >>= 2;
    }
    while (bit != 0) {
        if (n >= r + bit) {
            n -= r + bit;
            r = (r >> 1) + bit;
        } else {
            r >>= 1;
        }
        bit >>= 2;
    }
    return r;
}
