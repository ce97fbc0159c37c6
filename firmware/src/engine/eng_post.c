/* Top-K and NMS. */
#include "eng_post.h"

#include <string.h>

bool cand_worse(const cand_t *a, const cand_t *b)
{
    return a->score < b->score || (a->score == b->score && a->anchor > b->anchor);
}

void topk_init(topk_t *t, cand_t *storage, uint32_t cap)
{
    t->items = storage;
    t->n = 0;
    t->cap = cap;
}

static void heap_down(cand_t *h, uint32_t n, uint32_t i)
{
    cand_t v = h[i];
    for (;;) {
        uint32_t c = 2 * i + 1;
        if (c >= n) {
            break;
        }
        if (c + 1 < n && cand_worse(&h[c + 1], &h[c])) {
            c++;
        }
        if (!cand_worse(&h[c], &v)) {
            break;
        }
        h[i] = h[c];
        i = c;
    }
    h[i] = v;
}

void topk_offer(topk_t *t, const cand_t *c)
{
    cand_t *h = t->items;
    if (t->n < t->cap) {
        uint32_t i = t->n++;
        while (i > 0 && cand_worse(c, &h[(i - 1) / 2])) {
            h[i] = h[(i - 1) / 2];
            i = (i - 1) / 2;
        }
        h[i] = *c;
    } else if (t->cap > 0 && cand_worse(&h[0], c)) {
        h[0] = *c;
        heap_down(h, t->n, 0);
    }
}

uint32_t topk_sort(topk_t *t)
{
    /* Heap sort: each round moves the worst remaining to the end, leaving the best first. */
    for (uint32_t n = t->n; n > 1; n--) {
        cand_t x = t->items[0];
        t->items[0] = t->items[n - 1];
        t->items[n - 1] = x;
        heap_down(t->items, n - 1, 0);
    }
    return t->n;
}

uint32_t nms_select(const cand_t *sorted, uint32_t n, cand_box_fn decode, int32_t num, int32_t den,
                    engine_box_t *out, uint32_t max_out)
{
    /* Corners and areas of the kept boxes are re-derived from out[] (x, y, w, h), so NMS needs no
     * memory of its own. Q4 corners are at most 5120: areas below 2^25, den * inter below 2^28. */
    uint32_t nk = 0;
    for (uint32_t i = 0; i < n && nk < max_out; i++) {
        int32_t b[4];
        decode(&sorted[i], b);
        int32_t area = (b[2] - b[0]) * (b[3] - b[1]);
        bool keep = true;
        for (uint32_t q = 0; q < nk && keep; q++) {
            const engine_box_t *k = &out[q];
            int32_t kx2 = k->x + k->w, ky2 = k->y + k->h;
            int32_t iw = (b[2] < kx2 ? b[2] : kx2) - (b[0] > k->x ? b[0] : k->x);
            int32_t ih = (b[3] < ky2 ? b[3] : ky2) - (b[1] > k->y ? b[1] : k->y);
            int32_t inter = (iw > 0 ? iw : 0) * (ih > 0 ? ih : 0);
            int32_t uni = area + (int32_t)k->w * k->h - inter;
            keep = !(den * inter > num * uni);
        }
        if (keep) {
            engine_box_t *o = &out[nk++];
            o->x = (int16_t)b[0];
            o->y = (int16_t)b[1];
            o->w = (int16_t)(b[2] - b[0]);
            o->h = (int16_t)(b[3] - b[1]);
            o->score_q15 = sorted[i].score;
            o->anchor = sorted[i].anchor;
        }
    }
    return nk;
}
