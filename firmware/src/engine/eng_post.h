/* Post-processing: the bounded top-K list of candidate anchors and the greedy NMS
 * (docs/model-format.md, "Decoding"). */
#ifndef ENG_POST_H
#define ENG_POST_H

#include "engine.h"

#include <stdbool.h>
#include <stdint.h>

/* A candidate keeps the head's four raw box outputs rather than its box: only the few that reach
 * NMS are ever decoded, and 8 bytes per entry keep the list small. */
typedef struct {
    uint16_t score; /* Q15 */
    uint16_t anchor;
    int8_t raw[4]; /* dx, dy, dw, dh */
} cand_t;

/* The best `cap` candidates by score descending, then anchor ascending (a total order, so the
 * result does not depend on the order candidates arrive in): a binary heap with the worst at the
 * root, so a new candidate costs O(1) when it does not qualify and O(log cap) when it does. */
typedef struct {
    cand_t *items;
    uint32_t n, cap;
} topk_t;

bool cand_worse(const cand_t *a, const cand_t *b);
void topk_init(topk_t *t, cand_t *storage, uint32_t cap);
void topk_offer(topk_t *t, const cand_t *c);
/* Sorts in place, best first (the list is no longer a heap afterwards). Returns the count. */
uint32_t topk_sort(topk_t *t);

/* Greedy NMS over candidates sorted best first: keeps one unless an already kept box overlaps it
 * with NMS_DEN * inter > NMS_NUM * union; stops at max_out. decode() gives a candidate's clipped
 * corners (x1, y1, x2, y2, Q4). Returns the number kept. */
typedef void (*cand_box_fn)(const cand_t *c, int32_t xyxy[4]);
uint32_t nms_select(const cand_t *sorted, uint32_t n, cand_box_fn decode, int32_t num, int32_t den,
                    engine_box_t *out, uint32_t max_out);

#endif /* ENG_POST_H */
