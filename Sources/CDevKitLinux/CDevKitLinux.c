// The GNU and XSI declarations below are only visible with _GNU_SOURCE.
#define _GNU_SOURCE
#include "CDevKitLinux.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <unistd.h>

int CDevKitLinux_eventfd(unsigned int initval, int flags) { return eventfd(initval, flags); }

int CDevKitLinux_ppoll(struct pollfd *fds, nfds_t nfds, const struct timespec *timeout, const sigset_t *sigmask) {
    return ppoll(fds, nfds, timeout, sigmask);
}

int CDevKitLinux_pipe2(int fds[2], int flags) { return pipe2(fds, flags); }

int CDevKitLinux_set_thread_name(const char *name) { return prctl(PR_SET_NAME, name, 0, 0, 0); }

int CDevKitLinux_flush_stdout(void) {
    errno = 0;
    if (fflush(stdout) != 0) return errno != 0 ? errno : EIO;
    return ferror(stdout) ? EIO : 0;
}

int CDevKitLinux_posix_spawn_file_actions_addclosefrom_np(posix_spawn_file_actions_t *actions, int from) {
    return posix_spawn_file_actions_addclosefrom_np(actions, from);
}

int CDevKitLinux_sync_file_range(int fd, int64_t offset, int64_t nbytes, unsigned int flags) {
    return sync_file_range(fd, offset, nbytes, flags);
}

int CDevKitLinux_unlockpt(int fd) { return unlockpt(fd); }

int CDevKitLinux_ptsname_r(int fd, char *buf, size_t buflen) { return ptsname_r(fd, buf, buflen); }

const int CDevKitLinux_EFD_CLOEXEC = EFD_CLOEXEC;
const int CDevKitLinux_EFD_NONBLOCK = EFD_NONBLOCK;
const unsigned int CDevKitLinux_SYNC_FILE_RANGE_WRITE = SYNC_FILE_RANGE_WRITE;
const int CDevKitLinux_O_TMPFILE = O_TMPFILE;
const int CDevKitLinux_AT_EMPTY_PATH = AT_EMPTY_PATH;
#ifdef TIOCGEXCL
const unsigned long CDevKitLinux_TIOCGEXCL = TIOCGEXCL;
#else
const unsigned long CDevKitLinux_TIOCGEXCL = 0x80045440UL;
#endif

// Indexed by signal number (Linux's NSIG is 65); -1: none.
static int relay_pipe[NSIG] = { [0 ... NSIG - 1] = -1 };
static int relay_event[NSIG] = { [0 ... NSIG - 1] = -1 };

void CDevKitLinux_relay_handler(int signo) {
    if (signo <= 0 || signo >= NSIG) return;
    int saved = errno;
    int pipe_fd = __atomic_load_n(&relay_pipe[signo], __ATOMIC_RELAXED);
    int event_fd = __atomic_load_n(&relay_event[signo], __ATOMIC_RELAXED);
    if (pipe_fd >= 0) {
        unsigned char byte = (unsigned char)signo;
        (void)!write(pipe_fd, &byte, 1);  // a full pipe already says a signal came
    }
    if (event_fd >= 0) {
        uint64_t one = 1;
        (void)!write(event_fd, &one, sizeof one);
    }
    errno = saved;
}

void CDevKitLinux_relay_set(int signo, int pipe_fd, int event_fd) {
    if (signo <= 0 || signo >= NSIG) return;
    __atomic_store_n(&relay_pipe[signo], pipe_fd, __ATOMIC_RELAXED);
    __atomic_store_n(&relay_event[signo], event_fd, __ATOMIC_RELAXED);
}

int CDevKitLinux_relay_pipe(int signo) {
    return signo > 0 && signo < NSIG ? __atomic_load_n(&relay_pipe[signo], __ATOMIC_RELAXED) : -1;
}

int CDevKitLinux_relay_event(int signo) {
    return signo > 0 && signo < NSIG ? __atomic_load_n(&relay_event[signo], __ATOMIC_RELAXED) : -1;
}
