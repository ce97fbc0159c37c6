/* FastGRNN (both RNNPool RNNs):
 *   pre = rq(W x, mw, sw) + rq(U h, mu, su)              Q10
 *   z = LUT(sigmoid, pre + bz), c = LUT(tanh, pre + bc)  Q15
 *   h' = sat16((8 z h + coef c + 2^17) >> 18), coef = ((zeta (32768 - z)) >> 15) + nu   Q12 */
#include "eng_kernels.h"

#include <string.h>

#define H FG_HIDDEN

void fg_seq_ref(const fg_layer_t *L, const int32_t *x, int steps, bool reverse, int16_t h[FG_HIDDEN])
{
    int64_t hh[H] = {0};
    for (int s = 0; s < steps; s++) {
        int t = reverse ? steps - 1 - s : s;
        const int32_t *xt = x + t * L->nin;
        int64_t pre[H];
        for (int i = 0; i < H; i++) {
            int64_t wx = 0, uh = 0;
            for (int j = 0; j < L->nin; j++) {
                wx += L->W[i * L->nin + j] * (int64_t)xt[j];
            }
            for (int j = 0; j < H; j++) {
                uh += L->U[i * H + j] * hh[j];
            }
            pre[i] = rq_ref(wx, L->mw[i], L->sw[i]) + rq_ref(uh, L->mu[i], L->su[i]);
        }
        for (int i = 0; i < H; i++) { /* every unit reads the old h above, then all update */
            int64_t z = lut_ref(L->sig, pre[i] + L->bz[i]);
            int64_t c = lut_ref(L->tanh, pre[i] + L->bc[i]);
            int64_t coef = ((L->zeta * (32768 - z)) >> 15) + L->nu;
            int64_t v = (8 * z * hh[i] + coef * c + (1 << 17)) >> 18;
            hh[i] = v < -32768 ? -32768 : v > 32767 ? 32767 : v;
        }
    }
    for (int i = 0; i < H; i++) {
        h[i] = (int16_t)hh[i];
    }
}

/* ---- optimised ------------------------------------------------------------------------------ */

static bool table_in(const int16_t *t, int32_t lo, int32_t hi)
{
    for (int k = 0; k < 257; k++) {
        if (t[k] < lo || t[k] > hi) {
            return false;
        }
    }
    return true;
}

bool fg_prepare(const fg_layer_t *L, fg_prep_t *P)
{
    memset(P, 0, sizeof *P);
    bool ok = L->nin == 4 || L->nin == 16;
    /* Operand bounds: W, U int8; h int16; RNN1 inputs int8, RNN2 inputs int16 summaries. */
    int64_t xmax = L->nin == 4 ? 128 : 32768;
    int64_t wbound = (int64_t)L->nin * 128 * xmax, ubound = (int64_t)H * 128 * 32768;
    /* With both rq results below 2^28 (what the bounds above give), biases below 2^28 keep
     * every pre-activation sum inside int32. coef in [nu, zeta + nu] <= 65536 needs z >= 0, and
     * coef * c then fits int32 for any int16 c. */
    ok = ok && L->zeta >= 0 && L->zeta <= 32768 && L->nu >= 0 && L->nu <= 32768;
    ok = ok && table_in(L->sig, 0, 32767);
    for (int i = 0; i < H && ok; i++) {
        for (int j = 0; j < H; j += 2) {
            P->u[i][j / 2] = dsp_pack16(L->U[i * H + j], L->U[i * H + j + 1]);
        }
        if (L->nin == 4) { /* SXTB16 order of the input word: (x0, x2), (x1, x3) */
            const int8_t *w = L->W + i * 4;
            P->w[i][0] = dsp_pack16(w[0], w[2]);
            P->w[i][1] = dsp_pack16(w[1], w[3]);
        } else {
            for (int j = 0; j < 16; j += 2) {
                P->w[i][j / 2] = dsp_pack16(L->W[i * 16 + j], L->W[i * 16 + j + 1]);
            }
        }
        ok = ok && rqp_prepare(L->mu[i], L->su[i], ubound, &P->uq[i]);
        ok = ok && rqp_prepare(L->mw[i], L->sw[i], wbound, &P->wq[i]);
        int32_t lim = 1 << 28;
        ok = ok && L->bz[i] > -lim && L->bz[i] < lim && L->bc[i] > -lim && L->bc[i] < lim;
        P->bz[i] = L->bz[i];
        P->dbc[i] = L->bc[i] - L->bz[i];
    }
    P->nzeta = -L->zeta;
    P->zn = L->zeta + L->nu;
    P->sig_mid = L->sig + 128;
    P->tanh_mid = L->tanh + 128;
    P->nin = L->nin;
    return ok;
}

