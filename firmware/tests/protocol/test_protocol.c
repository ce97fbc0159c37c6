/* Tests of the C protocol codec against docs/protocol-vectors.json (the same file the gateway's
 * Python tests read), plus properties the vectors cannot show (buffer bounds, in-place encoding,
 * corruption detection).
 *
 * Run by `make -C firmware BOARD=host test` (cwd firmware/), or by hand:
 *   sh firmware/tests/protocol/run_tests.sh          (gcc with ASan + UBSan, then the test)
 * The vectors file is found from the working directory (firmware/ or the repository root), or
 * given as the first argument or in $PROTOCOL_VECTORS.
 *
 * The JSON reader below handles exactly what the vectors use: objects, arrays, strings (UTF-8,
 * with the usual escapes), integers, true/false/null. It is test code, so it uses malloc. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "protocol/protocol.h"

/* ---- tiny JSON reader ------------------------------------------------------------------------- */

typedef enum { J_NULL, J_BOOL, J_INT, J_STR, J_ARR, J_OBJ } jtype_t;

typedef struct json {
    jtype_t type;
    long long i;     /* J_INT, J_BOOL */
    char *s;         /* J_STR (NUL-terminated; JSON strings here never contain NUL) */
    size_t slen;
    size_t n;        /* J_ARR, J_OBJ: number of children */
    struct json *items;
    char **keys;     /* J_OBJ */
} json_t;

typedef struct {
    const char *p, *end;
    const char *err;
} jparser_t;

static void jskip(jparser_t *ps)
{
    while (ps->p < ps->end && (*ps->p == ' ' || *ps->p == '\n' || *ps->p == '\r' || *ps->p == '\t'))
        ps->p++;
}

static int jfail(jparser_t *ps, const char *msg)
{
    if (ps->err == NULL)
        ps->err = msg;
    return 0;
}

static int jparse_value(jparser_t *ps, json_t *out);

static void put_utf8(char *dst, size_t *n, unsigned cp)
{
    if (cp < 0x80u) {
        dst[(*n)++] = (char)cp;
    } else if (cp < 0x800u) {
        dst[(*n)++] = (char)(0xc0u | (cp >> 6));
        dst[(*n)++] = (char)(0x80u | (cp & 0x3fu));
    } else if (cp < 0x10000u) {
        dst[(*n)++] = (char)(0xe0u | (cp >> 12));
        dst[(*n)++] = (char)(0x80u | ((cp >> 6) & 0x3fu));
        dst[(*n)++] = (char)(0x80u | (cp & 0x3fu));
    } else {
        dst[(*n)++] = (char)(0xf0u | (cp >> 18));
        dst[(*n)++] = (char)(0x80u | ((cp >> 12) & 0x3fu));
        dst[(*n)++] = (char)(0x80u | ((cp >> 6) & 0x3fu));
        dst[(*n)++] = (char)(0x80u | (cp & 0x3fu));
    }
}

static int jhex4(jparser_t *ps, unsigned *v)
{
    *v = 0;
    for (int k = 0; k < 4; k++) {
        if (ps->p >= ps->end)
            return jfail(ps, "short \\u escape");
        const char c = *ps->p++;
        unsigned d;
        if (c >= '0' && c <= '9')
            d = (unsigned)(c - '0');
        else if (c >= 'a' && c <= 'f')
            d = (unsigned)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F')
            d = (unsigned)(c - 'A' + 10);
        else
            return jfail(ps, "bad \\u escape");
        *v = *v * 16u + d;
    }
    return 1;
}

static int jparse_string(jparser_t *ps, char **out, size_t *out_len)
{
    if (ps->p >= ps->end || *ps->p != '"')
        return jfail(ps, "expected string");
    ps->p++;
    /* Escapes only shrink, so the raw length bounds the decoded one. */
    const char *q = ps->p;
    while (q < ps->end && *q != '"')
        q += (*q == '\\') ? 2 : 1;
    if (q >= ps->end)
        return jfail(ps, "unterminated string");
    char *s = malloc((size_t)(q - ps->p) + 1u);
    size_t n = 0;
    while (*ps->p != '"') {
        char c = *ps->p++;
        if (c != '\\') {
            s[n++] = c;
            continue;
        }
        c = *ps->p++;
        switch (c) {
        case '"': case '\\': case '/': s[n++] = c; break;
        case 'b': s[n++] = '\b'; break;
        case 'f': s[n++] = '\f'; break;
        case 'n': s[n++] = '\n'; break;
        case 'r': s[n++] = '\r'; break;
        case 't': s[n++] = '\t'; break;
        case 'u': {
            unsigned cp;
            if (!jhex4(ps, &cp)) {
                free(s);
                return 0;
            }
            if (cp >= 0xd800u && cp < 0xdc00u && ps->end - ps->p >= 6 && ps->p[0] == '\\' && ps->p[1] == 'u') {
                unsigned lo;
                ps->p += 2;
                if (!jhex4(ps, &lo)) {
                    free(s);
                    return 0;
                }
                cp = 0x10000u + ((cp - 0xd800u) << 10) + (lo - 0xdc00u);
            }
            put_utf8(s, &n, cp);
            break;
        }
        default:
            free(s);
            return jfail(ps, "bad escape");
        }
    }
    ps->p++;
    s[n] = '\0';
    *out = s;
    *out_len = n;
    return 1;
}

