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

bool fg_prepare(const fg_layer_t *L, fg_prep_t *P, uint32_t *wblk)
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
    uint32_t stride = FG_WBLK(L->nin);
    for (int i = 0; i < H && ok; i++) {
        for (int j = 0; j < H; j += 2) {
            P->u[i][j / 2] = dsp_pack16(L->U[i * H + j], L->U[i * H + j + 1]);
        }
        rqp_t q;
        ok = ok && rqp_prepare(L->mu[i], L->su[i], ubound, &q) && q.pre == 0;
        P->unit[i].m = q.m;
        P->unit[i].rnd = q.rnd;
        P->unit[i].sh = q.sh;
        P->unit[i].dbc = L->bc[i] - L->bz[i];
        /* W x's pre-shift goes into the widened weights, which have room for it: W << pre
         * stays an int16 while pre <= 8. */
        ok = ok && rqp_prepare(L->mw[i], L->sw[i], wbound, &q) && q.pre <= 8;
        uint32_t *blk = wblk + i * stride;
        const int8_t *w = L->W + i * L->nin;
        int32_t sc = 1 << (ok ? q.pre : 0);
        if (L->nin == 4) { /* SXTB16 order of the input word: (x0, x2), (x1, x3) */
            blk[0] = dsp_pack16(w[0] * sc, w[2] * sc);
            blk[1] = dsp_pack16(w[1] * sc, w[3] * sc);
        } else {
            for (int j = 0; j < 16; j += 2) {
                blk[j / 2] = dsp_pack16(w[j] * sc, w[j + 1] * sc);
            }
        }
        uint32_t nw = L->nin / 2u;
        blk[nw] = (uint32_t)q.m;
        blk[nw + 1] = (uint32_t)q.rnd;
        blk[nw + 2] = (uint32_t)q.sh;
        blk[nw + 3] = (uint32_t)L->bz[i];
        int32_t lim = 1 << 28;
        ok = ok && L->bz[i] > -lim && L->bz[i] < lim && L->bc[i] > -lim && L->bc[i] < lim;
    }
    P->wblk = wblk;
    P->nzeta2 = -2 * L->zeta;
    P->zn = L->zeta + L->nu;
    P->sig_mid = L->sig + 128;
    P->tanh_mid = L->tanh + 128;
    P->nin = L->nin;
    return ok;
}

/* wxz = rq(W x) + bz per unit from a W block {w pairs, m, rnd, sh, bz}: SMUAD/SMLAD, SMMLA with
 * the rounding constant, shift, add. The ARM build keeps the input in registers and takes each
 * unit's block with one LDM. */
#if DSP_NATIVE && defined(__OPTIMIZE__)
#define FG_ASM 1
#else
#define FG_ASM 0
#endif

void fg_wxz4_opt(const fg_prep_t *P, const int8_t *x, uint32_t stride, int steps, int32_t (*wxz)[FG_HIDDEN])
{
    for (int t = 0; t < steps; t++) {
        uint32_t v = dsp_load32(x + (uint32_t)t * stride);
        uint32_t xe = dsp_sxtb16(v), xo = dsp_sxtb16_ror8(v);
#if FG_ASM
        register const uint32_t *rw __asm__("r8") = P->wblk;
        register int32_t *ro __asm__("r9") = wxz[t];
        register uint32_t rxe __asm__("r10") = xe;
        register uint32_t rxo __asm__("r11") = xo;
        __asm__ volatile(
            ".rept 16\n\t"
            "ldmia   r8!, {r0, r1, r2, r3, r4, r5}\n\t" /* w02, w13, m, rnd, sh, bz */
            "smuad   r0, r0, r10\n\t"
            "smlad   r0, r1, r11, r0\n\t"
            "smmla   r0, r0, r2, r3\n\t"
            "asr     r0, r0, r4\n\t"
            "add     r0, r0, r5\n\t"
            "str     r0, [r9], #4\n\t"
            ".endr\n\t"
            : "+r"(rw), "+r"(ro)
            : "r"(rxe), "r"(rxo)
            : "r0", "r1", "r2", "r3", "r4", "r5", "memory");
#else
        const uint32_t *b = P->wblk;
        for (int i = 0; i < H; i++, b += FG_WBLK(4)) {
            int32_t acc = dsp_smlad(b[1], xo, dsp_smuad(b[0], xe));
            wxz[t][i] = (dsp_smmla(acc, (int32_t)b[2], (int32_t)b[3]) >> b[4]) + (int32_t)b[5];
        }
#endif
    }
}

