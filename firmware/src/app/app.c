/* Device application: protocol loop over the streaming engine (see app.h for the behaviour). */
#include "app/app.h"

#include <stdarg.h>
#include <stdbool.h>
#include <string.h>

#include "board.h"
#include "engine/engine.h"
#include "protocol/protocol.h"
#include "rnnpool_model.h"

/* ---- sizes ------------------------------------------------------------------------------------ */

/* The host fills DATA frames with as many whole rows as fit (gateway.protocol.max_rows_per_frame). */
#define DATA_ROWS_PER_FRAME ((PROTO_MAX_PAYLOAD - 2u) / ENGINE_INPUT_W)
/* Room in the ring kept for what the host sends besides DATA while we compute: its idle 0x00,
 * ACKs of our messages, a NAK, a CANCEL (docs/protocol.md, section 3). */
#define RX_CONTROL_ROOM 64u
#define DATA_PAYLOAD_MAX (2u + DATA_ROWS_PER_FRAME * ENGINE_INPUT_W)
/* With small fragments many more frames fit in the ring, but a longer window only means more
 * frames thrown away behind a lost one (go-back-N); 64 is far beyond any useful window. */
#define RX_CREDIT_CAP 64u
_Static_assert(DATA_ROWS_PER_FRAME >= 1u, "a row must fit in one DATA frame");

/* Largest message the device sends: RESULT with every box (id, 3 x u64 ticks, peak RAM, stack,
 * count, 10 bytes a box; docs/protocol.md section 2). Nothing else comes close (HELLO < 150 B,
 * STATS < 300 B). Sized to it rather than PROTO_MAX_WIRE to save 350 B of RAM; should the layout
 * grow, proto_encode refuses the RESULT and test_app.c's 64-box image fails. */
#define RESULT_PAYLOAD_MAX (4u + 3u * 8u + 4u + 4u + 1u + PROTO_MAX_BOXES * 10u)
#define TX_WIRE_BYTES (1u + PROTO_WIRE_BYTES(RESULT_PAYLOAD_MAX)) /* + the leading 0x00 */
/* Outgoing sequenced messages waiting for their ACK, stored as header + payload (no CRC). A full
 * RESULT, its STATS and a couple of ERRORs fit. */
#define TXQ_BYTES 1024u
#define RX_CHUNK 64u

_Static_assert(ENGINE_MAX_BOXES <= PROTO_MAX_BOXES, "RESULT must be able to carry every box");

/* ---- state ------------------------------------------------------------------------------------ */

typedef struct {
    bool active;
    uint32_t rid;
    uint8_t options;
    uint16_t next_row;
    uint32_t last_data_ms;
    uint64_t t_start;    /* DETECT accepted */
    uint64_t t_received; /* last DATA frame checked */
    uint64_t compute;    /* inside the engine */
    uint64_t wait;       /* idle, waiting for bytes */
} request_t;

typedef struct {
    bool active;
    bool nak_resent; /* the latest copy was sent in answer to a NAK */
    uint16_t seq;
    uint16_t sends;
    uint16_t off;  /* payload offset of the fragment in flight */
    uint16_t flen; /* its payload bytes */
    uint16_t mtu;  /* fragment size of this message (LINK_CONFIG changes it between messages) */
    uint32_t last_ms;
    uint32_t rto_ms;
} outstanding_t;

static struct {
    const app_io_t *io;
    proto_rx_t rx;
    /* receive side */
    bool synced;
    uint16_t rx_expected;
    bool gap_nak_sent;         /* for rx_expected */
    bool not_synced_sent;
    uint32_t not_synced_ms;
    bool frag_discard;         /* skipping the rest of a message whose reassembly failed */
    uint16_t mtu;              /* largest fragment payload, both ways (LINK_CONFIG) */
    /* transmit side */
    bool tx_quiet;             /* nothing sent yet: the first frame gets its 0x00 too */
    uint32_t last_tx_ms;
    uint16_t tx_seq;
    outstanding_t out;
    size_t txq_used;
    /* SET_BAUD awaiting confirmation */
    bool baud_probe;
    uint32_t baud_old;
    uint32_t baud_new;
    uint32_t baud_since_ms;
    request_t req;
} g;

