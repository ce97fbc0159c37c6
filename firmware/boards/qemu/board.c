/* qemu-system-arm -M netduinoplus2 (STM32F405 as modelled by QEMU 7.2), run with
 *   -icount shift=0 -semihosting-config enable=on,target=native -serial ...
 * (tools/run-qemu.sh). What the model does and does not do decides most of this file:
 *  - RCC is not emulated (reads 0, writes ignored): clocks are never configured or waited on.
 *    The enable bits are still written, so the code stays what an F405 would need.
 *  - USART1 is the first -serial. It drops bytes until UE and RE are set, raises no TXE
 *    interrupt and transmits synchronously on the DR write: RX by interrupt, TX polled.
 *  - Timers (stm32f2xx_timer) count 1 GHz of *virtual* time divided by PSC+1 and are 32 bits
 *    wide in the model. With -icount shift=0 virtual time advances exactly 1 ns per guest
 *    instruction, so TIM2 with PSC=0 counts instructions.
 *
 * Counter calibration (tests/board/qemu_test_counter.c, QEMU 7.2.22, -icount shift=0), measured
 * around an inline-assembly loop of `subs; bne` (2 instructions per iteration) run N times with
 * interrupts off, between two loads of TIM2->CNT:
 *     N = 1000 -> 2001 ticks,  N = 10000 -> 20001 ticks,  N = 100000 -> 200001 ticks
 * i.e. exactly 1 tick per instruction, plus 1 for the first load (the counter is sampled as a
 * load executes, so the sampling load itself is inside the window). Identical on every run.
 * SysTick (CLKSOURCE = CPU) moved 33601 counts over those 200001 instructions: 0.168 counts per
 * instruction, the model's 168 MHz of virtual time. board_ticks() called back to back differs
 * by 5 (the call, the load and the return).
 *
 * SysTick runs at 100 Hz of virtual time: it wakes board_idle() so timeouts progress and it
 * widens TIM2 to 64 bits. Its handler (8-12 instructions every 10^7) is included in any count
 * that spans it: about 1 ppm.
 */
#include "board.h"
#include "cortex-m4/cm4.h"
#include "cortex-m4/counter64.h"
#include "cortex-m4/startup.h"
#include "cortex-m4/stm32_uart.h"
#include "cortex-m4/stm32f4.h"

#define CORE_HZ 168000000u      /* what the F405 would run at; QEMU itself ignores clocks */
#define APB2_HZ (CORE_HZ / 2u)  /* USART1's bus; only feeds the BRR arithmetic here */
#define TICK_HZ 100u
#define VIRTUAL_TICKS_PER_MS 1000000u /* 1 instruction = 1 ns under -icount shift=0 */

/* Semihosting (ARM DUI 0471 / "Semihosting for AArch32 and AArch64"): on M-profile the call is
 * BKPT 0xAB with the operation in r0 and the argument in r1. */
#define SEMIHOST_SYS_WRITE0 0x04u
#define SEMIHOST_SYS_EXIT_EXTENDED 0x20u
#define ADP_STOPPED_APPLICATION_EXIT 0x20026u

static counter64_t s_ticks; /* TIM2 widened to 64 bits */

static uint32_t semihost(uint32_t op, const void *arg)
{
    register uint32_t r0 __asm__("r0") = op;
    register const void *r1 __asm__("r1") = arg;
    __asm__ volatile("bkpt 0xAB" : "+r"(r0) : "r"(r1) : "memory");
    return r0;
}

static void counter_init(void)
{
    RCC->APB1ENR |= RCC_APB1ENR_TIM2EN;
    TIM2->CR1 = 0u;
    TIM2->PSC = 0u;
    TIM2->ARR = 0xFFFFFFFFu;
    TIM2->EGR = TIM_EGR_UG; /* load PSC now rather than at the first overflow */
    TIM2->SR = 0u;
    TIM2->CR1 = TIM_CR1_CEN;

    SYSTICK->CTRL = 0u;
    SYSTICK->LOAD = CORE_HZ / TICK_HZ - 1u;
    SYSTICK->VAL = 0u;
    SCB->SHPR[SHPR_SYSTICK] = NVIC_PRIO(2u);
    counter64_start(&s_ticks, TIM2->CNT);
    SYSTICK->CTRL = SYSTICK_CTRL_CLKSOURCE_CPU | SYSTICK_CTRL_TICKINT | SYSTICK_CTRL_ENABLE;
}

