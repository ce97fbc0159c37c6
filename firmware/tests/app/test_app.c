/* The protocol loop (src/app/app.c) driven through its I/O hooks: the test is the host, with a
 * clock it controls, so timeouts, retransmissions and the SET_BAUD fallback are checked without
 * waiting, and every frame the device sends is decoded and looked at.
 *
 * Run by `make -C firmware BOARD=host test` (cwd firmware/: the image comes from
 * tests/vectors/scene/). The Python tests (tests/test_link_*.py) cover the same ground over a
 * real pty and QEMU's TCP serial port. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "app/app.h"
#include "board.h"
#include "engine/engine.h"
#include "protocol/protocol.h"
#include "rnnpool_model.h"

#define W ENGINE_INPUT_W
#define H ENGINE_INPUT_H

static int s_failures;

#define CHECK(cond)                                                                    \
    do {                                                                               \
        if (!(cond)) {                                                                 \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
            s_failures++;                                                              \
        }                                                                              \
    } while (0)

/* ---- the fake UART and clock ------------------------------------------------------------------- */

static uint8_t s_in[8192]; /* host -> device bytes not yet read by the app */
static size_t s_in_len, s_in_pos;
static uint32_t s_now_ms;

static size_t fake_read(uint8_t *dst, size_t max)
{
    size_t n = s_in_len - s_in_pos;
    n = n < max ? n : max;
    memcpy(dst, s_in + s_in_pos, n);
    s_in_pos += n;
    if (s_in_pos == s_in_len) {
        s_in_pos = s_in_len = 0;
    }
    return n;
}

/* Device -> host: decoded as it comes, kept in a small list. */
typedef struct {
    uint8_t type, flags;
    uint16_t seq;
    proto_body_t body;
} msg_t;

#define MAX_MSGS 64
static msg_t s_msgs[MAX_MSGS];
static size_t s_nmsgs;
static unsigned s_bad_frames;
static proto_rx_t s_host_rx;
/* Fragments (flag MORE) of device messages: the host side reassembles them as the gateway does. */
static unsigned s_frags_rx;
static uint16_t s_max_seq_len;  /* largest payload of one sequenced device frame */
static uint16_t s_last_seq;     /* seq of the latest sequenced device frame, fragments included */
static int s_seq_unacked;       /* ... and the test has not ACKed it yet */

static void fake_write(const uint8_t *src, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        proto_frame_t f;
        proto_rx_event_t ev = proto_rx_push(&s_host_rx, src[i], &f);
        if (ev == PROTO_RX_NONE) {
            continue;
        }
        if (ev != PROTO_RX_FRAME || s_nmsgs == MAX_MSGS) {
            s_bad_frames++;
            continue;
        }
        if (PROTO_IS_SEQUENCED(f.type)) {
            s_max_seq_len = f.len > s_max_seq_len ? f.len : s_max_seq_len;
            s_last_seq = f.seq;
            s_seq_unacked = 1;
            /* Every test ACKs before the device's timer runs out, so no fragment comes twice. */
            const proto_reasm_t r = proto_rx_reassemble(&s_host_rx, &f);
            if (r == PROTO_REASM_PENDING) {
                s_frags_rx++;
                continue;
            }
            if (r == PROTO_REASM_ERROR) {
                s_bad_frames++;
                continue;
            }
        }
        msg_t *m = &s_msgs[s_nmsgs];
        m->type = f.type;
        m->flags = f.flags;
        m->seq = f.seq;
        if (proto_decode(&f, &m->body, sizeof m->body) != PROTO_OK) {
            s_bad_frames++;
            continue;
        }
        s_nmsgs++;
    }
}

static uint32_t fake_millis(void)
{
    return s_now_ms;
}

static void fake_idle(void)
{
    s_now_ms += 1u; /* an idle turn of the loop is a millisecond */
}

static const app_io_t k_io = {fake_read, fake_write, fake_millis, fake_idle};

/* ---- host side helpers ------------------------------------------------------------------------ */

static uint16_t s_tx_seq; /* host -> device */

