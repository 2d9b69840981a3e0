/* tillside: the store terminal agent (daemon + CLI). */
#include "agent.h"
#include "cmd.h"
#include "devices.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static void usage(FILE *f)
{
    fprintf(f, "usage: tillside [-c FILE] COMMAND [ARGS]\n"
               "\n"
               "commands:\n"
               "  run                 run the agent (sync, local API, associate page)\n"
               "  scan CODE [--aim ]E0]  send a scan to the running agent, print the card\n"
               "  lookup CODE [--text]   the card JSON from the local cache (no agent needed)\n"
               "  status [--json]     the running agent's link, cache and sync state\n"
               "  watch               show the cards live in this terminal\n"
               "  check-config        validate the configuration file\n"
               "  doctor              check config, disk, cache, certificate, hub and clock\n"
               "  enroll --hub https://HUB:8444 --token TOKEN [--ca FILE]\n"
               "                      make a key, get this terminal's certificate and tenant key\n"
               "  devices             serial ports and USB scanners: vendor, mode, access;\n"
               "                      then the configured inputs and their state\n"
               "  outbox [list|retry] purchases waiting for upload and dead letters; retry\n"
               "                      (`outbox retry MESSAGE_ID... | --all`)\n"
               "  version             print the version\n"
               "\n"
               "-c FILE  configuration (default " TS_AGENT_DEFAULT_CONFIG ")\n");
}

int main(int argc, char **argv)
{
    const char *conf_path = TS_AGENT_DEFAULT_CONFIG;
    const char *args[16];
    int nargs = 0;
    bool json = false, text = false;
    const char *aim = NULL;
    /* Everything this program creates holds customer cards or the API token
     * (the cache, its WAL and shared-memory files, the token): owner only,
     * whatever the state directory's own mode. */
    umask(077);
    /* enroll has options of its own and runs before the configuration is
     * complete (enrolment is what completes it). */
    for (int i = 1; i < argc; i++) {
        if ((strcmp(argv[i], "-c") == 0 || strcmp(argv[i], "--config") == 0) && i + 1 < argc)
            conf_path = argv[++i];
        else if (strcmp(argv[i], "enroll") == 0)
            return ts_cmd_enroll(argc - i, argv + i, conf_path);
        else if (strcmp(argv[i], "outbox") == 0) /* options of its own (outbox_cli.c) */
            return ts_cmd_outbox_main(argc - i, argv + i, conf_path);
        else
            break;
    }
    for (int i = 1; i < argc; i++) {
        if ((strcmp(argv[i], "-c") == 0 || strcmp(argv[i], "--config") == 0) && i + 1 < argc) {
            conf_path = argv[++i];
        } else if (strcmp(argv[i], "--json") == 0) {
            json = true;
        } else if (strcmp(argv[i], "--text") == 0) {
            text = true;
        } else if (strcmp(argv[i], "--aim") == 0 && i + 1 < argc) {
            aim = argv[++i];
        } else if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
            usage(stdout);
            return 0;
        } else if (argv[i][0] == '-' && argv[i][1] != '\0') {
            fprintf(stderr, "tillside: unknown option %s\n", argv[i]);
            usage(stderr);
            return 2;
        } else if (nargs < 16) {
            args[nargs++] = argv[i];
        }
    }
    if (nargs == 0) {
        usage(stderr);
        return 2;
    }
    const char *cmd = args[0];
    if (strcmp(cmd, "version") == 0)
        return ts_cmd_version();
    if (strcmp(cmd, "devices") ==
        0) { /* needs no configuration; shows the inputs' state with one */
        int found = ts_devices_print(stdout, false);
        ts_cmd_inputs_print(stdout, conf_path);
        return found >= 0 ? 0 : 1;
    }
    if (strcmp(cmd, "doctor") == 0)
        return ts_cmd_doctor(conf_path); /* reports a bad configuration itself */
    static const char *known[] = {"run", "scan", "lookup", "status", "check-config", "watch"};
    bool ok = false;
    for (size_t i = 0; i < sizeof known / sizeof *known; i++)
        ok |= strcmp(cmd, known[i]) == 0;
    if (!ok) {
        fprintf(stderr, "tillside: unknown command '%s'\n", cmd);
        usage(stderr);
        return 2;
    }
    if ((strcmp(cmd, "scan") == 0 || strcmp(cmd, "lookup") == 0) && nargs != 2) {
        fprintf(stderr, "tillside: %s needs exactly one CODE\n", cmd);
        return 2;
    }

    struct ts_agent_config cfg;
    if (ts_cmd_load_config(conf_path, &cfg) != TS_OK)
        return 1;
    if (strcmp(cmd, "check-config") == 0) {
        printf("%s: OK\n", conf_path);
        if (cfg.enrolled[0])
            printf("  with enrolment from %s (store %s, terminal %s)\n", cfg.enrolled,
                   cfg.store[0] ? cfg.store : "-", cfg.terminal[0] ? cfg.terminal : "-");
        return 0;
    }
    if (strcmp(cmd, "run") == 0)
        return ts_cmd_run(&cfg);
    if (strcmp(cmd, "scan") == 0)
        return ts_cmd_scan(&cfg, args[1], aim);
    if (strcmp(cmd, "lookup") == 0)
        return ts_cmd_lookup(&cfg, args[1], text);
    if (strcmp(cmd, "watch") == 0)
        return ts_cmd_watch(&cfg);
    return ts_cmd_status(&cfg, json);
}