static int jparse_container(jparser_t *ps, json_t *out, int is_obj)
{
    const char close = is_obj ? '}' : ']';
    size_t cap = 8;
    out->type = is_obj ? J_OBJ : J_ARR;
    out->n = 0;
    out->items = malloc(cap * sizeof(json_t));
    out->keys = is_obj ? malloc(cap * sizeof(char *)) : NULL;
    ps->p++;
    jskip(ps);
    if (ps->p < ps->end && *ps->p == close) {
        ps->p++;
        return 1;
    }
    for (;;) {
        if (out->n == cap) {
            cap *= 2;
            out->items = realloc(out->items, cap * sizeof(json_t));
            if (is_obj)
                out->keys = realloc(out->keys, cap * sizeof(char *));
        }
        jskip(ps);
        if (is_obj) {
            size_t kl;
            if (!jparse_string(ps, &out->keys[out->n], &kl))
                return 0;
            jskip(ps);
            if (ps->p >= ps->end || *ps->p++ != ':')
                return jfail(ps, "expected ':'");
        }
        if (!jparse_value(ps, &out->items[out->n]))
            return 0;
        out->n++;
        jskip(ps);
        if (ps->p < ps->end && *ps->p == ',') {
            ps->p++;
            continue;
        }
        if (ps->p < ps->end && *ps->p == close) {
            ps->p++;
            return 1;
        }
        return jfail(ps, "expected ',' or end of container");
    }
}

static int jparse_value(jparser_t *ps, json_t *out)
{
    memset(out, 0, sizeof(*out));
    jskip(ps);
    if (ps->p >= ps->end)
        return jfail(ps, "unexpected end");
    const char c = *ps->p;
    if (c == '{' || c == '[')
        return jparse_container(ps, out, c == '{');
    if (c == '"') {
        out->type = J_STR;
        return jparse_string(ps, &out->s, &out->slen);
    }
    if (c == '-' || (c >= '0' && c <= '9')) {
        /* Integers only, parsed exactly (strtoll: no double rounding for 64-bit tick counts). */
        char *e;
        out->type = J_INT;
        out->i = strtoll(ps->p, &e, 10);
        if (e == ps->p || (e < ps->end && (*e == '.' || *e == 'e' || *e == 'E')))
            return jfail(ps, "only integers are supported");
        ps->p = e;
        return 1;
    }
    static const struct { const char *word; jtype_t t; long long v; } words[] = {
        {"true", J_BOOL, 1}, {"false", J_BOOL, 0}, {"null", J_NULL, 0}};
    for (size_t k = 0; k < 3; k++) {
        const size_t wl = strlen(words[k].word);
        if ((size_t)(ps->end - ps->p) >= wl && memcmp(ps->p, words[k].word, wl) == 0) {
            out->type = words[k].t;
            out->i = words[k].v;
            ps->p += wl;
            return 1;
        }
    }
    return jfail(ps, "unexpected character");
}

static void jfree(json_t *v)
{
    if (v->type == J_STR)
        free(v->s);
    if (v->type == J_ARR || v->type == J_OBJ) {
        for (size_t k = 0; k < v->n; k++) {
            jfree(&v->items[k]);
            if (v->keys != NULL)
                free(v->keys[k]);
        }
        free(v->items);
        free(v->keys);
    }
}

static const json_t *jget(const json_t *obj, const char *key)
{
    if (obj == NULL || obj->type != J_OBJ)
        return NULL;
    for (size_t k = 0; k < obj->n; k++)
        if (strcmp(obj->keys[k], key) == 0)
            return &obj->items[k];
    return NULL;
}

/* ---- test bookkeeping --------------------------------------------------------------------------- */

static int g_failures;
static int g_checks;
static const char *g_vector = "";

static void fail(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "FAIL [%s] ", g_vector);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    g_failures++;
}

#define CHECK(cond, ...)                                                                                               \
    do {                                                                                                               \
        g_checks++;                                                                                                    \
        if (!(cond))                                                                                                   \
            fail(__VA_ARGS__);                                                                                         \
    } while (0)

static long long jnum(const json_t *obj, const char *key)
{
    const json_t *v = jget(obj, key);
    if (v == NULL || v->type != J_INT) {
        fail("field '%s' missing or not an integer", key);
        return 0;
    }
    return v->i;
}

static const char *jstr(const json_t *obj, const char *key)
{
    const json_t *v = jget(obj, key);
    if (v == NULL || v->type != J_STR) {
        fail("field '%s' missing or not a string", key);
        return "";
    }
    return v->s;
}

