/* Host (Linux/POSIX) board: runs the portable core as an ordinary process so the gateway and the
 * tests can talk to a "device" without hardware.
 *
 * Command line (read from the process arguments; the core's main() never sees them):
 *   (none)          UART = stdin/stdout, raw bytes. EOF on stdin ends the program with status 0
 *                   (the host hung up; a device would idle forever, a test wants it to end).
 *   --pty           UART = a new pseudo-terminal. Prints "PTY /dev/pts/N" as one line on stderr,
 *                   then waits, like QEMU's `server=on,wait=on`, until a client opens the port:
 *                   pyserial flushes the input queue on open and we see that flush through
 *                   packet mode (TIOCPKT), or the client's first byte. Anything written before
 *                   that would be discarded by the client's flush.
 *   --pty-nowait    as --pty, without the wait.
 *
 * Reset (board_reset) re-execs /proc/self/exe with the same arguments. The pty master fd is
 * inherited through the exec (its number passed in RNNPOOL_HOST_PTY_FD), so the client keeps
 * the same /dev/pts/N across the reset, as with the ST-LINK's USB port on the real board.
 *
 * A closed client (POLLHUP on the master) is not an error: output is dropped once the pty's
 * buffer is full, as a real UART sends into the void, and a new client can open the port again.
 */
#define _GNU_SOURCE

#include "board.h"
#include "host/host_board.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#define PTY_FD_ENV "RNNPOOL_HOST_PTY_FD"
#define IDLE_POLL_MS 10
#define STACK_PAINT_BYTES (512u * 1024u)
#define STACK_PAINT_WORD 0xA5C3A5C3u
/* Room left below the caller's frame when re-painting: covers the x86-64 red zone and the
 * painting function's own spills. */
#define STACK_PAINT_MARGIN 512u

/* glibc calls .init_array entries with (argc, argv, envp); this is how the board sees the
 * command line without the core's main() having to pass it on. */
static int s_argc;
static char **s_argv;

__attribute__((constructor)) static void host_capture_args(int argc, char **argv, char **envp)
{
    (void)envp;
    s_argc = argc;
    s_argv = argv;
}

static bool s_initialised;
static int s_in_fd = STDIN_FILENO;
static int s_out_fd = STDOUT_FILENO;
static bool s_pty;
static char s_pty_name[64];
static uint32_t s_baud = 115200u;

/* Bytes the client sent while board_init waited for it; handed out before anything else. */
static uint8_t s_pending[4096];
static size_t s_pending_len;
static size_t s_pending_pos;

static bool s_stdin_tty;
static struct termios s_stdin_saved;

static uint64_t s_t0_ns;
static bool s_t0_set;

static uintptr_t s_stack_low;  /* lowest painted address */
static uintptr_t s_stack_high; /* one past the highest painted address */

static uint64_t monotonic_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static uint64_t elapsed_ns(void)
{
    /* Tests use the board without board_init(); the clock starts at first use then. */
    if (!s_t0_set) {
        s_t0_ns = monotonic_ns();
        s_t0_set = true;
    }
    return monotonic_ns() - s_t0_ns;
}

static bool has_arg(const char *name)
{
    for (int i = 1; i < s_argc && s_argv != NULL; i++) {
        if (strcmp(s_argv[i], name) == 0) {
            return true;
        }
    }
    return false;
}

static void restore_stdin(void)
{
    if (s_stdin_tty) {
        tcsetattr(STDIN_FILENO, TCSANOW, &s_stdin_saved);
    }
}

static void restore_stdin_on_signal(int sig)
{
    restore_stdin();
    signal(sig, SIG_DFL);
    raise(sig);
}

/* ---- stack measurement --------------------------------------------------------------- */

/* The VLA makes the compiler move the stack pointer down over the whole region, so every page
 * is touched through a legitimate frame (the kernel grows the main stack for it) before we
 * remember its bounds. Reading it back later, below the live stack, is outside what C
 * promises but well defined on every Linux ABI we build for. */
