/* Wire protocol v2 between the gateway and the device: codec only (spec: docs/protocol.md).
 *
 * A frame on the wire is COBS(header | payload | CRC-32) followed by 0x00, with the header
 *   type u8 | flags u8 | seq u16 | length u16        (little-endian, like every field)
 * and CRC-32 (IEEE 802.3, reflected, as zlib.crc32) over header + payload.
 *
 * Portable C11, no malloc, no float, no I/O, no clock: the caller owns every buffer and all the
 * timing (retransmissions, credits, state machines live in the app). Functions return a
 * proto_status_t; message bodies are plain structs, one per message type.
 *
 * Shared test vectors: docs/protocol-vectors.json (read by tests/protocol/test_protocol.c and by
 * the gateway's tests/test_protocol_vectors.py).
 */
#ifndef RNNPOOL_PROTOCOL_H
#define RNNPOOL_PROTOCOL_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define PROTO_VERSION 2u
#define PROTO_HEADER_BYTES 6u
#define PROTO_CRC_BYTES 4u
#define PROTO_MAX_PAYLOAD 1024u
#define PROTO_MIN_RAW (PROTO_HEADER_BYTES + PROTO_CRC_BYTES)
#define PROTO_MAX_RAW (PROTO_HEADER_BYTES + PROTO_MAX_PAYLOAD + PROTO_CRC_BYTES) /* 1034 */
/* COBS adds at most one code byte per started 254-byte block. */
#define PROTO_COBS_MAX(n) ((n) + 1u + (n) / 254u)
#define PROTO_MAX_ENCODED PROTO_COBS_MAX(PROTO_MAX_RAW) /* 1039 */
/* Largest frame on the wire including its delimiter: the size of a transmit buffer. */
#define PROTO_MAX_WIRE (PROTO_MAX_ENCODED + 1u) /* 1040 */
/* Wire size of a frame with a payload of n bytes, worst case. */
#define PROTO_WIRE_BYTES(n) (PROTO_COBS_MAX(PROTO_MIN_RAW + (n)) + 1u)

#define PROTO_MAX_BOXES 64u
#define PROTO_MAX_STAGES 32u
#define PROTO_MAX_NAME 32u  /* HELLO strings, bytes without the NUL */
#define PROTO_MAX_TEXT 120u /* ERROR text, bytes without the NUL */
#define PROTO_DATA_MAX_PIXELS (PROTO_MAX_PAYLOAD - 2u)
/* Fragment payload sizes LINK_CONFIG may set (docs/protocol.md section 1, fragmentation). The
 * limit applies to one frame; a message is still at most PROTO_MAX_PAYLOAD bytes. */
#define PROTO_MTU_MIN 16u
#define PROTO_MTU_MAX PROTO_MAX_PAYLOAD

typedef enum {
    PROTO_OK = 0,
    PROTO_ERR_ARG = -1,          /* a body field cannot be encoded (too many boxes, long name...) */
    PROTO_ERR_BUFFER = -2,       /* the output buffer is too small */
    PROTO_ERR_UNKNOWN_TYPE = -3, /* decode: no such message type */
    PROTO_ERR_PAYLOAD = -4,      /* decode: the payload is malformed for its type */
} proto_status_t;

/* Message types. 0x01..0x0F are control frames: not sequenced, never acknowledged (their seq is
 * 0). Every type >= 0x10 is sequenced and must be ACKed, even if the receiver does not know it. */
typedef enum {
    PROTO_ACK = 0x01,
    PROTO_NAK = 0x02,
    PROTO_HELLO_REQUEST = 0x03,
    PROTO_HELLO = 0x04,
    /* host -> device */
    PROTO_PING = 0x10,
    PROTO_DETECT = 0x11,
    PROTO_DATA = 0x12,
    PROTO_CANCEL = 0x13,
    PROTO_SET_BAUD = 0x14,
    PROTO_RESET = 0x15,
    PROTO_LINK_CONFIG = 0x16,
    /* device -> host */
    PROTO_PONG = 0x20,
    PROTO_RESULT = 0x21,
    PROTO_STATS = 0x22,
    PROTO_ERROR = 0x23,
} proto_type_t;