void fg_wxz16_opt(const fg_prep_t *P, const int16_t x[FG_HIDDEN], int32_t wxz[FG_HIDDEN])
{
#if FG_ASM
    register const uint32_t *rw __asm__("r8") = P->wblk;
    register int32_t *ro __asm__("r9") = wxz;
    register const int16_t *rx __asm__("r10") = x;
    /* x pairs in r0-r7; per unit two LDMs of four weight pairs, then the four rq words. */
    __asm__ volatile(
        "ldm     r10, {r0-r7}\n\t"
        ".rept 16\n\t"
        "ldmia   r8!, {r10, r11, r12, lr}\n\t"
        "smuad   r10, r10, r0\n\t"
        "smlad   r10, r11, r1, r10\n\t"
        "smlad   r10, r12, r2, r10\n\t"
        "smlad   r10, lr, r3, r10\n\t"
        "ldmia   r8!, {r11, r12, lr}\n\t"
        "smlad   r10, r11, r4, r10\n\t"
        "smlad   r10, r12, r5, r10\n\t"
        "smlad   r10, lr, r6, r10\n\t"
        "ldmia   r8!, {r11, r12, lr}\n\t"          /* w67, m, rnd */
        "smlad   r10, r11, r7, r10\n\t"
        "smmla   r10, r10, r12, lr\n\t"
        "ldmia   r8!, {r11, r12}\n\t"              /* sh, bz */
        "asr     r10, r10, r11\n\t"
        "add     r10, r10, r12\n\t"
        "str     r10, [r9], #4\n\t"
        ".endr\n\t"
        : "+r"(rw), "+r"(ro), "+r"(rx)
        :
        : "r0", "r1", "r2", "r3", "r4", "r5", "r6", "r7", "r11", "r12", "lr", "memory");
#else
    uint32_t xp[8];
    memcpy(xp, x, sizeof xp); /* natural pairs (x0, x1), (x2, x3), ... */
    const uint32_t *b = P->wblk;
    for (int i = 0; i < H; i++, b += FG_WBLK(16)) {
        int32_t acc = dsp_smuad(b[0], xp[0]);
        for (int j = 1; j < 8; j++) {
            acc = dsp_smlad(b[j], xp[j], acc);
        }
        wxz[i] = (dsp_smmla(acc, (int32_t)b[8], (int32_t)b[9]) >> b[10]) + (int32_t)b[11];
    }
#endif
}

/* One step of all 16 units, in two phases over a state block st[24]: st[0..7] the old h as pairs
 * (h[2j] | h[2j+1] << 16), st[8..23] scratch for the U h accumulators.
 *  Phase 1: acc[i] = U[i] . h, the old state in eight registers, U streamed (SMLAD on pairs).
 *  Phase 2, per unit: vz = wxz[i] + rq(acc[i]) (= pre + bz), vc = vz + (bc - bz);
 *    z = LUT(sigmoid, vz), c = LUT(tanh, vc) (see lut_opt);
 *    coef = zn + ((-2 zeta) * z >> 16) = ((zeta (32768 - z)) >> 15) + nu: zeta 2^15 is a multiple
 *      of 2^15, so it passes through the floor; SMLAWB's 48-bit product makes this one instruction;
 *    h' = ssat16((z h + 2^14 + ((coef c) >> 3)) >> 15) == sat16((8 z h + coef c + 2^17) >> 18):
 *      the three low bits of coef c dropped early cannot carry past bit 3 of 8 z h + 2^17, which is
 *      0 there; every term fits int32 (|z h| < 2^30, |coef c| <= 2^31).
 *    Unit 2j overwrites the low half of pair j only after reading it; unit 2j+1 reads the high
 *    half, still old. The ARM build runs both phases as hand-scheduled assembly (this C is the
 *    same computation, and is what the host tests); 14 registers hold every pointer, constant and
 *    temporary, so nothing spills. */
typedef struct {
    int32_t c32, c16384, nzeta2, zn;
    const fg_unit_t *unit;
    const int32_t *acc, *x;
    uint32_t *hp;
    const int16_t *sig, *tanh;
} fg_phase2_t;

