/* Host test (make -C firmware BOARD=host test): the shared ring buffer and the host board.
 * The UART paths over stdin/stdout and a pty are exercised end to end by
 * tests/test_firmware_boards.py; here: everything that needs no second process. */
#define _GNU_SOURCE

#include "board.h"
#include "common/ringbuf.h"
#include "host/host_board.h"

#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static int g_failures;

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond);               \
            g_failures++;                                                                          \
        }                                                                                          \
    } while (0)

static void test_ring_basics(void)
{
    static uint8_t storage[8];
    ringbuf_t rb;
    ringbuf_init(&rb, storage, sizeof storage);
    CHECK(ringbuf_capacity(&rb) == 8u);
    CHECK(ringbuf_empty(&rb));

    uint8_t b = 0;
    CHECK(!ringbuf_get(&rb, &b));
    for (uint8_t i = 0; i < 8u; i++) {
        CHECK(ringbuf_put(&rb, i));
    }
    /* Every slot is usable, and a full ring refuses and counts. */
    CHECK(ringbuf_used(&rb) == 8u);
    CHECK(ringbuf_free(&rb) == 0u);
    CHECK(!ringbuf_put(&rb, 99));
    CHECK(!ringbuf_put(&rb, 100));
    CHECK(ringbuf_dropped(&rb) == 2u);

    for (uint8_t i = 0; i < 8u; i++) {
        CHECK(ringbuf_get(&rb, &b) && b == i);
    }
    CHECK(ringbuf_empty(&rb));
    CHECK(ringbuf_dropped(&rb) == 2u);
}

static void test_ring_bulk_and_wrap(void)
{
    static uint8_t storage[16];
    ringbuf_t rb;
    ringbuf_init(&rb, storage, sizeof storage);
    /* Start the free-running indices just below the 32-bit wrap: the arithmetic must not care. */
    atomic_store(&rb.head, 0xFFFFFFF6u);
    atomic_store(&rb.tail, 0xFFFFFFF6u);

    uint8_t src[40], dst[40];
    for (size_t i = 0; i < sizeof src; i++) {
        src[i] = (uint8_t)(i * 7u + 1u);
    }
    CHECK(ringbuf_write(&rb, src, 10) == 10u);
    CHECK(ringbuf_write(&rb, src + 10, 30) == 6u); /* only what fits */
    CHECK(ringbuf_used(&rb) == 16u);
    CHECK(ringbuf_dropped(&rb) == 0u);             /* bulk writers retry; nothing was lost */
    CHECK(ringbuf_read(&rb, dst, 5) == 5u);
    CHECK(memcmp(dst, src, 5) == 0);
    CHECK(ringbuf_write(&rb, src + 16, 5) == 5u);
    CHECK(ringbuf_read(&rb, dst + 5, sizeof dst) == 16u);
    CHECK(memcmp(dst, src, 21) == 0);
    CHECK(ringbuf_empty(&rb));
    CHECK(atomic_load(&rb.head) < 0x100u); /* we did cross the wrap */
    CHECK(ringbuf_read(&rb, dst, 4) == 0u);
}

/* The RX ring's real situation, with a thread standing in for the interrupt: one producer,
 * one consumer, no locks. Every byte that was accepted must come out once and in order. */
enum { STRESS_BYTES = 2000000 };
static uint8_t g_stress_storage[64];
static ringbuf_t g_stress;

static void *stress_producer(void *arg)
{
    (void)arg;
    uint32_t sent = 0;
    while (sent < STRESS_BYTES) {
        if (ringbuf_put(&g_stress, (uint8_t)(sent * 31u))) {
            sent++;
        }
    }
    return NULL;
}

static void test_ring_threads(void)
{
    ringbuf_init(&g_stress, g_stress_storage, sizeof g_stress_storage);
    pthread_t producer;
    CHECK(pthread_create(&producer, NULL, stress_producer, NULL) == 0);
    uint32_t received = 0;
    int mismatches = 0;
    uint8_t chunk[13];
    while (received < STRESS_BYTES) {
        size_t n = ringbuf_read(&g_stress, chunk, sizeof chunk);
        for (size_t i = 0; i < n; i++, received++) {
            mismatches += chunk[i] != (uint8_t)(received * 31u);
        }
    }
    pthread_join(producer, NULL);
    CHECK(mismatches == 0);
    CHECK(ringbuf_empty(&g_stress));
}

static void test_time(void)
{
    CHECK(strcmp(board_tick_unit(), "ns") == 0);
    CHECK(board_clock_hz() == 1000000000u);
    uint64_t t0 = board_ticks64();
    uint32_t a0 = board_ticks();
    uint32_t m0 = board_millis();
    struct timespec nap = {0, 20 * 1000 * 1000};
    nanosleep(&nap, NULL);
    uint64_t t1 = board_ticks64();
    uint32_t a1 = board_ticks();
    uint32_t m1 = board_millis();
    CHECK(t1 - t0 >= 20000000u && t1 - t0 < 2000000000u);
    CHECK(a1 - a0 >= 20000000u);
    CHECK(m1 - m0 >= 19u && m1 - m0 < 2000u);
}

/* Not static and written through volatile, so the optimiser cannot drop it. */
extern uint8_t g_big_static[100000];
uint8_t g_big_static[100000];

__attribute__((noinline)) static uint32_t use_stack(uint32_t depth)
{
    volatile uint8_t frame[1024];
    frame[0] = (uint8_t)depth;
    frame[sizeof frame - 1] = (uint8_t)depth;
    uint32_t below = depth > 0u ? use_stack(depth - 1u) : 0u;
    return below + frame[0] + frame[sizeof frame - 1];
}