static void host_send(uint8_t type, uint16_t seq, const void *body)
{
    size_t n;
    CHECK(proto_encode(type, 0u, seq, body, s_in + s_in_len, sizeof s_in - s_in_len, &n) == PROTO_OK);
    s_in_len += n;
}

static void host_send_seq(uint8_t type, const void *body)
{
    host_send(type, s_tx_seq++, body);
}

/* Runs the loop until the input is consumed and a few idle turns have passed. */
static void run(unsigned idle_turns)
{
    while (s_in_len > 0u) {
        app_poll();
    }
    for (unsigned i = 0; i < idle_turns; i++) {
        app_poll();
    }
}

static void clear_msgs(void)
{
    s_nmsgs = 0;
}

/* Index of the first message of `type` from position `from`, or -1. */
static int find(uint8_t type, size_t from)
{
    for (size_t i = from; i < s_nmsgs; i++) {
        if (s_msgs[i].type == type) {
            return (int)i;
        }
    }
    return -1;
}

static void ack(uint16_t seq)
{
    const proto_ack_t a = {seq, 255u};
    host_send(PROTO_ACK, 0u, &a);
}

/* Acknowledges every sequenced device message seen so far. */
static void ack_all(void)
{
    for (size_t i = 0; i < s_nmsgs; i++) {
        if (PROTO_IS_SEQUENCED(s_msgs[i].type)) {
            ack(s_msgs[i].seq);
        }
    }
}

static void handshake(void)
{
    const proto_hello_request_t req = {0xC0FFEEu};
    clear_msgs();
    host_send(PROTO_HELLO_REQUEST, 0u, &req);
    run(1);
    int i = find(PROTO_HELLO, 0);
    CHECK(i >= 0);
    if (i >= 0) {
        CHECK(s_msgs[i].body.hello.reason == PROTO_HELLO_REPLY);
        CHECK(s_msgs[i].body.hello.nonce == 0xC0FFEEu);
    }
    s_tx_seq = 0;
    clear_msgs();
}

/* The next sequenced message must be an ERROR with this code (and request id); ACKs it. */
static void expect_error(uint16_t code, uint32_t rid)
{
    int i = find(PROTO_ERROR, 0);
    CHECK(i >= 0);
    if (i < 0) {
        for (size_t k = 0; k < s_nmsgs; k++) {
            fprintf(stderr, "  msg %u type 0x%02x seq %u\n", (unsigned)k, s_msgs[k].type, s_msgs[k].seq);
        }
    }
    if (i >= 0) {
        if (s_msgs[i].body.error.code != code || s_msgs[i].body.error.request_id != rid) {
            fprintf(stderr, "  got ERROR %u for %u: %s\n", s_msgs[i].body.error.code,
                    (unsigned)s_msgs[i].body.error.request_id, s_msgs[i].body.error.text);
        }
        CHECK(s_msgs[i].body.error.code == code);
        CHECK(s_msgs[i].body.error.request_id == rid);
    }
    ack_all();
    clear_msgs();
    run(1);
    clear_msgs();
}

/* Three spare rows: the past-the-end test sends rows 318..320. */
static uint8_t s_image[W * (H + 3)];

static void send_detect(uint32_t rid, uint8_t options)
{
    const proto_detect_t d = {rid, W, H, PROTO_PIXEL_MONO8, options};
    host_send_seq(PROTO_DETECT, &d);
}

static void send_rows(uint16_t first, uint16_t rows)
{
    const proto_data_t d = {first, (uint16_t)(rows * W), s_image + (size_t)first * W};
    host_send_seq(PROTO_DATA, &d);
}

/* ---- tests ------------------------------------------------------------------------------------ */

static void test_score_conversion(void)
{
    CHECK(app_score_u16(0) == 0u);
    CHECK(app_score_u16(1) == 2u);          /* 1.99997 */
    CHECK(app_score_u16(16384) == 32768u);  /* 0.5 -> 32767.5, rounded up */
    CHECK(app_score_u16(32767) == 65533u);  /* 65532.99997 */
    CHECK(app_score_u16(32768) == 65535u);  /* 1.0 */
    for (uint32_t q = 0; q <= 32768u; q++) {
        /* Nearest to q * 65535 / 32768 (ties up), checked against the exact fraction. */
        const uint32_t u = app_score_u16((uint16_t)q);
        const int64_t twice_err = 2 * ((int64_t)u * 32768 - (int64_t)q * 65535);
        CHECK(twice_err > -32768 && twice_err <= 32768);
    }
}

