/* Shared between the protocol's own .c files; not part of the API. */
#ifndef RNNPOOL_PROTO_INTERNAL_H
#define RNNPOOL_PROTO_INTERNAL_H

#include "protocol.h"

/* Writes the payload of `body` to dst, or only measures it when dst is NULL. Returns the payload
 * length or a negative proto_status_t. */
long proto_put_payload(uint8_t type, const void *body, uint8_t *dst);

#endif
