#include "cortex-m4/stm32_uart.h"

#include "board.h"
#include "common/ringbuf.h"

_Static_assert(RINGBUF_IS_POW2(BOARD_UART_RX_BYTES), "BOARD_UART_RX_BYTES must be a power of 2");
#if BOARD_UART_TX_BYTES > 0
_Static_assert(RINGBUF_IS_POW2(BOARD_UART_TX_BYTES), "BOARD_UART_TX_BYTES must be a power of 2");
#endif

#define MAX_BAUD 921600u
/* 8N1 tolerates about 3.75 % total mismatch between the two ends; keep our share well inside. */
#define MAX_BAUD_ERROR_PERMILLE 20u
/* Bounded waits: the emulator or a wedged peripheral must not hang us forever. */
#define DRAIN_SPIN_LIMIT 20000000u

static usart_t *s_uart;
static uint32_t s_pclk_hz;
static uint32_t s_baud;
static volatile uint32_t s_line_errors; /* bytes lost in hardware: overrun, framing, parity */

static uint8_t s_rx_storage[BOARD_UART_RX_BYTES];
static ringbuf_t s_rx;
#if BOARD_UART_TX_BYTES > 0
static uint8_t s_tx_storage[BOARD_UART_TX_BYTES];
static ringbuf_t s_tx;
#endif

static const uint32_t k_rates[] = {9600u, 19200u, 38400u, 57600u, 115200u, 230400u, 460800u, 921600u};

static bool rate_supported(uint32_t baud)
{
    for (size_t i = 0; i < sizeof k_rates / sizeof k_rates[0]; i++) {
        if (k_rates[i] == baud) {
            return true;
        }
    }
    return false;
}

/* Oversampling by 16: BRR holds USARTDIV in 12.4 fixed point, i.e. pclk / baud rounded. */
static uint32_t brr_for(uint32_t baud)
{
    return (s_pclk_hz + baud / 2u) / baud;
}

static bool brr_accurate(uint32_t baud)
{
    uint32_t brr = brr_for(baud);
    if (brr < 16u || brr > 0xFFFFu) {
        return false;
    }
    uint32_t actual = s_pclk_hz / brr;
    uint32_t diff = actual > baud ? actual - baud : baud - actual;
    return (uint64_t)diff * 1000u <= (uint64_t)baud * MAX_BAUD_ERROR_PERMILLE;
}

void stm32_uart_init(usart_t *regs, uint32_t pclk_hz, unsigned irq, uint32_t baud)
{
    s_uart = regs;
    s_pclk_hz = pclk_hz;
    s_baud = baud;
    ringbuf_init(&s_rx, s_rx_storage, BOARD_UART_RX_BYTES);
#if BOARD_UART_TX_BYTES > 0
    ringbuf_init(&s_tx, s_tx_storage, BOARD_UART_TX_BYTES);
#endif
    regs->CR1 = 0u;
    regs->CR2 = 0u; /* 1 stop bit */
    regs->CR3 = 0u; /* no flow control, no DMA */
    regs->BRR = brr_for(baud);
    regs->CR1 = USART_CR1_UE | USART_CR1_TE | USART_CR1_RE | USART_CR1_RXNEIE;
    /* Highest priority in the system: at 921600 baud a byte arrives every 10.8 us and the
     * USART holds only one. */
    nvic_enable(irq, 0u);
}

void stm32_uart_isr(void)
{
    uint32_t sr = s_uart->SR;
    if (sr & (USART_SR_RXNE | USART_SR_ORE | USART_SR_FE | USART_SR_PE | USART_SR_NF)) {
        /* Reading DR after SR clears RXNE and all the error flags in one go. */
        uint8_t byte = (uint8_t)s_uart->DR;
        if (sr & USART_SR_ORE) {
            s_line_errors++; /* the byte after this one was lost in the shift register */
        }
        if (sr & (USART_SR_FE | USART_SR_PE)) {
            s_line_errors++; /* garbage (baud mismatch, break, noise): drop it */
        } else if (sr & USART_SR_RXNE) {
            ringbuf_put(&s_rx, byte);
        }
    }
#if BOARD_UART_TX_BYTES > 0
    if ((s_uart->CR1 & USART_CR1_TXEIE) && (sr & USART_SR_TXE)) {
        uint8_t out;
        if (ringbuf_get(&s_tx, &out)) {
            s_uart->DR = out;
        } else {
            s_uart->CR1 &= ~USART_CR1_TXEIE; /* nothing left: stop the TXE interrupt storm */
        }
    }
#endif
}

bool stm32_uart_rx_pending(void)
{
    return !ringbuf_empty(&s_rx);
}

size_t board_uart_read(uint8_t *dst, size_t max)
{
    return ringbuf_read(&s_rx, dst, max);
}

static void put_polled(uint8_t byte)
{
    for (uint32_t spin = 0; !(s_uart->SR & USART_SR_TXE) && spin < DRAIN_SPIN_LIMIT; spin++) {
    }
    s_uart->DR = byte;
}

void board_uart_write(const uint8_t *src, size_t len)
{
#if BOARD_UART_TX_BYTES > 0
    while (len > 0u) {
        size_t n = ringbuf_write(&s_tx, src, len);
        src += n;
        len -= n;
        if (n > 0u) {
            /* The ISR clears TXEIE from interrupt context; make our read-modify-write atomic. */
            uint32_t primask = irq_save();
            s_uart->CR1 |= USART_CR1_TXEIE;
            irq_restore(primask);
        }
        /* Ring full: the ISR frees a slot every byte time; just spin. */
    }
#else
    for (size_t i = 0; i < len; i++) {
        put_polled(src[i]);
    }
#endif
}

void stm32_uart_write_polled(const char *text)
{
    if (s_uart == NULL) {
        return;
    }
    while (*text != '\0') {
        put_polled((uint8_t)*text++);
    }
}

static void drain_tx(void)
{
    uint32_t spin = 0;
#if BOARD_UART_TX_BYTES > 0
    while (!ringbuf_empty(&s_tx) && spin < DRAIN_SPIN_LIMIT) {
        spin++;
    }
#endif
    /* TC, not TXE: the last byte must have left the shift register before BRR changes. */
    while (!(s_uart->SR & USART_SR_TC) && spin < DRAIN_SPIN_LIMIT) {
        spin++;
    }
}

bool board_uart_set_baud(uint32_t baud)
{
    if (!rate_supported(baud) || !brr_accurate(baud)) {
        return false;
    }
    drain_tx();
    uint32_t cr1 = s_uart->CR1;
    s_uart->CR1 = cr1 & ~USART_CR1_UE;
    s_uart->BRR = brr_for(baud);
    s_uart->CR1 = cr1;
    s_baud = baud;
    return true;
}

uint32_t board_uart_baud(void)
{
    return s_baud;
}

uint32_t board_uart_max_baud(void)
{
    return MAX_BAUD;
}

uint32_t board_uart_overruns(void)
{
    return ringbuf_dropped(&s_rx) + s_line_errors;
}