static size_t hex_decode(const char *hex, uint8_t *out, size_t cap)
{
    const size_t n = strlen(hex) / 2u;
    if (n > cap || strlen(hex) % 2u != 0u) {
        fail("bad hex string");
        return 0;
    }
    for (size_t i = 0; i < n; i++) {
        unsigned v;
        if (sscanf(hex + 2 * i, "%2x", &v) != 1) {
            fail("bad hex digit");
            return 0;
        }
        out[i] = (uint8_t)v;
    }
    return n;
}

static void copy_str(char *dst, size_t cap, const char *src)
{
    const size_t n = strlen(src);
    if (n >= cap) {
        fail("string '%s' too long for its field", src);
        dst[0] = '\0';
        return;
    }
    memcpy(dst, src, n + 1u);
}

/* ---- JSON message <-> C body ---------------------------------------------------------------------- */

static const struct {
    const char *name;
    uint8_t type;
    size_t n_fields; /* body fields in the JSON, besides type / flags / seq */
} k_types[] = {
    {"ACK", PROTO_ACK, 2},         {"NAK", PROTO_NAK, 3},       {"HELLO_REQUEST", PROTO_HELLO_REQUEST, 1},
    {"HELLO", PROTO_HELLO, 15},    {"PING", PROTO_PING, 1},     {"PONG", PROTO_PONG, 1},
    {"DETECT", PROTO_DETECT, 5},   {"DATA", PROTO_DATA, 2},     {"CANCEL", PROTO_CANCEL, 1},
    {"SET_BAUD", PROTO_SET_BAUD, 1}, {"LINK_CONFIG", PROTO_LINK_CONFIG, 1}, {"RESET", PROTO_RESET, 0}, {"RESULT", PROTO_RESULT, 7},
    {"STATS", PROTO_STATS, 2},     {"ERROR", PROTO_ERROR, 3},
};

static uint8_t g_pixels[2048]; /* DATA pixels of the message being built */

/* Builds a body from the JSON form; returns the type (0 on failure). */
static uint8_t body_from_json(const json_t *m, uint8_t *flags, uint16_t *seq, proto_body_t *b)
{
    memset(b, 0, sizeof(*b));
    const char *tname = jstr(m, "type");
    size_t k = 0;
    while (k < sizeof(k_types) / sizeof(k_types[0]) && strcmp(k_types[k].name, tname) != 0)
        k++;
    if (k == sizeof(k_types) / sizeof(k_types[0])) {
        fail("unknown message type '%s'", tname);
        return 0;
    }
    CHECK(m->n == 3u + k_types[k].n_fields, "%s has %zu JSON fields, the C codec knows %zu", tname, m->n,
          3u + k_types[k].n_fields);
    *flags = (uint8_t)jnum(m, "flags");
    *seq = (uint16_t)jnum(m, "seq");
    const uint8_t type = k_types[k].type;
    switch (type) {
    case PROTO_ACK:
        b->ack.ack_seq = (uint16_t)jnum(m, "ack_seq");
        b->ack.credit = (uint8_t)jnum(m, "credit");
        break;
    case PROTO_NAK:
        b->nak.expected_seq = (uint16_t)jnum(m, "expected_seq");
        b->nak.reason = (uint8_t)jnum(m, "reason");
        b->nak.credit = (uint8_t)jnum(m, "credit");
        break;
    case PROTO_HELLO_REQUEST:
        b->hello_request.nonce = (uint32_t)jnum(m, "nonce");
        break;
    case PROTO_HELLO: {
        proto_hello_t *h = &b->hello;
        h->nonce = (uint32_t)jnum(m, "nonce");
        h->reason = (uint8_t)jnum(m, "reason");
        h->protocol_version = (uint8_t)jnum(m, "protocol_version");
        h->tick_unit = (uint8_t)jnum(m, "tick_unit");
        h->pixel_format = (uint8_t)jnum(m, "pixel_format");
        h->input_width = (uint16_t)jnum(m, "input_width");
        h->input_height = (uint16_t)jnum(m, "input_height");
        h->clock_hz = (uint32_t)jnum(m, "clock_hz");
        h->ram_bytes = (uint32_t)jnum(m, "ram_bytes");
        h->max_baud = (uint32_t)jnum(m, "max_baud");
        h->model_hash = (uint32_t)jnum(m, "model_hash");
        h->rx_credit = (uint8_t)jnum(m, "rx_credit");
        copy_str(h->firmware_version, sizeof(h->firmware_version), jstr(m, "firmware_version"));
        copy_str(h->board, sizeof(h->board), jstr(m, "board"));
        copy_str(h->model_id, sizeof(h->model_id), jstr(m, "model_id"));
        break;
    }
    case PROTO_PING:
    case PROTO_PONG:
        b->ping.token = (uint32_t)jnum(m, "token");
        break;
    case PROTO_DETECT:
        b->detect.request_id = (uint32_t)jnum(m, "request_id");
        b->detect.width = (uint16_t)jnum(m, "width");
        b->detect.height = (uint16_t)jnum(m, "height");
        b->detect.pixel_format = (uint8_t)jnum(m, "pixel_format");
        b->detect.options = (uint8_t)jnum(m, "options");
        break;
    case PROTO_DATA:
        b->data.first_row = (uint16_t)jnum(m, "first_row");
        b->data.pixel_bytes = (uint16_t)hex_decode(jstr(m, "pixels"), g_pixels, sizeof(g_pixels));
        b->data.pixels = g_pixels;
        break;
    case PROTO_CANCEL:
        b->cancel.request_id = (uint32_t)jnum(m, "request_id");
        break;
    case PROTO_LINK_CONFIG:
        b->link_config.mtu = (uint16_t)jnum(m, "mtu");
        break;
    case PROTO_SET_BAUD:
        b->set_baud.baud = (uint32_t)jnum(m, "baud");
        break;
    case PROTO_RESET:
        break;
    case PROTO_RESULT: {
        proto_result_t *r = &b->result;
        r->request_id = (uint32_t)jnum(m, "request_id");
        r->ticks_receive = (uint64_t)jnum(m, "ticks_receive");
        r->ticks_compute = (uint64_t)jnum(m, "ticks_compute");
        r->ticks_total = (uint64_t)jnum(m, "ticks_total");
        r->peak_ram_bytes = (uint32_t)jnum(m, "peak_ram_bytes");
        r->stack_high_water_bytes = (uint32_t)jnum(m, "stack_high_water_bytes");
        const json_t *boxes = jget(m, "boxes");
        if (boxes == NULL || boxes->type != J_ARR || boxes->n > PROTO_MAX_BOXES) {
            fail("bad boxes");
            break;
        }
        r->n_boxes = (uint8_t)boxes->n;
        for (size_t i = 0; i < boxes->n; i++) {
            const json_t *bx = &boxes->items[i];
            if (bx->type != J_ARR || bx->n != 5u) {
                fail("bad box %zu", i);
                continue;
            }
            r->boxes[i].x = (int16_t)bx->items[0].i;
            r->boxes[i].y = (int16_t)bx->items[1].i;
            r->boxes[i].w = (int16_t)bx->items[2].i;
            r->boxes[i].h = (int16_t)bx->items[3].i;
            r->boxes[i].score = (uint16_t)bx->items[4].i;
        }
        break;
    }
    case PROTO_STATS: {
        proto_stats_t *s = &b->stats;
        s->request_id = (uint32_t)jnum(m, "request_id");
        const json_t *st = jget(m, "stages");
        if (st == NULL || st->type != J_ARR || st->n > PROTO_MAX_STAGES) {
            fail("bad stages");
            break;
        }
        s->n_stages = (uint8_t)st->n;
        for (size_t i = 0; i < st->n; i++) {
            s->stages[i].stage_id = (uint8_t)st->items[i].items[0].i;
            s->stages[i].ticks = (uint64_t)st->items[i].items[1].i;
        }
        break;
    }
    case PROTO_ERROR:
        b->error.code = (uint16_t)jnum(m, "code");
        b->error.request_id = (uint32_t)jnum(m, "request_id");
        copy_str(b->error.text, sizeof(b->error.text), jstr(m, "text"));
        break;
    default:
        break;
    }
    return type;
}