#define PROTO_IS_SEQUENCED(type) ((type) >= 0x10u)

#define PROTO_FLAG_RETRANSMIT 0x01u /* informational */
/* The message's payload continues in the next sequenced frame of the same direction. Only on
 * sequenced frames; other bits are reserved: send 0, ignore. */
#define PROTO_FLAG_MORE 0x02u

typedef enum { PROTO_NAK_CRC = 1, PROTO_NAK_FRAMING = 2, PROTO_NAK_OVERFLOW = 3, PROTO_NAK_GAP = 4 } proto_nak_reason_t;
typedef enum { PROTO_HELLO_REPLY = 0, PROTO_HELLO_BOOT = 1, PROTO_HELLO_NOT_SYNCED = 2 } proto_hello_reason_t;
typedef enum { PROTO_TICKS_CYCLES = 0, PROTO_TICKS_INSTRUCTIONS = 1, PROTO_TICKS_NS = 2 } proto_tick_unit_t;
typedef enum { PROTO_PIXEL_MONO8 = 1 } proto_pixel_format_t;
#define PROTO_DETECT_OPT_STATS 0x01u /* send STATS just before RESULT */

typedef enum {
    PROTO_E_BAD_FRAME = 1,
    PROTO_E_BAD_STATE = 2,
    PROTO_E_BAD_SIZE = 3,
    PROTO_E_TIMEOUT = 4,
    PROTO_E_CANCELLED = 5,
    PROTO_E_BUSY = 6,
    PROTO_E_BAD_ROW = 7,
    PROTO_E_UNSUPPORTED = 8,
    PROTO_E_INTERNAL = 9,
} proto_error_code_t;

/* STATS stage ids (the gateway maps them to names; unknown ids are shown as stage_<id>). */
typedef enum {
    PROTO_STAGE_RECEIVE_WAIT = 0,
    PROTO_STAGE_CONV1 = 1,
    PROTO_STAGE_RNN1 = 2,
    PROTO_STAGE_RNN2 = 3,
    PROTO_STAGE_BLOCK1 = 4,
    PROTO_STAGE_BLOCK2 = 5,
    PROTO_STAGE_BLOCK3 = 6,
    PROTO_STAGE_BLOCK4 = 7,
    PROTO_STAGE_NORM = 8,
    PROTO_STAGE_HEADS = 9,
    PROTO_STAGE_DECODE = 10,
    PROTO_STAGE_NMS = 11,
    PROTO_STAGE_PROTOCOL = 12,
} proto_stage_id_t;

/* ---- message bodies --------------------------------------------------------------------- */

typedef struct { uint16_t ack_seq; uint8_t credit; } proto_ack_t;
typedef struct { uint16_t expected_seq; uint8_t reason; uint8_t credit; } proto_nak_t;
typedef struct { uint32_t nonce; } proto_hello_request_t;
typedef struct {
    uint32_t nonce; /* echoes HELLO_REQUEST; 0 when reason != REPLY */
    uint8_t reason; /* proto_hello_reason_t */
    uint8_t protocol_version;
    uint8_t tick_unit;    /* proto_tick_unit_t */
    uint8_t pixel_format; /* proto_pixel_format_t */
    uint16_t input_width, input_height;
    uint32_t clock_hz, ram_bytes, max_baud, model_hash;
    uint8_t rx_credit;
    char firmware_version[PROTO_MAX_NAME + 1]; /* NUL-terminated */
    char board[PROTO_MAX_NAME + 1];
    char model_id[PROTO_MAX_NAME + 1];
} proto_hello_t;
typedef struct { uint32_t token; } proto_ping_t; /* PING and PONG */
typedef struct {
    uint32_t request_id;
    uint16_t width, height;
    uint8_t pixel_format, options;
} proto_detect_t;
typedef struct {
    uint16_t first_row;
    uint16_t pixel_bytes;  /* a whole number of rows; the codec cannot check it, the app must */
    const uint8_t *pixels; /* decode: points into the receiver's buffer (valid until the next byte) */
} proto_data_t;
typedef struct { uint32_t request_id; } proto_cancel_t;
typedef struct { uint32_t baud; } proto_set_baud_t;
typedef struct { uint16_t mtu; } proto_link_config_t; /* largest fragment payload, both ways */
typedef struct {
    int16_t x, y, w, h; /* 1/16 pixel of the device frame */
    uint16_t score;     /* probability * 65535 */
} proto_box_t;
typedef struct {
    uint32_t request_id;
    /* 64-bit: a 32-bit counter wraps after 4.3 s in ns/instructions, 25.6 s in 168 MHz cycles. */
    uint64_t ticks_receive, ticks_compute, ticks_total;
    uint32_t peak_ram_bytes, stack_high_water_bytes;
    uint8_t n_boxes;
    proto_box_t boxes[PROTO_MAX_BOXES];
} proto_result_t;
typedef struct { uint8_t stage_id; uint64_t ticks; } proto_stage_t;
typedef struct {
    uint32_t request_id;
    uint8_t n_stages;
    proto_stage_t stages[PROTO_MAX_STAGES];
} proto_stats_t;
typedef struct {
    uint16_t code; /* proto_error_code_t */
    uint32_t request_id; /* 0: not about a particular request */
    char text[PROTO_MAX_TEXT + 1]; /* UTF-8, NUL-terminated (never trust it to be valid UTF-8) */
} proto_error_t;
/* RESET has no body. */

