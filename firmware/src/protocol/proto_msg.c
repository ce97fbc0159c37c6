/* Message payloads <-> body structs. One writer serves both for sizing (dst == NULL) and for
 * writing, so the layout of each message is written down exactly once per direction. */
#include <string.h>

#include "proto_internal.h"

typedef struct {
    uint8_t *p; /* NULL: only count */
    size_t n;
} writer_t;

static void w8(writer_t *w, uint8_t v)
{
    if (w->p != NULL)
        w->p[w->n] = v;
    w->n++;
}

static void w16(writer_t *w, uint16_t v)
{
    w8(w, (uint8_t)v);
    w8(w, (uint8_t)(v >> 8));
}

static void w32(writer_t *w, uint32_t v)
{
    w16(w, (uint16_t)v);
    w16(w, (uint16_t)(v >> 16));
}

static void w64(writer_t *w, uint64_t v)
{
    w32(w, (uint32_t)v);
    w32(w, (uint32_t)(v >> 32));
}

static void wbytes(writer_t *w, const void *src, size_t n)
{
    if (w->p != NULL && n > 0u)
        memcpy(w->p + w->n, src, n);
    w->n += n;
}

/* Length-prefixed string; false if too long or not terminated within max bytes. */
static int wstr(writer_t *w, const char *s, size_t max)
{
    const char *end = memchr(s, 0, max + 1u);
    if (end == NULL)
        return 0;
    const size_t n = (size_t)(end - s);
    w8(w, (uint8_t)n);
    wbytes(w, s, n);
    return 1;
}

long proto_put_payload(uint8_t type, const void *body, uint8_t *dst)
{
    writer_t w = {dst, 0};
    if (body == NULL && type != PROTO_RESET)
        return PROTO_ERR_ARG;
    switch (type) {
    case PROTO_ACK: {
        const proto_ack_t *m = body;
        w16(&w, m->ack_seq);
        w8(&w, m->credit);
        break;
    }
    case PROTO_NAK: {
        const proto_nak_t *m = body;
        w16(&w, m->expected_seq);
        w8(&w, m->reason);
        w8(&w, m->credit);
        break;
    }
    case PROTO_HELLO_REQUEST:
        w32(&w, ((const proto_hello_request_t *)body)->nonce);
        break;
    case PROTO_HELLO: {
        const proto_hello_t *m = body;
        w32(&w, m->nonce);
        w8(&w, m->reason);
        w8(&w, m->protocol_version);
        w8(&w, m->tick_unit);
        w8(&w, m->pixel_format);
        w16(&w, m->input_width);
        w16(&w, m->input_height);
        w32(&w, m->clock_hz);
        w32(&w, m->ram_bytes);
        w32(&w, m->max_baud);
        w32(&w, m->model_hash);
        w8(&w, m->rx_credit);
        if (!wstr(&w, m->firmware_version, PROTO_MAX_NAME) || !wstr(&w, m->board, PROTO_MAX_NAME) ||
            !wstr(&w, m->model_id, PROTO_MAX_NAME))
            return PROTO_ERR_ARG;
        break;
    }
    case PROTO_PING:
    case PROTO_PONG:
        w32(&w, ((const proto_ping_t *)body)->token);
        break;
    case PROTO_DETECT: {
        const proto_detect_t *m = body;
        w32(&w, m->request_id);
        w16(&w, m->width);
        w16(&w, m->height);
        w8(&w, m->pixel_format);
        w8(&w, m->options);
        break;
    }
    case PROTO_DATA: {
        const proto_data_t *m = body;
        if (m->pixel_bytes == 0u || m->pixel_bytes > PROTO_DATA_MAX_PIXELS || m->pixels == NULL)
            return PROTO_ERR_ARG;
        w16(&w, m->first_row);
        wbytes(&w, m->pixels, m->pixel_bytes);
        break;
    }
    case PROTO_CANCEL:
        w32(&w, ((const proto_cancel_t *)body)->request_id);
        break;
    case PROTO_SET_BAUD:
        w32(&w, ((const proto_set_baud_t *)body)->baud);
        break;
    case PROTO_LINK_CONFIG:
        w16(&w, ((const proto_link_config_t *)body)->mtu);
        break;
    case PROTO_RESET:
        break;
    case PROTO_RESULT: {
        const proto_result_t *m = body;
        if (m->n_boxes > PROTO_MAX_BOXES)
            return PROTO_ERR_ARG;
        w32(&w, m->request_id);
        w64(&w, m->ticks_receive);
        w64(&w, m->ticks_compute);
        w64(&w, m->ticks_total);
        w32(&w, m->peak_ram_bytes);
        w32(&w, m->stack_high_water_bytes);
        w8(&w, m->n_boxes);
        for (unsigned i = 0; i < m->n_boxes; i++) {
            const proto_box_t *b = &m->boxes[i];
            w16(&w, (uint16_t)b->x);
            w16(&w, (uint16_t)b->y);
            w16(&w, (uint16_t)b->w);
            w16(&w, (uint16_t)b->h);
            w16(&w, b->score);
        }
        break;
    }
    case PROTO_STATS: {
        const proto_stats_t *m = body;
        if (m->n_stages > PROTO_MAX_STAGES)
            return PROTO_ERR_ARG;
        w32(&w, m->request_id);
        w8(&w, m->n_stages);
        for (unsigned i = 0; i < m->n_stages; i++) {
            w8(&w, m->stages[i].stage_id);
            w64(&w, m->stages[i].ticks);
        }
        break;
    }
    case PROTO_ERROR: {
        const proto_error_t *m = body;
        const char *end = memchr(m->text, 0, PROTO_MAX_TEXT + 1u);
        if (end == NULL)
            return PROTO_ERR_ARG;
        w16(&w, m->code);
        w32(&w, m->request_id);
        wbytes(&w, m->text, (size_t)(end - m->text));
        break;
    }
    default:
        return PROTO_ERR_UNKNOWN_TYPE;
    }
    return (long)w.n;
}