static uint8_t s_wire[TX_WIRE_BYTES];
static uint8_t s_txq[TXQ_BYTES];

static const app_io_t k_board_io = {
    .read = board_uart_read,
    .write = board_uart_write,
    .millis = board_millis,
    .idle = board_idle,
};

static uint32_t now_ms(void)
{
    return g.io->millis();
}

/* ---- small text formatting (no printf: it would bring newlib's stdio into the image) --------- */

typedef struct {
    char *p;
    char *end; /* last usable char; *end is the NUL */
} text_t;

static void t_char(text_t *t, char c)
{
    if (t->p < t->end) {
        *t->p++ = c;
    }
}

static void t_u32(text_t *t, uint32_t v, unsigned base)
{
    char digits[10];
    unsigned n = 0;
    do {
        unsigned d = (unsigned)(v % base);
        digits[n++] = (char)(d < 10u ? '0' + d : 'a' + d - 10u);
        v /= base;
    } while (v != 0u);
    while (n > 0u) {
        t_char(t, digits[--n]);
    }
}

/* "%u" and "%x" only, each taking a uint32_t (callers cast). */
static void t_vformat(text_t *t, const char *fmt, va_list ap)
{
    for (; *fmt != '\0'; fmt++) {
        if (fmt[0] == '%' && (fmt[1] == 'u' || fmt[1] == 'x')) {
            t_u32(t, va_arg(ap, uint32_t), fmt[1] == 'u' ? 10u : 16u);
            fmt++;
        } else {
            t_char(t, *fmt);
        }
    }
    *t->p = '\0';
}

static void copy_name(char *dst, const char *src)
{
    size_t n = strlen(src);
    n = n < PROTO_MAX_NAME ? n : PROTO_MAX_NAME;
    memcpy(dst, src, n);
    dst[n] = '\0';
}

/* ---- sending ---------------------------------------------------------------------------------- */

/* Milliseconds a frame of n bytes spends on the wire (10 bits a byte), rounded up. */
static uint32_t wire_ms(size_t n)
{
    uint32_t baud = board_uart_baud();
    if (baud == 0u) {
        baud = 115200u;
    }
    return (uint32_t)(((uint64_t)n * 10000u + baud - 1u) / baud);
}

/* Sends s_wire[1 .. 1 + len), with s_wire[0] = 0x00 in front after a quiet line. */
static void send_wire(size_t len)
{
    const uint32_t now = now_ms();
    const uint8_t *p = s_wire + 1;
    if (g.tx_quiet || now - g.last_tx_ms >= APP_TX_IDLE_FLUSH_MS) {
        s_wire[0] = 0u;
        p = s_wire;
        len++;
    }
    g.io->write(p, len);
    g.tx_quiet = false;
    g.last_tx_ms = now_ms();
}

static void send_control(uint8_t type, const void *body)
{
    size_t n;
    if (proto_encode(type, 0u, 0u, body, s_wire + 1, sizeof s_wire - 1u, &n) == PROTO_OK) {
        send_wire(n);
    }
}

/* Frames of the current MTU that fit in the ring next to the control room: with fragments of
 * `mtu` bytes no host frame is longer (a whole DATA message is DATA_PAYLOAD_MAX bytes). */
static uint8_t rx_credit(void)
{
    const uint32_t payload = g.mtu < DATA_PAYLOAD_MAX ? g.mtu : DATA_PAYLOAD_MAX;
    const uint32_t fit = (BOARD_UART_RX_BYTES - RX_CONTROL_ROOM) / PROTO_WIRE_BYTES(payload);
    /* A ring smaller than one frame still gets credit 1: the transfer then stalls on overruns
     * and NAKs instead of not starting at all. */
    return (uint8_t)(fit < 1u ? 1u : fit > RX_CREDIT_CAP ? RX_CREDIT_CAP : fit);
}

static void send_ack(void)
{
    const proto_ack_t ack = {.ack_seq = (uint16_t)(g.rx_expected - 1u), .credit = rx_credit()};
    send_control(PROTO_ACK, &ack);
}

static void send_nak(uint8_t reason)
{
    const proto_nak_t nak = {.expected_seq = g.rx_expected, .reason = reason, .credit = rx_credit()};
    send_control(PROTO_NAK, &nak);
}