static void fg_phase1(const uint32_t *u, uint32_t st[24])
{
#if FG_ASM
    register const uint32_t *ru __asm__("r8") = u;
    register uint32_t *rs __asm__("r9") = st;
    __asm__ volatile(
        "ldmia   r9!, {r0-r7}\n\t"
        ".rept 16\n\t"
        "ldmia   r8!, {r10, r11, r12}\n\t"
        "smuad   lr, r10, r0\n\t"
        "smlad   lr, r11, r1, lr\n\t"
        "smlad   lr, r12, r2, lr\n\t"
        "ldmia   r8!, {r10, r11, r12}\n\t"
        "smlad   lr, r10, r3, lr\n\t"
        "smlad   lr, r11, r4, lr\n\t"
        "smlad   lr, r12, r5, lr\n\t"
        "ldmia   r8!, {r10, r11}\n\t"
        "smlad   lr, r10, r6, lr\n\t"
        "smlad   lr, r11, r7, lr\n\t"
        "str     lr, [r9], #4\n\t"
        ".endr\n\t"
        : "+r"(ru), "+r"(rs)
        :
        : "r0", "r1", "r2", "r3", "r4", "r5", "r6", "r7", "r10", "r11", "r12", "lr", "memory");
#else
    for (int i = 0; i < H; i++, u += 8) {
        int32_t a = dsp_smuad(u[0], st[0]);
        for (int j = 1; j < 8; j++) {
            a = dsp_smlad(u[j], st[j], a);
        }
        st[8 + i] = (uint32_t)a;
    }
#endif
}

#define FG_P2_UNIT(smla, hoff, ld_h, st_h) \
    "ldmia   r8!, {r0, r1, r2}\n\t"         /* m, rnd, sh */ \
    "ldr     r3, [r9], #4\n\t"              /* acc */ \
    "smmla   r3, r3, r0, r1\n\t" \
    "ldr     r0, [r10], #4\n\t"             /* wxz */ \
    "asr     r3, r3, r2\n\t" \
    "add     r3, r3, r0\n\t"                /* vz */ \
    "ldr     r2, [r8], #4\n\t"              /* bc - bz */ \
    "add     r2, r3, r2\n\t"                /* vc */ \
    "ssat    r3, #14, r3\n\t" \
    "asr     r0, r3, #6\n\t" \
    "and     r1, r3, #63\n\t" \
    "ldr     r0, [r12, r0, lsl #1]\n\t"     /* sig[k] | sig[k+1] << 16 */ \
    "rsb     r1, r1, r1, lsl #16\n\t" \
    "add     r1, r1, #64\n\t"               /* (64 - f) | f << 16 */ \
    "smlad   r3, r0, r1, r4\n\t" \
    "asr     r3, r3, #6\n\t"                /* z */ \
    "ssat    r2, #14, r2\n\t" \
    "asr     r0, r2, #6\n\t" \
    "and     r1, r2, #63\n\t" \
    "ldr     r0, [lr, r0, lsl #1]\n\t" \
    "rsb     r1, r1, r1, lsl #16\n\t" \
    "add     r1, r1, #64\n\t" \
    "smlad   r2, r0, r1, r4\n\t" \
    "asr     r2, r2, #6\n\t"                /* c */ \
    "smlawb  r0, r6, r3, r7\n\t"            /* coef */ \
    "mul     r0, r0, r2\n\t"                /* coef c */ \
    ld_h \
    smla "   r1, r3, r1, r5\n\t"            /* z h + 2^14 */ \
    "add     r1, r1, r0, asr #3\n\t" \
    "ssat    r1, #16, r1, asr #15\n\t" \
    st_h

static void fg_phase2(const fg_phase2_t *p)
{
#if FG_ASM
    register const fg_phase2_t *rp __asm__("r8") = p;
    __asm__ volatile(
        "ldm     r8, {r4, r5, r6, r7, r8, r9, r10, r11, r12, lr}\n\t"
        ".rept 8\n\t"
        FG_P2_UNIT("smlabb", 0, "ldr     r1, [r11]\n\t", "strh    r1, [r11]\n\t")
        FG_P2_UNIT("smlabt", 2, "ldr     r1, [r11], #4\n\t", "strh    r1, [r11, #-2]\n\t")
        ".endr\n\t"
        : "+r"(rp)
        :
        : "r0", "r1", "r2", "r3", "r4", "r5", "r6", "r7", "r9", "r10", "r11", "r12", "lr", "memory");
#else
    const fg_unit_t *q = p->unit;
    for (int i = 0; i < H; i++, q++) {
        int32_t vz = p->x[i] + (dsp_smmla(p->acc[i], q->m, q->rnd) >> q->sh);
        int32_t vc = vz + q->dbc;
        int32_t z = lut_opt(p->sig, vz);
        int32_t c = lut_opt(p->tanh, vc);
        int32_t coef = dsp_smlawb((uint32_t)p->nzeta2, (uint32_t)z, p->zn);
        uint32_t pair = p->hp[i / 2];
        int32_t zh = (i & 1) ? dsp_smlabt((uint32_t)z, pair, p->c16384) : dsp_smlabb((uint32_t)z, pair, p->c16384);
        int32_t hn = dsp_ssat((zh + ((coef * c) >> 3)) >> 15, 16);
        p->hp[i / 2] = (i & 1) ? dsp_pkhbt(pair, (uint32_t)hn, 16) : dsp_pkhbt((uint32_t)hn, pair, 0);
    }
#endif
}