static void test_memory(void)
{
    ((volatile uint8_t *)g_big_static)[12345] = 1;
    CHECK(board_static_ram_bytes() >= sizeof g_big_static);
    CHECK(board_static_ram_bytes() < 16u * 1024u * 1024u);
    CHECK(board_ram_bytes() > 1024u * 1024u);

    uint32_t before = board_stack_high_water();
    CHECK(before < 64u * 1024u);
    (void)use_stack(100); /* about 100 KB */
    uint32_t deep = board_stack_high_water();
    /* 101 frames of over 1 KB; the few frames above the painted region are not counted. */
    CHECK(deep >= 96u * 1024u);
    CHECK(deep <= 512u * 1024u);
    board_stack_paint();
    uint32_t after = board_stack_high_water();
    CHECK(after < deep);
    CHECK(after < 64u * 1024u);
    printf("host stack high water: %u B at start, %u B after a 100 KB recursion, %u B re-painted\n",
           before, deep, after);
}

static void test_uart_settings(void)
{
    CHECK(board_uart_baud() == 115200u);
    CHECK(board_uart_max_baud() == 921600u);
    CHECK(board_uart_set_baud(921600u));
    CHECK(board_uart_baud() == 921600u);
    CHECK(!board_uart_set_baud(12345u));
    CHECK(board_uart_baud() == 921600u);
    CHECK(board_uart_set_baud(115200u));
    CHECK(board_uart_overruns() == 0u);
    CHECK(strcmp(board_name(), "host") == 0);
}

/* ---- reset and the pty, across exec ----------------------------------------------------
 * board_reset() must re-exec the program with its original arguments, and with --pty keep the
 * same /dev/pts/N so a connected client survives the reset. Three lives, the stage passed in
 * the environment (exec keeps it):
 *   1. unit tests above, then exec ourselves with "--pty-nowait MARKER";
 *   2. the board makes a pty; we open its slave as the client, check both directions, then
 *      board_reset();
 *   3. same pty name, same arguments, and the client fd from life 2 still talks to us. */
#define STAGE_ENV "TEST_HOST_BOARD_STAGE"
#define CLIENT_ENV "TEST_HOST_BOARD_CLIENT_FD"
#define NAME_ENV "TEST_HOST_BOARD_PTY"
#define MARKER "--after-reset-marker"

static bool client_expect(int fd, const char *want)
{
    char got[64] = {0};
    size_t len = strlen(want), have = 0;
    for (int tries = 0; tries < 200 && have < len; tries++) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, 10) > 0) {
            ssize_t n = read(fd, got + have, len - have);
            have += n > 0 ? (size_t)n : 0u;
        }
    }
    return have == len && memcmp(got, want, len) == 0;
}

static bool board_expect(const char *want)
{
    uint8_t got[64] = {0};
    size_t len = strlen(want), have = 0;
    for (int tries = 0; tries < 200 && have < len; tries++) {
        have += board_uart_read(got + have, len - have);
        if (have < len) {
            board_idle();
        }
    }
    return have == len && memcmp(got, want, len) == 0;
}

static int life_before_reset(void)
{
    board_init();
    const char *name = host_board_pty_name();
    CHECK(name != NULL);
    if (name == NULL) {
        return 1;
    }
    int client = open(name, O_RDWR | O_NOCTTY);
    CHECK(client >= 0);
    board_uart_write((const uint8_t *)"ping", 4);
    CHECK(client_expect(client, "ping"));
    CHECK(write(client, "pong", 4) == 4);
    CHECK(board_expect("pong"));
    if (g_failures != 0) {
        return 1;
    }
    char num[16];
    snprintf(num, sizeof num, "%d", client);
    setenv(CLIENT_ENV, num, 1);
    setenv(NAME_ENV, name, 1);
    setenv(STAGE_ENV, "after-reset", 1);
    board_reset();
}

static int life_after_reset(int argc, char **argv)
{
    CHECK(argc == 3 && strcmp(argv[2], MARKER) == 0);
    CHECK(board_millis() < 1000u); /* a fresh process, so a fresh clock */
    board_init();
    const char *name = host_board_pty_name();
    const char *before = getenv(NAME_ENV);
    CHECK(name != NULL && before != NULL && strcmp(name, before) == 0);
    int client = atoi(getenv(CLIENT_ENV) ? getenv(CLIENT_ENV) : "-1");
    board_uart_write((const uint8_t *)"back", 4);
    CHECK(client_expect(client, "back"));
    CHECK(write(client, "again", 5) == 5);
    CHECK(board_expect("again"));
    printf("host board: reset kept the arguments and the pty %s: %s\n", name ? name : "?",
           g_failures == 0 ? "ok" : "NO");
    return g_failures == 0 ? 0 : 1;
}

int main(int argc, char **argv)
{
    const char *stage = getenv(STAGE_ENV);
    if (stage != NULL && strcmp(stage, "before-reset") == 0) {
        return life_before_reset();
    }
    if (stage != NULL && strcmp(stage, "after-reset") == 0) {
        return life_after_reset(argc, argv);
    }

    board_init();
    test_ring_basics();
    test_ring_bulk_and_wrap();
    test_ring_threads();
    test_time();
    test_memory();
    test_uart_settings();
    if (g_failures != 0) {
        fprintf(stderr, "%d check(s) failed\n", g_failures);
        return 1;
    }
    fflush(stdout);
    setenv(STAGE_ENV, "before-reset", 1);
    char *args[] = {argv[0], (char *)"--pty-nowait", (char *)MARKER, NULL};
    execv("/proc/self/exe", args);
    perror("execv");
    return 1;
}