static uint8_t tick_unit_code(void)
{
    const char *u = board_tick_unit();
    if (strcmp(u, "cycles") == 0) {
        return PROTO_TICKS_CYCLES;
    }
    return strcmp(u, "instructions") == 0 ? PROTO_TICKS_INSTRUCTIONS : PROTO_TICKS_NS;
}

static void send_hello(uint8_t reason, uint32_t nonce)
{
    proto_hello_t h;
    memset(&h, 0, sizeof h);
    h.nonce = nonce;
    h.reason = reason;
    h.protocol_version = PROTO_VERSION;
    h.tick_unit = tick_unit_code();
    h.pixel_format = PROTO_PIXEL_MONO8;
    h.input_width = ENGINE_INPUT_W;
    h.input_height = ENGINE_INPUT_H;
    h.clock_hz = board_clock_hz();
    h.ram_bytes = board_ram_bytes();
    h.max_baud = board_uart_max_baud();
    h.model_hash = RNNPOOL_MODEL_HASH32;
    h.rx_credit = rx_credit();
    copy_name(h.firmware_version, APP_FIRMWARE_VERSION);
    copy_name(h.board, board_name());
    copy_name(h.model_id, RNNPOOL_MODEL_ID);
    send_control(PROTO_HELLO, &h);
}

/* ---- sequenced messages: a queue, one in flight ----------------------------------------------- */

static uint16_t rec_len(const uint8_t *rec)
{
    return (uint16_t)(rec[4] | (rec[5] << 8));
}

/* Sends the fragment in flight (the head message's payload [off, off + flen)); MORE unless it
 * is the last one. */
static void txq_send_head(void)
{
    size_t n;
    uint8_t flags = g.out.sends > 0u ? PROTO_FLAG_RETRANSMIT : 0u;
    if ((uint32_t)g.out.off + g.out.flen < rec_len(s_txq)) {
        flags |= PROTO_FLAG_MORE;
    }
    if (proto_frame_encode(s_txq[0], flags, g.out.seq, s_txq + PROTO_HEADER_BYTES + g.out.off, g.out.flen,
                           s_wire + 1, sizeof s_wire - 1u, &n) != PROTO_OK) {
        return; /* cannot happen: the whole message was encoded once already */
    }
    send_wire(n);
    if (g.out.sends < UINT16_MAX) {
        g.out.sends++;
    }
    g.out.last_ms = now_ms();
}

/* The next fragment of the head message goes out with a fresh sequence number and timer. */
static void txq_start_fragment(uint16_t off)
{
    const uint16_t left = (uint16_t)(rec_len(s_txq) - off);
    g.out.off = off;
    g.out.flen = left < g.out.mtu ? left : g.out.mtu;
    g.out.seq = g.tx_seq++;
    g.out.sends = 0u;
    g.out.nak_resent = false;
    g.out.rto_ms = APP_RETX_MIN_MS + 2u * wire_ms(PROTO_WIRE_BYTES(g.out.flen));
    txq_send_head();
}

static void txq_pump(void)
{
    if (g.out.active || g.txq_used == 0u) {
        return;
    }
    g.out.active = true;
    g.out.mtu = g.mtu; /* fixed for the whole message: the MTU changes only between messages */
    txq_start_fragment(0u);
}

/* The fragment in flight has arrived: on to the next one, or the next message. */
static void txq_pop(void)
{
    const uint16_t next = (uint16_t)(g.out.off + g.out.flen);
    if (next < rec_len(s_txq)) {
        txq_start_fragment(next);
        return;
    }
    const size_t n = PROTO_HEADER_BYTES + rec_len(s_txq);
    memmove(s_txq, s_txq + n, g.txq_used - n);
    g.txq_used -= n;
    g.out.active = false;
    txq_pump();
}

/* Queues a device -> host message. Returns false if it does not fit (the queue holds a full
 * RESULT with its STATS and more; test_app.c sends a 64-box RESULT). */