void fg_wxz4_opt(const fg_prep_t *P, const int8_t *x, uint32_t stride, int steps, int32_t (*wxz)[FG_HIDDEN])
{
    for (int t = 0; t < steps; t++) {
        uint32_t v = dsp_load32(x + (uint32_t)t * stride);
        uint32_t xe = dsp_sxtb16(v), xo = dsp_sxtb16_ror8(v);
        for (int i = 0; i < H; i++) {
            int32_t acc = dsp_smlad(P->w[i][1], xo, dsp_smuad(P->w[i][0], xe));
            wxz[t][i] = rqp(&P->wq[i], acc) + P->bz[i];
        }
    }
}

void fg_wxz16_opt(const fg_prep_t *P, const int16_t x[FG_HIDDEN], int32_t wxz[FG_HIDDEN])
{
    uint32_t xp[8];
    memcpy(xp, x, sizeof xp); /* natural pairs (x0, x1), (x2, x3), ... */
    for (int i = 0; i < H; i++) {
        const uint32_t *w = P->w[i];
        int32_t acc = dsp_smuad(w[0], xp[0]);
        acc = dsp_smlad(w[1], xp[1], acc);
        acc = dsp_smlad(w[2], xp[2], acc);
        acc = dsp_smlad(w[3], xp[3], acc);
        acc = dsp_smlad(w[4], xp[4], acc);
        acc = dsp_smlad(w[5], xp[5], acc);
        acc = dsp_smlad(w[6], xp[6], acc);
        acc = dsp_smlad(w[7], xp[7], acc);
        wxz[i] = rqp(&P->wq[i], acc) + P->bz[i];
    }
}

/* The gates and update of unit i given its U h accumulator. zh = z h + 2^14 by SMLABB/SMLABT
 * straight from the packed old state; then
 *   (8 z h + coef c + 2^17) >> 18 == (z h + ((coef c) >> 3) + 2^14) >> 15
 * because the three low bits dropped from coef c cannot carry past bit 3 of 8 z h + 2^17,
 * which is 0 there; and every term fits int32 (|z h| < 2^30, |coef c| <= 2^31). coef uses
 * (zeta (32768 - z)) >> 15 == zeta + ((-zeta z) >> 15), zeta 2^15 being a multiple of 2^15. */
static inline int32_t fg_gates(const fg_prep_t *P, int i, int32_t vz, uint32_t hpair, int top)
{
    int32_t z = lut_opt(P->sig_mid, vz);
    int32_t c = lut_opt(P->tanh_mid, vz + P->dbc[i]);
    int32_t coef = P->zn + ((P->nzeta * z) >> 15);
    int32_t zh = top ? dsp_smlabt((uint32_t)z, hpair, 16384) : dsp_smlabb((uint32_t)z, hpair, 16384);
    return dsp_ssat((zh + ((coef * c) >> 3)) >> 15, 16);
}

static inline int32_t fg_uh(const uint32_t u[8], const uint32_t hp[8])
{
    int32_t acc = dsp_smuad(u[0], hp[0]);
    acc = dsp_smlad(u[1], hp[1], acc);
    acc = dsp_smlad(u[2], hp[2], acc);
    acc = dsp_smlad(u[3], hp[3], acc);
    acc = dsp_smlad(u[4], hp[4], acc);
    acc = dsp_smlad(u[5], hp[5], acc);
    acc = dsp_smlad(u[6], hp[6], acc);
    acc = dsp_smlad(u[7], hp[7], acc);
    return acc;
}

void fg_run_opt(const fg_prep_t *P, const int32_t *const wxz[FG_STEPS], bool reverse, int16_t h[FG_HIDDEN])
{
    uint32_t hp[8];
    /* Step 0 starts from h = 0: U h and its rq are 0 (rnd < 2^sh), and z h is 0. */
    const int32_t *x = wxz[reverse ? FG_STEPS - 1 : 0];
    for (int i = 0; i < H; i += 2) {
        int32_t a = fg_gates(P, i, x[i], 0, 0);
        int32_t b = fg_gates(P, i + 1, x[i + 1], 0, 0);
        hp[i / 2] = dsp_pack16(a, b);
    }
    for (int s = 1; s < FG_STEPS; s++) {
        x = wxz[reverse ? FG_STEPS - 1 - s : s];
        uint32_t hn[8];
        for (int i = 0; i < H; i += 2) {
            uint32_t hpair = hp[i / 2];
            int32_t a = fg_gates(P, i, x[i] + rqp(&P->uq[i], fg_uh(P->u[i], hp)), hpair, 0);
            int32_t b = fg_gates(P, i + 1, x[i + 1] + rqp(&P->uq[i + 1], fg_uh(P->u[i + 1], hp)), hpair, 1);
            hn[i / 2] = dsp_pack16(a, b);
        }
        memcpy(hp, hn, sizeof hp);
    }
    memcpy(h, hp, sizeof hp);
}
