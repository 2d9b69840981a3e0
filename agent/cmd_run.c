/* `tillside run`: the agent daemon. */
#include "cmd.h"
#include "conf.h"
#include "purchase.h"
#include "sdnotify.h"

#include <signal.h>
#include <stdio.h>
#include <string.h>

/* The watchdog's proof of life: the locks every scan takes (the cache's,
 * then the core's, one after the other as a scan does) can be taken. A
 * thread stuck holding one stops the pings and systemd restarts the agent
 * (WatchdogSec= in tillside.service). */
static bool core_alive(void *ud)
{
    struct ts_agent *a = ud;
    pthread_mutex_lock(&a->cache_mu);
    pthread_mutex_unlock(&a->cache_mu);
    pthread_mutex_lock(&a->mu);
    pthread_mutex_unlock(&a->mu);
    return true;
}

/*
 * Runs the daemon until SIGINT/SIGTERM. Signals are blocked before any
 * thread starts so only sigwait() here sees them.
 *
 * Start order, each subsystem a handle with its own lock:
 *   1. the core (ts_agent_open): cache connection (cache_mu), session and
 *      counters (mu), bus, hub link (its lock), rules, the purchase journal
 *      (outbox.db; the uploader's worker lock);
 *   2. trust (certificate thread, its own lock), so status has the days left
 *      from the first request;
 *   3. the API (libmicrohttpd threads), 4. the idle clear, 5. sync,
 *   6. inputs (scanners, the receipt tap), 7. the uploader.
 * Stop order, the reverse where it matters: the uploader and sync first (no
 * more network, their SQLite writes committed), the idle clear, then the bus
 * is closed so SSE streams end, then the API (no request in flight), then
 * inputs (after the API: status and metrics read them), trust, and last the
 * core, which closes cache and outbox — nothing is left half-written.
 */
int ts_cmd_run(const struct ts_agent_config *cfg)
{
    char err[1024];
    struct ts_agent *a = NULL;
    struct ts_api *api = NULL;
    struct ts_syncer *syncer = NULL;
    struct ts_idle *idle = NULL;
    struct ts_conf *conf = NULL;
    int exit_code = 1;
    sigset_t set;
    ts_sd_block_stop_signals(&set);
    /* Past RLIMIT_FSIZE a write fails with EFBIG (a full disk, as far as the
     * outbox is concerned: 507) instead of killing the agent. */
    signal(SIGXFSZ, SIG_IGN);

    if (ts_agent_open(cfg, &a, err, sizeof err)) {
        TS_ERROR("agent", "%s", err);
        goto out;
    }
    if (ts_trust_start(a, err, sizeof err)) { /* certificate expiry and renewal */
        TS_ERROR("agent", "%s", err);
        goto out;
    }
    if (ts_api_start(a, &api, err, sizeof err)) {
        TS_ERROR("agent", "%s", err);
        goto out;
    }
    if (ts_idle_start(a, &idle)) { /* [page] idle_clear_s */
        TS_ERROR("agent", "cannot start the idle clear");
        goto out;
    }
    if (ts_syncer_start(a, &syncer, err, sizeof err)) {
        TS_ERROR("agent", "%s", err);
        goto out;
    }
    /* [input.*] scanners: their sections come from the file itself, which
     * the program reads; the library never opens a configuration file. */
    if (ts_conf_load(cfg->path, &conf, err, sizeof err) ||
        ts_agent_inputs_start(a, conf, err, sizeof err)) {
        TS_ERROR("agent", "%s", err);
        goto out;
    }
    ts_conf_free(conf);
    conf = NULL;
    if (ts_uploader_start(a, err, sizeof err)) { /* the purchase outbox to the hub */
        TS_ERROR("agent", "%s", err);
        goto out;
    }
    TS_INFO("agent", "tillside %s for store %s terminal %s; API on http://%s%s%s:%d", TS_VERSION,
            cfg->store[0] ? cfg->store : "-", cfg->terminal[0] ? cfg->terminal : "-",
            strchr(cfg->api_host, ':') ? "[" : "", cfg->api_host,
            strchr(cfg->api_host, ':') ? "]" : "", ts_api_port(api));
    /* READY=1 now, WATCHDOG=1 while the core locks are free (sdnotify.h). */
    int sig = ts_sd_run_until_signal(&set, core_alive, a);
    TS_INFO("agent", "stopping on %s", sig == SIGINT ? "SIGINT" : "SIGTERM");
    exit_code = 0;
out:
    ts_uploader_stop(a);
    ts_syncer_stop(syncer);
    ts_idle_stop(idle);
    if (a)
        ts_bus_close(a->bus);
    ts_api_stop(api);
    ts_agent_inputs_stop(a); /* after the API: status and metrics read it */
    ts_trust_stop(a);
    ts_agent_close(a);
    ts_conf_free(conf);
    return exit_code;
}