static void test_boot_and_handshake(void)
{
    clear_msgs();
    app_init(&k_io);
    CHECK(s_nmsgs == 1 && s_msgs[0].type == PROTO_HELLO);
    const proto_hello_t *h = &s_msgs[0].body.hello;
    CHECK(h->reason == PROTO_HELLO_BOOT);
    CHECK(h->protocol_version == PROTO_VERSION);
    CHECK(h->model_hash == RNNPOOL_MODEL_HASH32);
    CHECK(h->input_width == W && h->input_height == H && h->pixel_format == PROTO_PIXEL_MONO8);
    CHECK(h->tick_unit == PROTO_TICKS_NS && h->clock_hz == 1000000000u);
    CHECK(strcmp(h->board, "host") == 0 && strcmp(h->model_id, RNNPOOL_MODEL_ID) == 0);
    CHECK(strcmp(h->firmware_version, APP_FIRMWARE_VERSION) == 0);
    CHECK(h->rx_credit == app_rx_credit());
    /* Two full DATA frames (977 B each on the wire) fit the 2 KiB ring next to control frames. */
    CHECK(app_rx_credit() == (BOARD_UART_RX_BYTES >= 2048u ? 2u : 1u));

    /* Sequenced before any HELLO_REQUEST: HELLO(NOT_SYNCED), rate limited. */
    clear_msgs();
    const proto_ping_t ping = {7};
    host_send(PROTO_PING, 0u, &ping);
    host_send(PROTO_PING, 1u, &ping);
    run(1);
    CHECK(s_nmsgs == 1 && s_msgs[0].type == PROTO_HELLO &&
          s_msgs[0].body.hello.reason == PROTO_HELLO_NOT_SYNCED);

    handshake();
}

static void test_ping_and_retransmission(void)
{
    const proto_ping_t ping = {0x12345678u};
    host_send_seq(PROTO_PING, &ping);
    run(1);
    /* ACK (credit), then PONG seq 0. */
    CHECK(s_nmsgs == 2);
    CHECK(s_msgs[0].type == PROTO_ACK && s_msgs[0].body.ack.ack_seq == 0u &&
          s_msgs[0].body.ack.credit == app_rx_credit());
    CHECK(s_msgs[1].type == PROTO_PONG && s_msgs[1].seq == 0u && s_msgs[1].body.ping.token == 0x12345678u);
    CHECK(s_msgs[1].flags == 0u);
    clear_msgs();
    /* Not ACKed: it comes again, flagged, same seq. */
    s_now_ms += APP_RETX_MAX_MS;
    run(1);
    CHECK(s_nmsgs == 1 && s_msgs[0].type == PROTO_PONG && s_msgs[0].seq == 0u &&
          (s_msgs[0].flags & PROTO_FLAG_RETRANSMIT));
    clear_msgs();
    /* A NAK for the next seq acknowledges it (the ACK was lost). */
    const proto_nak_t nak = {1u, PROTO_NAK_CRC, 255u};
    host_send(PROTO_NAK, 0u, &nak);
    run(1);
    s_now_ms += 10u * APP_RETX_MAX_MS;
    run(1);
    CHECK(s_nmsgs == 0);

    /* The same PING again (its ACK was "lost"): ACKed again, not answered twice. */
    host_send(PROTO_PING, 0u, &ping);
    run(1);
    CHECK(s_nmsgs == 1 && s_msgs[0].type == PROTO_ACK && s_msgs[0].body.ack.ack_seq == 0u);
    clear_msgs();
}

