/* Host-side helpers for the engine tests and tools: file loading, SHA-256, and just enough of the
 * golden vectors' manifest.json / boxes.txt to check them (the manifest is written by
 * training/export.py with fixed formatting: "name": { ... "sha256": "<hex>" ... }). */
#ifndef VEC_UTIL_H
#define VEC_UTIL_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Whole file into a malloc'd buffer (NUL-terminated too); NULL if missing. */
static inline uint8_t *vu_load(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        return NULL;
    }
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *buf = malloc((size_t)n + 1);
    if (buf == NULL || fread(buf, 1, (size_t)n, f) != (size_t)n) {
        free(buf);
        fclose(f);
        return NULL;
    }
    buf[n] = 0;
    fclose(f);
    if (len != NULL) {
        *len = (size_t)n;
    }
    return buf;
}

/* ---- SHA-256 (FIPS 180-4) ------------------------------------------------------------------ */

typedef struct {
    uint32_t h[8];
    uint8_t block[64];
    uint64_t bytes;
    size_t fill;
} vu_sha256_t;

static inline uint32_t vu_ror(uint32_t x, int n) { return (x >> n) | (x << (32 - n)); }

static inline void vu_sha256_block(vu_sha256_t *s, const uint8_t *p)
{
    static const uint32_t k[64] = {
        0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
        0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
        0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
        0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
        0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
        0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
        0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
        0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
    };
    uint32_t w[64];
    for (int i = 0; i < 16; i++) {
        w[i] = (uint32_t)p[4 * i] << 24 | (uint32_t)p[4 * i + 1] << 16 | (uint32_t)p[4 * i + 2] << 8 | p[4 * i + 3];
    }
    for (int i = 16; i < 64; i++) {
        uint32_t s0 = vu_ror(w[i - 15], 7) ^ vu_ror(w[i - 15], 18) ^ (w[i - 15] >> 3);
        uint32_t s1 = vu_ror(w[i - 2], 17) ^ vu_ror(w[i - 2], 19) ^ (w[i - 2] >> 10);
        w[i] = w[i - 16] + s0 + w[i - 7] + s1;
    }
    uint32_t a = s->h[0], b = s->h[1], c = s->h[2], d = s->h[3], e = s->h[4], f = s->h[5], g = s->h[6],
             h = s->h[7];
    for (int i = 0; i < 64; i++) {
        uint32_t t1 = h + (vu_ror(e, 6) ^ vu_ror(e, 11) ^ vu_ror(e, 25)) + ((e & f) ^ (~e & g)) + k[i] + w[i];
        uint32_t t2 = (vu_ror(a, 2) ^ vu_ror(a, 13) ^ vu_ror(a, 22)) + ((a & b) ^ (a & c) ^ (b & c));
        h = g;
        g = f;
        f = e;
        e = d + t1;
        d = c;
        c = b;
        b = a;
        a = t1 + t2;
    }
    s->h[0] += a;
    s->h[1] += b;
    s->h[2] += c;
    s->h[3] += d;
    s->h[4] += e;
    s->h[5] += f;
    s->h[6] += g;
    s->h[7] += h;
}

static inline void vu_sha256_init(vu_sha256_t *s)
{
    static const uint32_t h0[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                                   0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
    memcpy(s->h, h0, sizeof h0);
    s->bytes = 0;
    s->fill = 0;
}

static inline void vu_sha256_update(vu_sha256_t *s, const void *data, size_t n)
{
    const uint8_t *p = data;
    s->bytes += n;
    while (n > 0) {
        size_t take = 64 - s->fill < n ? 64 - s->fill : n;
        memcpy(s->block + s->fill, p, take);
        s->fill += take;
        p += take;
        n -= take;
        if (s->fill == 64) {
            vu_sha256_block(s, s->block);
            s->fill = 0;
        }
    }
}

/* Lower-case hex digest into hex[65]. */
static inline void vu_sha256_final(vu_sha256_t *s, char hex[65])
{
    uint64_t bits = s->bytes * 8;
    uint8_t pad = 0x80;
    vu_sha256_update(s, &pad, 1);
    pad = 0;
    while (s->fill != 56) {
        vu_sha256_update(s, &pad, 1);
    }
    uint8_t len[8];
    for (int i = 0; i < 8; i++) {
        len[i] = (uint8_t)(bits >> (56 - 8 * i));
    }
    vu_sha256_update(s, len, 8);
    for (int i = 0; i < 8; i++) {
        snprintf(hex + 8 * i, 9, "%08x", s->h[i]);
    }
}

static inline void vu_sha256(const void *data, size_t n, char hex[65])
{
    vu_sha256_t s;
    vu_sha256_init(&s);
    vu_sha256_update(&s, data, n);
    vu_sha256_final(&s, hex);
}

/* ---- manifest.json -------------------------------------------------------------------------- */

/* The object of key `name` (quoted exactly), or NULL. */
static inline const char *vu_json_key(const char *json, const char *name)
{
    char pat[96];
    snprintf(pat, sizeof pat, "\"%s\":", name);
    const char *p = strstr(json, pat);
    return p == NULL ? NULL : p + strlen(pat);
}

/* sha256 of stage `name` into hex[65]; 0 on success. */
static inline int vu_manifest_sha(const char *json, const char *name, char hex[65])
{
    const char *p = vu_json_key(json, name);
    if (p == NULL || (p = strstr(p, "\"sha256\":")) == NULL || (p = strchr(p + 9, '"')) == NULL) {
        return -1;
    }
    memcpy(hex, p + 1, 64);
    hex[64] = 0;
    return 0;
}

static inline long vu_manifest_int(const char *json, const char *name)
{
    const char *p = vu_json_key(json, name);
    return p == NULL ? -1 : strtol(p, NULL, 10);
}

/* boxes.txt: "x y w h score_q15 anchor" per line. Returns the count (<= max), -1 if missing. */
static inline int vu_load_boxes(const char *path, int32_t (*boxes)[6], int max)
{
    uint8_t *txt = vu_load(path, NULL);
    if (txt == NULL) {
        return -1;
    }
    int n = 0;
    const char *p = (const char *)txt;
    while (n < max) {
        int used = 0;
        int32_t *b = boxes[n];
        if (sscanf(p, "%d %d %d %d %d %d%n", &b[0], &b[1], &b[2], &b[3], &b[4], &b[5], &used) != 6) {
            break;
        }
        p += used;
        n++;
    }
    free(txt);
    return n;
}

#endif /* VEC_UTIL_H */