/* Field-by-field comparison (not through the encoder, so an encoder bug cannot hide a decoder bug). */
static int body_equal(uint8_t type, const proto_body_t *a, const proto_body_t *b)
{
    switch (type) {
    case PROTO_ACK:
        return a->ack.ack_seq == b->ack.ack_seq && a->ack.credit == b->ack.credit;
    case PROTO_NAK:
        return a->nak.expected_seq == b->nak.expected_seq && a->nak.reason == b->nak.reason &&
               a->nak.credit == b->nak.credit;
    case PROTO_HELLO_REQUEST:
        return a->hello_request.nonce == b->hello_request.nonce;
    case PROTO_HELLO: {
        const proto_hello_t *x = &a->hello, *y = &b->hello;
        return x->nonce == y->nonce && x->reason == y->reason && x->protocol_version == y->protocol_version &&
               x->tick_unit == y->tick_unit && x->pixel_format == y->pixel_format &&
               x->input_width == y->input_width && x->input_height == y->input_height && x->clock_hz == y->clock_hz &&
               x->ram_bytes == y->ram_bytes && x->max_baud == y->max_baud && x->model_hash == y->model_hash &&
               x->rx_credit == y->rx_credit && strcmp(x->firmware_version, y->firmware_version) == 0 &&
               strcmp(x->board, y->board) == 0 && strcmp(x->model_id, y->model_id) == 0;
    }
    case PROTO_PING:
    case PROTO_PONG:
        return a->ping.token == b->ping.token;
    case PROTO_DETECT:
        return a->detect.request_id == b->detect.request_id && a->detect.width == b->detect.width &&
               a->detect.height == b->detect.height && a->detect.pixel_format == b->detect.pixel_format &&
               a->detect.options == b->detect.options;
    case PROTO_DATA:
        return a->data.first_row == b->data.first_row && a->data.pixel_bytes == b->data.pixel_bytes &&
               memcmp(a->data.pixels, b->data.pixels, a->data.pixel_bytes) == 0;
    case PROTO_CANCEL:
        return a->cancel.request_id == b->cancel.request_id;
    case PROTO_SET_BAUD:
        return a->set_baud.baud == b->set_baud.baud;
    case PROTO_LINK_CONFIG:
        return a->link_config.mtu == b->link_config.mtu;
    case PROTO_RESET:
        return 1;
    case PROTO_RESULT: {
        const proto_result_t *x = &a->result, *y = &b->result;
        if (x->request_id != y->request_id || x->ticks_receive != y->ticks_receive ||
            x->ticks_compute != y->ticks_compute || x->ticks_total != y->ticks_total ||
            x->peak_ram_bytes != y->peak_ram_bytes || x->stack_high_water_bytes != y->stack_high_water_bytes ||
            x->n_boxes != y->n_boxes)
            return 0;
        for (unsigned i = 0; i < x->n_boxes; i++) {
            const proto_box_t *p = &x->boxes[i], *q = &y->boxes[i];
            if (p->x != q->x || p->y != q->y || p->w != q->w || p->h != q->h || p->score != q->score)
                return 0;
        }
        return 1;
    }
    case PROTO_STATS:
        if (a->stats.request_id != b->stats.request_id || a->stats.n_stages != b->stats.n_stages)
            return 0;
        for (unsigned i = 0; i < a->stats.n_stages; i++)
            if (a->stats.stages[i].stage_id != b->stats.stages[i].stage_id ||
                a->stats.stages[i].ticks != b->stats.stages[i].ticks)
                return 0;
        return 1;
    case PROTO_ERROR:
        return a->error.code == b->error.code && a->error.request_id == b->error.request_id &&
               strcmp(a->error.text, b->error.text) == 0;
    default:
        return 0;
    }
}

