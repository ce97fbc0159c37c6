/* Shared Cortex-M4 start-up: what startup.c expects from a board and offers to it. */
#ifndef RNNPOOL_CM4_STARTUP_H
#define RNNPOOL_CM4_STARTUP_H

#include <stdint.h>

/* Linker-script symbols (boards/cortex-m4/sections.ld). */
extern uint32_t __ram_start[];
extern uint32_t _sstack[]; /* lowest address of the stack = end of static RAM */
extern uint32_t _estack[]; /* top of RAM = initial stack pointer */

/* Called from every fault and from any interrupt nobody handles, with the exception number
 * (IPSR) and the stacked frame {r0, r1, r2, r3, r12, lr, pc, xpsr}. Each board decides what a
 * crash means there (QEMU: report and exit; Nucleo: record, red LED, reset). */
__attribute__((noreturn)) void board_fault(uint32_t exception, const uint32_t *frame);

/* Handlers a board may define; the weak defaults route to board_fault(). */
void SysTick_Handler(void);
void TIM2_IRQHandler(void);
void USART1_IRQHandler(void);
void USART3_IRQHandler(void);

/* Fault handlers for precise causes, divide-by-zero trapping: call early in board_init(). */
void cm4_enable_fault_traps(void);

#define STACK_PAINT_WORD 0xA5C3A5C3u

#endif