/* Any body; handy for hosts and tests. A device that only receives host messages can decode into
 * a smaller union of the types it accepts (proto_decode checks the size it is given). */
typedef union {
    proto_ack_t ack;
    proto_nak_t nak;
    proto_hello_request_t hello_request;
    proto_hello_t hello;
    proto_ping_t ping;
    proto_detect_t detect;
    proto_data_t data;
    proto_cancel_t cancel;
    proto_set_baud_t set_baud;
    proto_link_config_t link_config;
    proto_result_t result;
    proto_stats_t stats;
    proto_error_t error;
} proto_body_t;

/* A good frame (CRC checked), as the receiver hands it out. */
typedef struct {
    uint8_t type, flags;
    uint16_t seq;
    uint16_t len;
    const uint8_t *payload; /* points into the receiver's buffer */
} proto_frame_t;

/* ---- CRC-32 and COBS ---------------------------------------------------------------------- */

/* Incremental: crc = proto_crc32_update(0, a, n); crc = proto_crc32_update(crc, b, m); */
uint32_t proto_crc32_update(uint32_t crc, const uint8_t *data, size_t len);

/* Encodes src into dst (no delimiter); returns the encoded length, or 0 if dst_cap is too small.
 * dst may overlap src if dst + PROTO_COBS_MAX(len) - len <= src, i.e. src sits at least
 * 1 + len / 254 bytes after dst (the frame encoder relies on it to work in place). */
size_t proto_cobs_encode(const uint8_t *src, size_t len, uint8_t *dst, size_t dst_cap);
/* Decodes (no delimiter in src); returns the decoded length, or -1 if src is not valid COBS
 * (contains 0x00, a block runs past the end) or dst_cap is too small. */
long proto_cobs_decode(const uint8_t *src, size_t len, uint8_t *dst, size_t dst_cap);

/* ---- frames -------------------------------------------------------------------------------- */

/* Complete wire frame (with the 0x00 delimiter) from a header and a raw payload. */
proto_status_t proto_frame_encode(uint8_t type, uint8_t flags, uint16_t seq, const uint8_t *payload, size_t len,
                                  uint8_t *out, size_t out_cap, size_t *out_len);

/* Complete wire frame from a message body (the struct type given by `type`; NULL for RESET).
 * Works in place in `out`: no other buffer. out_cap >= PROTO_MAX_WIRE is always enough. */
proto_status_t proto_encode(uint8_t type, uint8_t flags, uint16_t seq, const void *body, uint8_t *out, size_t out_cap,
                            size_t *out_len);

/* Decodes the payload of a good frame into `body` (the struct for frame->type; body_size is its
 * size, checked). proto_data_t.pixels will point into the frame's payload. */
proto_status_t proto_decode(const proto_frame_t *frame, void *body, size_t body_size);

/* Payload size of a body when encoded (or -1 if it cannot be encoded). */
long proto_payload_size(uint8_t type, const void *body);

/* ---- incremental receiver ------------------------------------------------------------------ */

