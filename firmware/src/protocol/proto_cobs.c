/* Consistent Overhead Byte Stuffing (Cheshire & Baker, 1999): removes every 0x00 from a frame so
 * that 0x00 can delimit frames, at a cost of one byte per 254. A final run of exactly 254 non-zero
 * bytes is encoded without the empty trailing block (the shortest form); the decoder accepts both. */
#include "protocol.h"

size_t proto_cobs_encode(const uint8_t *src, size_t len, uint8_t *dst, size_t dst_cap)
{
    /* Writes never overtake reads when src lies >= 1 + len/254 bytes after dst: after i input bytes
     * at most 1 + i + i/254 output bytes exist, and each input byte is read before its own write. */
    if (dst_cap < 1u)
        return 0;
    size_t code_pos = 0, o = 1;
    uint8_t code = 1;
    for (size_t i = 0; i < len; i++) {
        const uint8_t b = src[i];
        if (b != 0u) {
            if (o >= dst_cap)
                return 0;
            dst[o++] = b;
            code++;
        }
        if (b == 0u || code == 0xffu) {
            if (b != 0u && i + 1u == len)
                break; /* the 0xFF block ends the data: no empty block after it */
            dst[code_pos] = code;
            if (o >= dst_cap)
                return 0;
            code_pos = o++;
            code = 1;
        }
    }
    dst[code_pos] = code;
    return o;
}

long proto_cobs_decode(const uint8_t *src, size_t len, uint8_t *dst, size_t dst_cap)
{
    size_t i = 0, o = 0;
    while (i < len) {
        const uint8_t code = src[i++];
        if (code == 0u || (size_t)(code - 1u) > len - i)
            return -1;
        for (uint8_t k = 1; k < code; k++) {
            if (src[i] == 0u || o >= dst_cap)
                return -1;
            dst[o++] = src[i++];
        }
        if (code != 0xffu && i < len) {
            if (o >= dst_cap)
                return -1;
            dst[o++] = 0;
        }
    }
    return (long)o;
}