/* ---- running the vectors ------------------------------------------------------------------------ */

typedef struct {
    int is_error;
    const char *error; /* kind name */
    uint8_t type, flags;
    uint16_t seq;
    proto_body_t body;
} outcome_t;

static const char *rx_event_name(proto_rx_event_t ev)
{
    switch (ev) {
    case PROTO_RX_OVERFLOW: return "overflow";
    case PROTO_RX_COBS: return "cobs";
    case PROTO_RX_SHORT: return "short";
    case PROTO_RX_CRC: return "crc";
    case PROTO_RX_LENGTH: return "length";
    default: return "?";
    }
}

#define MAX_OUTCOMES 8
static uint8_t g_payload_copy[MAX_OUTCOMES][PROTO_MAX_PAYLOAD]; /* DATA views must outlive the receiver buffer */

/* With `reassemble`, sequenced frames also go through proto_rx_reassemble, as the app does (the
 * vectors' frames are all new and in order, so every one of them is "accepted"). */
static size_t feed(const uint8_t *data, size_t n, outcome_t *out, int reassemble)
{
    static proto_rx_t rx;
    proto_rx_init(&rx);
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        proto_frame_t f;
        const proto_rx_event_t ev = proto_rx_push(&rx, data[i], &f);
        if (ev == PROTO_RX_NONE)
            continue;
        proto_reasm_t ra = PROTO_REASM_COMPLETE;
        if (ev == PROTO_RX_FRAME && reassemble && PROTO_IS_SEQUENCED(f.type)) {
            ra = proto_rx_reassemble(&rx, &f);
            if (ra == PROTO_REASM_PENDING) {
                CHECK(proto_rx_reasm_bytes(&rx) > 0u || f.len == 0u, "pending message keeps no bytes");
                continue;
            }
            CHECK(proto_rx_reasm_bytes(&rx) == 0u, "reassembly still open after %d", (int)ra);
        }
        if (k == MAX_OUTCOMES) {
            fail("too many outcomes");
            break;
        }
        outcome_t *o = &out[k];
        memset(o, 0, sizeof(*o));
        if (ra == PROTO_REASM_ERROR) {
            o->is_error = 1;
            o->error = "fragment";
            k++;
            continue;
        }
        if (ev != PROTO_RX_FRAME) {
            o->is_error = 1;
            o->error = rx_event_name(ev);
            CHECK(proto_rx_nak_reason(ev) != 0u, "no NAK reason for %s", o->error);
            k++;
            continue;
        }
        CHECK(f.len <= PROTO_MAX_PAYLOAD, "payload of %u bytes", f.len);
        memcpy(g_payload_copy[k], f.payload, f.len);
        f.payload = g_payload_copy[k];
        const proto_status_t st = proto_decode(&f, &o->body, sizeof(o->body));
        if (st == PROTO_ERR_UNKNOWN_TYPE || st == PROTO_ERR_PAYLOAD) {
            o->is_error = 1;
            o->error = st == PROTO_ERR_UNKNOWN_TYPE ? "unknown_type" : "bad_payload";
        } else {
            CHECK(st == PROTO_OK, "proto_decode returned %d", (int)st);
            o->type = f.type;
            o->flags = f.flags;
            o->seq = f.seq;
        }
        k++;
    }
    return k;
}

