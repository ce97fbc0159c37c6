/* Cortex-M4 DSP primitives used by the optimised kernels, in two interchangeable forms:
 *
 *  - RNNPOOL_ARM_DSP defined (the ARM boards): the real instructions, through ACLE where GCC has
 *    them and a one-instruction asm otherwise (SMMLA, SMMULR and the rotated SXTB16 have no ACLE
 *    intrinsic).
 *  - otherwise (host): portable C with the exact semantics of the instruction (two's complement,
 *    wrapping, arithmetic right shifts), so the optimised kernels' logic compiles and is tested
 *    bit for bit on the host against the reference kernels and the golden vectors.
 *
 * The emulations compute in unsigned or 64-bit arithmetic where the hardware wraps: the host
 * tests run under UBSan, and signed overflow there would be undefined, not wrapping.
 *
 * Packed operands: "pair" = two int16 in one uint32_t, element 0 in the low half. */
#ifndef ENG_DSP_H
#define ENG_DSP_H

#include <stdint.h>
#include <string.h>

/* Right shifts of negative numbers must be arithmetic (floor): the spec's >> is. GCC and Clang
 * guarantee it on every target we build for; this catches a compiler that does not. */
_Static_assert((-7 >> 1) == -4, "arithmetic right shift required");

#if defined(RNNPOOL_ARM_DSP)
#include <arm_acle.h>

#define DSP_NATIVE 1

static inline int32_t dsp_smlad(uint32_t a, uint32_t b, int32_t acc) { return __smlad(a, b, acc); }
static inline int32_t dsp_smuad(uint32_t a, uint32_t b) { return __smuad(a, b); }
static inline uint32_t dsp_sxtb16(uint32_t a) { return __sxtb16(a); }
static inline uint32_t dsp_sxtb16_ror8(uint32_t a)
{
    uint32_t r;
    __asm__("sxtb16 %0, %1, ror #8" : "=r"(r) : "r"(a));
    return r;
}
static inline int32_t dsp_smlabb(uint32_t a, uint32_t b, int32_t acc) { return __smlabb(a, b, acc); }
static inline int32_t dsp_smlabt(uint32_t a, uint32_t b, int32_t acc) { return __smlabt(a, b, acc); }
static inline int32_t dsp_smlatb(uint32_t a, uint32_t b, int32_t acc) { return __smlatb(a, b, acc); }
static inline int32_t dsp_smlatt(uint32_t a, uint32_t b, int32_t acc) { return __smlatt(a, b, acc); }
/* acc + ((a * (int16)b) >> 16), from the 48-bit product */
static inline int32_t dsp_smlawb(uint32_t a, uint32_t b, int32_t acc) { return __smlawb((int32_t)a, (int32_t)b, acc); }
/* (acc + hi32(a * b)): the high word is the floor of the product / 2^32. */
static inline int32_t dsp_smmla(int32_t a, int32_t b, int32_t acc)
{
    int32_t r;
    __asm__("smmla %0, %1, %2, %3" : "=r"(r) : "r"(a), "r"(b), "r"(acc));
    return r;
}
/* (a * b + 2^31) >> 32 */
static inline int32_t dsp_smmulr(int32_t a, int32_t b)
{
    int32_t r;
    __asm__("smmulr %0, %1, %2" : "=r"(r) : "r"(a), "r"(b));
    return r;
}
#define dsp_ssat(x, bits) __ssat((x), (bits))
#define dsp_usat(x, bits) ((int32_t)__usat((x), (bits)))
/* low half of a, high half of b << sh (sh a constant 0..31) */
#define dsp_pkhbt(a, b, sh) __extension__({ \
    uint32_t r_; \
    __asm__("pkhbt %0, %1, %2, lsl %3" : "=r"(r_) : "r"((uint32_t)(a)), "r"((uint32_t)(b)), "I"(sh)); \
    r_; \
})

#else /* portable emulation */

#define DSP_NATIVE 0