static bool txq_push(uint8_t type, const void *body)
{
    size_t n;
    if (proto_encode(type, 0u, 0u, body, s_wire + 1, sizeof s_wire - 1u, &n) != PROTO_OK) {
        return false;
    }
    /* Back to header | payload | CRC, straight into the queue: the codec keeps its payload
     * writer to itself, and this stores exactly what proto_encode produced. The CRC is dropped
     * (the sequence number and flags change on the wire, so it is recomputed per send). */
    const long raw = proto_cobs_decode(s_wire + 1, n - 1u, s_txq + g.txq_used, TXQ_BYTES - g.txq_used);
    if (raw < (long)PROTO_MIN_RAW) {
        return false;
    }
    g.txq_used += (size_t)raw - PROTO_CRC_BYTES;
    txq_pump();
    return true;
}

static void on_ack(uint16_t ack_seq)
{
    /* One message in flight, so the only ACK that means anything is the one for it; anything
     * else is stale (a duplicate, or from before the last HELLO_REQUEST). */
    if (g.out.active && ack_seq == g.out.seq) {
        txq_pop();
    }
}

static void on_nak(uint16_t expected)
{
    if (!g.out.active) {
        return;
    }
    if (expected == (uint16_t)(g.out.seq + 1u)) {
        txq_pop(); /* it arrived; the ACK was lost */
    } else if (expected == g.out.seq) {
        /* Resend at once: waiting for the timer costs APP_RETX_MIN_MS per damaged fragment, and
         * on a noisy link most of them are. One NAK can be about a copy older than the latest
         * (it crossed our resend): after a NAK-triggered copy, further NAKs are only believed
         * once that copy has had time to arrive. A needless copy costs one duplicate frame,
         * which the host ACKs and drops (its receive buffer is not bounded by a credit). */
        if (!g.out.nak_resent || now_ms() - g.out.last_ms > wire_ms(PROTO_WIRE_BYTES(g.out.flen)) + 20u) {
            txq_send_head();
            g.out.nak_resent = true;
        }
    }
}

static void queue_error_v(uint16_t code, uint32_t rid, const char *fmt, va_list ap)
{
    proto_error_t e;
    e.code = code;
    e.request_id = rid;
    text_t t = {e.text, e.text + PROTO_MAX_TEXT};
    t_vformat(&t, fmt, ap);
    (void)txq_push(PROTO_ERROR, &e);
}

/* Queues ERROR(code, rid) with a text made from fmt (see t_vformat). */
static void error_msg(uint16_t code, uint32_t rid, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    queue_error_v(code, rid, fmt, ap);
    va_end(ap);
}

/* ---- requests --------------------------------------------------------------------------------- */

static void request_end(bool ok)
{
    g.req.active = false;
    board_set_busy(false);
    board_set_error(!ok);
}

/* Ends the request in progress with ERROR(code, its id); fmt as error_msg. The red LED stays
 * off for a CANCEL: the host asked for it, nothing went wrong. */
static void request_fail(uint16_t code, const char *fmt, ...)
{
    const uint32_t rid = g.req.rid;
    request_end(code == PROTO_E_CANCELLED);
    va_list ap;
    va_start(ap, fmt);
    queue_error_v(code, rid, fmt, ap);
    va_end(ap);
}

/* The engine's stages as the protocol numbers them; the two RNN1 passes and the L2 norms
 * (timed with the heads by the engine) share an id. */
static const uint8_t k_stage_id[ENGINE_ST_COUNT] = {
    [ENGINE_ST_CONV1] = PROTO_STAGE_CONV1,   [ENGINE_ST_RNN1_ROWS] = PROTO_STAGE_RNN1,
    [ENGINE_ST_RNN1_COLS] = PROTO_STAGE_RNN1, [ENGINE_ST_RNN2] = PROTO_STAGE_RNN2,
    [ENGINE_ST_BLOCK1] = PROTO_STAGE_BLOCK1, [ENGINE_ST_BLOCK2] = PROTO_STAGE_BLOCK2,
    [ENGINE_ST_BLOCK3] = PROTO_STAGE_BLOCK3, [ENGINE_ST_BLOCK4] = PROTO_STAGE_BLOCK4,
    [ENGINE_ST_HEADS] = PROTO_STAGE_HEADS,   [ENGINE_ST_DECODE] = PROTO_STAGE_DECODE,
    [ENGINE_ST_NMS] = PROTO_STAGE_NMS,
};

_Static_assert(ENGINE_ST_COUNT == 11, "a new engine stage needs its protocol stage id in k_stage_id");