static void test_gap_and_garbage(void)
{
    const proto_ping_t ping = {1};
    /* seq 2 while 1 is expected: one NAK(GAP) for the gap, however many frames follow it. */
    host_send(PROTO_PING, (uint16_t)(s_tx_seq + 1u), &ping);
    host_send(PROTO_PING, (uint16_t)(s_tx_seq + 2u), &ping);
    run(1);
    CHECK(s_nmsgs == 1 && s_msgs[0].type == PROTO_NAK && s_msgs[0].body.nak.reason == PROTO_NAK_GAP &&
          s_msgs[0].body.nak.expected_seq == s_tx_seq);
    clear_msgs();
    /* Line noise, then a frame with a flipped bit: NAKs, and the link goes on. */
    static const uint8_t noise[] = {0x00, 0x13, 0x37, 0x00, 0x05, 0x01, 0x02, 0x00};
    memcpy(s_in + s_in_len, noise, sizeof noise);
    s_in_len += sizeof noise;
    size_t at = s_in_len;
    host_send(PROTO_PING, s_tx_seq, &ping);
    s_in[at + 3] ^= 0x10u;
    run(1);
    CHECK(find(PROTO_PONG, 0) < 0);
    CHECK(s_nmsgs >= 3 && s_msgs[s_nmsgs - 1].type == PROTO_NAK);
    clear_msgs();
    host_send_seq(PROTO_PING, &ping);
    run(1);
    int i = find(PROTO_PONG, 0);
    CHECK(i >= 0);
    ack_all();
    clear_msgs();
    run(1);
}

static void test_request_errors(void)
{
    /* Unsupported size: refused, nothing started. */
    const proto_detect_t small = {100u, 240u, 320u, PROTO_PIXEL_MONO8, 0u};
    host_send_seq(PROTO_DETECT, &small);
    run(1);
    expect_error(PROTO_E_BAD_SIZE, 100u);
    const proto_detect_t fmt = {101u, W, H, 3u, 0u};
    host_send_seq(PROTO_DETECT, &fmt);
    run(1);
    expect_error(PROTO_E_BAD_SIZE, 101u);

    /* Rows out of order. */
    send_detect(102u, 0u);
    send_rows(0, 3);
    send_rows(6, 3);
    run(1);
    expect_error(PROTO_E_BAD_ROW, 102u);

    /* Not whole rows. */
    send_detect(103u, 0u);
    const proto_data_t partial = {0, W + 10u, s_image};
    host_send_seq(PROTO_DATA, &partial);
    run(1);
    expect_error(PROTO_E_BAD_SIZE, 103u);

    /* Past the last row. */
    send_detect(104u, 0u);
    for (uint16_t r = 0; r < 318; r += 3) {
        send_rows(r, 3);
        run(0);
        clear_msgs(); /* the ACKs */
    }
    send_rows(318, 3);
    run(1);
    expect_error(PROTO_E_BAD_ROW, 104u);

    /* DATA with no request: dropped quietly. */
    send_rows(0, 3);
    run(1);
    CHECK(find(PROTO_ERROR, 0) < 0);
    clear_msgs();

    /* Stall: nothing for APP_STALL_MS. */
    send_detect(105u, 0u);
    send_rows(0, 3);
    run(1);
    clear_msgs();
    s_now_ms += APP_STALL_MS - 10u;
    run(1);
    CHECK(find(PROTO_ERROR, 0) < 0);
    s_now_ms += 20u;
    run(1);
    expect_error(PROTO_E_TIMEOUT, 105u);

    /* CANCEL: only its own request. */
    send_detect(106u, 0u);
    send_rows(0, 3);
    const proto_cancel_t other = {999u};
    host_send_seq(PROTO_CANCEL, &other);
    run(1);
    CHECK(find(PROTO_ERROR, 0) < 0);
    const proto_cancel_t mine = {106u};
    host_send_seq(PROTO_CANCEL, &mine);
    run(1);
    expect_error(PROTO_E_CANCELLED, 106u);

    /* A new DETECT mid-image ends the old request; the new one runs. */
    send_detect(107u, 0u);
    send_rows(0, 3);
    send_detect(108u, 0u);
    send_rows(0, 3);
    run(1);
    expect_error(PROTO_E_BAD_STATE, 107u);
    const proto_cancel_t c108 = {108u};
    host_send_seq(PROTO_CANCEL, &c108);
    run(1);
    expect_error(PROTO_E_CANCELLED, 108u);

    /* A type the device does not take: ACKed, then ERROR(BAD_FRAME). */
    const proto_ping_t pong = {5};
    host_send_seq(PROTO_PONG, &pong);
    run(1);
    expect_error(PROTO_E_BAD_FRAME, 0u);
}

