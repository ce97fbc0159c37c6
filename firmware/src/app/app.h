/* The device application: wire protocol v1 (docs/protocol.md) on top of the streaming engine.
 *
 * One loop, no threads, no malloc. Received bytes go through the frame receiver one at a time;
 * DATA rows are handed to engine_push_row() as soon as their frame has been checked, so the
 * model computes while the host is still sending (the credit in ACK/NAK tells the host how many
 * frames it may send ahead: as many as the UART ring holds while we compute).
 *
 * Link layer, device side:
 *  - After boot the device sends HELLO(BOOT) and is "not synced": sequenced frames are answered
 *    with HELLO(NOT_SYNCED) (at most every APP_NOT_SYNCED_MS) and dropped. HELLO_REQUEST syncs:
 *    sequence numbers restart at 0 both ways, every queued message and any request in progress
 *    are dropped, and HELLO(REPLY) echoes the nonce.
 *  - Host frames are taken strictly in order: the expected one is ACKed (cumulatively, with the
 *    credit) before it is processed; a duplicate is ACKed again and ignored; one after a gap is
 *    dropped and answered with one NAK(GAP) per gap. A frame that fails COBS/CRC/length gets a
 *    NAK with the reason. A NAK(e) from the host acknowledges everything before e.
 *  - Device messages (PONG, STATS, RESULT, ERROR) go out one at a time: the next is sent when
 *    the previous one is ACKed. A message is retransmitted (RETRANSMIT flag) on a NAK for it or
 *    when its ACK is late, with the timeout doubling up to APP_RETX_MAX_MS. It is never given
 *    up: dropping it would leave a hole in the sequence that the host's in-order receiver could
 *    never get past. A new HELLO_REQUEST is what clears the queue.
 *  - A 0x00 goes out before a frame when the line has been quiet for APP_TX_IDLE_FLUSH_MS, so a
 *    receiver that picked up noise meanwhile starts the frame clean.
 *
 * Requests: DETECT (320x320 mono8 only) starts one; DATA frames must bring whole rows, in order,
 * starting at row 0; after row 319 the engine finishes and the device sends STATS (if the DETECT
 * asked for it) and RESULT. Every request the device accepted ends in exactly one RESULT or one
 * ERROR carrying its request id:
 *  - BAD_SIZE: DETECT with another size or pixel format (not accepted), DATA not whole rows;
 *  - BAD_ROW: DATA that is not the next expected row, or runs past the last row;
 *  - TIMEOUT: no DATA for APP_STALL_MS;
 *  - CANCELLED: CANCEL with its id;
 *  - BAD_STATE: a new DETECT arrived first (the new one is accepted: the host has moved on);
 *  - INTERNAL: the engine refused a row (a bug).
 * DATA with no request in progress is dropped silently: it is what was in flight when a request
 * ended early.
 *
 * SET_BAUD (idle only): ACKed at the old rate, then the UART switches. Unless a good frame
 * arrives at the new rate within APP_BAUD_CONFIRM_MS the device switches back and sends
 * ERROR(TIMEOUT, request 0) at the old rate, so the host can tell. RESET: ACK drained, then
 * board_reset(); the board boots and says HELLO(BOOT) again at its power-on rate.
 *
 * Units in RESULT (board_tick_unit(); board_clock_hz() per second):
 *  - ticks_total: DETECT accepted -> RESULT queued;
 *  - ticks_receive: DETECT accepted -> last DATA frame checked (transfer with compute overlapped);
 *  - ticks_compute: time inside engine_push_row() and engine_finish();
 *  - peak_ram_bytes: board_static_ram_bytes() + stack_high_water_bytes, the stack being painted
 *    when the DETECT is accepted.
 * Boxes: x, y, w, h are the engine's Q4 (1/16 pixel) values unchanged; the score goes from the
 * engine's Q15 probability p * 32768 to the protocol's p * 65535 by app_score_u16(). */
#ifndef RNNPOOL_APP_H
#define RNNPOOL_APP_H

#include <stddef.h>
#include <stdint.h>

#define APP_FIRMWARE_VERSION "0.2.0"

#define APP_STALL_MS 5000u        /* = gateway.device.DEVICE_STALL_TIMEOUT_S */
#define APP_BAUD_CONFIRM_MS 1000u /* = gateway.device.DEVICE_BAUD_CONFIRM_S */
#define APP_RETX_MIN_MS 250u      /* first retransmission timeout (plus the frame's wire time) */
#define APP_RETX_MAX_MS 2000u
#define APP_NOT_SYNCED_MS 200u
#define APP_TX_IDLE_FLUSH_MS 50u

/* What the loop talks through; app_init(NULL) uses the board (board.h). Tests pass their own to
 * drive the protocol without a UART and with a clock they control. */
typedef struct {
    size_t (*read)(uint8_t *dst, size_t max);
    void (*write)(const uint8_t *src, size_t len);
    uint32_t (*millis)(void);
    void (*idle)(void);
} app_io_t;

/* Resets all protocol state and sends HELLO(BOOT). */
void app_init(const app_io_t *io);
/* One turn of the loop: kick the watchdog, handle whatever bytes are waiting, run the timers;
 * sleeps (io->idle) when nothing arrived. */
void app_poll(void);
__attribute__((noreturn)) void app_run(void);

/* Q15 probability (0..32768) -> the protocol's u16 (probability * 65535), rounded to nearest:
 * (q15 * 65535 + 16384) >> 15. */
uint16_t app_score_u16(uint16_t q15);

/* Frames the host may send beyond the last one ACKed (HELLO rx_credit, ACK/NAK credit): as many
 * full DATA frames as BOARD_UART_RX_BYTES holds next to a little room for control frames. */
uint8_t app_rx_credit(void);

/* Static RAM owned by the app (receiver, transmit buffers, request state). */
uint32_t app_ram_bytes(void);

#endif