static void stats_add(proto_stats_t *s, uint8_t id, uint64_t ticks)
{
    for (unsigned i = 0; i < s->n_stages; i++) {
        if (s->stages[i].stage_id == id) {
            s->stages[i].ticks += ticks;
            return;
        }
    }
    if (s->n_stages < PROTO_MAX_STAGES) {
        s->stages[s->n_stages].stage_id = id;
        s->stages[s->n_stages].ticks = ticks;
        s->n_stages++;
    }
}

/* Separate, not inlined: the message bodies only live on the stack while they are encoded. */
__attribute__((noinline)) static void queue_stats(uint64_t total)
{
    proto_stats_t s;
    s.request_id = g.req.rid;
    s.n_stages = 0u;
    stats_add(&s, PROTO_STAGE_RECEIVE_WAIT, g.req.wait);
    const engine_stage_stats_t *es = engine_stage_stats();
    for (unsigned i = 0; i < ENGINE_ST_COUNT; i++) {
        stats_add(&s, k_stage_id[i], es->ticks[i]);
    }
    const uint64_t accounted = g.req.compute + g.req.wait;
    stats_add(&s, PROTO_STAGE_PROTOCOL, total > accounted ? total - accounted : 0u);
    (void)txq_push(PROTO_STATS, &s);
}

uint16_t app_score_u16(uint16_t q15)
{
    const uint32_t v = ((uint32_t)q15 * 65535u + 16384u) >> 15;
    return (uint16_t)(v > 65535u ? 65535u : v);
}

__attribute__((noinline)) static bool queue_result(const engine_result_t *er, uint64_t total)
{
    proto_result_t r;
    r.request_id = g.req.rid;
    r.ticks_receive = g.req.t_received - g.req.t_start;
    r.ticks_compute = g.req.compute;
    r.ticks_total = total;
    r.stack_high_water_bytes = board_stack_high_water();
    r.peak_ram_bytes = board_static_ram_bytes() + r.stack_high_water_bytes;
    r.n_boxes = (uint8_t)(er->count < PROTO_MAX_BOXES ? er->count : PROTO_MAX_BOXES);
    for (unsigned i = 0; i < r.n_boxes; i++) {
        const engine_box_t *b = &er->boxes[i];
        r.boxes[i] = (proto_box_t){b->x, b->y, b->w, b->h, app_score_u16(b->score_q15)};
    }
    return txq_push(PROTO_RESULT, &r);
}

__attribute__((noinline)) static void request_finish(void)
{
    engine_result_t er;
    const uint64_t t0 = board_ticks64();
    const int rc = engine_finish(&er);
    g.req.compute += board_ticks64() - t0;
    if (rc < 0) {
        request_fail(PROTO_E_INTERNAL, "engine_finish failed (%u)", (uint32_t)-rc);
        return;
    }
    const uint64_t total = board_ticks64() - g.req.t_start;
    if (g.req.options & PROTO_DETECT_OPT_STATS) {
        queue_stats(total);
    }
    if (!queue_result(&er, total)) {
        request_fail(PROTO_E_INTERNAL, "RESULT did not fit the transmit queue");
        return;
    }
    request_end(true);
}

static void on_detect(const proto_detect_t *d)
{
    if (g.req.active) {
        request_fail(PROTO_E_BAD_STATE, "superseded by request %u at row %u", d->request_id,
                     (uint32_t)g.req.next_row);
    }
    if (d->width != ENGINE_INPUT_W || d->height != ENGINE_INPUT_H || d->pixel_format != PROTO_PIXEL_MONO8) {
        board_set_error(true);
        error_msg(PROTO_E_BAD_SIZE, d->request_id, "want %ux%u pixel format %u, got %ux%u format %u",
                  (uint32_t)ENGINE_INPUT_W, (uint32_t)ENGINE_INPUT_H, (uint32_t)PROTO_PIXEL_MONO8,
                  (uint32_t)d->width, (uint32_t)d->height, (uint32_t)d->pixel_format);
        return;
    }
    engine_reset();
    /* From this shallow frame, so the high water seen at the end is this request's. */
    board_stack_paint();
    memset(&g.req, 0, sizeof g.req);
    g.req.active = true;
    g.req.rid = d->request_id;
    g.req.options = d->options;
    g.req.last_data_ms = now_ms();
    g.req.t_start = board_ticks64();
    board_set_busy(true);
    board_set_error(false);
}

