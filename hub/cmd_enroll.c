/*
 * `tillside-hub enroll-token` and `tillside-hub revoke`: one-time enrolment
 * tokens and revocations written into the trust tables of the configured
 * database (enroll.c), from another process while the hub runs.
 */
#include "cmd.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DAY_MS (24LL * 3600 * 1000)

/* Store and terminal names go into certificate subjects. */
static bool name_ok(const char *s)
{
    size_t n = s ? strlen(s) : 0;
    return n > 0 && n <= 64 &&
           strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") == n;
}

/* "90s", "15m", "24h", "7d" (a bare number is hours). */
static enum ts_err parse_ttl(const char *s, int64_t *ms)
{
    char *end;
    long v = strtol(s, &end, 10);
    int64_t unit = 3600000;
    if (end == s || v <= 0)
        return TS_ERR_INVAL;
    if (*end == 's')
        unit = 1000;
    else if (*end == 'm')
        unit = 60000;
    else if (*end == 'd')
        unit = DAY_MS;
    else if (*end != 'h' && *end != '\0')
        return TS_ERR_INVAL;
    if (*end && end[1])
        return TS_ERR_INVAL;
    *ms = v * unit;
    return *ms <= 30 * DAY_MS ? TS_OK : TS_ERR_INVAL;
}

/* -c FILE / --config FILE anywhere after the command; the rest into opts. */
struct cli_opt {
    const char *name;
    const char **val; /* NULL: a flag, counted in *flag */
    bool *flag;
};

static int parse_cli(int argc, char **argv, const char **conf, struct cli_opt *opts, size_t n,
                     const char *cmd)
{
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        bool done = false;
        if (!strcmp(a, "-c") || !strcmp(a, "--config")) {
            if (i + 1 >= argc)
                break;
            *conf = argv[++i];
            continue;
        }
        for (size_t k = 0; k < n && !done; k++) {
            if (strcmp(a, opts[k].name) != 0)
                continue;
            done = true;
            if (opts[k].flag) {
                *opts[k].flag = true;
            } else if (i + 1 < argc) {
                *opts[k].val = argv[++i];
            } else {
                fprintf(stderr, "tillside-hub %s: %s needs a value\n", cmd, a);
                return 2;
            }
        }
        if (!done) {
            fprintf(stderr, "tillside-hub %s: unexpected argument '%s'\n", cmd, a);
            return 2;
        }
    }
    return 0;
}

int ts_hub_enroll_token_main(int argc, char **argv, const char *conf)
{
    const char *store = NULL, *terminal = NULL, *ttl = "24h";
    struct cli_opt opts[] = {
        {"--store", &store, NULL}, {"--terminal", &terminal, NULL}, {"--ttl", &ttl, NULL}};
    int64_t ttl_ms;
    int rc = parse_cli(argc, argv, &conf, opts, 3, "enroll-token");
    if (rc)
        return rc;
    if (!name_ok(store) || !name_ok(terminal) || parse_ttl(ttl, &ttl_ms) != TS_OK) {
        fprintf(stderr, "usage: tillside-hub enroll-token [-c FILE] --store STORE --terminal "
                        "TERMINAL [--ttl 24h]\n"
                        "STORE and TERMINAL: 1-64 of A-Z a-z 0-9 . _ -; --ttl N[s|m|h|d], at "
                        "most 30d\n");
        return 2;
    }
    struct ts_hub_config cfg;
    if (ts_hub_cmd_config(conf, &cfg))
        return 1;
    if (!cfg.ca_key[0])
        fprintf(stderr,
                "tillside-hub: warning: [hub] ca_key is not set in %s: the hub cannot "
                "sign certificates until it is\n",
                conf);
    char token[TS_HUB_TOKEN_HEX], until[32], err[1024];
    int64_t now = ts_now_wall_ms();
    if (ts_hub_trust_add_token(cfg.db, store, terminal, now, ttl_ms, token, err, sizeof err) !=
        TS_OK) {
        fprintf(stderr, "tillside-hub: %s\n", err);
        return 1;
    }
    ts_iso8601(now + ttl_ms, until, sizeof until);
    /* The token alone on stdout, for scripts; the rest for people. */
    printf("%s\n", token);
    fprintf(stderr,
            "one-time enrolment token for terminal %s of store %s, valid until %s\n"
            "on the terminal: tillside enroll --hub https://HUB:PORT --token %s\n",
            terminal, store, until, token);
    return 0;
}

/* One line of `revoke --list`. */
static void print_revocation(void *ud, const struct ts_hub_revocation *r)
{
    char at[32];
    (void)ud;
    ts_iso8601(r->at_ms, at, sizeof at);
    if (r->serial)
        printf("%s  serial %s", at, r->serial);
    else
        printf("%s  terminal %s of %s%s", at, r->cn ? r->cn : "?",
               r->ou && r->ou[0] ? "store " : "any store", r->ou ? r->ou : "");
    printf("%s%s\n", r->reason && r->reason[0] ? "  " : "", r->reason ? r->reason : "");
}

int ts_hub_revoke_main(int argc, char **argv, const char *conf)
{
    const char *terminal = NULL, *store = NULL, *serial = NULL, *reason = "";
    bool list = false;
    struct cli_opt opts[] = {{"--terminal", &terminal, NULL},
                             {"--store", &store, NULL},
                             {"--serial", &serial, NULL},
                             {"--reason", &reason, NULL},
                             {"--list", NULL, &list}};
    int rc = parse_cli(argc, argv, &conf, opts, 5, "revoke");
    if (rc)
        return rc;
    bool by_name = terminal && !serial, by_serial = serial && !terminal && !store;
    if (!list && (!(by_name || by_serial) || (terminal && !name_ok(terminal)) ||
                  (store && !name_ok(store)) ||
                  (serial && (strlen(serial) > 46 ||
                              strspn(serial, "0123456789abcdefABCDEF") != strlen(serial))))) {
        fprintf(stderr, "usage: tillside-hub revoke [-c FILE] --terminal T01 [--store S001] "
                        "[--reason TEXT]\n"
                        "       tillside-hub revoke [-c FILE] --serial HEX [--reason TEXT]\n"
                        "       tillside-hub revoke [-c FILE] --list\n");
        return 2;
    }
    struct ts_hub_config cfg;
    char err[1024], sv[48];
    long certs = 0;
    if (ts_hub_cmd_config(conf, &cfg))
        return 1;
    if (list) {
        if (ts_hub_trust_list_revoked(cfg.db, print_revocation, NULL, err, sizeof err) != TS_OK) {
            fprintf(stderr, "tillside-hub: %s\n", err);
            return 1;
        }
        return 0;
    }
    if (ts_hub_trust_revoke(cfg.db, by_serial ? NULL : terminal, store, by_serial ? serial : NULL,
                            reason, ts_now_wall_ms(), sv, sizeof sv, &certs, err,
                            sizeof err) != TS_OK) {
        fprintf(stderr, "tillside-hub: %s\n", err);
        return 1;
    }
    if (by_serial)
        printf("revoked certificate serial %s\n", sv);
    else
        printf("revoked terminal %s of %s%s: every certificate made for it until now (%ld issued "
               "by this hub); a new enrolment lets it back in\n",
               terminal, store ? "store " : "any store", store ? store : "", certs);
    printf("a running hub refuses it from its next request on\n");
    return 0;
}
