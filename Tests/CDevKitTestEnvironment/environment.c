// Runs before main() of the test process, while it has a single thread (setenv is
// not safe once threads read the environment): points XDG_CONFIG_HOME,
// XDG_DATA_HOME and XDG_STATE_HOME at a fresh private directory, so that no test,
// and no `devkit` a test starts (children inherit the environment), uses or creates
// the developer's registry key (~/.config/devkit/registry.key), registry or state.
#define _GNU_SOURCE
#include "CDevKitTestEnvironment.h"

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

__attribute__((constructor)) static void makeTestEnvironment(void) {
    // A test binary started by a test (CrashSafetyTests' child) shares its parent's.
    const char *inherited = getenv("DEVKIT_TEST_HOME");
    if (inherited != NULL && inherited[0] == '/' && strlen(inherited) < sizeof home) {
        strcpy(home, inherited);
        owner = 0;
    } else {
        const char *tmp = getenv("TMPDIR");
        if (tmp == NULL || tmp[0] != '/') tmp = "/tmp";
        char template[sizeof home];
        if (snprintf(template, sizeof template, "%s/devkit-test-home-XXXXXX", tmp) >= (int)sizeof template) return;
        if (mkdtemp(template) == NULL) return;
        strcpy(home, template);
        owner = getpid();
        setenv("DEVKIT_TEST_HOME", home, 1);
    }
    const char *names[][2] = {
        {"XDG_CONFIG_HOME", "config"}, {"XDG_DATA_HOME", "data"}, {"XDG_STATE_HOME", "state"}};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        char path[320];
        snprintf(path, sizeof path, "%s/%s", home, names[i][1]);
        mkdir(path, 0700);
        setenv(names[i][0], path, 1);
    }
}

__attribute__((destructor)) static void removeTestEnvironment(void) {
    // Only the process that made it (not a child that shares it, nor a fork).
    if (home[0] && owner != 0 && getpid() == owner) nftw(home, removeEntry, 16, FTW_DEPTH | FTW_PHYS);
}
