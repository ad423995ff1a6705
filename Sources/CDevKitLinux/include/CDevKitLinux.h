// Prototypes for the Linux calls Swift's Glibc module leaves out: GNU or XSI
// extensions that need _GNU_SOURCE (ppoll, pipe2, sync_file_range, unlockpt,
// ptsname_r), and <sys/eventfd.h>, which the module map does not include. Each is
// a real function in CDevKitLinux.c that calls libc, so the compiler checks every
// argument against libc's own declaration (in the style of swift-nio's CNIOLinux);
// this replaces symbols looked up by name at run time and cast to a hand-written
// Swift function type. Also the signal relay's handler, in C so that it is
// async-signal-safe by construction (no Swift runtime, no unsafe Swift globals).
#ifndef C_DEVKIT_LINUX_H
#define C_DEVKIT_LINUX_H

#include <poll.h>
#include <spawn.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

/// eventfd(2).
int CDevKitLinux_eventfd(unsigned int initval, int flags);
/// ppoll(2): poll with a nanosecond timeout (NULL: no limit).
int CDevKitLinux_ppoll(struct pollfd *fds, nfds_t nfds, const struct timespec *timeout, const sigset_t *sigmask);
/// pipe2(2): both ends made with `flags` (O_CLOEXEC, O_NONBLOCK) atomically.
int CDevKitLinux_pipe2(int fds[2], int flags);
/// posix_spawn_file_actions_addclosefrom_np(3) (glibc 2.34): the child closes every
/// descriptor from `from` on, whatever other threads opened without O_CLOEXEC.
int CDevKitLinux_posix_spawn_file_actions_addclosefrom_np(posix_spawn_file_actions_t *actions, int from);
/// prctl(2) PR_SET_NAME: the calling thread's name; for the main thread, the
/// process's (/proc/self/comm, what ps shows). prctl is variadic, which Swift cannot call.
int CDevKitLinux_set_thread_name(const char *name);
/// sync_file_range(2).
int CDevKitLinux_sync_file_range(int fd, int64_t offset, int64_t nbytes, unsigned int flags);
/// unlockpt(3).
int CDevKitLinux_unlockpt(int fd);
/// ptsname_r(3): 0 or an errno value.
int CDevKitLinux_ptsname_r(int fd, char *buf, size_t buflen);

extern const int CDevKitLinux_EFD_CLOEXEC;
extern const int CDevKitLinux_EFD_NONBLOCK;
extern const unsigned int CDevKitLinux_SYNC_FILE_RANGE_WRITE;
/// O_TMPFILE and AT_EMPTY_PATH (<fcntl.h>, _GNU_SOURCE): an unnamed file that is
/// linked into place by its descriptor (DevKitSystem's FileGroupWriter).
extern const int CDevKitLinux_O_TMPFILE;
extern const int CDevKitLinux_AT_EMPTY_PATH;
/// TIOCGEXCL (<asm-generic/ioctls.h>), not exported by the Glibc module.
extern const unsigned long CDevKitLinux_TIOCGEXCL;

/// Flushes stdio's stdout and says whether anything written to it was lost: 0 when
/// not, else the errno (EIO when the stream's error flag was set by an earlier
/// write). In C because Swift 6 refuses to name the global `stdout`.
int CDevKitLinux_flush_stdout(void);

/// The signal relay's handler (DevKitSystem's SignalRelay): for a signal configured
/// with CDevKitLinux_relay_set, writes the signal number as one byte to its pipe and
/// adds 1 to its eventfd (either may be -1), keeping errno. Nothing else: write(2)
/// is async-signal-safe, and the table is plain ints read with a relaxed atomic load.
void CDevKitLinux_relay_handler(int signo);
/// Where the handler writes for `signo` (before sigaction installs it).
void CDevKitLinux_relay_set(int signo, int pipe_fd, int event_fd);
/// The pipe and eventfd now set for `signo`, to be put back when a relay nests.
int CDevKitLinux_relay_pipe(int signo);
int CDevKitLinux_relay_event(int signo);

#endif
