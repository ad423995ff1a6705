// Runs before main() of the test process, while it has a single thread (setenv is
// not safe once threads read the environment): points XDG_CONFIG_HOME,
// XDG_DATA_HOME and XDG_STATE_HOME at a fresh private directory, so that no test,
// and no `devkit` a test starts (children inherit the environment), uses or creates
// the developer's registry key (~/.config/devkit/registry.key), registry or state.
#define _GNU_SOURCE
#include "CDevKitTestEnvironment.h"

#include <errno.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char home[256];
static pid_t owner;

const char *CDevKitTestEnvironment_home(void) { return home[0] ? home : NULL; }

static int removeEntry(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
    (void)st; (void)flag; (void)ftw;
    return remove(path) == 0 ? 0 : 0;  // best effort: keep going
}

// Without its private directory the tests would use the developer's own key and
// registry: stop rather than run like that.
static void fail(const char *what) {
    fprintf(stderr, "devkit tests: cannot make the tests' private XDG directory (%s): %s\n", what, strerror(errno));
    abort();
}

// An inherited directory is used only if it is one this user made for tests:
// a real directory (no link), ours, private.
static int usable(const char *path) {
    struct stat st;
    return path != NULL && path[0] == '/' && strlen(path) < sizeof home && lstat(path, &st) == 0
        && S_ISDIR(st.st_mode) && st.st_uid == geteuid() && (st.st_mode & 077) == 0;
}

__attribute__((constructor)) static void makeTestEnvironment(void) {
    // A test binary started by a test (CrashSafetyTests' child) shares its parent's.
    const char *inherited = getenv("DEVKIT_TEST_HOME");
    if (usable(inherited)) {
        strcpy(home, inherited);
        owner = 0;
    } else {
        const char *tmp = getenv("TMPDIR");
        if (tmp == NULL || tmp[0] != '/') tmp = "/tmp";
        char template[sizeof home];
        if (snprintf(template, sizeof template, "%s/devkit-test-home-XXXXXX", tmp) >= (int)sizeof template) {
            errno = ENAMETOOLONG;
            fail(tmp);
        }
        if (mkdtemp(template) == NULL) fail(template);
        strcpy(home, template);
        owner = getpid();
        if (setenv("DEVKIT_TEST_HOME", home, 1) != 0) fail("DEVKIT_TEST_HOME");
    }
    const char *names[][2] = {
        {"XDG_CONFIG_HOME", "config"}, {"XDG_DATA_HOME", "data"}, {"XDG_STATE_HOME", "state"}};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        char path[320];
        snprintf(path, sizeof path, "%s/%s", home, names[i][1]);
        if (mkdir(path, 0700) != 0 && errno != EEXIST) fail(path);
        if (setenv(names[i][0], path, 1) != 0) fail(names[i][0]);
    }
}

__attribute__((destructor)) static void removeTestEnvironment(void) {
    // Only the process that made it (not a child that shares it, nor a fork).
    if (home[0] && owner != 0 && getpid() == owner) nftw(home, removeEntry, 16, FTW_DEPTH | FTW_PHYS);
}
