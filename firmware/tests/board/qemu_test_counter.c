/* QEMU target test (make -C firmware BOARD=qemu test): calibrates the instruction counter.
 *
 * A `subs; bne` loop is exactly 2 instructions per iteration, so under -icount shift=0 the TIM2
 * delta across it must be 2N + c for a small constant c, for every N. We check the slope is
 * exactly 2 and report c, the SysTick rate and board_ticks() call overhead. Results go to the
 * UART; the exit status (semihosting) is the verdict. */
#include "board.h"
#include "cortex-m4/cm4.h"
#include "cortex-m4/startup.h"
#include "cortex-m4/stm32f4.h"

#include <stdio.h>
#include <string.h>

static void say(const char *s)
{
    board_uart_write((const uint8_t *)s, strlen(s));
}

/* Interrupts stay off so nothing but the loop runs between the two samples. */
static uint32_t timed_asm_loop(uint32_t n, uint32_t *systick_counts)
{
    uint32_t t0, t1, s0, s1;
    uint32_t primask = irq_save();
    __asm__ volatile("ldr %[s0], [%[st]]\n\t"
                     "ldr %[t0], [%[cnt]]\n\t"
                     "1:\n\t"
                     "subs %[n], %[n], #1\n\t"
                     "bne 1b\n\t"
                     "ldr %[t1], [%[cnt]]\n\t"
                     "ldr %[s1], [%[st]]\n\t"
                     : [t0] "=&r"(t0), [t1] "=&r"(t1), [s0] "=&r"(s0), [s1] "=&r"(s1), [n] "+r"(n)
                     : [cnt] "r"(&TIM2->CNT), [st] "r"(&SYSTICK->VAL)
                     : "cc", "memory");
    irq_restore(primask);
    /* SysTick counts down and reloads at LOAD; undo one possible reload. */
    uint32_t period = SYSTICK->LOAD + 1u;
    *systick_counts = s0 >= s1 ? s0 - s1 : s0 + period - s1;
    return t1 - t0;
}

static int check(int ok, const char *what)
{
    char line[160];
    snprintf(line, sizeof line, "%s: %s\r\n", ok ? "ok  " : "FAIL", what);
    say(line);
    return ok ? 0 : 1;
}

int main(void)
{
    board_init();
    int failures = 0;
    char line[200];

    static const uint32_t sizes[] = {1000u, 10000u, 100000u};
    uint32_t ticks[3], st[3];
    for (int i = 0; i < 3; i++) {
        ticks[i] = timed_asm_loop(sizes[i], &st[i]);
        snprintf(line, sizeof line, "loop N=%lu: %lu ticks (2N+%ld), systick %lu counts\r\n",
                 (unsigned long)sizes[i], (unsigned long)ticks[i],
                 (long)ticks[i] - 2L * (long)sizes[i], (unsigned long)st[i]);
        say(line);
    }
    failures += check(ticks[1] - ticks[0] == 2u * (sizes[1] - sizes[0]) &&
                          ticks[2] - ticks[1] == 2u * (sizes[2] - sizes[1]),
                      "TIM2 counts exactly one tick per instruction");
    failures += check(ticks[0] - 2u * sizes[0] <= 4u, "constant overhead of at most 4 instructions");
    /* 168 MHz of virtual time = 0.168 SysTick counts per instruction; allow rounding of 1. */
    uint32_t expect_st = (uint32_t)(((uint64_t)ticks[2] * 168u + 500u) / 1000u);
    snprintf(line, sizeof line, "systick: %lu counts over %lu instructions (expected %lu at 0.168)\r\n",
             (unsigned long)st[2], (unsigned long)ticks[2], (unsigned long)expect_st);
    say(line);
    failures += check(st[2] + 1u >= expect_st && st[2] <= expect_st + 1u,
                      "SysTick runs at 0.168 counts per instruction");

    /* Determinism: the same loop again gives the same count. */
    uint32_t again_st;
    failures += check(timed_asm_loop(sizes[1], &again_st) == ticks[1], "repeat run is identical");

    uint32_t a = board_ticks();
    uint32_t b = board_ticks();
    snprintf(line, sizeof line, "board_ticks() back to back: %lu\r\n", (unsigned long)(b - a));
    say(line);
    failures += check(b - a > 0u && b - a < 50u, "board_ticks() advances by a few instructions");

    uint64_t w0 = board_ticks64();
    uint32_t m0 = board_millis();
    volatile uint32_t sink = 0;
    for (uint32_t i = 0; i < 3000000u; i++) { /* ~ 15-20 M instructions = 15-20 ms virtual */
        sink += i;
    }
    (void)sink;
    uint64_t w1 = board_ticks64();
    uint32_t m1 = board_millis();
    /* newlib-nano's printf has no %llu. */
    snprintf(line, sizeof line, "ticks64 %lu -> %lu (low words), millis %lu -> %lu\r\n",
             (unsigned long)w0, (unsigned long)w1, (unsigned long)m0, (unsigned long)m1);
    say(line);
    failures += check(w1 > w0 && m1 >= m0 + 10u, "ticks64 and millis advance with virtual time");

    /* Widening across the 32-bit wrap: jump TIM2 to 30 M instructions before it (QEMU takes the
     * write as a new offset), let SysTick see the high value, then read ticks64 continuously
     * across the wrap. Every read must be >= the previous one and the last one past 2^32. */
    TIM2->CNT = 0xFFFFFFFFu - 30000000u;
    uint32_t start_ms = board_millis();
    while ((uint32_t)(board_millis() - start_ms) < 2u) {
    }
    uint64_t prev = board_ticks64();
    int monotonic = 1;
    for (uint32_t i = 0; i < 6000000u; i++) {
        uint64_t now = board_ticks64();
        if (now < prev) {
            monotonic = 0;
        }
        prev = now;
    }
    snprintf(line, sizeof line, "after the wrap: ticks64 high word %lu, low %lu\r\n",
             (unsigned long)(prev >> 32), (unsigned long)prev);
    say(line);
    failures += check(monotonic && (prev >> 32) >= 1u, "ticks64 stays monotonic across the TIM2 wrap");

    uint32_t hw = board_stack_high_water();
    snprintf(line, sizeof line, "stack high water %lu B, static RAM %lu B of %lu B\r\n",
             (unsigned long)hw, (unsigned long)board_static_ram_bytes(),
             (unsigned long)board_ram_bytes());
    say(line);
    failures += check(hw > 0u && hw < 4096u, "stack high water is measured and small");
    failures += check(board_ram_bytes() == 131072u, "RAM is 128 KB");

    snprintf(line, sizeof line, "%d failure(s)\r\n", failures);
    say(line);
    return failures;
}