static void check_outcome(const outcome_t *got, const json_t *want, size_t idx)
{
    const json_t *err = jget(want, "error");
    if (err != NULL) {
        CHECK(got->is_error && strcmp(got->error, err->s) == 0, "outcome %zu: want error %s, got %s", idx, err->s,
              got->is_error ? got->error : "a message");
        return;
    }
    const json_t *m = jget(want, "message");
    if (got->is_error) {
        fail("outcome %zu: want a message, got error %s", idx, got->error);
        return;
    }
    proto_body_t exp;
    uint8_t flags;
    uint16_t seq;
    const uint8_t type = body_from_json(m, &flags, &seq, &exp);
    CHECK(got->type == type && got->flags == flags && got->seq == seq,
          "outcome %zu: header type %02x flags %02x seq %u, want %02x %02x %u", idx, got->type, got->flags, got->seq,
          type, flags, seq);
    CHECK(body_equal(type, &got->body, &exp), "outcome %zu: decoded fields differ from the JSON", idx);
}

static uint8_t g_wire[8192];
static uint8_t g_enc[PROTO_MAX_WIRE + 64];

static void check_encode(const json_t *m, const uint8_t *wire, size_t wire_len)
{
    proto_body_t b;
    uint8_t flags;
    uint16_t seq;
    const uint8_t type = body_from_json(m, &flags, &seq, &b);
    const long plen = proto_payload_size(type, type == PROTO_RESET ? NULL : &b);
    CHECK(plen >= 0 && PROTO_WIRE_BYTES((size_t)plen) >= wire_len, "payload size %ld", plen);
    if (plen < 0)
        return;
    /* Exactly the worst-case size: in-place encoding must fit, and one byte less must be refused. */
    const size_t cap = PROTO_WIRE_BYTES((size_t)plen);
    memset(g_enc, 0xa5, sizeof(g_enc));
    size_t n = 0;
    proto_status_t st = proto_encode(type, flags, seq, type == PROTO_RESET ? NULL : &b, g_enc, cap, &n);
    CHECK(st == PROTO_OK && n == wire_len && memcmp(g_enc, wire, n) == 0, "proto_encode differs from hex (st %d)",
          (int)st);
    CHECK(g_enc[cap] == 0xa5, "proto_encode wrote past out_cap");
    st = proto_encode(type, flags, seq, type == PROTO_RESET ? NULL : &b, g_enc, cap - 1u, &n);
    CHECK(st == PROTO_ERR_BUFFER, "proto_encode accepted a buffer one byte short");

    /* Same frame through the raw-payload path. */
    static uint8_t payload[PROTO_MAX_PAYLOAD];
    static proto_rx_t rx;
    proto_rx_init(&rx);
    proto_frame_t f;
    proto_rx_event_t ev = PROTO_RX_NONE;
    for (size_t i = 0; i < wire_len; i++)
        ev = proto_rx_push(&rx, wire[i], &f);
    CHECK(ev == PROTO_RX_FRAME, "frame not received");
    if (ev != PROTO_RX_FRAME)
        return;
    memcpy(payload, f.payload, f.len);
    st = proto_frame_encode(f.type, f.flags, f.seq, payload, f.len, g_enc, sizeof(g_enc), &n);
    CHECK(st == PROTO_OK && n == wire_len && memcmp(g_enc, wire, n) == 0, "proto_frame_encode differs from hex");
}

static void run_vectors(const json_t *doc)
{
    CHECK(jnum(doc, "protocol_version") == PROTO_VERSION, "vectors are for another protocol version");
    const json_t *vs = jget(doc, "vectors");
    if (vs == NULL || vs->type != J_ARR) {
        fail("no vectors array");
        return;
    }
    int n_msg = 0, n_err = 0, n_stream = 0, n_reasm = 0;
    for (size_t i = 0; i < vs->n; i++) {
        const json_t *v = &vs->items[i];
        g_vector = jstr(v, "name");
        const size_t n = hex_decode(jstr(v, "hex"), g_wire, sizeof(g_wire));
        static outcome_t got[MAX_OUTCOMES];
        const json_t *ra = jget(v, "reassemble");
        const int reassemble = ra != NULL && ra->type == J_BOOL && ra->i != 0;
        n_reasm += reassemble;
        const size_t k = feed(g_wire, n, got, reassemble);
        const json_t *m = jget(v, "message"), *e = jget(v, "error"), *ex = jget(v, "expect");
        if (m != NULL) {
            n_msg++;
            json_t want = {.type = J_OBJ, .n = 1, .items = (json_t *)m, .keys = (char *[]){"message"}};
            CHECK(k == 1u, "%zu outcomes, want 1", k);
            if (k == 1u)
                check_outcome(&got[0], &want, 0);
            check_encode(m, g_wire, n);
        } else if (e != NULL) {
            n_err++;
            CHECK(k == 1u, "%zu outcomes, want 1", k);
            if (k == 1u)
                check_outcome(&got[0], v, 0);
        } else if (ex != NULL && ex->type == J_ARR) {
            n_stream++;
            CHECK(k == ex->n, "%zu outcomes, want %zu", k, ex->n);
            for (size_t j = 0; j < k && j < ex->n; j++)
                check_outcome(&got[j], &ex->items[j], j);
        } else {
            fail("vector has neither message, error nor expect");
        }
    }
    g_vector = "";
    printf("vectors: %zu (%d messages, %d errors, %d streams, %d of them reassembled)\n", vs->n, n_msg, n_err,
           n_stream, n_reasm);
    CHECK(n_msg >= 14 && n_err >= 8 && n_stream >= 3 && n_reasm >= 5, "suspiciously few vectors");
}

