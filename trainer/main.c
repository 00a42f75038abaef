/* main.c: ftune's entry point. Dispatches subcommands, turns a status into one line on stderr
 * and an exit status (docs/design.md, "Exit status"):
 *   0  success
 *   1  failure: a file, the disk, the device
 *   2  the command line or the recipe is wrong
 *   3  the run's guard stopped training (the loss diverged, too many skipped steps)
 *   killed by SIGINT/SIGTERM (the shell's 130/143): a run that saved its state after the signal
 *      ends by that same signal, so that a script stops on Ctrl-C and a scheduler sees a
 *      preempted job, not a finished one. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kernels/log.h"
#include "kernels/status.h"
#include "trainer/commands.h"

typedef struct {
    const char *name;
    ft_status (*run)(int argc, char **argv);
    const char *summary;
} ft_command;

static const ft_command ft_commands[] = {
    {"eval", ft_cmd_eval, "loss and perplexity of a model on token-id sequences"},
    {"generate", ft_cmd_generate, "greedy or top-p sampling from a model"},
    {"plan", ft_cmd_plan, "memory and time a recipe's run needs on a device (reads config.json or a GGUF's header only)"},
    {"data", ft_cmd_data, "tokenize a recipe's data into the shards a run reuses, with a summary"},
    {"train", ft_cmd_train, "train LoRA/QLoRA adapters"},
    {"export", ft_cmd_export, "convert an adapter to a llama.cpp LoRA GGUF (+ Ollama Modelfile) or PEFT"},
    {"merge", ft_cmd_merge, "write a base model, or base + adapter merged, as a llama.cpp GGUF or HF checkpoint"},
    {"status", ft_cmd_status, "where a training run stands, from its directory (while it runs, or after)"},
    {"inspect", ft_cmd_inspect, "print the metadata and tensor table of a GGUF file"},
    {"bench", ft_cmd_bench, "training throughput, memory and time per phase on a random model of a real shape"},
};

static void ft_usage(FILE *f) {
    fprintf(f, "usage: ftune <command> [options]\n\n"
               "ftune fine-tunes Llama 3.x, Qwen2.5/Qwen3 and Mistral models with LoRA and QLoRA.\n\n"
               "commands:\n");
    for (size_t i = 0; i < sizeof ft_commands / sizeof *ft_commands; i++)
        fprintf(f, "  %-10s %s\n", ft_commands[i].name, ft_commands[i].summary);
    fprintf(f, "  %-10s %s\n", "tokenize", "encode or decode text with a tokenizer.json or a GGUF's vocabulary");
    fprintf(f, "\nRun 'ftune <command> --help' for the options of a command. 'ftune --version' prints the version.\n");
}

/* A file ftune maps (a safetensors shard, a GGUF model, a JSON-array dataset) that shrinks while it
 * is read faults with SIGBUS (BUS_ADRERR) at the first page past its new end: one line and exit 1,
 * as for any file failure, instead of a core dump. What a run has written stays whole (checkpoints
 * and exports go to temporary names first). Any other SIGBUS ends the process as it would have. */
static void ft_on_sigbus(int sig, siginfo_t *si, void *ctx) {
    (void)ctx;
    if (si && si->si_code == BUS_ADRERR) {
        static const char msg[] = "ftune: error: a file ftune had mapped (a safetensors shard, a GGUF model or a JSON "
                                  "dataset) shrank while it was being read (SIGBUS): was it replaced or truncated "
                                  "meanwhile? Checkpoints are written whole: resume once the file is back\n";
        ssize_t w = write(STDERR_FILENO, msg, sizeof msg - 1);
        (void)w;
        _exit(1);
    }
    signal(sig, SIG_DFL);
    raise(sig);
}

int main(int argc, char **argv) {
    struct sigaction bus;
    memset(&bus, 0, sizeof bus);
    bus.sa_sigaction = ft_on_sigbus;
    bus.sa_flags = SA_SIGINFO;
    sigaction(SIGBUS, &bus, NULL);
    /* FTUNE_LOG=debug|info|warn|error: how much ftune says on stderr (default info); debug adds
     * backend choices (a GEMM's fallback, the attention path) and where an error was raised */
    const char *lv = getenv("FTUNE_LOG");
    if (lv && *lv) {
        static const char *const names[] = {"error", "warn", "info", "debug"};
        int found = 0;
        for (int i = 0; i < 4; i++)
            if (strcmp(lv, names[i]) == 0) ft_log_set_level((ft_log_level)i), found = 1;
        if (!found) fprintf(stderr, "ftune: warning: FTUNE_LOG=%s is not one of debug, info, warn, error: ignored\n", lv);
    }
    if (argc < 2) {
        ft_usage(stderr);
        return 2;
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0 || strcmp(cmd, "help") == 0) {
        ft_usage(stdout);
        return 0;
    }
    if (strcmp(cmd, "--version") == 0 || strcmp(cmd, "version") == 0) {
        printf("ftune %s\n", FT_VERSION);
        return 0;
    }
    if (strcmp(cmd, "tokenize") == 0) return ft_cmd_tokenize(argc - 1, argv + 1);
    for (size_t i = 0; i < sizeof ft_commands / sizeof *ft_commands; i++) {
        if (strcmp(cmd, ft_commands[i].name) != 0) continue;
        ft_status st = ft_commands[i].run(argc - 1, argv + 1);
        if (st == FT_OK) return 0;
        if (st == FT_E_INTERRUPTED) { /* SIGINT/SIGTERM honoured: the state is saved, not a failure */
            fprintf(stderr, "ftune: %s\n", ft_error_msg());
            int sig = ft_error_signal() ? ft_error_signal() : SIGINT;
            fflush(NULL);
            signal(sig, SIG_DFL);
            raise(sig);
            return 128 + sig; /* the signal is blocked or ignored: the shell's number for it */
        }
        /* a stop at training.max_hours is the job's planned end, its checkpoint written: not an error */
        fprintf(stderr, "ftune: %s%s\n", st == FT_E_TIMEUP ? "" : "error: ", ft_error_msg());
        ft_debug("the error was raised at %s", ft_error_where()); /* FT_LOG=debug: for a bug report */
        /* 75: sysexits' EX_TEMPFAIL, "try again later": the same line with --resume auto goes on */
        return st == FT_E_ARG ? 2 : st == FT_E_STOPPED ? 3 : st == FT_E_TIMEUP ? 75 : 1;
    }
    fprintf(stderr, "ftune: error: unknown command '%s' (see 'ftune --help')\n", cmd);
    return 2;
}
