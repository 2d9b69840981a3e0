/*
 * `tillside doctor`: what stops a terminal from showing cards, checked in the
 * order a technician would: configuration, state directory and disk, card
 * cache, scanners (as `tillside devices` lists them), certificate, hub (TCP, TLS handshake with
 * this terminal's certificate, HTTP), clock against the hub's Date header. One line per check:
 * "ok|WARN|FAIL  name  detail". Exit codes (tillside(1)): 0 all ok, 1 at least one FAIL, 3 warnings
 * only (2 is usage, in main.c).
 */
#include "agent.h"
#include "hublink.h"
#include "cmd.h"
#include "devices.h"
#include "httpc.h"
#include "pki.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

/* Free space below these stops the cache from growing (fail) or soon will
 * (warn): a full store slice of 2M cards takes about 1 GB. */
#define DISK_FAIL_BYTES (64ull << 20)
#define DISK_WARN_BYTES (512ull << 20)
/* Certificates are checked to the second, feed ages to the minute. */
#define SKEW_WARN_S 5
#define SKEW_FAIL_S 120

enum verdict { OK, WARN, FAIL };

struct report {
    int fails, warns;
};

static void line(struct report *r, enum verdict v, const char *name, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void line(struct report *r, enum verdict v, const char *name, const char *fmt, ...)
{
    static const char *tag[] = {"ok  ", "WARN", "FAIL"};
    char msg[1200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    printf("%s  %-12s %s\n", tag[v], name, msg);
    fflush(stdout);
    r->fails += v == FAIL;
    r->warns += v == WARN;
}

static void check_state_dir(struct report *r, const struct ts_agent_config *cfg)
{
    struct statvfs vs;
    if (access(cfg->state_dir, W_OK | X_OK) != 0) {
        line(r, FAIL, "state_dir", "%s: %s (run as the agent's user, tillside)", cfg->state_dir,
             strerror(errno));
        return;
    }
    if (statvfs(cfg->state_dir, &vs) != 0) {
        line(r, FAIL, "disk", "%s: %s", cfg->state_dir, strerror(errno));
        return;
    }
    unsigned long long avail = (unsigned long long)vs.f_bavail * vs.f_frsize;
    enum verdict v = avail < DISK_FAIL_BYTES ? FAIL : avail < DISK_WARN_BYTES ? WARN : OK;
    line(r, OK, "state_dir", "%s writable", cfg->state_dir);
    line(r, v, "disk", "%llu MiB free on %s%s", avail >> 20, cfg->state_dir,
         v == OK ? "" : " (the card cache needs room to grow)");
}

static void check_cache(struct report *r, const struct ts_agent_config *cfg)
{
    char path[TS_AGENT_PATH_MAX + 16], err[512];
    struct ts_cache *c = NULL;
    ts_agent_cache_path(cfg, path, sizeof path);
    if (access(path, F_OK) != 0) {
        line(r, WARN, "cache", "%s: none yet (made by the first `tillside run`)", path);
        return;
    }
    if (ts_cache_open_readonly(path, &c, err, sizeof err) != TS_OK) {
        line(r, FAIL, "cache", "%s", err);
        return;
    }
    int64_t last = ts_cache_last_sync(c);
    int64_t age_s = last > 0 ? (ts_now_wall_ms() - last) / 1000 : -1;
    if (age_s < 0)
        line(r, WARN, "cache", "%lld cards, never synced", (long long)ts_cache_count(c));
    else
        line(r, OK, "cache", "%lld cards, last sync %lld s ago", (long long)ts_cache_count(c),
             (long long)age_s);
    ts_cache_close(c);
}

static void check_cert(struct report *r, const struct ts_agent_config *cfg)
{
    struct ts_pki_cert_info ci;
    char err[512];
    if (ts_pki_cert_info_file(cfg->hub_cert, &ci, err, sizeof err) != TS_OK) {
        line(r, FAIL, "certificate", "%s (enrol with `tillside enroll`)", err);
        return;
    }
    if (access(cfg->hub_key, R_OK) != 0)
        line(r, FAIL, "certificate", "key %s: %s", cfg->hub_key, strerror(errno));
    enum verdict v = ci.days_left < 0                                        ? FAIL
                     : cfg->renew_days && ci.days_left < cfg->renew_days / 2 ? WARN
                                                                             : OK;
    line(r, v, "certificate", "%s, %s %d days (%s)", ci.subject,
         ci.days_left < 0 ? "expired" : "valid", ci.days_left < 0 ? -ci.days_left : ci.days_left,
         cfg->hub_cert);
}

/* One request with this terminal's identity: a status code of any kind
 * proves DNS, TCP, the TLS handshake both ways and that the hub speaks HTTP. */
static void check_hub(struct report *r, const struct ts_agent_config *cfg)
{
    struct ts_httpc *hc = NULL;
    struct ts_http_resp resp = {0};
    char err[512];
    bool https = strncmp(cfg->hub_url, "https://", 8) == 0;
    if (ts_hublink_client(cfg, (int)cfg->timeout_ms, &hc, err, sizeof err) != TS_OK) {
        line(r, FAIL, "hub", "%s: %s", cfg->hub_url, err);
        return;
    }
    int64_t t0 = ts_now_mono_ms();
    int rc =
        ts_httpc_request(hc, "GET", "/metrics", NULL, NULL, NULL, 0, (int)cfg->timeout_ms, &resp);
    int64_t rtt = ts_now_mono_ms() - t0;
    if (rc != TS_OK) {
        line(r, FAIL, "hub", "%s: %s", cfg->hub_url, ts_httpc_error(hc));
        goto out;
    }
    line(r, resp.status >= 500 ? WARN : OK, "hub", "%s: %sHTTP %d in %lld ms", cfg->hub_url,
         https ? "TLS handshake ok, " : "", resp.status, (long long)rtt);
    if (!resp.date_s) {
        line(r, WARN, "clock", "the hub sent no Date header: skew not checked");
        goto out;
    }
    /* The Date header has whole seconds and was stamped somewhere inside the
     * round trip. */
    long long skew = (long long)(ts_now_wall_ms() / 1000 - resp.date_s);
    long long mag = skew < 0 ? -skew : skew;
    long long slack = rtt / 1000 + 1;
    enum verdict v = mag > SKEW_FAIL_S + slack ? FAIL : mag > SKEW_WARN_S + slack ? WARN : OK;
    line(r, v, "clock", "%+lld s against the hub%s", skew,
         v == OK ? "" : " (check NTP: systemd-timesyncd or chrony)");
out:
    ts_http_resp_free(&resp);
    ts_httpc_free(hc);
}

/* `tillside devices` in one line: scanners found, and those this user
 * cannot open (the listing says which group is missing). */
static void check_devices(struct report *r)
{
    char *text = NULL;
    size_t len = 0;
    FILE *mem = open_memstream(&text, &len);
    if (!mem) {
        line(r, WARN, "devices", "cannot list: %s", strerror(errno));
        return;
    }
    int found = ts_devices_print(mem, false);
    fclose(mem);
    int denied = 0;
    for (const char *p = text; p && (p = strstr(p, "can open: NO")); p++)
        denied++;
    if (found < 0)
        line(r, WARN, "devices", "cannot list USB devices (see `tillside devices`)");
    else if (denied)
        line(r, WARN, "devices", "%d device(s) this user cannot open (see `tillside devices`)",
             denied);
    else if (found == 0)
        line(r, OK, "devices", "no scanner-like device found (scans only through the API)");
    else
        line(r, OK, "devices", "%d scanner-like device(s), all usable", found);
    free(text);
}

int ts_cmd_doctor(const char *conf_path)
{
    struct report r = {0};
    struct ts_agent_config cfg;
    char err[1024];
    if (ts_agent_config_load(conf_path, &cfg, err, sizeof err) != TS_OK) {
        line(&r, FAIL, "config", "%s", err);
        return 1;
    }
    line(&r, OK, "config", "%s%s%s", conf_path, cfg.enrolled[0] ? " + " : "", cfg.enrolled);
    check_state_dir(&r, &cfg);
    check_cache(&r, &cfg);
    check_devices(&r);
    if (strncmp(cfg.hub_url, "https://", 8) == 0)
        check_cert(&r, &cfg);
    check_hub(&r, &cfg);
    printf("%d failed, %d warnings\n", r.fails, r.warns);
    return r.fails ? 1 : r.warns ? 3 : 0;
}