typedef enum {
    PROTO_RX_NONE = 0,     /* need more bytes (also: an empty frame, i.e. repeated 0x00) */
    PROTO_RX_FRAME = 1,    /* a good frame is in *frame */
    PROTO_RX_OVERFLOW = 2, /* longer than PROTO_MAX_RAW: dropped without buffering the rest */
    PROTO_RX_COBS = 3,     /* the delimiter came inside a COBS block (bytes lost) */
    PROTO_RX_SHORT = 4,    /* fewer than header + CRC bytes */
    PROTO_RX_CRC = 5,      /* CRC mismatch */
    PROTO_RX_LENGTH = 6,   /* CRC good, but the header length disagrees with the frame */
} proto_rx_event_t;

/* Decodes COBS on the fly into a bounded buffer; sizeof is about 1.05 KB.
 *
 * The same buffer reassembles fragmented messages (flag MORE): the payloads of the fragments taken
 * so far stay at buf[0 .. base) and the next frame is decoded behind them, at buf[base ..). A whole
 * message is at most PROTO_MAX_PAYLOAD bytes, so base + header + fragment + CRC always fits in
 * PROTO_MAX_RAW, and reassembly costs no RAM beyond the receiver's own (a second 1 KB buffer would
 * not fit the 64 KB budget). A frame that does not fit behind the kept payloads is reported as
 * PROTO_RX_OVERFLOW: a fragment that would take the message past PROTO_MAX_PAYLOAD can never be
 * received whole. */
typedef struct {
    uint8_t buf[PROTO_MAX_RAW];
    uint16_t base;      /* reassembled payload bytes kept at the start of buf */
    uint8_t frag_type;  /* type of the message being reassembled (when base > 0 or frag_open) */
    uint8_t frag_open;  /* a fragment with MORE was taken: the message is not complete */
    uint16_t n;         /* decoded bytes so far */
    uint8_t remaining;  /* data bytes left in the current COBS block */
    uint8_t zero_pending; /* the current block ends with an implied zero (if another block follows) */
    uint8_t started;    /* a byte other than 0x00 arrived since the last delimiter */
    uint8_t overflow;   /* this frame is too long: skip to the next delimiter */
} proto_rx_t;

void proto_rx_init(proto_rx_t *rx);
/* Feed one byte. Errors and frames are reported at the frame's delimiter, once per frame. On
 * PROTO_RX_FRAME, frame->payload points into rx->buf: use it before pushing the next byte. */
proto_rx_event_t proto_rx_push(proto_rx_t *rx, uint8_t byte, proto_frame_t *frame);
/* NAK reason for an error event (0 for NONE / FRAME). */
uint8_t proto_rx_nak_reason(proto_rx_event_t ev);

typedef enum {
    PROTO_REASM_PENDING = 0,  /* a fragment with MORE was kept; *frame is no longer valid */
    PROTO_REASM_COMPLETE = 1, /* *frame is the whole message (payload in rx->buf, until the next byte) */
    PROTO_REASM_ERROR = 2,    /* the fragment does not belong to the message (another type, too
                               * long): reassembly was reset, the message is lost */
} proto_reasm_t;

/* Reassembly of a sequenced frame the caller has accepted (in order, not a duplicate): it is the
 * frame PROTO_RX_FRAME just returned. Frames without MORE and no message open come back as they
 * are (COMPLETE). The flags of a complete message are those of its last fragment. */
proto_reasm_t proto_rx_reassemble(proto_rx_t *rx, proto_frame_t *frame);
/* Drops a partly reassembled message (handshake, error). */
void proto_rx_reasm_reset(proto_rx_t *rx);
/* Payload bytes of the open message taken so far (0 if none). */
static inline uint16_t proto_rx_reasm_bytes(const proto_rx_t *rx)
{
    return rx->base;
}

/* ---- sequence numbers ------------------------------------------------------------------------ */

/* a - b in the 16-bit sequence space, as a signed distance (-32768..32767). */
static inline int32_t proto_seq_diff(uint16_t a, uint16_t b)
{
    int32_t d = (int32_t)(uint16_t)(a - b);
    return d >= 32768 ? d - 65536 : d;
}

#ifdef __cplusplus
}
#endif

#endif
