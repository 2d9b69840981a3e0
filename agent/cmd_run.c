/* `tillside run`: the agent daemon. */
#include "cmd.h"
#include "conf.h"
#include "purchase.h"
#include "sdnotify.h"

#include <signal.h>
#include <stdio.h>
#include <string.h>

/* The handles `run` makes, each with its own lock; a subsystem gets only
 * the ones it is handed (no shared bag). */
struct run {
    const struct ts_agent_config *cfg;
    struct ts_agent *core;          /* session, cache, bus, hub link */
    struct ts_purch *purch;         /* journal, outbox, upload thread */
    struct ts_agent_inputs *inputs; /* [input.*] drivers, input thread */
    struct ts_trust *trust;         /* certificate thread */
    struct ts_syncer *syncer;       /* feed thread */
    struct ts_idle *idle;           /* idle clear thread */
    struct ts_api *api;             /* libmicrohttpd threads */
};

static enum ts_err core_open(struct run *r, char *err, size_t errsz)
{
    return ts_agent_open(r->cfg, &r->core, err, errsz);
}
static void core_close(struct run *r)
{
    ts_agent_close(r->core);
}

static enum ts_err purch_open(struct run *r, char *err, size_t errsz)
{
    enum ts_err rc = ts_purchase_open(r->core, &r->purch, err, errsz);
    if (rc == TS_OK) /* receipt scans look in the journal */
        ts_agent_set_journal(r->core, r->purch->ob);
    return rc;
}
static void purch_close(struct run *r)
{
    ts_agent_set_journal(r->core, NULL);
    ts_purchase_close(r->purch);
}

/* [input.*] scanners: their sections come from the file itself, which the
 * program reads; the library never opens a configuration file. */
static enum ts_err inputs_new(struct run *r, char *err, size_t errsz)
{
    struct ts_conf *conf = NULL;
    enum ts_err rc = ts_conf_load(r->cfg->path, &conf, err, errsz);
    if (rc == TS_OK)
        rc = ts_agent_inputs_new(r->core, r->purch, conf, &r->inputs, err, errsz);
    ts_conf_free(conf);
    return rc;
}
static void inputs_free(struct run *r)
{
    ts_agent_inputs_free(r->inputs);
}

static enum ts_err trust_start(struct run *r, char *err, size_t errsz)
{
    return ts_trust_start(r->cfg, &r->trust, err, errsz);
}
static void trust_stop(struct run *r)
{
    ts_trust_stop(r->trust);
}

static enum ts_err sync_start(struct run *r, char *err, size_t errsz)
{
    struct ts_agent_parts p = {
        .core = r->core, .purch = r->purch, .trust = r->trust, .inputs = r->inputs};
    return ts_syncer_start(&p, &r->syncer, err, errsz);
}
static void sync_stop(struct run *r)
{
    ts_syncer_stop(r->syncer);
}

static enum ts_err uploader_start(struct run *r, char *err, size_t errsz)
{
    return ts_uploader_start(r->purch, err, errsz);
}
static void uploader_stop(struct run *r)
{
    ts_uploader_stop(r->purch);
}

static enum ts_err idle_start(struct run *r, char *err, size_t errsz)
{
    enum ts_err rc = ts_idle_start(r->core, &r->idle);
    if (rc)
        ts_errf(err, errsz, "cannot start the idle clear: %s", ts_strerror(rc));
    return rc;
}
static void idle_stop(struct run *r)
{
    ts_idle_stop(r->idle);
}

static enum ts_err api_start(struct run *r, char *err, size_t errsz)
{
    struct ts_agent_parts p = {
        .core = r->core, .purch = r->purch, .trust = r->trust, .inputs = r->inputs};
    return ts_api_start(&p, &r->api, err, errsz);
}
/* The bus is closed first so that event streams end at once. */
static void api_stop(struct run *r)
{
    ts_bus_close(r->core->bus);
    ts_api_stop(r->api);
}