static inline int32_t dsp_lo16(uint32_t a) { return (int32_t)(int16_t)(uint16_t)(a & 0xFFFFu); }
static inline int32_t dsp_hi16(uint32_t a) { return (int32_t)(int16_t)(uint16_t)(a >> 16); }
static inline int32_t dsp_wrap(int64_t v) { return (int32_t)(uint32_t)(uint64_t)v; }

static inline int32_t dsp_smlad(uint32_t a, uint32_t b, int32_t acc)
{
    return dsp_wrap((int64_t)acc + dsp_lo16(a) * dsp_lo16(b) + dsp_hi16(a) * dsp_hi16(b));
}
static inline int32_t dsp_smuad(uint32_t a, uint32_t b)
{
    return dsp_wrap((int64_t)dsp_lo16(a) * dsp_lo16(b) + (int64_t)dsp_hi16(a) * dsp_hi16(b));
}
static inline uint32_t dsp_sxtb16(uint32_t a)
{
    uint32_t lo = (uint32_t)(uint16_t)(int16_t)(int8_t)(uint8_t)(a & 0xFFu);
    uint32_t hi = (uint32_t)(uint16_t)(int16_t)(int8_t)(uint8_t)((a >> 16) & 0xFFu);
    return lo | (hi << 16);
}
static inline uint32_t dsp_sxtb16_ror8(uint32_t a) { return dsp_sxtb16((a >> 8) | (a << 24)); }
static inline int32_t dsp_smlabb(uint32_t a, uint32_t b, int32_t acc)
{
    return dsp_wrap((int64_t)acc + dsp_lo16(a) * dsp_lo16(b));
}
static inline int32_t dsp_smlabt(uint32_t a, uint32_t b, int32_t acc)
{
    return dsp_wrap((int64_t)acc + dsp_lo16(a) * dsp_hi16(b));
}
static inline int32_t dsp_smlatb(uint32_t a, uint32_t b, int32_t acc)
{
    return dsp_wrap((int64_t)acc + dsp_hi16(a) * dsp_lo16(b));
}
static inline int32_t dsp_smlatt(uint32_t a, uint32_t b, int32_t acc)
{
    return dsp_wrap((int64_t)acc + dsp_hi16(a) * dsp_hi16(b));
}
static inline int32_t dsp_smmla(int32_t a, int32_t b, int32_t acc)
{
    return dsp_wrap((int64_t)acc + (((int64_t)a * b) >> 32));
}
static inline int32_t dsp_smlawb(uint32_t a, uint32_t b, int32_t acc)
{
    return dsp_wrap((int64_t)acc + (((int64_t)(int32_t)a * dsp_lo16(b)) >> 16));
}
static inline int32_t dsp_smmulr(int32_t a, int32_t b)
{
    return (int32_t)(((int64_t)a * b + 0x80000000LL) >> 32);
}
static inline int32_t dsp_ssat(int32_t x, int bits)
{
    int32_t hi = (int32_t)((1u << (bits - 1)) - 1u);
    int32_t lo = -hi - 1;
    return x < lo ? lo : x > hi ? hi : x;
}
static inline int32_t dsp_usat(int32_t x, int bits)
{
    int32_t hi = (int32_t)((1u << bits) - 1u);
    return x < 0 ? 0 : x > hi ? hi : x;
}
static inline uint32_t dsp_pkhbt(uint32_t a, uint32_t b, int sh)
{
    return (a & 0xFFFFu) | ((b << sh) & 0xFFFF0000u);
}

#endif

/* Unaligned 32-bit load (LDR allows it on the M4; memcpy compiles to one). */
static inline uint32_t dsp_load32(const void *p)
{
    uint32_t v;
    memcpy(&v, p, sizeof v);
    return v;
}

static inline void dsp_store32(void *p, uint32_t v) { memcpy(p, &v, sizeof v); }

/* Two int16 as one pair (a in the low half). */
static inline uint32_t dsp_pack16(int32_t a, int32_t b)
{
    return ((uint32_t)a & 0xFFFFu) | ((uint32_t)b << 16);
}

#endif /* ENG_DSP_H */
