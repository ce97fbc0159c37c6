/* Frame layer: header + payload + CRC, COBS, 0x00 delimiter; and the byte-at-a-time receiver. */
#include <string.h>

#include "proto_internal.h"

static void put_le16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

static void put_le32(uint8_t *p, uint32_t v)
{
    for (unsigned i = 0; i < 4u; i++)
        p[i] = (uint8_t)(v >> (8u * i));
}

static uint16_t get_le16(const uint8_t *p)
{
    return (uint16_t)(p[0] | (p[1] << 8));
}

static uint32_t get_le32(const uint8_t *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

/* Where the raw frame is staged inside `out` so that COBS can run in place (see proto_cobs_encode). */
static size_t stage_offset(size_t raw_len)
{
    return 1u + raw_len / 254u;
}

/* The payload is already at out[stage_offset(raw) + HEADER]; add header and CRC, then COBS. */
static proto_status_t finish_frame(uint8_t type, uint8_t flags, uint16_t seq, size_t len, uint8_t *out,
                                   size_t out_cap, size_t *out_len)
{
    const size_t raw_len = PROTO_MIN_RAW + len;
    uint8_t *raw = out + stage_offset(raw_len);
    raw[0] = type;
    raw[1] = flags;
    put_le16(raw + 2, seq);
    put_le16(raw + 4, (uint16_t)len);
    put_le32(raw + PROTO_HEADER_BYTES + len, proto_crc32_update(0, raw, PROTO_HEADER_BYTES + len));
    const size_t n = proto_cobs_encode(raw, raw_len, out, out_cap - 1u);
    if (n == 0u)
        return PROTO_ERR_BUFFER;
    out[n] = 0;
    *out_len = n + 1u;
    return PROTO_OK;
}

proto_status_t proto_frame_encode(uint8_t type, uint8_t flags, uint16_t seq, const uint8_t *payload, size_t len,
                                  uint8_t *out, size_t out_cap, size_t *out_len)
{
    if (len > PROTO_MAX_PAYLOAD || (len > 0u && payload == NULL) || out == NULL || out_len == NULL)
        return PROTO_ERR_ARG;
    if (out_cap < PROTO_WIRE_BYTES(len))
        return PROTO_ERR_BUFFER;
    uint8_t *dst = out + stage_offset(PROTO_MIN_RAW + len) + PROTO_HEADER_BYTES;
    if (len > 0u)
        memmove(dst, payload, len);
    return finish_frame(type, flags, seq, len, out, out_cap, out_len);
}

proto_status_t proto_encode(uint8_t type, uint8_t flags, uint16_t seq, const void *body, uint8_t *out, size_t out_cap,
                            size_t *out_len)
{
    if (out == NULL || out_len == NULL)
        return PROTO_ERR_ARG;
    const long len = proto_put_payload(type, body, NULL);
    if (len < 0)
        return (proto_status_t)len;
    if (out_cap < PROTO_WIRE_BYTES((size_t)len))
        return PROTO_ERR_BUFFER;
    uint8_t *dst = out + stage_offset(PROTO_MIN_RAW + (size_t)len) + PROTO_HEADER_BYTES;
    (void)proto_put_payload(type, body, dst);
    return finish_frame(type, flags, seq, (size_t)len, out, out_cap, out_len);
}

long proto_payload_size(uint8_t type, const void *body)
{
    return proto_put_payload(type, body, NULL);
}

/* ---- receiver ---------------------------------------------------------------------------------- */

/* Ready for the next frame; a message being reassembled stays. */
static void rx_frame_reset(proto_rx_t *rx)
{
    rx->n = 0;
    rx->remaining = 0;
    rx->zero_pending = 0;
    rx->started = 0;
    rx->overflow = 0;
}

void proto_rx_init(proto_rx_t *rx)
{
    rx_frame_reset(rx);
    proto_rx_reasm_reset(rx);
}

void proto_rx_reasm_reset(proto_rx_t *rx)
{
    rx->base = 0;
    rx->frag_type = 0;
    rx->frag_open = 0;
}

static void rx_emit(proto_rx_t *rx, uint8_t b)
{
    /* Frames are decoded behind the reassembled payloads (see proto_rx_t). */
    if (rx->n >= PROTO_MAX_RAW - rx->base)
        rx->overflow = 1;
    else
        rx->buf[rx->base + rx->n++] = b;
}

static proto_rx_event_t rx_end(proto_rx_t *rx, proto_frame_t *frame)
{
    /* The order of the checks is part of the spec: the vectors name the first one that fails. */
    if (rx->overflow)
        return PROTO_RX_OVERFLOW;
    if (!rx->started)
        return PROTO_RX_NONE;
    if (rx->remaining != 0u)
        return PROTO_RX_COBS;
    const size_t n = rx->n;
    const uint8_t *raw = rx->buf + rx->base;
    if (n < PROTO_MIN_RAW)
        return PROTO_RX_SHORT;
    const size_t body = n - PROTO_CRC_BYTES;
    if (proto_crc32_update(0, raw, body) != get_le32(raw + body))
        return PROTO_RX_CRC;
    const uint16_t len = get_le16(raw + 4);
    if ((size_t)len != n - PROTO_MIN_RAW)
        return PROTO_RX_LENGTH;
    if (frame != NULL) {
        frame->type = raw[0];
        frame->flags = raw[1];
        frame->seq = get_le16(raw + 2);
        frame->len = len;
        frame->payload = raw + PROTO_HEADER_BYTES;
    }
    return PROTO_RX_FRAME;
}

proto_rx_event_t proto_rx_push(proto_rx_t *rx, uint8_t byte, proto_frame_t *frame)
{
    if (byte == 0u) {
        const proto_rx_event_t ev = rx_end(rx, frame);
        rx_frame_reset(rx);
        return ev;
    }
    if (rx->overflow)
        return PROTO_RX_NONE;
    rx->started = 1;
    if (rx->remaining != 0u) {
        rx->remaining--;
        rx_emit(rx, byte);
        return PROTO_RX_NONE;
    }
    /* A code byte: the zero implied by the previous block is real only because another block follows. */
    if (rx->zero_pending)
        rx_emit(rx, 0);
    rx->remaining = (uint8_t)(byte - 1u);
    rx->zero_pending = byte != 0xffu;
    return PROTO_RX_NONE;
}

uint8_t proto_rx_nak_reason(proto_rx_event_t ev)
{
    switch (ev) {
    case PROTO_RX_CRC:
        return PROTO_NAK_CRC;
    case PROTO_RX_OVERFLOW:
        return PROTO_NAK_OVERFLOW;
    case PROTO_RX_COBS:
    case PROTO_RX_SHORT:
    case PROTO_RX_LENGTH:
        return PROTO_NAK_FRAMING;
    case PROTO_RX_NONE:
    case PROTO_RX_FRAME:
    default:
        return 0;
    }
}

proto_reasm_t proto_rx_reassemble(proto_rx_t *rx, proto_frame_t *frame)
{
    const int more = (frame->flags & PROTO_FLAG_MORE) != 0u;
    if (!rx->frag_open) {
        if (!more)
            return PROTO_REASM_COMPLETE; /* the common case: a whole message in one frame */
        rx->frag_type = frame->type;
        rx->frag_open = 1;
    } else if (frame->type != rx->frag_type) {
        proto_rx_reasm_reset(rx);
        return PROTO_REASM_ERROR;
    }
    /* The frame lies at buf[base ..) (header first); its payload moves down onto the header.
     * The receiver's bound keeps base + len <= PROTO_MAX_PAYLOAD; checked again all the same. */
    if ((size_t)rx->base + frame->len > PROTO_MAX_PAYLOAD || frame->payload != rx->buf + rx->base + PROTO_HEADER_BYTES) {
        proto_rx_reasm_reset(rx);
        return PROTO_REASM_ERROR;
    }
    memmove(rx->buf + rx->base, frame->payload, frame->len);
    rx->base = (uint16_t)(rx->base + frame->len);
    if (more)
        return PROTO_REASM_PENDING;
    /* Complete: the message is buf[0 .. base). It stays there until the next byte is pushed,
     * which starts decoding at buf[0] again. */
    frame->payload = rx->buf;
    frame->len = rx->base;
    proto_rx_reasm_reset(rx);
    return PROTO_REASM_COMPLETE;
}
