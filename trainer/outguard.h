/* outguard.h: while `ftune merge` or `ftune export` writes its outputs, SIGINT and SIGTERM first
 * remove this process's temporary files next to the output (kernels/fileio.h "<name>.tmp.<pid>",
 * export/safetensors_write.c ".<name>.tmp-<pid>-<n>", export/stagedir.c's staging directories
 * ".<name>.tmp-<pid>-d" with their files), then end the process by that signal as
 * before: an interrupted merge leaves neither a half-written file under the final name (the rename
 * never happened) nor a temporary the size of the model. SIGKILL cannot be caught: its temporary
 * stays (named after the dead process's id) until the next merge or export into the same output:
 * arming removes, with a warning naming each, the temporaries of that output (in its directory,
 * or inside it when it is a directory) whose process no longer runs, and warns about those of a
 * process that does. A signal ignored on entry (a background job of a script) stays ignored. */
#ifndef FT_OUTGUARD_H
#define FT_OUTGUARD_H

#include <signal.h>

typedef struct ft_outguard {
    struct sigaction intr, term; /* the dispositions to restore */
} ft_outguard;

/* Arms the clean-up for output path `out` (a file: its directory is scanned; a directory: it and
 * its parent). Paths too long to keep are not guarded. */
void ft_outguard_arm(ft_outguard *g, const char *out);
/* Restores the signal dispositions of before ft_outguard_arm. */
void ft_outguard_disarm(const ft_outguard *g);

#endif