__attribute__((noinline)) static void paint_region(size_t bytes)
{
    size_t words = bytes / sizeof(uint32_t);
    volatile uint32_t region[words];
    for (size_t i = 0; i < words; i++) {
        region[i] = STACK_PAINT_WORD;
    }
    s_stack_low = (uintptr_t)&region[0];
    s_stack_high = (uintptr_t)&region[words];
}

static void stack_init(void)
{
    /* Only the main thread's stack grows on demand; a thread's fixed stack could be smaller
     * than the region. */
    if (getpid() != gettid()) {
        return;
    }
    size_t bytes = STACK_PAINT_BYTES;
    struct rlimit rl;
    if (getrlimit(RLIMIT_STACK, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY &&
        rl.rlim_cur / 2u < bytes) {
        bytes = (size_t)(rl.rlim_cur / 2u);
    }
    paint_region(bytes);
}

void board_stack_paint(void)
{
    if (s_stack_low == 0u) {
        return;
    }
    volatile uint8_t here = 0;
    uintptr_t limit = (uintptr_t)&here - STACK_PAINT_MARGIN;
    if (limit > s_stack_high) {
        limit = s_stack_high;
    }
    for (uintptr_t p = s_stack_low; p + sizeof(uint32_t) <= limit; p += sizeof(uint32_t)) {
        *(volatile uint32_t *)p = STACK_PAINT_WORD;
    }
}

uint32_t board_stack_high_water(void)
{
    if (s_stack_low == 0u) {
        return 0u; /* not measured (not the main thread, or board_init not called) */
    }
    uintptr_t p = s_stack_low;
    while (p < s_stack_high && *(volatile uint32_t *)p == STACK_PAINT_WORD) {
        p += sizeof(uint32_t);
    }
    return (uint32_t)(s_stack_high - p);
}

/* ---- UART over a pseudo-terminal ------------------------------------------------------- */

static speed_t speed_for(uint32_t baud)
{
    switch (baud) {
    case 9600u: return B9600;
    case 19200u: return B19200;
    case 38400u: return B38400;
    case 57600u: return B57600;
    case 115200u: return B115200;
    case 230400u: return B230400;
    case 460800u: return B460800;
    case 921600u: return B921600;
    default: return B0;
    }
}

static void pty_apply_termios(int fd, uint32_t baud)
{
    /* Termios set on the master is the slave's: raw mode matters for clients that do not set
     * it themselves, otherwise the line discipline would echo our output back to us. */
    struct termios t;
    if (tcgetattr(fd, &t) != 0) {
        return;
    }
    cfmakeraw(&t);
    cfsetispeed(&t, speed_for(baud));
    cfsetospeed(&t, speed_for(baud));
    tcsetattr(fd, TCSANOW, &t);
}

static void die(const char *what)
{
    fprintf(stderr, "host board: %s: %s\n", what, strerror(errno));
    exit(EXIT_FAILURE);
}

/* One packet-mode read: a leading 0 byte means data follows; any other value is a control
 * status (TIOCPKT_FLUSHREAD etc.) with no data. Returns the number of data bytes (0 if there
 * was nothing or only status) and stores the status byte, if any, in *status. */
static size_t pty_read_packet(uint8_t *dst, size_t max, uint8_t *status)
{
    uint8_t tmp[4097];
    size_t want = max < sizeof tmp - 1u ? max : sizeof tmp - 1u;
    ssize_t n = read(s_in_fd, tmp, want + 1u);
    *status = 0;
    if (n <= 0) {
        return 0; /* EAGAIN: no data; EIO: no client right now */
    }
    if (tmp[0] != TIOCPKT_DATA) {
        *status = tmp[0];
        return 0;
    }
    memcpy(dst, tmp + 1, (size_t)n - 1u);
    return (size_t)n - 1u;
}

/* Waits for the client's input flush (pyserial's open() ends with one) or its first byte.
 * Other status changes do not count: our own termios set-up, for one, reports TIOCPKT_NOSTOP. */
static void pty_wait_for_client(void)
{
    for (;;) {
        struct pollfd p = {.fd = s_in_fd, .events = POLLIN | POLLPRI};
        if (poll(&p, 1, -1) < 0) {
            if (errno == EINTR) {
                continue;
            }
            die("poll");
        }
        uint8_t status;
        size_t n = pty_read_packet(s_pending, sizeof s_pending, &status);
        if (n > 0u || (status & TIOCPKT_FLUSHREAD)) {
            s_pending_len = n;
            s_pending_pos = 0;
            return;
        }
        if ((p.revents & POLLHUP) && !(p.revents & (POLLIN | POLLPRI))) {
            /* A client opened and closed again already; keep waiting without spinning. */
            usleep(10000);
        }
    }
}

static void pty_open(bool wait)
{
    const char *inherited = getenv(PTY_FD_ENV);
    int fd;
    if (inherited != NULL) {
        fd = atoi(inherited);
        unsetenv(PTY_FD_ENV);
        wait = false; /* the client is already there: this is a reset, not a first boot */
    } else {
        fd = posix_openpt(O_RDWR | O_NOCTTY);
        if (fd < 0 || grantpt(fd) != 0 || unlockpt(fd) != 0) {
            die("posix_openpt");
        }
    }
    if (ptsname_r(fd, s_pty_name, sizeof s_pty_name) != 0) {
        die("ptsname");
    }
    int one = 1;
    if (ioctl(fd, TIOCPKT, &one) != 0) {
        die("TIOCPKT");
    }
    int flags = fcntl(fd, F_GETFL);
    fcntl(fd, F_SETFL, flags | O_NONBLOCK);
    pty_apply_termios(fd, s_baud);
    s_in_fd = fd;
    s_out_fd = fd;
    s_pty = true;
    fprintf(stderr, "PTY %s\n", s_pty_name);
    fflush(stderr);
    if (wait) {
        pty_wait_for_client();
    }
}

static void stdin_raw(void)
{
    if (!isatty(STDIN_FILENO) || tcgetattr(STDIN_FILENO, &s_stdin_saved) != 0) {
        return;
    }
    struct termios t = s_stdin_saved;
    cfmakeraw(&t);
    t.c_lflag |= ISIG; /* keep Ctrl-C working for a human at the terminal */
    if (tcsetattr(STDIN_FILENO, TCSANOW, &t) == 0) {
        s_stdin_tty = true;
        atexit(restore_stdin);
        signal(SIGINT, restore_stdin_on_signal);
        signal(SIGTERM, restore_stdin_on_signal);
    }
}

const char *host_board_pty_name(void)
{
    return s_pty ? s_pty_name : NULL;
}

/* ---- board API --------------------------------------------------------------------------- */

void board_init(void)
{
    if (s_initialised) {
        return;
    }
    s_initialised = true;
    (void)elapsed_ns();
    stack_init();
    /* A vanished reader must not kill the "device"; write() reports EPIPE instead. */
    signal(SIGPIPE, SIG_IGN);
    if (has_arg("--pty") || has_arg("--pty-nowait")) {
        pty_open(has_arg("--pty"));
    } else {
        stdin_raw();
    }
}

const char *board_name(void)
{
    return "host";
}

size_t board_uart_read(uint8_t *dst, size_t max)
{
    if (max == 0u) {
        return 0u;
    }
    if (s_pending_pos < s_pending_len) {
        size_t n = s_pending_len - s_pending_pos;
        n = n < max ? n : max;
        memcpy(dst, s_pending + s_pending_pos, n);
        s_pending_pos += n;
        return n;
    }
    if (s_pty) {
        uint8_t status;
        return pty_read_packet(dst, max, &status);
    }
    struct pollfd p = {.fd = s_in_fd, .events = POLLIN};
    if (poll(&p, 1, 0) <= 0 || !(p.revents & (POLLIN | POLLHUP))) {
        return 0u;
    }
    ssize_t n = read(s_in_fd, dst, max);
    if (n == 0) {
        exit(EXIT_SUCCESS); /* stdin closed: the host has gone */
    }
    return n > 0 ? (size_t)n : 0u;
}

void board_uart_write(const uint8_t *src, size_t len)
{
    while (len > 0u) {
        ssize_t n = write(s_out_fd, src, len);
        if (n > 0) {
            src += n;
            len -= (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0 && errno == EAGAIN) {
            struct pollfd p = {.fd = s_out_fd, .events = POLLOUT};
            if (poll(&p, 1, 100) > 0 && (p.revents & POLLHUP) && !(p.revents & POLLOUT)) {
                return; /* nobody on the line and the pty's buffer is full: drop */
            }
            continue;
        }
        return; /* EPIPE, EIO: the wire is gone; a UART would not notice either */
    }
}

bool board_uart_set_baud(uint32_t baud)
{
    if (speed_for(baud) == B0) {
        return false;
    }
    s_baud = baud;
    if (s_pty) {
        pty_apply_termios(s_out_fd, baud);
    }
    return true;
}

uint32_t board_uart_baud(void)
{
    return s_baud;
}

uint32_t board_uart_max_baud(void)
{
    return 921600u;
}

uint32_t board_uart_overruns(void)
{
    return 0u; /* the kernel buffers for us */
}

uint32_t board_ticks(void)
{
    return (uint32_t)elapsed_ns();
}

uint64_t board_ticks64(void)
{
    return elapsed_ns();
}

const char *board_tick_unit(void)
{
    return "ns";
}

uint32_t board_clock_hz(void)
{
    return 1000000000u;
}

uint32_t board_millis(void)
{
    return (uint32_t)(elapsed_ns() / 1000000u);
}

uint32_t board_ram_bytes(void)
{
    long pages = sysconf(_SC_PHYS_PAGES);
    long page = sysconf(_SC_PAGESIZE);
    if (pages <= 0 || page <= 0) {
        return 0u;
    }
    uint64_t bytes = (uint64_t)pages * (uint64_t)page;
    return bytes > UINT32_MAX ? UINT32_MAX : (uint32_t)bytes;
}

/* Provided by the toolchain's default linker script / crt1.o: .data starts at __data_start
 * and .bss ends at _end, so this is the executable's own static data (libc's lives in libc.so). */
extern char __data_start[] __attribute__((weak));
extern char _end[] __attribute__((weak));

uint32_t board_static_ram_bytes(void)
{
    if (__data_start == NULL || _end == NULL) {
        return 0u;
    }
    return (uint32_t)(_end - __data_start);
}

void board_set_busy(bool busy)
{
    (void)busy;
}

void board_set_error(bool error)
{
    (void)error;
}

void board_watchdog_kick(void)
{
}

void board_idle(void)
{
    if (s_pending_pos < s_pending_len) {
        return;
    }
    struct pollfd p = {.fd = s_in_fd, .events = POLLIN | POLLPRI};
    int r = poll(&p, 1, IDLE_POLL_MS);
    if (r > 0 && (p.revents & POLLHUP) && !(p.revents & (POLLIN | POLLPRI)) && s_pty) {
        /* No client on the pty: poll would return at once forever. */
        usleep(IDLE_POLL_MS * 1000);
    }
}

void board_reset(void)
{
    restore_stdin();
    fflush(NULL);
    if (s_pty) {
        /* Hand the pty to the next image; posix_openpt fds are not close-on-exec, but make it
         * explicit rather than depend on that. */
        int flags = fcntl(s_out_fd, F_GETFD);
        fcntl(s_out_fd, F_SETFD, flags & ~FD_CLOEXEC);
        char num[16];
        snprintf(num, sizeof num, "%d", s_out_fd);
        setenv(PTY_FD_ENV, num, 1);
    }
    static char fallback_name[] = "rnnpool";
    static char *fallback_argv[] = {fallback_name, NULL};
    char **argv = s_argv != NULL ? s_argv : fallback_argv;
    execv("/proc/self/exe", argv);
    fprintf(stderr, "host board: reset failed (execv): %s\n", strerror(errno));
    _exit(EXIT_FAILURE);
}

void board_exit(int status)
{
    restore_stdin();
    exit(status);
}