static void on_data(const proto_data_t *d)
{
    if (!g.req.active) {
        return; /* in flight when the request ended early */
    }
    const uint64_t t_frame = board_ticks64();
    if (d->pixel_bytes % ENGINE_INPUT_W != 0u) {
        request_fail(PROTO_E_BAD_SIZE, "DATA of %u bytes is not whole rows of %u", (uint32_t)d->pixel_bytes,
                     (uint32_t)ENGINE_INPUT_W);
        return;
    }
    const uint32_t rows = d->pixel_bytes / ENGINE_INPUT_W;
    if (d->first_row != g.req.next_row) {
        request_fail(PROTO_E_BAD_ROW, "DATA row %u, expected row %u", (uint32_t)d->first_row,
                     (uint32_t)g.req.next_row);
        return;
    }
    if (g.req.next_row + rows > ENGINE_INPUT_H) {
        request_fail(PROTO_E_BAD_ROW, "DATA rows %u..%u run past row %u", (uint32_t)d->first_row,
                     (uint32_t)(d->first_row + rows - 1u), (uint32_t)(ENGINE_INPUT_H - 1u));
        return;
    }
    for (uint32_t i = 0; i < rows; i++) {
        board_watchdog_kick();
        const uint64_t t0 = board_ticks64();
        const int rc = engine_push_row(d->pixels + i * ENGINE_INPUT_W);
        g.req.compute += board_ticks64() - t0;
        if (rc < 0) {
            request_fail(PROTO_E_INTERNAL, "engine_push_row failed (%u) at row %u", (uint32_t)-rc,
                         (uint32_t)(g.req.next_row + i));
            return;
        }
    }
    g.req.next_row = (uint16_t)(g.req.next_row + rows);
    /* The stall clock restarts after our own compute: the host could not send meanwhile. */
    g.req.last_data_ms = now_ms();
    if (g.req.next_row == ENGINE_INPUT_H) {
        g.req.t_received = t_frame;
        board_watchdog_kick();
        request_finish();
    }
}

static void on_cancel(const proto_cancel_t *c)
{
    if (g.req.active && c->request_id == g.req.rid) {
        request_fail(PROTO_E_CANCELLED, "cancelled at row %u of %u", (uint32_t)g.req.next_row,
                     (uint32_t)ENGINE_INPUT_H);
    }
}

static void on_set_baud(const proto_set_baud_t *s)
{
    if (g.req.active) {
        error_msg(PROTO_E_BAD_STATE, 0u, "SET_BAUD during request %u", g.req.rid);
        return;
    }
    const uint32_t old = board_uart_baud();
    if (s->baud == old) {
        return;
    }
    /* Our ACK is already queued at the old rate; board_uart_set_baud drains it first. */
    if (s->baud > board_uart_max_baud() || !board_uart_set_baud(s->baud)) {
        error_msg(PROTO_E_UNSUPPORTED, 0u, "%u baud not supported (max %u)", s->baud, board_uart_max_baud());
        return;
    }
    g.baud_probe = true;
    g.baud_old = old;
    g.baud_new = s->baud;
    g.baud_since_ms = now_ms();
}

static void on_link_config(const proto_link_config_t *c)
{
    if (c->mtu < PROTO_MTU_MIN || c->mtu > PROTO_MTU_MAX) {
        error_msg(PROTO_E_UNSUPPORTED, 0u, "MTU %u outside %u..%u", (uint32_t)c->mtu, (uint32_t)PROTO_MTU_MIN,
                  (uint32_t)PROTO_MTU_MAX);
        return;
    }
    /* Our next message uses it (a message in flight keeps its own). The credit follows at once:
     * the ACK of this frame is sent after it is processed (see on_frame). */
    g.mtu = c->mtu;
}

__attribute__((noreturn)) static void do_reset(void)
{
    /* Let the ACK leave first: setting the current rate again drains the transmitter. */
    (void)board_uart_set_baud(board_uart_baud());
    board_reset();
}

/* ---- receiving -------------------------------------------------------------------------------- */