static void test_set_baud(void)
{
    const uint32_t old = board_uart_baud();
    const proto_set_baud_t bad = {250000u};
    host_send_seq(PROTO_SET_BAUD, &bad);
    run(1);
    expect_error(PROTO_E_UNSUPPORTED, 0u);
    CHECK(board_uart_baud() == old);

    /* Nothing heard at the new rate: back to the old one, and an ERROR says so. */
    const proto_set_baud_t fast = {921600u};
    host_send_seq(PROTO_SET_BAUD, &fast);
    run(1);
    CHECK(board_uart_baud() == 921600u);
    clear_msgs();
    s_now_ms += APP_BAUD_CONFIRM_MS;
    run(1);
    CHECK(board_uart_baud() == old);
    expect_error(PROTO_E_TIMEOUT, 0u);

    /* A good frame at the new rate keeps it. */
    host_send_seq(PROTO_SET_BAUD, &fast);
    run(1);
    const proto_ping_t ping = {3};
    host_send_seq(PROTO_PING, &ping);
    run(1);
    s_now_ms += 2u * APP_BAUD_CONFIRM_MS;
    ack_all();
    clear_msgs();
    run(1);
    CHECK(board_uart_baud() == 921600u);
    CHECK(find(PROTO_ERROR, 0) < 0);
    const proto_set_baud_t back = {old};
    host_send_seq(PROTO_SET_BAUD, &back);
    host_send_seq(PROTO_PING, &ping);
    run(1);
    ack_all();
    clear_msgs();
    run(1);
    CHECK(board_uart_baud() == old);
}

static int load(const char *path, void *dst, size_t n)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        return 0;
    }
    size_t got = fread(dst, 1, n, f);
    fclose(f);
    return got == n;
}

/* RESULT of test_full_image, sent whole at MTU 1024: the fragmented run must give the same. */
static proto_result_t s_full_result;

/* The boxes equal the golden vector's (scores converted). */
static void check_golden(const proto_result_t *r)
{
    FILE *f = fopen("tests/vectors/scene/boxes.txt", "r");
    CHECK(f != NULL);
    if (f == NULL) {
        return;
    }
    unsigned n = 0;
    long x, y, w, h, score, anchor;
    while (fscanf(f, "%ld %ld %ld %ld %ld %ld", &x, &y, &w, &h, &score, &anchor) == 6) {
        CHECK(n < r->n_boxes);
        if (n < r->n_boxes) {
            const proto_box_t *b = &r->boxes[n];
            CHECK(b->x == x && b->y == y && b->w == w && b->h == h);
            CHECK(b->score == app_score_u16((uint16_t)score));
        }
        n++;
    }
    fclose(f);
    CHECK(n == r->n_boxes && n > 0u);
}

/* The whole image through the protocol, rows streamed as they come: RESULT equals the golden
 * vector's boxes (scores converted), STATS comes first when asked for. */
