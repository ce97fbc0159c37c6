/* Board support interface: the only thing the portable core (src/) knows about the hardware.
 * Implemented once per board in boards/<board>/board.c. */
#ifndef RNNPOOL_BOARD_H
#define RNNPOOL_BOARD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

void board_init(void);
const char *board_name(void);

/* UART. Reception is interrupt driven into a ring buffer of BOARD_UART_RX_BYTES; read never blocks. */
size_t board_uart_read(uint8_t *dst, size_t max);
void board_uart_write(const uint8_t *src, size_t len); /* blocks until queued/sent */
bool board_uart_set_baud(uint32_t baud);                /* false: rate not supported */
uint32_t board_uart_baud(void);
uint32_t board_uart_max_baud(void);
uint32_t board_uart_overruns(void); /* bytes lost because the ring buffer was full */

/* Time. board_ticks() is a free-running 32-bit counter in board_tick_unit():
 * "cycles" (DWT on the Nucleo), "instructions" (QEMU -icount shift=0) or "ns" (host). */
uint32_t board_ticks(void);
const char *board_tick_unit(void);
uint32_t board_clock_hz(void);
uint32_t board_millis(void);

/* Memory. */
uint32_t board_ram_bytes(void);
uint32_t board_static_ram_bytes(void); /* .data + .bss (+ heap, none) from the link map */
void board_stack_paint(void);          /* re-paint the free stack with a known pattern */
uint32_t board_stack_high_water(void); /* deepest stack use (bytes) since the last paint */

void board_watchdog_kick(void);
void board_idle(void);                                 /* sleep until an interrupt (WFI) */
__attribute__((noreturn)) void board_reset(void);      /* software reset */
__attribute__((noreturn)) void board_exit(int status); /* host/qemu tests: end the program */

#endif
