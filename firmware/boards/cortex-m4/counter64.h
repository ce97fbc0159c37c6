/* Widens a free-running 32-bit hardware counter (DWT CYCCNT on the board, TIM2 in QEMU) to 64 bits.
 * The SysTick handler observes the counter every millisecond, far more often than it wraps (25 s at
 * 168 MHz), so a reader has at most one wrap to account for since the last observation. */
#ifndef RNNPOOL_COUNTER64_H
#define RNNPOOL_COUNTER64_H

#include <stdint.h>

#include "cortex-m4/cm4.h"

typedef struct {
    volatile uint32_t wraps; /* wraps seen by counter64_observe */
    volatile uint32_t last;  /* counter value at the last observation */
} counter64_t;

static inline void counter64_start(counter64_t *counter, uint32_t now)
{
    counter->wraps = 0u;
    counter->last = now;
}

/* From the SysTick handler. */
static inline void counter64_observe(counter64_t *counter, uint32_t now)
{
    if (now < counter->last) {
        counter->wraps++;
    }
    counter->last = now;
}

static inline uint64_t counter64_read(const counter64_t *counter, const volatile uint32_t *hardware)
{
    uint32_t primask = irq_save();
    uint32_t wraps = counter->wraps;
    uint32_t last = counter->last;
    uint32_t now = *hardware;
    irq_restore(primask);
    if (now < last) {
        wraps++; /* wrapped since the last observation, whose SysTick has not run yet */
    }
    return ((uint64_t)wraps << 32) | now;
}

#endif