static void test_full_image(void)
{
    if (!load("tests/vectors/scene/input.u8", s_image, (size_t)W * H)) {
        fprintf(stderr, "cannot read tests/vectors/scene/input.u8 (run from firmware/)\n");
        s_failures++;
        return;
    }
    send_detect(200u, PROTO_DETECT_OPT_STATS);
    for (uint16_t r = 0; r < H; r += 3) {
        send_rows(r, (uint16_t)(H - r < 3 ? H - r : 3));
        run(0);
        if (r + 3u < H) {
            clear_msgs(); /* the ACKs */
        }
    }
    run(1);
    int si = find(PROTO_STATS, 0);
    CHECK(si >= 0);
    CHECK(find(PROTO_RESULT, 0) < 0); /* one in flight at a time: RESULT after STATS's ACK */
    if (si < 0) {
        return;
    }
    const proto_stats_t *st = &s_msgs[si].body.stats;
    CHECK(st->request_id == 200u && st->n_stages >= 10u);
    ack(s_msgs[si].seq);
    clear_msgs();
    run(1);
    int ri = find(PROTO_RESULT, 0);
    CHECK(ri >= 0);
    if (ri < 0) {
        return;
    }
    const proto_result_t *r = &s_msgs[ri].body.result;
    CHECK(r->request_id == 200u);
    CHECK(r->ticks_compute > 0u && r->ticks_compute <= r->ticks_total && r->ticks_receive <= r->ticks_total);
    uint64_t sum = 0;
    for (unsigned k = 0; k < st->n_stages; k++) {
        sum += st->stages[k].ticks;
    }
    /* receive_wait + engine stages + protocol: the total, less the little engine time that no
     * stage claims (call overhead around the stage switches). */
    CHECK(sum <= r->ticks_total && sum + r->ticks_total / 20u >= r->ticks_total);

    check_golden(r);
    s_full_result = *r;
    ack(s_msgs[ri].seq);
    clear_msgs();
    run(1);
    CHECK(s_nmsgs == 0);
}

/* One message as the gateway sends it at this MTU: fragments of `mtu` bytes, MORE on all but the
 * last, each its own seq. */
static void host_send_fragmented(uint8_t type, const void *body, uint16_t mtu)
{
    static uint8_t wire[PROTO_MAX_WIRE];
    size_t n;
    CHECK(proto_encode(type, 0u, 0u, body, wire, sizeof wire, &n) == PROTO_OK);
    /* The payload, back out of the frame just encoded (the codec has no "payload only" call). */
    proto_rx_t rx;
    proto_frame_t f = {0};
    proto_rx_init(&rx);
    for (size_t i = 0; i < n; i++) {
        (void)proto_rx_push(&rx, wire[i], &f);
    }
    static uint8_t payload[PROTO_MAX_PAYLOAD];
    memcpy(payload, f.payload, f.len);
    uint16_t off = 0;
    do {
        const uint16_t len = (uint16_t)(f.len - off < mtu ? f.len - off : mtu);
        const uint8_t flags = off + len < f.len ? PROTO_FLAG_MORE : 0u;
        CHECK(proto_frame_encode(type, flags, s_tx_seq++, payload + off, len, s_in + s_in_len, sizeof s_in - s_in_len,
                                 &n) == PROTO_OK);
        s_in_len += n;
        off = (uint16_t)(off + len);
    } while (off < f.len);
}

/* ACKs the device's sequenced frames one at a time (it has one fragment in flight) until a
 * message of `type` is complete; its index, or -1. */
static int pump_until(uint8_t type)
{
    for (int turn = 0; turn < 400; turn++) {
        const int i = find(type, 0);
        if (i >= 0) {
            return i;
        }
        if (s_seq_unacked) {
            s_seq_unacked = 0;
            ack(s_last_seq);
        }
        run(1);
    }
    return -1;
}

/* Protocol v2 fragmentation, both ways: LINK_CONFIG bounds, then the scene image as DATA messages
 * cut at a small MTU, and the RESULT coming back in fragments of that MTU. */
