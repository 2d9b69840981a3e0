/*
 * `tillside enroll` (docs/OPERATIONS.md "Enrolment"): makes an EC P-256 key
 * on the device, sends a signing request with a one-time token to the hub's
 * enrolment listener, and writes what comes back into the state directory:
 * the key (0600), the certificate, the CA bundle that verifies the hub, and
 * enrolled.conf (0600: it holds the tenant key), which config loading merges
 * over the main file. The operator's configuration file is never rewritten.
 * A program, not the library: the running agent's renewal is trust.c.
 */
#include "agent.h"
#include "cmd.h"
#include "conf.h"
#include "httpc.h"
#include "pki.h"
#include "url.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define ENROLL_TIMEOUT_MS 20000

/* A value we write into enrolled.conf must read back the same: no line
 * breaks, no comment starters, no surrounding blanks. */
static bool ini_safe(const char *s)
{
    if (!s || !s[0] || s[0] == ' ' || s[strlen(s) - 1] == ' ')
        return false;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++)
        if (*p < 0x20 || *p == 0x7f || *p == ';' || *p == '#')
            return false;
    return true;
}

/* ---- tillside enroll -------------------------------------------------------*/

static int enroll_usage(void)
{
    fprintf(stderr,
            "usage: tillside [-c FILE] enroll --hub https://HUB:8444 --token TOKEN [--ca FILE]\n"
            "  --hub    the hub's enrolment listener\n"
            "  --token  the one-time token from `tillside-hub enroll-token`\n"
            "  --ca     the CA certificate that verifies the hub (shipped with the package;\n"
            "           default: [hub] ca of the configuration)\n");
    return 2;
}

/* The CA bundle the agent trusts the hub with from now on: the file that
 * verified the hub just now, plus the enrolment CA when it is another. */
static enum ts_err write_ca_bundle(const char *path, const char *ca_file, const char *enroll_ca,
                                   char *err, size_t errsz)
{
    char *text = NULL;
    size_t len = 0;
    int rc = ts_read_file(ca_file, 1 << 20, &text, &len);
    if (rc) {
        ts_errf(err, errsz, "cannot read %s: %s", ca_file, ts_strerror(rc));
        return rc;
    }
    ts_buf b = {0};
    rc = ts_buf_append(&b, text, len);
    if (rc == TS_OK && enroll_ca && enroll_ca[0] && !strstr(text, enroll_ca)) {
        if (len && text[len - 1] != '\n')
            rc = ts_buf_puts(&b, "\n");
        if (rc == TS_OK)
            rc = ts_buf_puts(&b, enroll_ca);
    }
    if (rc == TS_OK && (rc = ts_write_file_atomic(path, b.data, b.len, 0644)))
        ts_errf(err, errsz, "cannot write %s: %s", path, ts_strerror(rc));
    ts_buf_free(&b);
    free(text);
    return rc;
}

struct enrolment {
    const char *cert, *ca, *tenant_key, *hub_url;
    int key_version;
    struct ts_pki_cert_info info;
};

/* Checks the hub's answer before anything is written. */
static enum ts_err check_answer(json_t *o, const unsigned char spki[32], struct enrolment *e,
                                char *err, size_t errsz)
{
    struct ts_tenant_key k;
    e->cert = json_string_value(json_object_get(o, "certificate"));
    e->ca = json_string_value(json_object_get(o, "ca"));
    e->tenant_key = json_string_value(json_object_get(o, "tenant_key"));
    e->hub_url = json_string_value(json_object_get(o, "hub_url"));
    json_t *kv = json_object_get(o, "key_version");
    e->key_version = json_is_integer(kv) ? (int)json_integer_value(kv) : 0;
    char e2[256] = "";
    if (!e->cert || !e->ca || !e->tenant_key || !e->hub_url || e->key_version < 1) {
        ts_errf(err, errsz,
                "the hub's answer lacks certificate, ca, tenant_key, key_version "
                "or hub_url");
        return TS_ERR_PROTO;
    }
    if (ts_pki_cert_info_pem(e->cert, strlen(e->cert), &e->info, e2, sizeof e2) != TS_OK) {
        ts_errf(err, errsz, "the hub's certificate is unreadable: %s", e2);
        return TS_ERR_PROTO;
    }
    if (memcmp(e->info.spki_sha256, spki, 32) != 0) {
        ts_errf(err, errsz, "the hub's certificate is not for the key made here");
        return TS_ERR_PROTO;
    }
    if (!ini_safe(e->info.cn) || !ini_safe(e->info.ou)) {
        ts_errf(err, errsz, "the certificate names no usable terminal (CN) and store (OU)");
        return TS_ERR_PROTO;
    }
    if (ts_tenant_key_parse(e->tenant_key, e->key_version, &k) != TS_OK) {
        ts_errf(err, errsz, "the hub's tenant key is not 32 to 64 bytes of hex");
        return TS_ERR_PROTO;
    }
    struct ts_url url;
    if (!ini_safe(e->hub_url) || strchr(e->hub_url, ' ') ||
        ts_url_parse(e->hub_url, &url, NULL, 0) != TS_OK) {
        ts_errf(err, errsz, "the hub's hub_url is not an http(s) URL");
        return TS_ERR_PROTO;
    }
    return TS_OK;
}

