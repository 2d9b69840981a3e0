/*
 * `tillside-hub pki`: the command line of the small CA (init, issue, pin)
 * over pki.c and pki_csr.c, apart from them so that neither needs the other
 * for it.
 */
#include "pki_int.h"
#include "../common/ts.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static int usage(void)
{
    fprintf(stderr,
            "usage: tillside-hub pki init --dir DIR [--cn NAME] [--days N]\n"
            "       tillside-hub pki issue --dir DIR --cn CN [--ou STORE] [--o TENANT]\n"
            "                    [--dns a,b] [--server] [--days N] [--expired] --out PREFIX\n"
            "       tillside-hub pki pin CERTFILE\n"
            "init creates DIR/ca.pem and DIR/ca.key; issue writes PREFIX.pem and PREFIX.key\n"
            "signed by that CA (clientAuth, or serverAuth with --server), valid for --days\n"
            "(default 365). --expired makes a certificate that expired yesterday, for tests.\n"
            "pin prints the SHA-256 of a certificate's public key for [hub] pin_sha256.\n");
    return 2;
}

static int pin_main(const char *file)
{
    struct ts_pki_cert_info i;
    char err[512], b64[48], hex[65];
    if (ts_pki_cert_info_file(file, &i, err, sizeof err) != TS_OK ||
        ts_pki_pin_text(i.spki_sha256, b64, hex) != TS_OK) {
        fprintf(stderr, "pki pin: %s\n", err);
        return 1;
    }
    printf("subject  %s\nserial   %s\nexpires  in %d days\npin_sha256 = %s\npin_sha256 = %s\n",
           i.subject, i.serial, i.days_left, b64, hex);
    return 0;
}

int ts_pki_main(int argc, char **argv)
{
    const char *dir = NULL, *cn = NULL, *ou = NULL, *o = NULL, *dns = NULL, *out = NULL;
    bool server = false, expired = false;
    long days = 0;
    if (argc < 2)
        return usage();
    const char *cmd = argv[1];
    if (strcmp(cmd, "pin") == 0)
        return argc == 3 ? pin_main(argv[2]) : usage();
    bool init = strcmp(cmd, "init") == 0, issue = strcmp(cmd, "issue") == 0;
    if (!init && !issue)
        return usage();
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        const char **slot = NULL;
        if (strcmp(a, "--server") == 0 && issue) {
            server = true;
            continue;
        }
        if (strcmp(a, "--expired") == 0 && issue) {
            expired = true;
            continue;
        }
        if (i + 1 >= argc)
            return usage();
        const char *v = argv[++i];
        if (strcmp(a, "--dir") == 0)
            slot = &dir;
        else if (strcmp(a, "--cn") == 0)
            slot = &cn;
        else if (strcmp(a, "--ou") == 0 && issue)
            slot = &ou;
        else if (strcmp(a, "--o") == 0 && issue)
            slot = &o;
        else if (strcmp(a, "--dns") == 0 && issue)
            slot = &dns;
        else if (strcmp(a, "--out") == 0 && issue)
            slot = &out;
        else if (strcmp(a, "--days") == 0) {
            char *end;
            days = strtol(v, &end, 10);
            if (*end || days < 1 || days > 36500)
                return usage();
            continue;
        } else
            return usage();
        *slot = v;
    }
    if (!dir || (issue && (!cn || !out)))
        return usage();

    char err[512] = "";
    int rc;
    if (init) {
        rc = ts_pki_ca_init(dir, cn, (int)days, err, sizeof err);
        if (rc == TS_OK)
            printf("CA written to %s/ca.pem and %s/ca.key\n", dir, dir);
    } else {
        char ca_cert[4096], ca_key[4096], cert[4096], key[4096];
        snprintf(ca_cert, sizeof ca_cert, "%s/ca.pem", dir);
        snprintf(ca_key, sizeof ca_key, "%s/ca.key", dir);
        snprintf(cert, sizeof cert, "%s.pem", out);
        snprintf(key, sizeof key, "%s.key", out);
        int64_t now = (int64_t)time(NULL);
        struct ts_pki_issue p = {
            .ca_cert_file = ca_cert,
            .ca_key_file = ca_key,
            .cn = cn,
            .ou = ou,
            .o = o,
            .dns = dns,
            .server = server,
            .not_before = expired ? now - 30 * PKI_DAY : now - 3600,
            .not_after = expired ? now - PKI_DAY : now + (days ? days : 365) * PKI_DAY,
            .out_cert_file = cert,
            .out_key_file = key,
        };
        rc = ts_pki_issue(&p, err, sizeof err);
        if (rc == TS_OK)
            printf("certificate written to %s and %s\n", cert, key);
    }
    if (rc != TS_OK) {
        fprintf(stderr, "pki %s: %s\n", cmd, err[0] ? err : ts_strerror(rc));
        return 1;
    }
    return 0;
}
