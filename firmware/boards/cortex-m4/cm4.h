/* Cortex-M4 core peripherals we touch (ARMv7-M Architecture Reference Manual, B3): SCB, SysTick,
 * NVIC, DWT, CoreDebug, plus the few special instructions we need. Only the registers this
 * firmware uses are spelled out; offsets are checked at compile time. */
#ifndef RNNPOOL_CM4_H
#define RNNPOOL_CM4_H

#include <stddef.h>
#include <stdint.h>

#define REG volatile uint32_t

typedef struct {
    REG CPUID;  /* 0x00 */
    REG ICSR;   /* 0x04 */
    REG VTOR;   /* 0x08 */
    REG AIRCR;  /* 0x0C */
    REG SCR;    /* 0x10 */
    REG CCR;    /* 0x14 */
    volatile uint8_t SHPR[12]; /* 0x18: priorities of system handlers 4..15, one byte each */
    REG SHCSR;  /* 0x24 */
    REG CFSR;   /* 0x28 */
    REG HFSR;   /* 0x2C */
    REG DFSR;   /* 0x30 */
    REG MMFAR;  /* 0x34 */
    REG BFAR;   /* 0x38 */
    REG AFSR;   /* 0x3C */
} scb_t;
_Static_assert(offsetof(scb_t, SHCSR) == 0x24, "SCB layout");
_Static_assert(offsetof(scb_t, BFAR) == 0x38, "SCB layout");
#define SCB ((scb_t *)0xE000ED00u)

#define SCB_AIRCR_VECTKEY (0x05FAu << 16)
#define SCB_AIRCR_SYSRESETREQ (1u << 2)
#define SCB_CCR_DIV_0_TRP (1u << 4)
#define SCB_CCR_UNALIGN_TRP (1u << 3)
#define SCB_SHCSR_MEMFAULTENA (1u << 16)
#define SCB_SHCSR_BUSFAULTENA (1u << 17)
#define SCB_SHCSR_USGFAULTENA (1u << 18)
/* SHPR index of a system handler: exception number - 4. */
#define SHPR_SYSTICK 11

typedef struct {
    REG CTRL;  /* 0x00 */
    REG LOAD;  /* 0x04: 24 bits */
    REG VAL;   /* 0x08 */
    REG CALIB; /* 0x0C */
} systick_t;
#define SYSTICK ((systick_t *)0xE000E010u)
#define SYSTICK_CTRL_ENABLE (1u << 0)
#define SYSTICK_CTRL_TICKINT (1u << 1)
#define SYSTICK_CTRL_CLKSOURCE_CPU (1u << 2)
#define SYSTICK_LOAD_MAX 0x00FFFFFFu

typedef struct {
    REG ISER[8];         /* 0x000 */
    uint32_t rsv0[24];
    REG ICER[8];         /* 0x080 */
    uint32_t rsv1[24];
    REG ISPR[8];         /* 0x100 */
    uint32_t rsv2[24];
    REG ICPR[8];         /* 0x180 */
    uint32_t rsv3[24];
    REG IABR[8];         /* 0x200 */
    uint32_t rsv4[56];
    volatile uint8_t IPR[240]; /* 0x300: one byte per interrupt */
} nvic_t;
_Static_assert(offsetof(nvic_t, ICPR) == 0x180, "NVIC layout");
_Static_assert(offsetof(nvic_t, IPR) == 0x300, "NVIC layout");
#define NVIC ((nvic_t *)0xE000E100u)

typedef struct {
    REG CTRL;   /* 0x00 */
    REG CYCCNT; /* 0x04 */
} dwt_t;
#define DWT ((dwt_t *)0xE0001000u)
#define DWT_CTRL_CYCCNTENA (1u << 0)
/* Lock Access Register: harmless on the M4, required on parts whose DWT is locked (M7). */
#define DWT_LAR (*(REG *)0xE0001FB0u)
#define DWT_LAR_KEY 0xC5ACCE55u

#define COREDEBUG_DEMCR (*(REG *)0xE000EDFCu)
#define DEMCR_TRCENA (1u << 24)

/* STM32 implements 4 priority bits, in the top of each byte. */
#define NVIC_PRIO_BITS 4u
#define NVIC_PRIO(level) ((uint8_t)((level) << (8u - NVIC_PRIO_BITS)))

static inline void nvic_enable(unsigned irq, unsigned level)
{
    NVIC->IPR[irq] = NVIC_PRIO(level);
    NVIC->ICPR[irq >> 5] = 1u << (irq & 31u);
    NVIC->ISER[irq >> 5] = 1u << (irq & 31u);
}

static inline void irq_enable(void)
{
    __asm__ volatile("cpsie i" ::: "memory");
}

static inline void irq_disable(void)
{
    __asm__ volatile("cpsid i" ::: "memory");
}

/* Save-and-disable / restore, so critical sections nest and work from handlers too. */
static inline uint32_t irq_save(void)
{
    uint32_t primask;
    __asm__ volatile("mrs %0, primask\n\tcpsid i" : "=r"(primask)::"memory");
    return primask;
}

static inline void irq_restore(uint32_t primask)
{
    __asm__ volatile("msr primask, %0" ::"r"(primask) : "memory");
}

static inline void wfi(void)
{
    __asm__ volatile("wfi" ::: "memory");
}

static inline void dsb(void)
{
    __asm__ volatile("dsb 0xF" ::: "memory");
}

static inline void isb(void)
{
    __asm__ volatile("isb 0xF" ::: "memory");
}

static inline uintptr_t current_sp(void)
{
    uintptr_t sp;
    __asm__ volatile("mov %0, sp" : "=r"(sp));
    return sp;
}

static inline uint32_t current_ipsr(void)
{
    uint32_t ipsr;
    __asm__ volatile("mrs %0, ipsr" : "=r"(ipsr));
    return ipsr;
}

__attribute__((noreturn)) static inline void system_reset(void)
{
    dsb(); /* let outstanding writes (e.g. a fault record) land first */
    SCB->AIRCR = SCB_AIRCR_VECTKEY | (SCB->AIRCR & (7u << 8)) | SCB_AIRCR_SYSRESETREQ;
    dsb();
    for (;;) {
        /* the reset takes a few cycles to arrive */
    }
}

#endif
