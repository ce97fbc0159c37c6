/* Placeholder application, to be replaced by the protocol loop: proves the board layer on every
 * board. At boot it sends one text line,
 *   rnnpool-placeholder board=<name> clock_hz=<n> tick_unit=<unit> ram_bytes=<n>
 *       static_ram_bytes=<n> loop_iterations=<n> loop_ticks=<n>
 * (loop_ticks: board_ticks() across a small fixed loop, so a host can see the counter move),
 * then echoes every byte it receives. */
#include "board.h"

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define LOOP_ITERATIONS 10000u

static char *put_str(char *out, const char *s)
{
    size_t n = strlen(s);
    memcpy(out, s, n);
    return out + n;
}

static char *put_u32(char *out, uint32_t v)
{
    char digits[10];
    size_t n = 0;
    do {
        digits[n++] = (char)('0' + v % 10u);
        v /= 10u;
    } while (v != 0u);
    while (n > 0u) {
        *out++ = digits[--n];
    }
    return out;
}

static uint32_t timed_loop(void)
{
    volatile uint32_t sink = 0;
    uint32_t t0 = board_ticks();
    for (uint32_t i = 0; i < LOOP_ITERATIONS; i++) {
        sink += i;
    }
    uint32_t elapsed = board_ticks() - t0;
    (void)sink;
    return elapsed;
}

int main(void)
{
    board_init();
    uint32_t loop_ticks = timed_loop();

    char line[256];
    char *p = put_str(line, "rnnpool-placeholder board=");
    p = put_str(p, board_name());
    p = put_str(p, " clock_hz=");
    p = put_u32(p, board_clock_hz());
    p = put_str(p, " tick_unit=");
    p = put_str(p, board_tick_unit());
    p = put_str(p, " ram_bytes=");
    p = put_u32(p, board_ram_bytes());
    p = put_str(p, " static_ram_bytes=");
    p = put_u32(p, board_static_ram_bytes());
    p = put_str(p, " loop_iterations=");
    p = put_u32(p, LOOP_ITERATIONS);
    p = put_str(p, " loop_ticks=");
    p = put_u32(p, loop_ticks);
    p = put_str(p, "\r\n");
    board_uart_write((const uint8_t *)line, (size_t)(p - line));

    uint8_t buf[64];
    for (;;) {
        board_watchdog_kick();
        size_t n = board_uart_read(buf, sizeof buf);
        if (n > 0u) {
            board_uart_write(buf, n);
        } else {
            board_idle();
        }
    }
}
