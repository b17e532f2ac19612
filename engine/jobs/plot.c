/* plot.c - see plot.h. */
#include "plot.h"

#include <errno.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

/* Whether gnuplot is an executable on PATH (what posix_spawnp will find). */
static bool have_gnuplot(void) {
    const char *path = getenv("PATH");
    char dir[4096], file[4200];
    for (const char *p = path ? path : "/usr/bin:/bin"; *p;) {
        const char *end = strchr(p, ':');
        const size_t n = end ? (size_t)(end - p) : strlen(p);
        snprintf(dir, sizeof dir, "%.*s", (int)(n < sizeof dir ? n : sizeof dir - 1), p);
        snprintf(file, sizeof file, "%s/gnuplot", n ? dir : ".");
        if (access(file, X_OK) == 0) return true;
        p += n + (end ? 1 : 0);
    }
    return false;
}

const char *ds4_plot_quote(const char *s, char *buf, size_t cap) {
    size_t o = 0;
    if (cap < 3) return NULL;
    buf[o++] = '\'';
    for (; *s; s++) {
        if (*s == '\n' || *s == '\r' || o + 4 > cap) return NULL;
        if (*s == '\'') buf[o++] = '\'';
        buf[o++] = *s;
    }
    buf[o++] = '\'';
    buf[o] = 0;
    return buf;
}

int ds4_plot_open(ds4_plot *p, const char *png_path) {
    memset(p, 0, sizeof *p);
    p->png.fd = -1;
    if (!have_gnuplot()) return ds4_fail("--plot needs gnuplot (make deps installs it)");
    if (strchr(png_path, '\n') || strchr(png_path, '\r'))
        return ds4_fail("%s: gnuplot cannot write to a path with a line break", png_path);
    return ds4_outfile_open(&p->png, png_path);
}

void ds4_plot_abort(ds4_plot *p) {
    if (p->png.path) ds4_outfile_abort(&p->png);
}

static int feed(int fd, const char *s, size_t n) {
    while (n) {
        const ssize_t w = write(fd, s, n);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return -1;
        s += w;
        n -= (size_t)w;
    }
    return 0;
}

int ds4_plot_draw(ds4_plot *p, const char *commands) {
    char out[4200];
    if (!ds4_plot_quote(p->png.tmp_path, out, sizeof out)) {
        ds4_plot_abort(p);
        return ds4_fail("%s: path too long for gnuplot", p->png.path);
    }
    ds4_buf script = {0};
    static const char head[] = "set datafile separator ','\nset terminal pngcairo size 900,540\nset output ";
    int rc = ds4_buf_append(&script, head, sizeof head - 1);
    if (rc == 0) rc = ds4_buf_append(&script, out, strlen(out));
    if (rc == 0) rc = ds4_buf_append(&script, "\n", 1);
    if (rc == 0) rc = ds4_buf_append(&script, commands, strlen(commands));
    if (rc == 0) rc = ds4_buf_append(&script, "\nset output\n", 12);
    int pipefd[2] = {-1, -1};
    pid_t pid = -1;
    if (rc == 0 && pipe(pipefd) < 0) rc = ds4_fail("gnuplot: pipe: %s", strerror(errno));
    if (rc == 0) {
        posix_spawn_file_actions_t fa;
        posix_spawn_file_actions_init(&fa);
        posix_spawn_file_actions_adddup2(&fa, pipefd[0], 0);
        posix_spawn_file_actions_addclose(&fa, pipefd[1]);
        char *argv[] = {"gnuplot", NULL};
        const int err = posix_spawnp(&pid, "gnuplot", &fa, NULL, argv, environ);
        posix_spawn_file_actions_destroy(&fa);
        if (err) rc = ds4_fail("cannot run gnuplot: %s", strerror(err));
    }
    if (pipefd[0] >= 0) close(pipefd[0]);
    /* gnuplot may exit before reading everything: a write error, not a signal */
    void (*old_pipe)(int) = signal(SIGPIPE, SIG_IGN);
    if (rc == 0 && feed(pipefd[1], (const char *)script.data, script.len) < 0)
        rc = ds4_fail("gnuplot stopped reading its script");
    signal(SIGPIPE, old_pipe);
    if (pipefd[1] >= 0) close(pipefd[1]);
    int status = 0;
    if (pid > 0) {
        while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {}
        if (rc == 0 && !(WIFEXITED(status) && WEXITSTATUS(status) == 0)) rc = ds4_fail("gnuplot failed to draw %s", p->png.path);
    }
    ds4_buf_free(&script);
    if (rc < 0) {
        ds4_plot_abort(p);
        return -1;
    }
    return ds4_outfile_commit(&p->png);
}
