/*
 * pydocklite's container init (`run --init`), mounted read-only at /dev/init.
 *
 *   /dev/init [--] COMMAND [ARG...]
 *
 * Runs as pid 1 of the container: forks COMMAND (in its own process group, given the
 * terminal when there is one), forwards every signal it receives to it, reaps every
 * zombie that is reparented to it, and exits with COMMAND's status (128+N when COMMAND
 * was killed by signal N). 127/126 when COMMAND can't be found / executed.
 *
 * A pid namespace's init only gets the signals it handles; here all of them stay blocked
 * and are taken with sigtimedwait(), so the kernel queues them instead of dropping them.
 * Built by build.sh with `gcc -static -Os -s` (no dependency on the image's libc).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static void say(const char *what, const char *arg, int err) {
    fprintf(stderr, "/dev/init: %s%s%s%s%s\n", what, arg ? " " : "", arg ? arg : "",
            err ? ": " : "", err ? strerror(err) : "");
}

/* Signals that describe this process's own fault, not a request to pass on. */
static int is_synchronous(int sig) {
    return sig == SIGFPE || sig == SIGILL || sig == SIGSEGV || sig == SIGBUS ||
           sig == SIGABRT || sig == SIGTRAP || sig == SIGSYS;
}

static void run_child(char **argv, const sigset_t *old_mask) {
    /* Own process group, so that a terminal's job control and our forwarding reach the
       command and its children, not us. */
    if (setpgid(0, 0) == 0 && isatty(STDIN_FILENO)) {
        signal(SIGTTOU, SIG_IGN);       /* tcsetpgrp from a background group */
        if (tcsetpgrp(STDIN_FILENO, getpgrp()) < 0 && errno != ENOTTY && errno != ENXIO)
            say("warning: cannot give the terminal to", argv[0], errno);
        signal(SIGTTOU, SIG_DFL);
    }
    sigprocmask(SIG_SETMASK, old_mask, NULL);
    execvp(argv[0], argv);
    int err = errno;
    say("cannot execute", argv[0], err);
    _exit(err == ENOENT ? 127 : 126);
}

static int status_code(int status) {
    if (WIFEXITED(status))
        return WEXITSTATUS(status);
    if (WIFSIGNALED(status))
        return 128 + WTERMSIG(status);
    return 255;
}

int main(int argc, char **argv) {
    int first = 1;
    if (first < argc && strcmp(argv[first], "--") == 0)
        first++;
    if (first >= argc) {
        fprintf(stderr, "usage: %s [--] COMMAND [ARG...]\n", argv[0]);
        return 2;
    }

    sigset_t all, old;
    sigfillset(&all);
    /* keep the fault signals deliverable: blocking them would hide a crash of init */
    for (int s = 1; s < NSIG; s++)
        if (is_synchronous(s))
            sigdelset(&all, s);
    sigprocmask(SIG_SETMASK, &all, &old);

    pid_t child = fork();
    if (child < 0) {
        say("fork failed for", argv[first], errno);
        return 1;
    }
    if (child == 0)
        run_child(argv + first, &old);

    for (;;) {
        struct timespec tick = {1, 0};      /* also reap if a SIGCHLD was coalesced */
        siginfo_t info;
        int sig = sigtimedwait(&all, &info, &tick);
        if (sig > 0 && sig != SIGCHLD) {
            if (kill(child, sig) < 0 && errno != ESRCH)
                say("cannot forward a signal to", argv[first], errno);
            continue;
        }
        if (sig < 0 && errno != EAGAIN && errno != EINTR) {
            say("sigtimedwait failed", NULL, errno);
            return 1;
        }
        for (;;) {
            int status;
            pid_t got = waitpid(-1, &status, WNOHANG);
            if (got <= 0)
                break;
            if (got == child)
                return status_code(status);   /* the rest die with the pid namespace */
        }
    }
}
