/* libFuzzer target for the protocol codec: the receiver and the message decoder take bytes from
 * the wire, i.e. from anyone, so they must never crash, read out of bounds or hand out a frame
 * that does not survive a re-encode. Build and run: tests/protocol/run_fuzz.sh [seconds].
 *
 * Input layout: the first byte picks a mode, the rest is data.
 *   mode 0:    a byte stream fed to the receiver; every good frame is decoded and, when it
 *              decodes, re-encoded and received again (must give the same header and payload).
 *   mode 1:    reassembly: the data is a script of frames (encoded here, so their CRCs are good
 *              and the fuzzer reaches the reassembler instead of failing CRCs), damaged frames and
 *              garbage, fed through the receiver and proto_rx_reassemble as the app does, and
 *              checked against a plain model of reassembly (see reasm_script).
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

/* ---- mode 1: reassembly ----------------------------------------------------------------------
 * Script records (first byte c):
 *   c == 0xff         proto_rx_reasm_reset (a handshake)
 *   c & 0x80          garbage: the next c & 0x3f bytes, then a delimiter
 *   otherwise         a frame: type k_types[(c >> 3) & 7], flags c & 3 (RETRANSMIT, MORE as on
 *                     the wire), then len u16 (mod 1025); if c & 4, pos u16 and a mask that damage
 *                     one byte of the encoded frame; then the payload (cycled filler if short).
 * The model keeps the payloads of the open message in its own buffer. Every frame the receiver
 * hands out is "accepted" (the codec does not look at seq). An undamaged frame must arrive iff
 * it fits behind the kept payloads, i.e. iff the message stays within PROTO_MAX_PAYLOAD. */
static const uint8_t k_types[8] = {PROTO_DATA, PROTO_RESULT, PROTO_PING,  PROTO_ACK,
                                   PROTO_LINK_CONFIG, PROTO_STATS, 0x7fu, PROTO_HELLO_REQUEST};
static uint8_t m_buf[PROTO_MAX_PAYLOAD];
static size_t m_len;
static uint8_t m_type, m_open;
static uint8_t script_payload[PROTO_MAX_PAYLOAD];
static uint8_t script_wire[PROTO_MAX_WIRE];

static void model_reset(void)
{
    m_len = 0;
    m_open = 0;
    m_type = 0;
}

/* A good frame from the receiver: reassemble it and compare with the model. */
static void reasm_frame(proto_frame_t *f)
{
    if (f->len > PROTO_MAX_PAYLOAD || f->payload != rx.buf + rx.base + PROTO_HEADER_BYTES)
        abort();
    if (!PROTO_IS_SEQUENCED(f->type)) {
        memcpy(payload_copy, f->payload, f->len);
        f->payload = payload_copy;
        recheck(f);
        return;
    }
    const int more = (f->flags & PROTO_FLAG_MORE) != 0u;
    const uint8_t type = f->type;
    const uint16_t len = f->len;
    /* What the model expects: 0 pending, 1 complete, 2 error. */
    int want;
    if (m_open && type != m_type) {
        want = 2;
        model_reset();
    } else {
        if (m_len + len > PROTO_MAX_PAYLOAD)
            abort(); /* the receiver must never hand out a fragment that overflows the message */
        memcpy(m_buf + m_len, f->payload, len);
        m_len += len;
        if (more) {
            m_open = 1;
            m_type = type;
            want = 0;
        } else {
            want = 1;
        }
    }
    const proto_reasm_t r = proto_rx_reassemble(&rx, f);
    if ((want == 0 && r != PROTO_REASM_PENDING) || (want == 1 && r != PROTO_REASM_COMPLETE) ||
        (want == 2 && r != PROTO_REASM_ERROR))
        abort();
    if (r == PROTO_REASM_COMPLETE) {
        if (f->type != type || f->len != m_len || f->len > PROTO_MAX_PAYLOAD)
            abort();
        if (f->len > 0u && memcmp(f->payload, m_buf, m_len) != 0)
            abort();
        memcpy(payload_copy, f->payload, f->len);
        f->payload = payload_copy;
        model_reset();
        recheck(f); /* the whole message decodes (or is rejected) like any frame */
    }
    if (rx.base != m_len || (rx.base > 0u && !rx.frag_open) || rx.base > PROTO_MAX_PAYLOAD)
        abort();
}

/* Feeds bytes; returns the event at the last byte (a delimiter). */
static proto_rx_event_t reasm_feed(const uint8_t *p, size_t n)
{
    proto_rx_event_t last = PROTO_RX_NONE;
    for (size_t i = 0; i < n; i++) {
        proto_frame_t f;
        last = proto_rx_push(&rx, p[i], &f);
        if (last == PROTO_RX_FRAME)
            reasm_frame(&f);
        else if (last != PROTO_RX_NONE && proto_rx_nak_reason(last) == 0u)
            abort();
        if (rx.base != m_len)
            abort(); /* errors and noise never touch the open message */
    }
    return last;
}

static void reasm_script(const uint8_t *data, size_t size)
{
    proto_rx_init(&rx);
    model_reset();
    static const uint8_t delim = 0;
    size_t i = 0;
    while (i < size) {
        const uint8_t c = data[i++];
        if (c == 0xffu) {
            proto_rx_reasm_reset(&rx);
            model_reset();
            continue;
        }
        if (c & 0x80u) {
            size_t n = c & 0x3fu;
            n = n < size - i ? n : size - i;
            (void)reasm_feed(data + i, n);
            i += n;
            (void)reasm_feed(&delim, 1);
            continue;
        }
        if (size - i < 2u)
            break;
        const size_t len = (size_t)(data[i] | (data[i + 1] << 8)) % (PROTO_MAX_PAYLOAD + 1u);
        i += 2;
        size_t pos = 0;
        uint8_t mask = 0;
        const int damage = (c & 4u) != 0u;
        if (damage) {
            if (size - i < 3u)
                break;
            pos = (size_t)(data[i] | (data[i + 1] << 8));
            mask = (uint8_t)(data[i + 2] | 1u);
            i += 3;
        }
        for (size_t k = 0; k < len; k++)
            script_payload[k] = i + k < size ? data[i + k] : (uint8_t)(k * 7u + c);
        i += len < size - i ? len : size - i;
        size_t n = 0;
        const uint8_t type = k_types[(c >> 3) & 7u];
        if (proto_frame_encode(type, c & 3u, 1u, script_payload, len, script_wire, sizeof(script_wire), &n) !=
            PROTO_OK)
            abort();
        if (damage)
            script_wire[pos % (n - 1u)] ^= mask; /* not the delimiter, though a new 0x00 may cut the frame */
        const size_t base = rx.base;
        const proto_rx_event_t ev = reasm_feed(script_wire, n);
        if (!damage) {
            const int fits = PROTO_MIN_RAW + len <= PROTO_MAX_RAW - base;
            if (ev != (fits ? PROTO_RX_FRAME : PROTO_RX_OVERFLOW))
                abort();
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    const uint8_t mode = data[0] & 3u;
    data++;
    size--;
    if (mode == 1u) {
        reasm_script(data, size);
    } else if (mode == 0u) {
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