/* Back to "just synced": sequence numbers from 0, nothing queued, no request. */
static void link_restart(void)
{
    g.synced = true;
    g.rx_expected = 0u;
    g.gap_nak_sent = false;
    g.tx_seq = 0u;
    g.out.active = false;
    g.txq_used = 0u;
    g.mtu = PROTO_MTU_MAX;
    g.frag_discard = false;
    proto_rx_reasm_reset(&g.rx);
    if (g.req.active) {
        request_end(true);
    }
}

static void on_control(const proto_frame_t *f)
{
    union {
        proto_ack_t ack;
        proto_nak_t nak;
        proto_hello_request_t hello_request;
    } b;
    if (f->type != PROTO_HELLO_REQUEST && f->type != PROTO_ACK && f->type != PROTO_NAK) {
        return; /* HELLO echoed back, or a control type from a later version */
    }
    if (proto_decode(f, &b, sizeof b) != PROTO_OK) {
        return;
    }
    switch (f->type) {
    case PROTO_HELLO_REQUEST:
        link_restart();
        send_hello(PROTO_HELLO_REPLY, b.hello_request.nonce);
        break;
    case PROTO_ACK:
        if (g.synced) {
            on_ack(b.ack.ack_seq);
        }
        break;
    case PROTO_NAK:
        if (g.synced) {
            on_nak(b.nak.expected_seq);
        }
        break;
    default:
        break;
    }
}

static void dispatch(const proto_frame_t *f)
{
    union {
        proto_ping_t ping;
        proto_detect_t detect;
        proto_data_t data;
        proto_cancel_t cancel;
        proto_set_baud_t set_baud;
        proto_link_config_t link_config;
    } b;
    const proto_status_t st = proto_decode(f, &b, sizeof b);
    if (st != PROTO_OK) {
        error_msg(PROTO_E_BAD_FRAME, 0u, st == PROTO_ERR_PAYLOAD ? "malformed type 0x%x frame"
                                                                  : "type 0x%x not accepted by the device",
                  (uint32_t)f->type);
        return;
    }
    switch (f->type) {
    case PROTO_PING: {
        const proto_ping_t pong = {b.ping.token};
        (void)txq_push(PROTO_PONG, &pong);
        break;
    }
    case PROTO_DETECT: on_detect(&b.detect); break;
    case PROTO_DATA: on_data(&b.data); break;
    case PROTO_CANCEL: on_cancel(&b.cancel); break;
    case PROTO_SET_BAUD: on_set_baud(&b.set_baud); break;
    case PROTO_LINK_CONFIG: on_link_config(&b.link_config); break;
    case PROTO_RESET: do_reset();
    default:
        error_msg(PROTO_E_BAD_FRAME, 0u, "type 0x%x not accepted by the device", (uint32_t)f->type);
        break;
    }
}

static void on_frame(const proto_frame_t *f)
{
    if (!PROTO_IS_SEQUENCED(f->type)) {
        on_control(f);
        return;
    }
    if (!g.synced) {
        const uint32_t now = now_ms();
        if (!g.not_synced_sent || now - g.not_synced_ms >= APP_NOT_SYNCED_MS) {
            g.not_synced_sent = true;
            g.not_synced_ms = now;
            send_hello(PROTO_HELLO_NOT_SYNCED, 0u);
        }
        return;
    }
    const int32_t d = proto_seq_diff(f->seq, g.rx_expected);
    if (d > 0) {
        /* One NAK per gap: the frames after the lost one would each repeat it. */
        if (!g.gap_nak_sent) {
            g.gap_nak_sent = true;
            send_nak(PROTO_NAK_GAP);
        }
        return;
    }
    if (d < 0) {
        send_ack(); /* a duplicate: our ACK was lost */
        return;
    }
    g.rx_expected++;
    g.gap_nak_sent = false;
    if (f->type == PROTO_LINK_CONFIG && !(f->flags & PROTO_FLAG_MORE) && proto_rx_reasm_bytes(&g.rx) == 0u) {
        /* Processed first, so that its ACK already carries the credit for the new MTU: the host
         * waits for that ACK before it sends frames of the new size. */
        dispatch(f);
        send_ack();
        return;
    }
    /* Before processing: a DATA frame's compute can take a while, and the ACK (with its credit)
     * is what lets the host send the next frames into the ring meanwhile. */
    send_ack();
    if (g.frag_discard) {
        /* The rest of a message whose reassembly failed (already reported): skipped up to its
         * last fragment, so that its tail is not taken for a message of its own. */
        g.frag_discard = (f->flags & PROTO_FLAG_MORE) != 0u;
        return;
    }
    proto_frame_t m = *f;
    switch (proto_rx_reassemble(&g.rx, &m)) {
    case PROTO_REASM_PENDING:
        if (g.req.active && f->type == PROTO_DATA) {
            g.req.last_data_ms = now_ms(); /* a DATA fragment is progress: the image is not stalled */
        }
        break;
    case PROTO_REASM_COMPLETE:
        dispatch(&m);
        break;
    case PROTO_REASM_ERROR:
    default:
        /* A fragment of another type than the message it should continue: the message is lost. */
        error_msg(PROTO_E_BAD_FRAME, 0u, "fragment of type 0x%x does not continue the message", (uint32_t)f->type);
        g.frag_discard = (f->flags & PROTO_FLAG_MORE) != 0u;
        break;
    }
}

