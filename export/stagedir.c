/* stagedir.c: see stagedir.h. */
#include "export/stagedir.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h> /* RENAME_EXCHANGE */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "kernels/fileio.h"
#include "kernels/log.h"

#ifndef RENAME_NOREPLACE
#define RENAME_NOREPLACE (1 << 0)
#endif
#ifndef RENAME_EXCHANGE
#define RENAME_EXCHANGE (1 << 1)
#endif

/* Removes the regular files of `path`, then the directory (a staging directory holds no
 * subdirectory: ft_stagedir_begin stages only where the output has none). */
static void sd_remove(const char *path) {
    DIR *d = opendir(path);
    if (d) {
        struct dirent *e;
        while ((e = readdir(d)) != NULL)
            if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) unlinkat(dirfd(d), e->d_name, 0);
        closedir(d);
    }
    rmdir(path);
}

static void sd_fsync_dir(const char *path) {
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return; /* some file systems refuse; the renames are as durable as they allow */
    fsync(fd);
    close(fd);
}

/* 1 when directory `path` holds only regular files (what a hard link can carry over). */
static int sd_only_files(const char *path) {
    DIR *d = opendir(path);
    if (!d) return 0;
    int ok = 1;
    struct dirent *e;
    while (ok && (e = readdir(d)) != NULL) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        struct stat sb;
        ok = fstatat(dirfd(d), e->d_name, &sb, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(sb.st_mode);
    }
    closedir(d);
    return ok;
}

/* Test hooks (docs/design.md): FT_FAULT_KILL_AT_EXCHANGE=before|after raises SIGKILL just before
 * or just after the exchange, where a crash is the hardest on the output; FT_FAULT_TERM_AT_EXCHANGE
 * the same with SIGTERM, which trainer/outguard.c answers; FT_FAULT_STALL_AT_EXCHANGE=SECONDS waits
 * that long just before it (and before a new output's rename), for another process to write into
 * the output meanwhile (tests/cli/export.sh). */
static void sd_fault(const char *when) {
    const char *v = getenv("FT_FAULT_STALL_AT_EXCHANGE");
    if (v && !strcmp(when, "before")) sleep((unsigned)atoi(v));
    v = getenv("FT_FAULT_KILL_AT_EXCHANGE");
    if (v && !strcmp(v, when)) raise(SIGKILL);
    v = getenv("FT_FAULT_TERM_AT_EXCHANGE");
    if (v && !strcmp(v, when)) raise(SIGTERM);
}

ft_status ft_stagedir_begin(ft_stagedir *sd, const char *dir) {
    memset(sd, 0, sizeof *sd);
    size_t n = strlen(dir);
    while (n > 1 && dir[n - 1] == '/') n--;
    if (n == 0 || n >= sizeof sd->dir) return FT_ERR(FT_E_ARG, "%s: not a usable output directory", dir);
    memcpy(sd->dir, dir, n);
    const char *slash = strrchr(sd->dir, '/');
    char parent[4096];
    if (!slash) snprintf(parent, sizeof parent, ".");
    else if (slash == sd->dir) snprintf(parent, sizeof parent, "/");
    else snprintf(parent, sizeof parent, "%.*s", (int)(slash - sd->dir), sd->dir);
    const char *base = slash ? slash + 1 : sd->dir;
    struct stat sb, pb;
    if (!*base || !strcmp(base, ".") || !strcmp(base, "..")) { /* "out/.": no name to stage beside */
        if (stat(sd->dir, &sb) != 0 || !S_ISDIR(sb.st_mode)) return FT_ERR(FT_E_IO, "%s: not a directory", sd->dir);
        sd->mode = FT_STAGEDIR_INPLACE;
        return FT_OK;
    }

    if (lstat(sd->dir, &sb) != 0) {
        if (errno != ENOENT) return FT_ERR(FT_E_IO, "%s: %s", sd->dir, strerror(errno));
        sd->mode = FT_STAGEDIR_NEW;
    } else if (S_ISDIR(sb.st_mode)) {
        /* a mount point cannot be renamed over; a subdirectory cannot be hard-linked; a directory
         * this process may not write stays refused as before (the exchange writes only the parent,
         * so it would replace a write-protected adapter): the write in place fails, naming it */
        int same_fs = stat(parent, &pb) == 0 && pb.st_dev == sb.st_dev;
        int writable = faccessat(AT_FDCWD, sd->dir, W_OK | X_OK, AT_EACCESS) == 0;
        sd->mode = same_fs && writable && sd_only_files(sd->dir) ? FT_STAGEDIR_EXCHANGE : FT_STAGEDIR_INPLACE;
        sd->mode_bits = (unsigned)(sb.st_mode & 07777);
        sd->uid = (unsigned)sb.st_uid, sd->gid = (unsigned)sb.st_gid;
    } else if (S_ISLNK(sb.st_mode) && stat(sd->dir, &sb) == 0 && S_ISDIR(sb.st_mode)) {
        sd->mode = FT_STAGEDIR_INPLACE; /* an exchange would replace the link, not its directory */
    } else {
        return FT_ERR(FT_E_IO, "%s: not a directory", sd->dir);
    }
    if (sd->mode == FT_STAGEDIR_INPLACE) return FT_OK;

    snprintf(sd->stage, sizeof sd->stage, "%s/.%s.tmp-%ld-d", parent, base, (long)getpid());
    if (lstat(sd->stage, &pb) == 0) sd_remove(sd->stage);
    if (mkdir(sd->stage, 0755) != 0) {
        if (sd->mode == FT_STAGEDIR_NEW)
            return FT_ERR(FT_E_IO, "%s: cannot create directory: %s", sd->dir, strerror(errno));
        sd->mode = FT_STAGEDIR_INPLACE; /* a parent we cannot write: the output's own directory we can */
        return FT_OK;
    }
    sd->staged = 1;
    return FT_OK;
}