/* ---- properties the vectors do not cover -------------------------------------------------------- */

static uint32_t g_rng = 12345u;
static uint32_t rnd(void)
{
    g_rng = g_rng * 1664525u + 1013904223u;
    return g_rng >> 8;
}

static void test_cobs(void)
{
    g_vector = "cobs";
    static uint8_t src[3000], enc[3100], dec[3000];
    for (int iter = 0; iter < 3000; iter++) {
        const size_t len = rnd() % (iter < 1000 ? 600u : 3000u);
        const unsigned zero_odds = 1u + rnd() % 300u; /* from zero-heavy to zero-free data */
        for (size_t i = 0; i < len; i++)
            src[i] = (rnd() % zero_odds == 0u) ? 0u : (uint8_t)(1u + rnd() % 255u);
        const size_t n = proto_cobs_encode(src, len, enc, sizeof(enc));
        CHECK(n > 0u && n <= PROTO_COBS_MAX(len) && memchr(enc, 0, n) == NULL, "encode of %zu bytes", len);
        const long d = proto_cobs_decode(enc, n, dec, sizeof(dec));
        CHECK(d == (long)len && memcmp(src, dec, len) == 0, "round trip of %zu bytes", len);
        /* In place: data staged 1 + len/254 bytes into the buffer. */
        const size_t off = 1u + len / 254u;
        memcpy(enc + off, src, len);
        const size_t n2 = proto_cobs_encode(enc + off, len, enc, sizeof(enc));
        CHECK(n2 == n && proto_cobs_decode(enc, n2, dec, sizeof(dec)) == (long)len && memcmp(src, dec, len) == 0,
              "in-place encode of %zu bytes", len);
        if (len > 0u)
            CHECK(proto_cobs_encode(src, len, enc, n - 1u) == 0u, "encode into a short buffer");
    }
    static const uint8_t bad1[] = {0x03, 0x11};       /* block runs past the end */
    static const uint8_t bad2[] = {0x02, 0x00, 0x01}; /* zero inside */
    CHECK(proto_cobs_decode(bad1, sizeof(bad1), dec, sizeof(dec)) == -1, "truncated block accepted");
    CHECK(proto_cobs_decode(bad2, sizeof(bad2), dec, sizeof(dec)) == -1, "zero inside accepted");
    CHECK(proto_cobs_decode(bad2, 1, dec, 0) == -1, "decode into a zero-size buffer");
}

static void test_crc(void)
{
    g_vector = "crc";
    static const uint8_t check[] = "123456789";
    CHECK(proto_crc32_update(0, check, 9) == 0xcbf43926u, "CRC-32 check value");
    CHECK(proto_crc32_update(proto_crc32_update(0, check, 4), check + 4, 5) == 0xcbf43926u, "incremental CRC");
    CHECK(proto_crc32_update(0, check, 0) == 0u, "empty CRC");
}

static void test_corruption_detected(void)
{
    g_vector = "corruption";
    static uint8_t pix[960], wire[PROTO_MAX_WIRE], bad[PROTO_MAX_WIRE];
    for (size_t i = 0; i < sizeof(pix); i++)
        pix[i] = (uint8_t)rnd();
    const proto_data_t d = {.first_row = 5, .pixel_bytes = sizeof(pix), .pixels = pix};
    size_t n;
    CHECK(proto_encode(PROTO_DATA, 0, 77, &d, wire, sizeof(wire), &n) == PROTO_OK, "encode");
    static proto_rx_t rx;
    for (int iter = 0; iter < 3000; iter++) {
        memcpy(bad, wire, n);
        const size_t at = rnd() % (n - 1u);
        bad[at] ^= (uint8_t)(1u + rnd() % 255u);
        proto_rx_init(&rx);
        int frames = 0;
        for (size_t i = 0; i < n; i++) {
            proto_frame_t f;
            frames += proto_rx_push(&rx, bad[i], &f) == PROTO_RX_FRAME;
        }
        CHECK(frames == 0, "corruption at byte %zu not detected", at);
    }
    /* The receiver survives arbitrary noise and still takes the next good frame. */
    proto_rx_init(&rx);
    for (int i = 0; i < 100000; i++) {
        proto_frame_t f;
        (void)proto_rx_push(&rx, (uint8_t)rnd(), &f);
    }
    proto_frame_t f;
    proto_rx_event_t ev = proto_rx_push(&rx, 0, &f);
    (void)ev;
    int got = 0;
    for (size_t i = 0; i < n; i++)
        got += proto_rx_push(&rx, wire[i], &f) == PROTO_RX_FRAME;
    CHECK(got == 1 && f.seq == 77 && f.len == 962, "frame after noise");
}