void SysTick_Handler(void)
{
    counter64_observe(&s_ticks, TIM2->CNT);
}

void USART1_IRQHandler(void)
{
    stm32_uart_isr();
}

void board_init(void)
{
    cm4_enable_fault_traps();
    counter_init();
    RCC->APB2ENR |= RCC_APB2ENR_USART1EN;
    /* No pin muxing: QEMU's USART is not wired through GPIO. On an F405 it would be PA9/PA10 AF7. */
    stm32_uart_init(USART1, APB2_HZ, IRQ_USART1, 115200u);
    irq_enable();
}

const char *board_name(void)
{
    return "qemu";
}

uint32_t board_ticks(void)
{
    return TIM2->CNT;
}

uint64_t board_ticks64(void)
{
    return counter64_read(&s_ticks, &TIM2->CNT);
}

const char *board_tick_unit(void)
{
    return "instructions";
}

uint32_t board_clock_hz(void)
{
    return CORE_HZ;
}

uint32_t board_millis(void)
{
    return (uint32_t)(board_ticks64() / VIRTUAL_TICKS_PER_MS);
}

void board_set_busy(bool busy)
{
    (void)busy;
}

void board_set_error(bool error)
{
    (void)error;
}

void board_watchdog_kick(void)
{
    /* The model has no IWDG. */
}

void board_idle(void)
{
    /* WFI with PRIMASK set still wakes on a pending interrupt, so a byte that lands between the
     * check and the WFI cannot be slept through. */
    uint32_t primask = irq_save();
    if (!stm32_uart_rx_pending()) {
        wfi();
    }
    irq_restore(primask);
}

void board_reset(void)
{
    /* QEMU answers SYSRESETREQ with a machine reset, which reloads the -kernel image. */
    system_reset();
}

void board_exit(int status)
{
    uint32_t block[2] = {ADP_STOPPED_APPLICATION_EXIT, (uint32_t)status};
    semihost(SEMIHOST_SYS_EXIT_EXTENDED, block);
    /* Only reached without -semihosting-config enable=on (then the BKPT faults first, in fact). */
    for (;;) {
        wfi();
    }
}

static char *hex32(char *out, uint32_t v)
{
    static const char digits[] = "0123456789abcdef";
    for (int shift = 28; shift >= 0; shift -= 4) {
        *out++ = digits[(v >> shift) & 0xFu];
    }
    return out;
}

static char *append(char *out, const char *s)
{
    while (*s != '\0') {
        *out++ = *s++;
    }
    return out;
}

void board_fault(uint32_t exception, const uint32_t *frame)
{
    static volatile bool s_in_fault;
    if (s_in_fault) {
        /* Faulted while reporting (e.g. semihosting is off): stop here for a debugger. */
        for (;;) {
        }
    }
    s_in_fault = true;

    char msg[128];
    char *p = append(msg, "\r\nFAULT exception=0x");
    p = hex32(p, exception);
    p = append(p, " pc=0x");
    p = hex32(p, frame[6]);
    p = append(p, " lr=0x");
    p = hex32(p, frame[5]);
    p = append(p, " cfsr=0x");
    p = hex32(p, SCB->CFSR);
    p = append(p, " hfsr=0x");
    p = hex32(p, SCB->HFSR);
    p = append(p, "\r\n");
    *p = '\0';
    /* Both the UART (what the host is reading) and semihosting (QEMU's own stderr, which the test
     * logs even when the UART is a socket). */
    stm32_uart_write_polled(msg);
    semihost(SEMIHOST_SYS_WRITE0, msg);
    board_exit(128 + (int)exception);
}
