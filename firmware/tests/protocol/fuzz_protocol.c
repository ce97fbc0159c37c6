/* libFuzzer target for the protocol codec: the receiver and the message decoder take bytes from
 * the wire, i.e. from anyone, so they must never crash, read out of bounds or hand out a frame
 * that does not survive a re-encode. Build and run: tests/protocol/run_fuzz.sh [seconds].
 *
 * Input layout: the first byte picks a mode, the rest is data.
 *   mode 0..1: a byte stream fed to the receiver; every good frame is decoded and, when it
 *              decodes, re-encoded and received again (must give the same header and payload).
 *   mode 2:    COBS decode of arbitrary data (bounded output) and encode/decode round trip,
 *              including the in-place encode the frame encoder uses.
 *   mode 3:    the data as a payload of every message type (proto_decode on every type). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "protocol/protocol.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static proto_rx_t rx, rx2;
static uint8_t wire[PROTO_MAX_WIRE];
static uint8_t payload_copy[PROTO_MAX_PAYLOAD];

static void recheck(const proto_frame_t *f)
{
    /* Decode into an exactly sized heap body so ASan sees any overrun of the struct. */
    proto_body_t *body = malloc(sizeof(proto_body_t));
    const proto_status_t st = proto_decode(f, body, sizeof(*body));
    if (st == PROTO_OK) {
        size_t n = 0;
        const void *b = f->type == PROTO_RESET ? NULL : body;
        if (proto_encode(f->type, f->flags, f->seq, b, wire, sizeof(wire), &n) != PROTO_OK)
            abort();
        proto_rx_init(&rx2);
        proto_frame_t g;
        int frames = 0;
        for (size_t i = 0; i < n; i++) {
            if (proto_rx_push(&rx2, wire[i], &g) == PROTO_RX_FRAME) {
                frames++;
                if (g.type != f->type || g.flags != f->flags || g.seq != f->seq)
                    abort();
                /* HELLO may carry ignored trailing bytes; every other payload re-encodes identically. */
                if (f->type != PROTO_HELLO && (g.len != f->len || memcmp(g.payload, payload_copy, g.len) != 0))
                    abort();
            }
        }
        if (frames != 1)
            abort();
    } else if (st != PROTO_ERR_UNKNOWN_TYPE && st != PROTO_ERR_PAYLOAD) {
        abort();
    }
    free(body);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    const uint8_t mode = data[0] & 3u;
    data++;
    size--;
    if (mode <= 1u) {
        proto_rx_init(&rx);
        for (size_t i = 0; i < size; i++) {
            proto_frame_t f;
            const proto_rx_event_t ev = proto_rx_push(&rx, data[i], &f);
            if (ev == PROTO_RX_FRAME) {
                if (f.len > PROTO_MAX_PAYLOAD)
                    abort();
                memcpy(payload_copy, f.payload, f.len);
                f.payload = payload_copy;
                recheck(&f);
            } else if (ev != PROTO_RX_NONE && proto_rx_nak_reason(ev) == 0u) {
                abort();
            }
        }
    } else if (mode == 2u) {
        const size_t cap = size % 1500u;
        uint8_t *out = malloc(cap + 1u);
        (void)proto_cobs_decode(data, size, out, cap);
        free(out);
        const size_t len = size > 2000u ? 2000u : size;
        const size_t enc_cap = PROTO_COBS_MAX(len);
        const size_t off = 1u + len / 254u;
        uint8_t *enc = malloc(off + len);
        uint8_t *dec = malloc(len + 1u);
        memcpy(enc + off, data, len);
        const size_t n = proto_cobs_encode(enc + off, len, enc, off + len);
        if (n == 0u || n > enc_cap || memchr(enc, 0, n) != NULL)
            abort();
        if (proto_cobs_decode(enc, n, dec, len) != (long)len || memcmp(dec, data, len) != 0)
            abort();
        free(enc);
        free(dec);
    } else {
        const size_t len = size > PROTO_MAX_PAYLOAD ? PROTO_MAX_PAYLOAD : size;
        uint8_t *p = malloc(len + 1u);
        memcpy(p, data, len);
        memcpy(payload_copy, p, len);
        for (unsigned t = 0; t < 0x30u; t++) {
            const proto_frame_t f = {.type = (uint8_t)t, .flags = 0, .seq = 1, .len = (uint16_t)len, .payload = p};
            recheck(&f);
        }
        free(p);
    }
    return 0;
}
