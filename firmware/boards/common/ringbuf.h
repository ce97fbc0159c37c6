/* Single-producer / single-consumer byte ring, shared by all boards.
 *
 * The producer is an interrupt handler (RX: USART ISR; TX: main loop) and the consumer the other
 * side; neither ever blocks or disables interrupts. Head and tail run freely over the whole
 * 32-bit range and are masked only when indexing, so all `size` slots are usable (no "one slot
 * empty" convention) and full/empty are never ambiguous. The capacity must be a power of two.
 *
 * Acquire/release atomics order the data accesses against the index updates. On a single
 * Cortex-M core a compiler barrier would do; the atomics make the same code correct on the host
 * (where tests run it from two threads) at the price of a DMB per call on the M4. */
#ifndef RNNPOOL_RINGBUF_H
#define RNNPOOL_RINGBUF_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct {
    uint8_t *buf;
    uint32_t mask;               /* size - 1 */
    _Atomic uint32_t head;       /* next slot to write; producer-owned */
    _Atomic uint32_t tail;       /* next slot to read; consumer-owned */
    _Atomic uint32_t dropped;    /* bytes refused because the ring was full; producer-owned */
} ringbuf_t;

#define RINGBUF_IS_POW2(n) ((n) != 0u && (((n) & ((n) - 1u)) == 0u))

/* `size` must be a power of two; the caller checks it at compile time with RINGBUF_IS_POW2. */
static inline void ringbuf_init(ringbuf_t *rb, uint8_t *storage, uint32_t size)
{
    rb->buf = storage;
    rb->mask = size - 1u;
    atomic_store_explicit(&rb->head, 0u, memory_order_relaxed);
    atomic_store_explicit(&rb->tail, 0u, memory_order_relaxed);
    atomic_store_explicit(&rb->dropped, 0u, memory_order_relaxed);
}

static inline uint32_t ringbuf_capacity(const ringbuf_t *rb)
{
    return rb->mask + 1u;
}

/* Either side may ask; the answer is a snapshot that only the other side can make stale, and
 * only in the safe direction (the consumer can only see more data, the producer more space). */
static inline uint32_t ringbuf_used(ringbuf_t *rb)
{
    uint32_t head = atomic_load_explicit(&rb->head, memory_order_acquire);
    uint32_t tail = atomic_load_explicit(&rb->tail, memory_order_acquire);
    return head - tail;
}

static inline uint32_t ringbuf_free(ringbuf_t *rb)
{
    return ringbuf_capacity(rb) - ringbuf_used(rb);
}

static inline bool ringbuf_empty(ringbuf_t *rb)
{
    return ringbuf_used(rb) == 0u;
}

/* Producer: store one byte, or count it as dropped when full (a UART cannot push back). */
static inline bool ringbuf_put(ringbuf_t *rb, uint8_t byte)
{
    uint32_t head = atomic_load_explicit(&rb->head, memory_order_relaxed);
    uint32_t tail = atomic_load_explicit(&rb->tail, memory_order_acquire);
    if (head - tail > rb->mask) {
        atomic_store_explicit(&rb->dropped,
                              atomic_load_explicit(&rb->dropped, memory_order_relaxed) + 1u,
                              memory_order_relaxed);
        return false;
    }
    rb->buf[head & rb->mask] = byte;
    atomic_store_explicit(&rb->head, head + 1u, memory_order_release);
    return true;
}

/* Producer: store as many bytes as fit, return how many; nothing is counted as dropped because
 * the caller (a TX writer) still holds the rest and will retry. */
static inline size_t ringbuf_write(ringbuf_t *rb, const uint8_t *src, size_t len)
{
    uint32_t head = atomic_load_explicit(&rb->head, memory_order_relaxed);
    uint32_t tail = atomic_load_explicit(&rb->tail, memory_order_acquire);
    uint32_t space = ringbuf_capacity(rb) - (head - tail);
    size_t n = len < space ? len : space;
    for (size_t i = 0; i < n; i++) {
        rb->buf[(head + (uint32_t)i) & rb->mask] = src[i];
    }
    atomic_store_explicit(&rb->head, head + (uint32_t)n, memory_order_release);
    return n;
}

/* Consumer: take one byte if there is one. */
static inline bool ringbuf_get(ringbuf_t *rb, uint8_t *byte)
{
    uint32_t tail = atomic_load_explicit(&rb->tail, memory_order_relaxed);
    uint32_t head = atomic_load_explicit(&rb->head, memory_order_acquire);
    if (head == tail) {
        return false;
    }
    *byte = rb->buf[tail & rb->mask];
    atomic_store_explicit(&rb->tail, tail + 1u, memory_order_release);
    return true;
}

/* Consumer: take up to `max` bytes, return how many. */
static inline size_t ringbuf_read(ringbuf_t *rb, uint8_t *dst, size_t max)
{
    uint32_t tail = atomic_load_explicit(&rb->tail, memory_order_relaxed);
    uint32_t head = atomic_load_explicit(&rb->head, memory_order_acquire);
    uint32_t avail = head - tail;
    size_t n = max < avail ? max : avail;
    for (size_t i = 0; i < n; i++) {
        dst[i] = rb->buf[(tail + (uint32_t)i) & rb->mask];
    }
    atomic_store_explicit(&rb->tail, tail + (uint32_t)n, memory_order_release);
    return n;
}

static inline uint32_t ringbuf_dropped(ringbuf_t *rb)
{
    return atomic_load_explicit(&rb->dropped, memory_order_relaxed);
}

#endif