const char *ft_stagedir_path(const ft_stagedir *sd) {
    return sd->mode == FT_STAGEDIR_INPLACE ? sd->dir : sd->stage;
}

/* The fallback of an exchange that cannot be made: each staged file renamed into the output,
 * `last` last. Files hard-linked from the output rename onto themselves, which does nothing. */
static ft_status sd_move_files(ft_stagedir *sd, const char *last) {
    ft_status st = FT_OK;
    int to = open(sd->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    DIR *d = opendir(sd->stage);
    if (to < 0 || !d) {
        st = FT_ERR(FT_E_IO, "%s: %s", to < 0 ? sd->dir : sd->stage, strerror(errno));
        goto done;
    }
    for (int pass = 0; pass < 2 && st == FT_OK; pass++) {
        rewinddir(d);
        struct dirent *e;
        while (st == FT_OK && (e = readdir(d)) != NULL) {
            if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
            if ((last && !strcmp(e->d_name, last)) != (pass == 1)) continue;
            if (renameat(dirfd(d), e->d_name, to, e->d_name) != 0)
                st = FT_ERR(FT_E_IO, "%s/%s: cannot rename into place: %s", sd->dir, e->d_name, strerror(errno));
        }
    }
    if (st == FT_OK) fsync(to);
done:
    if (d) closedir(d);
    if (to >= 0) close(to);
    return st;
}

/* Hard-links into the staging directory every file of the output that the export did not write
 * (a README, a Modelfile beside the adapter), so that the exchange keeps them. 0: some could not be. */
static int sd_link_others(ft_stagedir *sd) {
    int ok = 0, from = open(sd->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    int to = open(sd->stage, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    DIR *d = from >= 0 ? fdopendir(from) : NULL;
    if (d && to >= 0) {
        ok = 1;
        struct dirent *e;
        struct stat sb;
        while (ok && (e = readdir(d)) != NULL) {
            if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
            if (fstatat(to, e->d_name, &sb, AT_SYMLINK_NOFOLLOW) == 0) continue; /* written anew */
            ok = linkat(from, e->d_name, to, e->d_name, 0) == 0;
        }
    }
    if (d) closedir(d); /* closes `from` */
    else if (from >= 0) close(from);
    if (to >= 0) close(to);
    return ok;
}

/* Gives the staging directory the old output's owner and group (a root export into a user's
 * adapter directory must not leave it root's: its owner could no longer change it). 0: it cannot
 * be given them, and the files are renamed into the old directory instead. */
static int sd_own(ft_stagedir *sd) {
    struct stat sb;
    if (stat(sd->stage, &sb) != 0) return 0;
    if ((unsigned)sb.st_uid == sd->uid && (unsigned)sb.st_gid == sd->gid) return 1;
    return chown(sd->stage, (uid_t)sd->uid, (gid_t)sd->gid) == 0;
}

/* After the exchange the staging name holds the old version. A file another process created in
 * the output after sd_link_others looked (a log, a README written meanwhile) is only there: it is
 * moved into the new version rather than removed with the old one. */
static void sd_keep_late_files(ft_stagedir *sd) {
    int from = open(sd->stage, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    int to = open(sd->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    DIR *d = from >= 0 ? fdopendir(from) : NULL;
    if (d && to >= 0) {
        struct dirent *e;
        struct stat sb;
        while ((e = readdir(d)) != NULL) {
            if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
            if (fstatat(to, e->d_name, &sb, AT_SYMLINK_NOFOLLOW) == 0) continue; /* linked over, or written anew */
            if (syscall(SYS_renameat2, from, e->d_name, to, e->d_name, RENAME_NOREPLACE) != 0)
                ft_warn("%s/%s: written during the export, it could not be moved into the new version: %s", sd->dir,
                        e->d_name, strerror(errno));
        }
    }
    if (d) closedir(d); /* closes `from` */
    else if (from >= 0) close(from);
    if (to >= 0) close(to);
}

ft_status ft_stagedir_commit(ft_stagedir *sd, const char *last) {
    if (sd->mode == FT_STAGEDIR_INPLACE) return FT_OK;
    ft_status st = FT_OK;
    if (sd->mode == FT_STAGEDIR_NEW) {
        sd_fsync_dir(sd->stage);
        sd_fault("before");
        if (rename(sd->stage, sd->dir) == 0) {
            sd->staged = 0;
            return ft_fsync_dir_of(sd->dir);
        }
        struct stat sb;
        if (!((errno == ENOTEMPTY || errno == EEXIST) && lstat(sd->dir, &sb) == 0 && S_ISDIR(sb.st_mode))) {
            st = FT_ERR(FT_E_IO, "%s: cannot rename %s into place: %s", sd->dir, sd->stage, strerror(errno));
            goto done;
        }
        /* another writer made the output meanwhile (two exports at once): replaced as an existing one */
        sd->mode_bits = (unsigned)(sb.st_mode & 07777);
        sd->uid = (unsigned)sb.st_uid, sd->gid = (unsigned)sb.st_gid;
        sd->mode = FT_STAGEDIR_EXCHANGE;
    }
    int linked = sd_link_others(sd), owned = linked && sd_own(sd);
    if (owned) {
        chmod(sd->stage, sd->mode_bits);
        sd_fsync_dir(sd->stage);
        sd_fault("before");
        if (syscall(SYS_renameat2, AT_FDCWD, sd->stage, AT_FDCWD, sd->dir, RENAME_EXCHANGE) == 0) {
            sd_fault("after");
            ft_fsync_dir_of(sd->dir); /* both names live in the parent */
            sd_keep_late_files(sd);
            goto done; /* the staging name now holds the old version: removed below */
        }
        /* EINVAL or ENOSYS: a file system or kernel without the exchange (NFS, old kernels) */
        ft_debug("%s: no RENAME_EXCHANGE here (%s): files renamed one by one", sd->dir, strerror(errno));
    } else if (linked) {
        ft_debug("%s: cannot give %s its owner: files renamed one by one", sd->dir, sd->stage);
    } else {
        ft_debug("%s: cannot hard-link its other files into %s: files renamed one by one", sd->dir, sd->stage);
    }
    st = sd_move_files(sd, last);
done:
    sd_remove(sd->stage);
    sd->staged = 0;
    return st;
}

ft_status ft_stagedir_fail(ft_stagedir *sd, ft_status st) {
    if (sd->mode == FT_STAGEDIR_INPLACE) return st;
    if (sd->staged) sd_remove(sd->stage);
    sd->staged = 0;
    /* the message names a file inside the staging directory: the user knows the output's name */
    const char *msg = ft_error_msg();
    size_t sl = strlen(sd->stage), dl = strlen(sd->dir);
    char out[8192];
    size_t o = 0;
    while (*msg && o + dl + 1 < sizeof out) {
        if (!strncmp(msg, sd->stage, sl)) {
            memcpy(out + o, sd->dir, dl);
            o += dl, msg += sl;
        } else {
            out[o++] = *msg++;
        }
    }
    out[o] = 0;
    return FT_ERR(st, "%s", out);
}
