/* Host-only extras beyond board.h, for tests and tools that know they run on the host. */
#ifndef RNNPOOL_HOST_BOARD_H
#define RNNPOOL_HOST_BOARD_H

/* The slave side of the UART pseudo-terminal ("/dev/pts/N"), or NULL without --pty. */
const char *host_board_pty_name(void);

#endif