/*
 * Writes the results; enrolled.conf last, so the configuration switches to
 * the new identity only once the files it names are all in place.
 */
static enum ts_err write_enrolment(const char *dir, const char *key_pem, const char *ca_file,
                                   const struct enrolment *e, char *err, size_t errsz)
{
    char key[TS_AGENT_PATH_MAX + 32], crt[TS_AGENT_PATH_MAX + 32], ca[TS_AGENT_PATH_MAX + 32],
        conf[TS_AGENT_PATH_MAX + 32], at[32];
    snprintf(key, sizeof key, "%s/terminal.key", dir);
    snprintf(crt, sizeof crt, "%s/terminal.pem", dir);
    snprintf(ca, sizeof ca, "%s/hub-ca.pem", dir);
    snprintf(conf, sizeof conf, "%s/%s", dir, TS_ENROLLED_CONF);
    if (!ini_safe(dir)) {
        ts_errf(err, errsz, "state_dir \"%s\" cannot be written into enrolled.conf", dir);
        return TS_ERR_CONFIG;
    }
    int rc;
    if ((rc = ts_write_file_atomic(key, key_pem, strlen(key_pem), 0600))) {
        ts_errf(err, errsz, "cannot write %s: %s", key, ts_strerror(rc));
        return rc;
    }
    if ((rc = ts_write_file_atomic(crt, e->cert, strlen(e->cert), 0644))) {
        ts_errf(err, errsz, "cannot write %s: %s", crt, ts_strerror(rc));
        return rc;
    }
    if ((rc = write_ca_bundle(ca, ca_file, e->ca, err, errsz)))
        return rc;
    ts_iso8601(ts_now_wall_ms(), at, sizeof at);
    ts_buf b = {0};
    rc = ts_buf_printf(&b,
                       "; Written by `tillside enroll` at %s; the next enrolment rewrites it.\n"
                       "; These keys override the same keys of the main configuration file.\n"
                       "; It holds the tenant key: keep it 0600.\n"
                       "[agent]\nstore = %s\nterminal = %s\n"
                       "[hub]\nurl = %s\nca = %s\ncert = %s\nkey = %s\n"
                       "[identity]\ntenant_key = %s\nkey_version = %d\n",
                       at, e->info.ou, e->info.cn, e->hub_url, ca, crt, key, e->tenant_key,
                       e->key_version);
    if (rc == TS_OK && (rc = ts_write_file_atomic(conf, b.data, b.len, 0600)))
        ts_errf(err, errsz, "cannot write %s: %s", conf, ts_strerror(rc));
    if (b.data)
        memset(b.data, 0, b.len);
    ts_buf_free(&b);
    return rc;
}

