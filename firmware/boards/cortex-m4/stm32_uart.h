/* STM32F4 USART driver shared by the ARM boards; it implements the board_uart_* functions of
 * board.h. RX: RXNE interrupt into a ring of BOARD_UART_RX_BYTES. TX: interrupt-driven from a
 * ring of BOARD_UART_TX_BYTES, or polled when that is 0 (QEMU's USART raises no TXE interrupt
 * and sends synchronously anyway). */
#ifndef RNNPOOL_STM32_UART_H
#define RNNPOOL_STM32_UART_H

#include <stdbool.h>
#include <stdint.h>

#include "cortex-m4/stm32f4.h"

#ifndef BOARD_UART_TX_BYTES
#define BOARD_UART_TX_BYTES 512u
#endif

/* The caller has clocked the USART and routed its pins. 8N1, no flow control. */
void stm32_uart_init(usart_t *regs, uint32_t pclk_hz, unsigned irq, uint32_t baud);

/* Call from the USART's interrupt handler. */
void stm32_uart_isr(void);

/* True when received bytes are waiting (board_idle must not sleep then). */
bool stm32_uart_rx_pending(void);

/* Busy-wait transmit that bypasses the ring: for fault reports, where interrupts may be
 * unavailable and the ring in any state. */
void stm32_uart_write_polled(const char *text);

#endif
