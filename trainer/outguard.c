/* outguard.c: see outguard.h. The handler uses only async-signal-safe calls (open, getdents64,
 * unlinkat, close, sigaction, raise) on state prepared by ft_outguard_arm. */
#include "trainer/outguard.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "kernels/log.h"

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

/* Calls fn(fd, name) for each entry of the open directory fd, with getdents64 (async-signal-safe,
 * where readdir is not). struct linux_dirent64: ino (8), off (8), reclen (2), type (1), name. */
static void ft_outguard_each(int fd, void (*fn)(int fd, const char *name)) {
    _Alignas(8) char buf[4096];
    long n;
    while ((n = syscall(SYS_getdents64, fd, buf, sizeof buf)) > 0) {
        for (long off = 0; off < n;) {
            unsigned short reclen;
            memcpy(&reclen, buf + off + 16, sizeof reclen);
            fn(fd, buf + off + 19);
            off += reclen;
        }
    }
}

static void ft_outguard_unlink(int fd, const char *name) {
    if (strcmp(name, ".") && strcmp(name, "..")) unlinkat(fd, name, 0);
}

/* A staging directory (export/stagedir.h ".<name>.tmp-<pid>-d"): its files, then itself (a
 * staging directory holds no subdirectory). */
static void ft_outguard_rmdir_at(int parent, const char *name) {
    int fd = openat(parent, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd >= 0) {
        ft_outguard_each(fd, ft_outguard_unlink);
        close(fd);
    }
    unlinkat(parent, name, AT_REMOVEDIR);
}

static void ft_outguard_remove_tmp(int fd, const char *name) {
    if (ft_outguard_is_tmp(name) && unlinkat(fd, name, 0) != 0 && errno == EISDIR) ft_outguard_rmdir_at(fd, name);
}

static void ft_outguard_on_signal(int sig) {
    int saved = errno;
    for (int d = 0; d < ft_outguard_state.ndirs; d++) {
        int fd = open(ft_outguard_state.dirs[d], O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0) continue;
        ft_outguard_each(fd, ft_outguard_remove_tmp);
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

/* The writer's pid when `name` is a temporary of output file `target` (NULL: of any file):
 * "<target>.tmp.<pid>" (kernels/fileio.c) or ".<target>.tmp-<pid>-<hex>" (safetensors_write.c); else 0. */
static long ft_outguard_tmp_pid(const char *name, const char *target) {
    size_t n = strlen(name);
    const char *p = NULL, *end;
    long pid;
    /* fileio.c: the digits after the last ".tmp." end the name */
    const char *dot = NULL;
    for (const char *q = strstr(name, ".tmp."); q; q = strstr(q + 1, ".tmp.")) dot = q;
    if (dot && dot > name &&
        (!target || ((size_t)(dot - name) == strlen(target) && !strncmp(name, target, (size_t)(dot - name)))))
        p = dot + 5;
    if (p) {
        pid = strtol(p, (char **)&end, 10);
        if (end > p && !*end && pid > 0) return pid;
    }
    /* safetensors_write.c: "." + target + ".tmp-" + pid + "-" + hex */
    if (name[0] != '.' || n < 2) return 0;
    const char *dash = NULL;
    for (const char *q = strstr(name, ".tmp-"); q; q = strstr(q + 1, ".tmp-")) dash = q;
    if (!dash || dash == name + 1) return 0;
    if (target && ((size_t)(dash - name - 1) != strlen(target) || strncmp(name + 1, target, dash - name - 1))) return 0;
    pid = strtol(dash + 5, (char **)&end, 10);
    if (end == dash + 5 || *end != '-' || !end[1] || pid <= 0) return 0;
    for (p = end + 1; *p; p++)
        if (!strchr("0123456789abcdef", *p)) return 0;
    return pid;
}

/* Removes the temporaries of earlier writers of this output that no longer run (SIGKILL, the OOM
 * killer, a power loss: nothing could remove them then), which would otherwise sit beside the
 * output, as large as the model, until the disk fills on the rerun. In `dir` only those of file
 * `target` (NULL: of any file, for the output's own directory). A live writer's is kept and named:
 * two merges into one output overwrite each other's result. */
static void ft_outguard_sweep(const char *dir, const char *target) {
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        long pid = ft_outguard_tmp_pid(e->d_name, target);
        if (pid <= 0 || pid == (long)getpid()) continue;
        char p[2 * FT_OUTGUARD_PATH];
        struct stat sb;
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        if (lstat(p, &sb) != 0 || !(S_ISREG(sb.st_mode) || S_ISDIR(sb.st_mode))) continue;
        if (kill((pid_t)pid, 0) == 0 || errno != ESRCH) {
            ft_warn("%s: a temporary of process %ld, which is running: is another merge or export writing this output?",
                    p, pid);
        } else if (S_ISDIR(sb.st_mode)) { /* a staging directory: the new adapter, or the old one after the exchange */
            ft_outguard_rmdir_at(dirfd(d), e->d_name);
            if (lstat(p, &sb) != 0)
                ft_warn("removed %s/, a staging directory left by process %ld that no longer runs (killed mid-export)", p, pid);
        } else if (unlink(p) == 0) {
            ft_warn("removed %s (%.1f MiB), left by process %ld that no longer runs (killed mid-write)", p,
                    (double)sb.st_size / (1 << 20), pid);
        }
    }
    closedir(d);
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
    if (ft_outguard_state.ndirs == 2) { /* the output's own directory, then its parent */
        char base[FT_OUTGUARD_PATH];
        size_t bn = n - (slash ? (size_t)(slash - out) + 1 : 0);
        if (bn > 0 && bn < sizeof base) {
            memcpy(base, out + (n - bn), bn);
            base[bn] = 0;
            ft_outguard_sweep(ft_outguard_state.dirs[0], NULL);
            ft_outguard_sweep(ft_outguard_state.dirs[1], base);
        }
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
