/* Board support interface: the only thing the portable core (src/) knows about the hardware.
 * Implemented once per board in boards/<board>/board.c (+ boards/cortex-m4/ shared by the two
 * ARM boards).
 *
 * Changes against the first version of this header (all function names kept):
 *  - BOARD_UART_RX_BYTES is now defined here (default 2048, a power of two; a board or the
 *    Makefile may override it) so the protocol can size its flow-control window to it.
 *  - Added board_ticks64(): the same counter as board_ticks() widened to 64 bits. At 1 GHz
 *    (host ns, QEMU instructions) the 32-bit counter wraps every 4.3 s, at 168 MHz every 25.6 s;
 *    a whole image can take longer than that.
 *  - Added board_set_busy() / board_set_error(): status LEDs on the Nucleo, no-ops elsewhere.
 *  - Pinned down what board_clock_hz(), board_millis(), board_ram_bytes(), board_idle(),
 *    board_uart_write(), board_uart_set_baud() and the stack functions mean on each board (below).
 *
 * Semantics per board (host | qemu | nucleo-f439zi):
 *  - board_ticks(): ns since start (CLOCK_MONOTONIC) | guest instructions since boot (TIM2 at
 *    1 tick per ns of virtual time; exact only under -icount shift=0) | core cycles (DWT CYCCNT).
 *  - board_clock_hz(): divide ticks by it to get seconds "on the target": 1e9 | 168e6 (the
 *    modelled core clock, so instructions / 168e6 is the run time of a 1-instruction-per-cycle
 *    Cortex-M4 at 168 MHz: a lower bound for the real chip) | 168e6.
 *  - board_millis(): wall-clock-like milliseconds for timeouts, not for benchmarking: real ms |
 *    ms of QEMU virtual time (tracks real time while the guest idles) | SysTick ms.
 *  - board_ram_bytes(): RAM the program may use: host physical memory (clipped to 32 bits) |
 *    131072 | 196608 (the contiguous SRAM1+SRAM2+SRAM3; the CCM is not used).
 *  - board_static_ram_bytes(): .data + .bss (+ .noinit) of the final image, from linker symbols.
 *  - Stack: the ARM boards paint the whole free stack (from the end of .bss to the top of RAM) at
 *    reset; high water = deepest byte written since the last paint, counted from the top of RAM,
 *    so it includes interrupt frames. The host paints 512 KiB below the stack pointer that
 *    board_init() sees and measures from there (so it excludes the C runtime above main); use it
 *    to compare runs, not as a device figure. board_stack_paint() re-paints only the part below
 *    the caller's own frame, so call it from a shallow frame (e.g. the protocol loop).
 *  - board_uart_*(): host stdin/stdout, or a pseudo-terminal with --pty | USART1 | USART3 on the
 *    ST-LINK virtual COM port (PD8/PD9). Reception fills a ring buffer from the RX interrupt; a
 *    full buffer drops the newest byte and counts it in board_uart_overruns() (the host reads its
 *    file descriptor directly; the kernel buffers and nothing is ever dropped).
 *    board_uart_write() returns once the bytes are queued (Nucleo: interrupt-driven TX ring) or
 *    sent (host, QEMU). board_uart_set_baud() first drains pending TX at the old rate.
 *    Supported rates: 9600, 19200, 38400, 57600, 115200, 230400, 460800, 921600.
 *  - board_watchdog_kick(): the Nucleo's IWDG (started by board_init, timeout about 4 s: call it
 *    at least once a second, including inside long computations); it also blinks the heartbeat
 *    LED. No-op on host and QEMU.
 *  - board_idle(): sleep until the next interrupt, returning at once if UART bytes are waiting.
 *    The ARM boards have a periodic tick (Nucleo 1 kHz, QEMU 100 Hz virtual) so timeouts based on
 *    board_millis() still progress; the host waits up to 10 ms for input.
 *  - board_reset(): host re-execs itself with the same arguments (a --pty keeps its /dev/pts/N,
 *    as the ST-LINK's USB port survives an MCU reset) | SCB AIRCR system reset (QEMU restarts the
 *    loaded image) | same.
 *  - board_exit(): host exit(status) | semihosting SYS_EXIT_EXTENDED, QEMU exits with status |
 *    the Nucleo cannot exit: it resets.
 */
#ifndef RNNPOOL_BOARD_H
#define RNNPOOL_BOARD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifndef BOARD_UART_RX_BYTES
#define BOARD_UART_RX_BYTES 2048u
#endif

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
uint64_t board_ticks64(void); /* same counter, never wraps in practice */
const char *board_tick_unit(void);
uint32_t board_clock_hz(void);
uint32_t board_millis(void);

/* Memory. */
uint32_t board_ram_bytes(void);
uint32_t board_static_ram_bytes(void); /* .data + .bss (+ heap, none) from the link map */
void board_stack_paint(void);          /* re-paint the free stack with a known pattern */
uint32_t board_stack_high_water(void); /* deepest stack use (bytes) since the last paint */

/* Status indication (Nucleo LEDs: LD2 blue = busy, LD3 red = error; no-ops elsewhere). */
void board_set_busy(bool busy);
void board_set_error(bool error);

void board_watchdog_kick(void);
void board_idle(void);                                 /* sleep until an interrupt (WFI) */
__attribute__((noreturn)) void board_reset(void);      /* software reset */
__attribute__((noreturn)) void board_exit(int status); /* host/qemu tests: end the program */

#endif