static void test_arguments(void)
{
    g_vector = "arguments";
    static uint8_t out[PROTO_MAX_WIRE];
    size_t n;
    static proto_result_t r;
    memset(&r, 0, sizeof(r));
    r.n_boxes = PROTO_MAX_BOXES + 1u;
    CHECK(proto_encode(PROTO_RESULT, 0, 0, &r, out, sizeof(out), &n) == PROTO_ERR_ARG, "65 boxes");
    r.n_boxes = PROTO_MAX_BOXES;
    CHECK(proto_encode(PROTO_RESULT, 0, 0, &r, out, sizeof(out), &n) == PROTO_OK, "64 boxes");
    static proto_hello_t h;
    memset(&h, 'x', sizeof(h));
    h.firmware_version[0] = '\0';
    h.model_id[0] = '\0';
    CHECK(proto_encode(PROTO_HELLO, 0, 0, &h, out, sizeof(out), &n) == PROTO_ERR_ARG, "unterminated board name");
    h.board[PROTO_MAX_NAME] = '\0';
    CHECK(proto_encode(PROTO_HELLO, 0, 0, &h, out, sizeof(out), &n) == PROTO_OK, "32-byte board name");
    const proto_data_t empty = {.first_row = 0, .pixel_bytes = 0, .pixels = out};
    CHECK(proto_encode(PROTO_DATA, 0, 0, &empty, out, sizeof(out), &n) == PROTO_ERR_ARG, "DATA without pixels");
    CHECK(proto_encode(0x7f, 0, 0, &r, out, sizeof(out), &n) == PROTO_ERR_UNKNOWN_TYPE, "unknown type");
    CHECK(proto_encode(PROTO_PING, 0, 0, NULL, out, sizeof(out), &n) == PROTO_ERR_ARG, "NULL body");
    CHECK(proto_frame_encode(PROTO_DATA, 0, 0, out, PROTO_MAX_PAYLOAD + 1u, out, sizeof(out), &n) == PROTO_ERR_ARG,
          "oversized payload");
    /* A body smaller than its type's struct is refused, not overrun. */
    const proto_ping_t ping = {.token = 1};
    CHECK(proto_encode(PROTO_PING, 0, 3, &ping, out, sizeof(out), &n) == PROTO_OK, "ping");
    static proto_rx_t rx;
    proto_rx_init(&rx);
    proto_frame_t f;
    proto_rx_event_t ev = PROTO_RX_NONE;
    for (size_t i = 0; i < n; i++)
        ev = proto_rx_push(&rx, out[i], &f);
    CHECK(ev == PROTO_RX_FRAME, "ping frame");
    proto_ack_t small;
    CHECK(proto_decode(&f, &small, 2) == PROTO_ERR_ARG, "undersized body accepted");
    CHECK(proto_seq_diff(0, 0xffffu) == 1 && proto_seq_diff(0xffffu, 0) == -1 && proto_seq_diff(100, 90) == 10,
          "sequence arithmetic");
    CHECK(PROTO_MAX_WIRE == 1040u && PROTO_WIRE_BYTES(962u) == 977u, "wire sizes");
}

static char *read_file(const char *path, size_t *len)
{
    FILE *fp = fopen(path, "rb");
    if (fp == NULL)
        return NULL;
    fseek(fp, 0, SEEK_END);
    const long sz = ftell(fp);
    fseek(fp, 0, SEEK_SET);
    char *buf = malloc((size_t)sz + 1u);
    *len = fread(buf, 1, (size_t)sz, fp);
    buf[*len] = '\0';
    fclose(fp);
    return buf;
}

int main(int argc, char **argv)
{
    const char *candidates[] = {argc > 1 ? argv[1] : NULL, getenv("PROTOCOL_VECTORS"), "../docs/protocol-vectors.json",
                                "docs/protocol-vectors.json", "../../docs/protocol-vectors.json",
                                "../../../docs/protocol-vectors.json"};
    char *text = NULL;
    size_t len = 0;
    const char *used = NULL;
    for (size_t i = 0; i < sizeof(candidates) / sizeof(candidates[0]) && text == NULL; i++)
        if (candidates[i] != NULL && (text = read_file(candidates[i], &len)) != NULL)
            used = candidates[i];
    if (text == NULL) {
        fprintf(stderr, "FAIL cannot find docs/protocol-vectors.json (run from firmware/ or pass its path)\n");
        return 1;
    }
    jparser_t ps = {text, text + len, NULL};
    json_t doc;
    if (!jparse_value(&ps, &doc) || ps.err != NULL) {
        fprintf(stderr, "FAIL %s: JSON error: %s at byte %ld\n", used, ps.err ? ps.err : "?", (long)(ps.p - text));
        return 1;
    }
    run_vectors(&doc);
    test_crc();
    test_cobs();
    test_corruption_detected();
    test_arguments();
    printf("test_protocol: %d checks, %d failures (%s)\n", g_checks, g_failures, used);
    jfree(&doc);
    free(text);
    return g_failures == 0 ? 0 : 1;
}
