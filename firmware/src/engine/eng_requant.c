/* Requantisation: rq(acc, m, s) = (acc * m + 2^(s-1)) >> s, then clamp (docs/model-format.md). */
#include "eng_kernels.h"

int64_t rq_ref(int64_t acc, int32_t m, int32_t s)
{
    /* acc * m stays below 2^63 for |acc| < 2^32, which every caller's accumulator is. */
    return (acc * m + ((int64_t)1 << (s - 1))) >> s;
}

bool rqp_prepare(int32_t m, int32_t s, int64_t bound, rqp_t *q)
{
    int32_t pre = s < 33 ? 33 - s : 0;
    if (s < 1 || s > 62 || bound < 0 || (bound << pre) >= ((int64_t)1 << 31)) {
        return false;
    }
    q->m = m;
    q->pre = pre;
    q->sh = s + pre - 32;
    q->rnd = (int32_t)(1u << (q->sh - 1));
    return true;
}