static enum ts_err inputs_start(struct run *r, char *err, size_t errsz)
{
    return ts_agent_inputs_start(r->inputs, err, errsz);
}
static void inputs_stop(struct run *r)
{
    ts_agent_inputs_stop(r->inputs);
}

/*
 * The one place the order is written: started top to bottom, stopped bottom
 * to top (also when a start fails: only what started is stopped).
 *   - handles first, no thread yet: the core (cache connection under
 *     cache_mu, session and counters under mu, bus, hub link, rules), the
 *     purchases (outbox.db, lent to the core for receipt scans), the inputs
 *     (drivers parsed, devices need not be present);
 *   - trust before the API, so status has the days left from the first
 *     request; the threads that talk to the hub (sync, uploader); the idle
 *     clear; the API; last the input thread, when everything a scan or a
 *     receipt reaches is running.
 * Stopping therefore ends the producers first (scanners, then the API: no
 * request in flight, streams ended), then the idle clear, the network
 * threads (their SQLite writes committed), trust, and frees the handles:
 * inputs, purchases (outbox), the core (cache) — nothing half-written.
 */
static const struct stage {
    const char *name;
    enum ts_err (*start)(struct run *r, char *err, size_t errsz);
    void (*stop)(struct run *r);
} STAGES[] = {
    {"core", core_open, core_close},
    {"purchases", purch_open, purch_close},
    {"inputs", inputs_new, inputs_free},
    {"trust", trust_start, trust_stop},
    {"sync", sync_start, sync_stop},
    {"uploader", uploader_start, uploader_stop},
    {"idle clear", idle_start, idle_stop},
    {"api", api_start, api_stop},
    {"input thread", inputs_start, inputs_stop},
};
#define NSTAGES (sizeof STAGES / sizeof STAGES[0])

/* Starts every stage; on a failure stops those started and returns false. */
static bool run_start(struct run *r, size_t *started)
{
    char err[1024];
    for (*started = 0; *started < NSTAGES; (*started)++) {
        const struct stage *st = &STAGES[*started];
        err[0] = '\0';
        enum ts_err rc = st->start(r, err, sizeof err);
        if (rc != TS_OK) {
            TS_ERROR("agent", "%s: %s", st->name, err[0] ? err : ts_strerror(rc));
            return false;
        }
    }
    return true;
}

static void run_stop(struct run *r, size_t started)
{
    while (started > 0)
        STAGES[--started].stop(r);
}

/* The watchdog's proof of life: the locks every scan takes can be taken. A
 * thread stuck holding one stops the pings and systemd restarts the agent
 * (WatchdogSec= in tillside.service). */
static bool core_alive(void *ud)
{
    return ts_agent_alive(ud);
}

/* Runs the daemon until SIGINT/SIGTERM. Signals are blocked before any
 * thread starts so only sigwait() here sees them. */
int ts_cmd_run(const struct ts_agent_config *cfg)
{
    struct run r = {.cfg = cfg};
    size_t started = 0;
    int exit_code = 1;
    sigset_t set;
    ts_sd_block_stop_signals(&set);
    /* Past RLIMIT_FSIZE a write fails with EFBIG (a full disk, as far as the
     * outbox is concerned: 507) instead of killing the agent. */
    signal(SIGXFSZ, SIG_IGN);

    if (run_start(&r, &started)) {
        TS_INFO("agent", "tillside %s for store %s terminal %s; API on http://%s%s%s:%d",
                TS_VERSION, cfg->store[0] ? cfg->store : "-",
                cfg->terminal[0] ? cfg->terminal : "-", strchr(cfg->api_host, ':') ? "[" : "",
                cfg->api_host, strchr(cfg->api_host, ':') ? "]" : "", ts_api_port(r.api));
        /* READY=1 now, WATCHDOG=1 while the core locks are free (sdnotify.h). */
        int sig = ts_sd_run_until_signal(&set, core_alive, r.core);
        TS_INFO("agent", "stopping on %s", sig == SIGINT ? "SIGINT" : "SIGTERM");
        exit_code = 0;
    }
    run_stop(&r, started);
    return exit_code;
}