/* ---- decoding ------------------------------------------------------------------------------- */

typedef struct {
    const uint8_t *p;
    size_t n, pos;
    int bad; /* read past the end */
} reader_t;

static uint8_t r8(reader_t *r)
{
    if (r->pos >= r->n) {
        r->bad = 1;
        return 0;
    }
    return r->p[r->pos++];
}

static uint16_t r16(reader_t *r)
{
    const uint16_t lo = r8(r);
    return (uint16_t)(lo | ((uint16_t)r8(r) << 8));
}

static uint32_t r32(reader_t *r)
{
    const uint32_t lo = r16(r);
    return lo | ((uint32_t)r16(r) << 16);
}

static uint64_t r64(reader_t *r)
{
    const uint64_t lo = r32(r);
    return lo | ((uint64_t)r32(r) << 32);
}

/* Copies `n` bytes to a NUL-terminated string; false on NUL inside or a short payload. */
static int rtext(reader_t *r, char *dst, size_t n)
{
    if (n > r->n - r->pos) {
        r->bad = 1;
        return 0;
    }
    if (n > 0u && memchr(r->p + r->pos, 0, n) != NULL)
        return 0;
    if (n > 0u)
        memcpy(dst, r->p + r->pos, n);
    dst[n] = '\0';
    r->pos += n;
    return 1;
}

static int rstr(reader_t *r, char *dst)
{
    const uint8_t n = r8(r);
    return !r->bad && n <= PROTO_MAX_NAME && rtext(r, dst, n);
}

static size_t body_size(uint8_t type)
{
    switch (type) {
    case PROTO_ACK: return sizeof(proto_ack_t);
    case PROTO_NAK: return sizeof(proto_nak_t);
    case PROTO_HELLO_REQUEST: return sizeof(proto_hello_request_t);
    case PROTO_HELLO: return sizeof(proto_hello_t);
    case PROTO_PING:
    case PROTO_PONG: return sizeof(proto_ping_t);
    case PROTO_DETECT: return sizeof(proto_detect_t);
    case PROTO_DATA: return sizeof(proto_data_t);
    case PROTO_CANCEL: return sizeof(proto_cancel_t);
    case PROTO_SET_BAUD: return sizeof(proto_set_baud_t);
    case PROTO_LINK_CONFIG: return sizeof(proto_link_config_t);
    case PROTO_RESET: return 0;
    case PROTO_RESULT: return sizeof(proto_result_t);
    case PROTO_STATS: return sizeof(proto_stats_t);
    case PROTO_ERROR: return sizeof(proto_error_t);
    default: return (size_t)-1;
    }
}

