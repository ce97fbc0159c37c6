/* The device application: wire protocol v1 (docs/protocol.md) on top of the streaming engine.
 *
 * One loop, no threads, no malloc. Received bytes go through the frame receiver one at a time;
 * DATA rows are handed to engine_push_row() as soon as their frame has been checked, so the
 * model computes while the host is still sending (the credit in HELLO/ACK/NAK tells the host how
 * many frames it may send ahead: as many as the UART ring holds while we compute).
 *
 * Link layer, device side (docs/protocol.md sections 3 and 4):
 *  - After boot the device sends 0x00 HELLO(BOOT) and is not synchronised: sequenced frames are
 *    answered with HELLO(NOT_SYNCED) (at most every APP_NOT_SYNCED_MS) and dropped, nothing is
 *    NAKed. HELLO_REQUEST synchronises: sequence numbers restart at 0 both ways, every queued
 *    message and any request in progress are dropped (no ERROR), HELLO(REPLY) echoes the nonce.
 *  - Host frames are taken strictly in order: the expected one is ACKed (cumulatively, with the
 *    credit) before it is processed; a duplicate is ACKed again and ignored; one after a gap is
 *    dropped, with one NAK(GAP) per value of `expected`. A frame that fails COBS/CRC/length gets
 *    a NAK with the reason. A NAK(e) from the host acknowledges everything before e.
 *  - Device messages (PONG, STATS, RESULT, ERROR) go out one at a time: the next when the
 *    previous one is ACKed. The pending one is resent (RETRANSMIT flag) on a NAK for it, or when
 *    its ACK is late: after APP_RETX_MIN_MS plus two wire times, doubling up to APP_RETX_MAX_MS.
 *    It is never given up: the host's receiver only takes frames in order, so a message dropped
 *    after its sequence number was used would leave a hole that every later message NAKs into
 *    until the next handshake. A HELLO_REQUEST is what clears the queue; a host that went away
 *    costs one frame every APP_RETX_MAX_MS.
 *  - A 0x00 goes out before a frame when the line has been quiet for APP_TX_IDLE_FLUSH_MS (and
 *    before the boot HELLO), so a receiver that picked up noise meanwhile starts the frame clean.
 *
 * Requests: DETECT (320x320 mono8 only) starts one; DATA frames must bring whole rows, in order,
 * from row 0; after row 319 the ACK goes out, then engine_finish(), then STATS (if the DETECT
 * asked for it) and RESULT. Every request the device accepted ends in exactly one RESULT or one
 * ERROR carrying its id (unless a HELLO_REQUEST or a reset intervenes):
 *  - BAD_SIZE: DETECT with another size or pixel format (not accepted), DATA not whole rows;
 *  - BAD_ROW: DATA that is not the next expected row, or runs past the last row;
 *  - TIMEOUT: no DATA for APP_STALL_MS (the clock restarts after each frame's compute and only
 *    runs while the ring is empty, so our own compute never counts as a stall);
 *  - CANCELLED: CANCEL with its id (another id: only ACKed);
 *  - BAD_STATE: a new DETECT arrived mid-image. The old request ends and the new one starts
 *    clean: the host has evidently moved on (a correct host CANCELs first, and CANCEL is
 *    reliable and in order), and keeping the old one would only stall for APP_STALL_MS and then
 *    fail the new one's rows with BAD_ROW;
 *  - INTERNAL: the engine refused a row or the RESULT did not fit the queue (bugs).
 * DATA with no request in progress is ACKed and dropped: it was in flight when a request ended.
 *
 * SET_BAUD (idle only, else BAD_STATE): ACKed at the old rate, drained, then the UART switches
 * (a rate board_uart_set_baud refuses: ERROR UNSUPPORTED, rate unchanged). Unless a good frame
 * arrives at the new rate within APP_BAUD_CONFIRM_MS the device goes back to the old rate and
 * then sends ERROR(TIMEOUT, request 0, "... back at N baud") so that a log says why. RESET: the
 * ACK is drained, then board_reset(); the board boots at its power-on rate and says HELLO(BOOT).
 *
 * Units in RESULT (board_tick_unit(); board_clock_hz() ticks per second):
 *  - ticks_total: DETECT accepted -> RESULT queued;
 *  - ticks_receive: DETECT accepted -> last DATA frame accepted (transfer, compute overlapped);
 *  - ticks_compute: time inside engine_push_row() and engine_finish();
 *  - peak_ram_bytes: board_static_ram_bytes() + stack_high_water_bytes, the stack being painted
 *    when the DETECT is accepted.
 * STATS: receive_wait (idle in the loop, waiting for bytes), the engine's stages (its two RNN1
 * passes reported as rnn1, its L2 norms inside heads), and protocol = total - compute - wait.
 * Boxes: x, y, w, h are the engine's Q4 (1/16 pixel) values unchanged; the score goes from the
 * engine's Q15 probability p * 32768 to the protocol's p * 65535 by app_score_u16(). */
#ifndef RNNPOOL_APP_H
#define RNNPOOL_APP_H

#include <stddef.h>
#include <stdint.h>

#define APP_FIRMWARE_VERSION "0.2.0"

#define APP_STALL_MS 5000u        /* = gateway.device.DEVICE_STALL_TIMEOUT_S */
#define APP_BAUD_CONFIRM_MS 1000u /* = gateway.device.DEVICE_BAUD_CONFIRM_S */
#define APP_RETX_MIN_MS 200u      /* first retransmission timeout (plus twice the frame's wire time); the host answers at once, a spurious copy costs one duplicate */
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
