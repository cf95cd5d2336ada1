// Spawning a rank's death watchdog: a detached `/bin/bash` that waits on a pipe from the rank. Swift cannot set
// posix_spawn's SETSID flag and close-from file action portably, so this lives in C.
#pragma once
#include <sys/types.h>

/// Starts a watchdog (bash) in its own session (so the process manager's teardown of the job does not reach it) that
/// reads one line from a pipe and then writes "<unix time with ns> <line or 'died'>" to `marker_path`.
/// Returns the pipe's write end (close-on-exec) or -1 with errno set. Write "finished\n" (or any one-line
/// outcome) before exiting normally; if the process dies first, the pipe closes and the marker says "died".
int shim_spawn_watchdog(const char *marker_path, pid_t *pid_out);