static void on_rx_event(proto_rx_event_t ev, const proto_frame_t *f)
{
    if (ev != PROTO_RX_FRAME) {
        if (g.synced) {
            send_nak(proto_rx_nak_reason(ev));
        }
        return;
    }
    g.baud_probe = false; /* a good frame: the new rate works */
    on_frame(f);
}

/* ---- timers and the loop ---------------------------------------------------------------------- */

/* `idle`: nothing was read this turn. The stall timer only runs then: bytes still waiting in the
 * ring may be the DATA it is waiting for. */
static void timers(bool idle)
{
    const uint32_t now = now_ms();
    if (g.out.active && now - g.out.last_ms >= g.out.rto_ms) {
        const uint32_t max = APP_RETX_MAX_MS + 2u * wire_ms(PROTO_WIRE_BYTES(g.out.flen));
        g.out.rto_ms = g.out.rto_ms * 2u < max ? g.out.rto_ms * 2u : max;
        txq_send_head();
        g.out.nak_resent = false;
    }
    if (idle && g.req.active && now - g.req.last_data_ms >= APP_STALL_MS) {
        request_fail(PROTO_E_TIMEOUT, "no DATA for %u ms at row %u of %u", (uint32_t)APP_STALL_MS,
                     (uint32_t)g.req.next_row, (uint32_t)ENGINE_INPUT_H);
    }
    if (g.baud_probe && now - g.baud_since_ms >= APP_BAUD_CONFIRM_MS) {
        g.baud_probe = false;
        (void)board_uart_set_baud(g.baud_old);
        error_msg(PROTO_E_TIMEOUT, 0u, "no good frame at %u baud within %u ms; back at %u baud", g.baud_new,
                  (uint32_t)APP_BAUD_CONFIRM_MS, g.baud_old);
    }
}

void app_init(const app_io_t *io)
{
    memset(&g, 0, sizeof g);
    g.io = io != NULL ? io : &k_board_io;
    g.tx_quiet = true;
    g.mtu = PROTO_MTU_MAX;
    proto_rx_init(&g.rx);
    send_hello(PROTO_HELLO_BOOT, 0u);
}

void app_poll(void)
{
    board_watchdog_kick();
    uint8_t chunk[RX_CHUNK];
    const size_t n = g.io->read(chunk, sizeof chunk);
    for (size_t i = 0; i < n; i++) {
        proto_frame_t f;
        const proto_rx_event_t ev = proto_rx_push(&g.rx, chunk[i], &f);
        if (ev != PROTO_RX_NONE) {
            on_rx_event(ev, &f);
        }
    }
    timers(n == 0u);
    if (n == 0u) {
        const uint64_t t0 = board_ticks64();
        g.io->idle();
        if (g.req.active) {
            g.req.wait += board_ticks64() - t0;
        }
    }
}

void app_run(void)
{
    for (;;) {
        app_poll();
    }
}

uint8_t app_rx_credit(void)
{
    return rx_credit();
}

uint32_t app_ram_bytes(void)
{
    return (uint32_t)(sizeof g + sizeof s_wire + sizeof s_txq);
}