/* Step 0 starts from h = 0: U h = 0, whose rq is 0 (rnd < 2^sh), and z h = 0, so the first step
 * is phase 2 without the U h term and without reading the old state: vz = wxz. */
static void fg_phase2_first(const fg_phase2_t *p)
{
#if FG_ASM
    register const fg_phase2_t *rp __asm__("r8") = p;
    __asm__ volatile(
        "ldm     r8, {r4, r5, r6, r7, r8, r9, r10, r11, r12, lr}\n\t"
        ".rept 16\n\t"
        "ldmia   r8!, {r0, r1, r2, r3}\n\t"       /* only bc - bz (r3) is needed */
        "ldr     r2, [r10], #4\n\t"               /* vz = wxz */
        "add     r3, r2, r3\n\t"                  /* vc */
        "ssat    r2, #14, r2\n\t"
        "asr     r0, r2, #6\n\t"
        "and     r1, r2, #63\n\t"
        "ldr     r0, [r12, r0, lsl #1]\n\t"
        "rsb     r1, r1, r1, lsl #16\n\t"
        "add     r1, r1, #64\n\t"
        "smlad   r2, r0, r1, r4\n\t"
        "asr     r2, r2, #6\n\t"                  /* z */
        "ssat    r3, #14, r3\n\t"
        "asr     r0, r3, #6\n\t"
        "and     r1, r3, #63\n\t"
        "ldr     r0, [lr, r0, lsl #1]\n\t"
        "rsb     r1, r1, r1, lsl #16\n\t"
        "add     r1, r1, #64\n\t"
        "smlad   r3, r0, r1, r4\n\t"
        "asr     r3, r3, #6\n\t"                  /* c */
        "smlawb  r0, r6, r2, r7\n\t"              /* coef */
        "mul     r0, r0, r3\n\t"
        "add     r1, r5, r0, asr #3\n\t"          /* 2^14 + (coef c >> 3) */
        "ssat    r1, #16, r1, asr #15\n\t"
        "strh    r1, [r11], #2\n\t"
        ".endr\n\t"
        : "+r"(rp)
        :
        : "r0", "r1", "r2", "r3", "r4", "r5", "r6", "r7", "r9", "r10", "r11", "r12", "lr", "memory");
#else
    const fg_unit_t *q = p->unit;
    for (int i = 0; i < H; i++, q++) {
        int32_t vz = p->x[i];
        int32_t z = lut_opt(p->sig, vz);
        int32_t c = lut_opt(p->tanh, vz + q->dbc);
        int32_t coef = dsp_smlawb((uint32_t)p->nzeta2, (uint32_t)z, p->zn);
        int16_t hn = (int16_t)dsp_ssat((p->c16384 + ((coef * c) >> 3)) >> 15, 16);
        memcpy((uint8_t *)p->hp + 2 * i, &hn, 2); /* like the STRH: the state is not read here */
    }
#endif
}

void fg_run_opt(const fg_prep_t *P, const int32_t *const wxz[FG_STEPS], bool reverse, int16_t h[FG_HIDDEN])
{
    uint32_t st[8 + H]; /* every word is written before it is read */
    fg_phase2_t p2 = {32, 16384, P->nzeta2, P->zn, P->unit, (const int32_t *)st + 8, NULL, st, P->sig_mid, P->tanh_mid};
    p2.x = wxz[reverse ? FG_STEPS - 1 : 0];
    fg_phase2_first(&p2);
    for (int s = 1; s < FG_STEPS; s++) {
        fg_phase1(P->u[0], st);
        p2.x = wxz[reverse ? FG_STEPS - 1 - s : s];
        fg_phase2(&p2);
    }
    memcpy(h, st, 8 * sizeof st[0]);
}
