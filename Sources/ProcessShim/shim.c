#define _GNU_SOURCE
#include "processshim.h"
#include <errno.h>
#include <fcntl.h>
#include <spawn.h>
#include <unistd.h>

extern char **environ;

int shim_spawn_watchdog(const char *marker_path, pid_t *pid_out) {
    int fds[2];
    if (pipe2(fds, O_CLOEXEC) != 0) return -1;
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t attr;
    posix_spawn_file_actions_init(&fa);
    posix_spawnattr_init(&attr);
    posix_spawn_file_actions_adddup2(&fa, fds[0], 0);
    // Not the rank's stdout/stderr: the process manager waits for those pipes to close.
    posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
    posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
    posix_spawn_file_actions_addclosefrom_np(&fa, 3);   // nothing else of the rank's (PMI socket, pipes)
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSID);
    // bash's EPOCHREALTIME takes the time without a fork, right when the pipe closes, so the order of the
    // markers is the order in which the ranks ended (the killed one first, the launcher's victims after).
    char *argv[] = {
        "/bin/bash", "-c",
        "IFS= read -r s; t=$EPOCHREALTIME; printf '%s %s\\n' \"$t\" \"${s:-died}\" > \"$1.tmp\" && mv \"$1.tmp\" \"$1\"",
        "llmprune-watchdog", (char *)marker_path, NULL};
    int rc = posix_spawn(pid_out, "/bin/bash", &fa, &attr, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&attr);
    close(fds[0]);
    if (rc != 0) {
        close(fds[1]);
        errno = rc;
        return -1;
    }
    return fds[1];
}