static void test_fragmented_image(uint16_t mtu)
{
    handshake();
    /* Out of range: refused with UNSUPPORTED, and the MTU stays what it was. */
    const uint8_t credit_full = app_rx_credit();
    const proto_link_config_t too_small = {(uint16_t)(PROTO_MTU_MIN - 1u)}, too_big = {(uint16_t)(PROTO_MTU_MAX + 1u)};
    host_send_seq(PROTO_LINK_CONFIG, &too_small);
    run(1);
    expect_error(PROTO_E_UNSUPPORTED, 0u);
    host_send_seq(PROTO_LINK_CONFIG, &too_big);
    run(1);
    expect_error(PROTO_E_UNSUPPORTED, 0u);
    CHECK(app_rx_credit() == credit_full);

    const proto_link_config_t lc = {mtu};
    const uint16_t lc_seq = s_tx_seq;
    host_send_seq(PROTO_LINK_CONFIG, &lc);
    run(1);
    /* Its ACK already carries the credit for the new size: more, smaller frames fit the ring. */
    const int ai = find(PROTO_ACK, 0);
    CHECK(ai >= 0 && find(PROTO_ERROR, 0) < 0);
    if (ai >= 0) {
        CHECK(s_msgs[ai].body.ack.ack_seq == lc_seq);
        CHECK(s_msgs[ai].body.ack.credit == app_rx_credit() && app_rx_credit() > credit_full);
    }
    clear_msgs();

    /* A PING where a DATA message should continue: BAD_FRAME, and both are lost (no PONG). */
    uint8_t first[2 + 14];
    first[0] = 0u;
    first[1] = 0u;
    memcpy(first + 2, s_image, sizeof first - 2u);
    size_t n;
    CHECK(proto_frame_encode(PROTO_DATA, PROTO_FLAG_MORE, s_tx_seq++, first, sizeof first, s_in + s_in_len,
                             sizeof s_in - s_in_len, &n) == PROTO_OK);
    s_in_len += n;
    const proto_ping_t ping = {7u};
    host_send_seq(PROTO_PING, &ping);
    /* The ERROR's text is longer than small MTUs: it comes in fragments too. */
    const int ei = pump_until(PROTO_ERROR);
    CHECK(ei >= 0 && find(PROTO_PONG, 0) < 0);
    if (ei >= 0) {
        CHECK(s_msgs[ei].body.error.code == PROTO_E_BAD_FRAME && s_msgs[ei].body.error.request_id == 0u);
    }
    ack(s_last_seq);
    s_seq_unacked = 0;
    run(1);
    clear_msgs();

    /* Counted from here: the RESULT's first fragment already leaves with the last DATA's ACK. */
    s_frags_rx = 0;
    s_max_seq_len = 0;
    send_detect(400u, 0u);
    for (uint16_t r = 0; r < H; r += 3) {
        const uint16_t rows = (uint16_t)(H - r < 3 ? H - r : 3);
        const proto_data_t d = {r, (uint16_t)(rows * W), s_image + (size_t)r * W};
        host_send_fragmented(PROTO_DATA, &d, mtu);
        run(0);
        CHECK(find(PROTO_ERROR, 0) < 0);
        clear_msgs(); /* the ACKs */
    }
    const int ri = pump_until(PROTO_RESULT);
    CHECK(ri >= 0);
    if (ri < 0) {
        return;
    }
    const proto_result_t *r = &s_msgs[ri].body.result;
    CHECK(r->request_id == 400u);
    check_golden(r);
    CHECK(r->n_boxes == s_full_result.n_boxes &&
          memcmp(r->boxes, s_full_result.boxes, r->n_boxes * sizeof r->boxes[0]) == 0);
    /* It did come in fragments of at most `mtu` bytes: 37 + 10 per box, cut at mtu. */
    const unsigned payload = 37u + 10u * r->n_boxes;
    CHECK(s_max_seq_len <= mtu);
    CHECK(s_frags_rx == (payload - 1u) / mtu && s_frags_rx > 0u);
    ack(s_last_seq);
    s_seq_unacked = 0;
    clear_msgs();
    run(1);
    CHECK(s_nmsgs == 0);
    handshake(); /* back to MTU 1024 for what follows */
}

int main(void)
{
    proto_rx_init(&s_host_rx);
    test_score_conversion();
    test_boot_and_handshake();
    test_ping_and_retransmission();
    test_gap_and_garbage();
    test_request_errors();
    test_set_baud();
    test_full_image();
    test_fragmented_image(48u);
    test_fragmented_image(PROTO_MTU_MIN);
    /* A HELLO_REQUEST mid-image drops it without a word and starts the link over. */
    send_detect(300u, 0u);
    send_rows(0, 3);
    run(1);
    handshake();
    s_now_ms += 2u * APP_STALL_MS;
    run(1);
    CHECK(s_nmsgs == 0);
    CHECK(s_bad_frames == 0u);
    printf("app: %s (app RAM %u B, engine RAM %u B, rx credit %u)\n", s_failures ? "FAILED" : "ok",
           (unsigned)app_ram_bytes(), (unsigned)engine_ram_bytes(), (unsigned)app_rx_credit());
    return s_failures ? 1 : 0;
}