int ts_cmd_enroll(int argc, char **argv, const char *conf_path)
{
    const char *hub = NULL, *token = NULL, *ca_opt = NULL;
    for (int i = 1; i < argc; i++) {
        const char **slot = !strcmp(argv[i], "--hub")                                  ? &hub
                            : !strcmp(argv[i], "--token")                              ? &token
                            : !strcmp(argv[i], "--ca")                                 ? &ca_opt
                            : (!strcmp(argv[i], "-c") || !strcmp(argv[i], "--config")) ? &conf_path
                                                                                       : NULL;
        if (!slot || i + 1 >= argc)
            return enroll_usage();
        *slot = argv[++i];
    }
    if (!hub || !token || !token[0])
        return enroll_usage();

    char err[1024] = "", state_dir[TS_AGENT_PATH_MAX], ca_file[TS_AGENT_PATH_MAX];
    struct ts_conf *c = NULL;
    if (ts_conf_load(conf_path, &c, err, sizeof err) != TS_OK) {
        fprintf(stderr, "tillside: %s\n(enroll reads state_dir and [hub] ca from it)\n", err);
        return 1;
    }
    const char *v = ts_conf_get(c, "agent", "state_dir", "");
    ts_strlcpy(state_dir, v && v[0] ? v : "/var/lib/tillside", sizeof state_dir);
    v = ts_conf_get(c, "hub", "ca", "");
    ts_strlcpy(ca_file, ca_opt ? ca_opt : v && v[0] ? v : "/etc/tillside/ca.pem", sizeof ca_file);
    ts_conf_free(c);
    if (access(ca_file, R_OK) != 0) {
        fprintf(stderr,
                "tillside: cannot read the CA file %s (%s): pass the CA that signed the hub's "
                "certificate with --ca\n",
                ca_file, strerror(errno));
        return 1;
    }
    int rc = ts_mkdir_p(state_dir, 0700);
    if (rc) {
        fprintf(stderr, "tillside: cannot create %s: %s\n", state_dir, ts_strerror(rc));
        return 1;
    }

    char *key_pem = NULL, *csr_pem = NULL, *body = NULL;
    unsigned char spki[32];
    struct ts_httpc *http = NULL;
    struct ts_http_resp r = {0};
    json_t *o = NULL;
    int code = 1;
    if (ts_pki_new_key_csr("tillside enrolment", &key_pem, &csr_pem, spki, err, sizeof err)) {
        fprintf(stderr, "tillside: %s\n", err);
        goto out;
    }
    struct ts_httpc_opts ho = {.base_url = hub, .ca_file = ca_file, .connect_timeout_ms = 10000};
    if (ts_httpc_new(&ho, &http, err, sizeof err)) {
        fprintf(stderr, "tillside: %s\n", err);
        goto out;
    }
    json_t *req = json_pack("{s:s, s:s}", "token", token, "csr", csr_pem);
    body = req ? json_dumps(req, JSON_COMPACT) : NULL;
    json_decref(req);
    if (!body) {
        fprintf(stderr, "tillside: the token is not valid text\n");
        goto out;
    }
    if (ts_httpc_request(http, "POST", "/v1/enroll", NULL, "application/json", body, strlen(body),
                         ENROLL_TIMEOUT_MS, &r)) {
        fprintf(stderr, "tillside: cannot reach the hub at %s: %s\n", hub, ts_httpc_error(http));
        goto out;
    }
    o = json_loadb(r.body.data ? r.body.data : "", r.body.len, 0, NULL);
    if (r.status != 200) {
        const char *e = json_string_value(json_object_get(o, "error"));
        fprintf(stderr, "tillside: the hub refused the enrolment (HTTP %d): %s\n", r.status,
                e ? e : "no reason given");
        goto out;
    }
    struct enrolment e;
    if (!o || check_answer(o, spki, &e, err, sizeof err) ||
        write_enrolment(state_dir, key_pem, ca_file, &e, err, sizeof err)) {
        fprintf(stderr, "tillside: enrolment failed: %s\n",
                err[0] ? err
                       : "the hub's answer is "
                         "not JSON");
        goto out;
    }
    char until[32];
    ts_iso8601(e.info.not_after * 1000, until, sizeof until);
    printf("enrolled as terminal %s of store %s (%s), certificate valid until %s\n"
           "hub %s; files in %s (enrolled.conf overrides the configuration's identity)\n"
           "start the agent: tillside run -c %s\n",
           e.info.cn, e.info.ou, e.info.o[0] ? e.info.o : "-", until, e.hub_url, state_dir,
           conf_path);
    code = 0;
out:
    json_decref(o);
    free(body);
    ts_http_resp_free(&r);
    ts_httpc_free(http);
    ts_pki_free_secret(key_pem);
    free(csr_pem);
    return code;
}
