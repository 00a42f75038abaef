/* outguard.c: see outguard.h. The handler uses only async-signal-safe calls (open, getdents64,
 * unlinkat, close, sigaction, raise) on state prepared by ft_outguard_arm. */
#include "trainer/outguard.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#define FT_OUTGUARD_PATH 4096

/* What the handler removes. Process state by necessity: a signal handler can reach nothing else.
 * Written by ft_outguard_arm before the handler is installed, read only by the handler. */
static struct {
    char dirs[2][FT_OUTGUARD_PATH];
    int ndirs;
    char dot[40];  /* ".tmp.<pid>": the suffix of fileio.c's temporaries */
    char dash[40]; /* ".tmp-<pid>-": inside safetensors_write.c's */
} ft_outguard_state;

static int ft_outguard_is_tmp(const char *name) {
    size_t n = strlen(name), k = strlen(ft_outguard_state.dot);
    if (n > k && memcmp(name + n - k, ft_outguard_state.dot, k) == 0) return 1;
    return name[0] == '.' && strstr(name, ft_outguard_state.dash) != NULL;
}

static void ft_outguard_on_signal(int sig) {
    int saved = errno;
    for (int d = 0; d < ft_outguard_state.ndirs; d++) {
        int fd = open(ft_outguard_state.dirs[d], O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0) continue;
        /* struct linux_dirent64: ino (8), off (8), reclen (2), type (1), name */
        _Alignas(8) char buf[8192];
        long n;
        while ((n = syscall(SYS_getdents64, fd, buf, sizeof buf)) > 0) {
            for (long off = 0; off < n;) {
                unsigned short reclen;
                memcpy(&reclen, buf + off + 16, sizeof reclen);
                const char *name = buf + off + 19;
                if (ft_outguard_is_tmp(name)) unlinkat(fd, name, 0);
                off += reclen;
            }
        }
        close(fd);
    }
    errno = saved;
    struct sigaction dfl;
    memset(&dfl, 0, sizeof dfl);
    dfl.sa_handler = SIG_DFL;
    sigemptyset(&dfl.sa_mask);
    sigaction(sig, &dfl, NULL);
    raise(sig); /* delivered when the handler returns: the process ends by the signal, as unguarded */
}

void ft_outguard_arm(ft_outguard *g, const char *out) {
    memset(&ft_outguard_state, 0, sizeof ft_outguard_state);
    long pid = (long)getpid();
    snprintf(ft_outguard_state.dot, sizeof ft_outguard_state.dot, ".tmp.%ld", pid);
    snprintf(ft_outguard_state.dash, sizeof ft_outguard_state.dash, ".tmp-%ld-", pid);
    size_t n = strlen(out);
    while (n > 1 && out[n - 1] == '/') n--;
    const char *slash = memrchr(out, '/', n);
    if (n < FT_OUTGUARD_PATH) { /* the output itself, when it is (or becomes) a directory */
        memcpy(ft_outguard_state.dirs[0], out, n);
        ft_outguard_state.ndirs = 1;
    }
    size_t dn = slash ? (size_t)(slash - out) : 0;
    if (dn < FT_OUTGUARD_PATH) { /* its parent: "" -> ".", "/x" -> "/" */
        char *p = ft_outguard_state.dirs[ft_outguard_state.ndirs++];
        if (!slash) memcpy(p, ".", 2);
        else if (dn == 0) memcpy(p, "/", 2);
        else memcpy(p, out, dn);
    }
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = ft_outguard_on_signal;
    sigfillset(&sa.sa_mask); /* one clean-up at a time */
    sigaction(SIGINT, &sa, &g->intr);
    if (g->intr.sa_handler == SIG_IGN) sigaction(SIGINT, &g->intr, NULL);
    sigaction(SIGTERM, &sa, &g->term);
    if (g->term.sa_handler == SIG_IGN) sigaction(SIGTERM, &g->term, NULL);
}

void ft_outguard_disarm(const ft_outguard *g) {
    sigaction(SIGINT, &g->intr, NULL);
    sigaction(SIGTERM, &g->term, NULL);
}