proto_status_t proto_decode(const proto_frame_t *frame, void *body, size_t body_size_given)
{
    if (frame == NULL || (frame->len > 0u && frame->payload == NULL))
        return PROTO_ERR_ARG;
    const size_t need = body_size(frame->type);
    if (need == (size_t)-1)
        return PROTO_ERR_UNKNOWN_TYPE;
    if (need > 0u && (body == NULL || body_size_given < need))
        return PROTO_ERR_ARG;
    reader_t r = {frame->payload, frame->len, 0, 0};
    int trailing_ok = 0;
    switch (frame->type) {
    case PROTO_ACK: {
        proto_ack_t *m = body;
        m->ack_seq = r16(&r);
        m->credit = r8(&r);
        break;
    }
    case PROTO_NAK: {
        proto_nak_t *m = body;
        m->expected_seq = r16(&r);
        m->reason = r8(&r);
        m->credit = r8(&r);
        break;
    }
    case PROTO_HELLO_REQUEST:
        ((proto_hello_request_t *)body)->nonce = r32(&r);
        break;
    case PROTO_HELLO: {
        proto_hello_t *m = body;
        m->nonce = r32(&r);
        m->reason = r8(&r);
        m->protocol_version = r8(&r);
        m->tick_unit = r8(&r);
        m->pixel_format = r8(&r);
        m->input_width = r16(&r);
        m->input_height = r16(&r);
        m->clock_hz = r32(&r);
        m->ram_bytes = r32(&r);
        m->max_baud = r32(&r);
        m->model_hash = r32(&r);
        m->rx_credit = r8(&r);
        if (!rstr(&r, m->firmware_version) || !rstr(&r, m->board) || !rstr(&r, m->model_id))
            return PROTO_ERR_PAYLOAD;
        trailing_ok = 1; /* later versions may append fields */
        break;
    }
    case PROTO_PING:
    case PROTO_PONG:
        ((proto_ping_t *)body)->token = r32(&r);
        break;
    case PROTO_DETECT: {
        proto_detect_t *m = body;
        m->request_id = r32(&r);
        m->width = r16(&r);
        m->height = r16(&r);
        m->pixel_format = r8(&r);
        m->options = r8(&r);
        break;
    }
    case PROTO_DATA: {
        proto_data_t *m = body;
        if (frame->len < 3u)
            return PROTO_ERR_PAYLOAD;
        m->first_row = r16(&r);
        m->pixel_bytes = (uint16_t)(frame->len - 2u);
        m->pixels = frame->payload + 2;
        r.pos = r.n;
        break;
    }
    case PROTO_CANCEL:
        ((proto_cancel_t *)body)->request_id = r32(&r);
        break;
    case PROTO_SET_BAUD:
        ((proto_set_baud_t *)body)->baud = r32(&r);
        break;
    case PROTO_LINK_CONFIG:
        ((proto_link_config_t *)body)->mtu = r16(&r);
        break;
    case PROTO_RESET:
        break;
    case PROTO_RESULT: {
        proto_result_t *m = body;
        m->request_id = r32(&r);
        m->ticks_receive = r64(&r);
        m->ticks_compute = r64(&r);
        m->ticks_total = r64(&r);
        m->peak_ram_bytes = r32(&r);
        m->stack_high_water_bytes = r32(&r);
        m->n_boxes = r8(&r);
        if (r.bad || m->n_boxes > PROTO_MAX_BOXES || r.n - r.pos != 10u * m->n_boxes)
            return PROTO_ERR_PAYLOAD;
        for (unsigned i = 0; i < m->n_boxes; i++) {
            proto_box_t *b = &m->boxes[i];
            b->x = (int16_t)r16(&r);
            b->y = (int16_t)r16(&r);
            b->w = (int16_t)r16(&r);
            b->h = (int16_t)r16(&r);
            b->score = r16(&r);
        }
        break;
    }
    case PROTO_STATS: {
        proto_stats_t *m = body;
        m->request_id = r32(&r);
        m->n_stages = r8(&r);
        if (r.bad || m->n_stages > PROTO_MAX_STAGES || r.n - r.pos != 9u * m->n_stages)
            return PROTO_ERR_PAYLOAD;
        for (unsigned i = 0; i < m->n_stages; i++) {
            m->stages[i].stage_id = r8(&r);
            m->stages[i].ticks = r64(&r);
        }
        break;
    }
    case PROTO_ERROR: {
        proto_error_t *m = body;
        m->code = r16(&r);
        m->request_id = r32(&r);
        if (r.bad || r.n - r.pos > PROTO_MAX_TEXT || !rtext(&r, m->text, r.n - r.pos))
            return PROTO_ERR_PAYLOAD;
        break;
    }
    default:
        return PROTO_ERR_UNKNOWN_TYPE;
    }
    if (r.bad || (!trailing_ok && r.pos != r.n))
        return PROTO_ERR_PAYLOAD;
    return PROTO_OK;
}
