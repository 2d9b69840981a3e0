/*
 * tillside-hub: the central service (run), certificates for demos and tests
 * (pki), counts for operators (stats), and the demo data generator (gen).
 * Exit codes: 0 ok, 1 runtime or configuration failure, 2 usage error.
 */
#include "hub.h"
#include "sql.h"
#include "purchases.h"
#include "proxy.h"
#include "throttle.h"
#include "fleet.h"
#include "ticketkeys.h"
#include "cmd.h"
#include "sinks.h"
#include "../sync/pki.h"
#include "../sync/tls.h"
#include "sdnotify.h"

#include <errno.h>
#include <jansson.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>

#define DEFAULT_CONF "/etc/tillside-hub/hub.conf"

static void usage(FILE *f)
{
    fprintf(f, "usage: tillside-hub COMMAND [-c FILE] [ARGS]\n"
               "  run [-c FILE]     serve the hub API until SIGINT/SIGTERM\n"
               "  check-config [-c FILE]  validate the configuration and the files it names\n"
               "  stats [-c FILE]   customers, events, store slice sizes and purchases as JSON\n"
               "  pki init|issue    make a CA and certificates (see tillside-hub pki)\n"
               "  gen --url URL --write-key KEY --customers N --stores S001,S002\n"
               "      [--ca F --cert F --key F] [--seed N] [--batch N] [--sample K]\n"
               "                    send generated online behaviour to a hub\n"
               "  gen --out FILE --customers N --stores S001,S002 [--seed N]\n"
               "                    write it as Segment events, one per line, instead\n"
               "  import [-c FILE] [--format segment] [--chunk N] EVENTS\n"
               "                    store Segment events (JSONL or {\"batch\":[...]}) directly\n"
               "  enroll-token [-c FILE] --store S001 --terminal T07 [--ttl 24h]\n"
               "                    print a one-time enrolment token for a new terminal\n"
               "  revoke [-c FILE] --terminal T07 [--store S001] | --serial HEX | --list\n"
               "                    refuse a terminal's certificates from now on\n"
               "  upstream list|show|retry|drop [--sink NAME] ...\n"
               "                    the sinks' queues and dead letters (send again, delete)\n"
               "  crl [-c FILE] --out FILE [--days N]\n"
               "                    write the revoked certificates as a CRL (nginx ssl_crl)\n"
               "  erase [-c FILE] CUSTOMER | --loyalty ID\n"
               "                    erase a customer (GDPR) at the hub and in every store\n"
               "  fleet [-c FILE] [--store S] [--unhealthy] [--json]\n"
               "  fleet forget [-c FILE] [--store S] TERMINAL | --stale-for DAYS\n"
               "                    every terminal's last health report, stale ones flagged\n"
               "  version           print the version\n"
               "The configuration defaults to " DEFAULT_CONF ".\n");
}

static int64_t wall_ms(void)
{
    return ts_now_wall_ms();
}

/* The host part of "host:port" for the "listening on" line. */
static void listen_host(const char *listen, char *out, size_t outsz)
{
    ts_strlcpy(out, listen, outsz);
    char *colon = strrchr(out, ':');
    if (colon)
        *colon = '\0';
}

/* Every held connection is a descriptor: take all the hard limit allows
 * (the systemd units raise it with LimitNOFILE=). */
static void raise_nofile(const struct ts_hub_config *cfg)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return;
    if (rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        (void)setrlimit(RLIMIT_NOFILE, &rl);
        (void)getrlimit(RLIMIT_NOFILE, &rl);
    }
    rlim_t want = (rlim_t)cfg->max_connections + (rlim_t)cfg->max_unauthenticated + 256;
    if (rl.rlim_cur < want)
        TS_WARN("hub",
                "open files limited to %llu, fewer than max_connections + max_unauthenticated "
                "need (%llu): raise LimitNOFILE= (ulimit -n)",
                (unsigned long long)rl.rlim_cur, (unsigned long long)want);
}

static void wake_store(void *ud, const char *store_id, uint64_t seq)
{
    ts_httpd_wake_topic(ud, store_id, seq);
}

static int cmd_run(const char *conf)
{
    struct ts_hub_config cfg;
    struct ts_hub_store *store = NULL;
    struct ts_httpd *srv = NULL, *enroll_srv = NULL, *proxy_srv = NULL, *cdp_srv = NULL;
    struct ts_hub_trust *trust = NULL;
    struct ts_hub_janitor *janitor = NULL;
    struct ts_hub_upstream *upstream = NULL;
    struct ts_hub_throttle *throttle = NULL;
    struct ts_hub_fleet *fleet = NULL;
    char err[512];
    int code = 1;
    if (ts_hub_cmd_config(conf, &cfg))
        return 1;
    ts_log_set_level(cfg.log_level);
    raise_nofile(&cfg);
    if (!ts_sql_target_is_pg(cfg.db) && ts_mkdir_for_file(cfg.db) != TS_OK) {
        TS_ERROR("hub", "cannot create the directory of %s: %s", cfg.db, strerror(errno));
        return 1;
    }
    if (ts_hub_store_open(cfg.db, &cfg.key, 0, &store, err, sizeof err) != TS_OK) {
        TS_ERROR("hub", "%s", err);
        return 1;
    }
    /* A changed key pair re-stamps every customer before anyone is served. */
    if (ts_hub_store_set_keys(store, &cfg.prev_key, NULL) != TS_OK) {
        TS_ERROR("hub", "%s: cannot apply the tenant key versions", cfg.db);
        ts_hub_store_close(store);
        return 1;
    }
    if (ts_hub_trust_open(&cfg, wall_ms, &trust, err, sizeof err) != TS_OK) {
        TS_ERROR("hub", "%s", err);
        ts_hub_store_close(store);
        return 1;
    }
    /* Block the stop signals before any thread exists so every connection
     * thread inherits the mask and only sigwait() below sees them. */
    sigset_t stop;
    sigemptyset(&stop);
    sigaddset(&stop, SIGINT);
    sigaddset(&stop, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &stop, NULL);
    signal(SIGPIPE, SIG_IGN);
    if (ts_hub_store_watch(store) != TS_OK)
        TS_WARN("hub", "cannot watch %s for other processes' commits: long-polls look each second",
                cfg.db);

    bool tls = cfg.tls_cert[0] != '\0';
    /* Purchases still waiting from before a restart go out at once. */
    snprintf(err, sizeof err, "cannot start the forwarder thread");
    if (cfg.nsinks > 0 && (ts_hub_upstream_new(store, &cfg, &upstream, err, sizeof err) != TS_OK ||
                           ts_hub_upstream_start(upstream) != TS_OK)) {
        TS_ERROR("hub", "sinks: %s", err);
        goto out;
    }
    if (ts_hub_throttle_new(&cfg, &throttle) != TS_OK ||
        ts_hub_fleet_new(cfg.fleet_stale_after_s, &fleet) != TS_OK) {
        TS_ERROR("hub", "out of memory");
        goto out;
    }
    ts_hub_throttle_on_flag(throttle, ts_hub_trust_record_flag, trust);
    struct ts_hub_api api = {.cfg = &cfg,
                             .store = store,
                             .now_ms = wall_ms,
                             .trust = trust,
                             .upstream = upstream,
                             .throttle = throttle,
                             .fleet = fleet};
    struct ts_httpd_opts o = {
        .listen = cfg.listen,
        .cert_file = tls ? cfg.tls_cert : NULL,
        .key_file = tls ? cfg.tls_key : NULL,
        .client_ca_file = tls ? cfg.client_ca : NULL,
        .max_body = TS_HUB_MAX_BODY,
        .peer_check = ts_hub_trust_peer_ok, /* revoked terminals */
        .peer_check_ud = trust,
    };
    ts_hub_api_serve_opts(&cfg, &o);
    /* Hubs on one PostgreSQL share their session ticket keys through it;
     * an SQLite hub, alone on its file, keeps them in memory. */
    if (ts_sql_target_is_pg(cfg.db)) {
        o.ticket_keys = ts_hub_ticket_keys;
        o.ticket_keys_ud = store;
    }
    if (ts_httpd_start(&o, ts_hub_api_handle, &api, &srv, err, sizeof err) != TS_OK) {
        TS_ERROR("hub", "%s", err);
        goto out;
    }
    ts_hub_store_on_feed(store, wake_store, srv); /* a store's parked long-polls look again */
    ts_hub_metrics_set_server("main", srv);
    char host[256];
    listen_host(cfg.listen, host, sizeof host);
    TS_INFO("hub", "listening on %s://%s:%d", tls ? "https" : "http", host, ts_httpd_port(srv));
    if (!tls)
        TS_WARN("hub", "no tls_cert: plain HTTP, expecting a TLS-terminating proxy in front");
    ts_hub_trust_set_main_port(trust, ts_httpd_port(srv));
    if (ts_hub_proxy_start(&api, &proxy_srv, err, sizeof err) != TS_OK) {
        TS_ERROR("hub", "[hub] listen_plain: %s", err);
        goto out;
    }
    if (proxy_srv) {
        ts_hub_store_on_feed(store, wake_store, proxy_srv);
        ts_hub_metrics_set_server("plain", proxy_srv);
    }
    if (cfg.cdp_listen[0]) {
        /* The CDP's webhook or SDK: server-only TLS, Basic auth per batch. */
        struct ts_httpd_opts co = {
            .listen = cfg.cdp_listen,
            .cert_file = cfg.tls_cert,
            .key_file = cfg.tls_key,
            .no_client_cert = true,
            .max_body = TS_HUB_MAX_BODY,
        };
        ts_hub_api_serve_opts(&cfg, &co);
        if (ts_httpd_start(&co, ts_hub_api_cdp_handle, &api, &cdp_srv, err, sizeof err) != TS_OK) {
            TS_ERROR("hub", "[hub] cdp_listen: %s", err);
            goto out;
        }
        listen_host(cfg.cdp_listen, host, sizeof host);
        TS_INFO("hub", "CDP listener on https://%s:%d", host, ts_httpd_port(cdp_srv));
        ts_hub_metrics_set_server("cdp", cdp_srv);
    }
    if (cfg.enroll_listen[0]) {
        /* Same server certificate, but no client certificate asked: new
         * terminals have none yet and prove themselves with a token. */
        struct ts_httpd_opts eo = {
            .listen = cfg.enroll_listen,
            .cert_file = tls ? cfg.tls_cert : NULL,
            .key_file = tls ? cfg.tls_key : NULL,
            .no_client_cert = true,
            .max_body = 64 * 1024,
        };
        ts_hub_api_serve_opts(&cfg, &eo);
        eo.classify = NULL;
        eo.max_conns = 256;
        eo.workers = 2;
        if (ts_httpd_start(&eo, ts_hub_enroll_listener_handle, &api, &enroll_srv, err,
                           sizeof err) != TS_OK) {
            TS_ERROR("hub", "enrolment listener: %s", err);
            goto out;
        }
        ts_hub_metrics_set_server("enroll", enroll_srv);
        listen_host(cfg.enroll_listen, host, sizeof host);
        TS_INFO("hub", "enrolment on %s://%s:%d", tls ? "https" : "http", host,
                ts_httpd_port(enroll_srv));
    }
    if (ts_hub_janitor_start(store, &cfg.retention, cfg.tombstone_days, &janitor) != TS_OK) {
        TS_ERROR("hub", "cannot start the retention janitor");
        goto out;
    }
    /* READY=1 for Type=notify, and the watchdog pings (sdnotify.h). */
    int sig = ts_sd_run_until_signal(&stop, NULL, NULL);
    TS_INFO("hub", "stopping on %s", sig == SIGINT ? "SIGINT" : "SIGTERM");
    code = 0;
out:
    ts_hub_janitor_stop(janitor);
    ts_hub_store_shutdown(store);              /* ends long-polls, or stopping waits for them */
    ts_hub_store_on_change(store, NULL, NULL); /* nothing wakes a stopped server */
    ts_hub_metrics_set_server(NULL, NULL);     /* nor reads its counters */
    ts_httpd_stop(enroll_srv);
    ts_httpd_stop(cdp_srv);
    ts_httpd_stop(proxy_srv);
    ts_httpd_stop(srv);
    ts_hub_upstream_free(upstream);
    ts_hub_throttle_free(throttle);
    ts_hub_fleet_free(fleet);
    ts_hub_trust_close(trust);
    ts_hub_store_close(store);
    return code;
}

static void add_flag(void *ud, const struct ts_hub_flag *f)
{
    char at[40];
    ts_iso8601(f->at_ms, at, sizeof at);
    json_array_append_new(ud, json_pack("{s:s, s:s, s:s, s:I, s:I}", "store", f->store, "terminal",
                                        f->terminal, "flagged_at", at, "lookups",
                                        (json_int_t)f->lookups, "misses", (json_int_t)f->misses));
}

static int cmd_stats(const char *conf)
{
    struct ts_hub_config cfg;
    struct ts_hub_store *store = NULL;
    char err[512];
    ts_buf out = {0};
    if (ts_hub_cmd_config(conf, &cfg))
        return 1;
    if (ts_hub_store_open(cfg.db, &cfg.key, TS_HUB_STORE_RDONLY, &store, err, sizeof err) !=
        TS_OK) {
        fprintf(stderr, "tillside-hub: %s\n", err);
        return 1;
    }
    int rc = ts_hub_store_stats(store, &out);
    json_t *o = rc == TS_OK ? json_loads(out.data, 0, NULL) : NULL, *flags = json_array();
    /* The terminals flagged for lookups that mostly miss (throttle.h), as the
     * running hubs recorded them. */
    if (o && flags && ts_hub_trust_list_flags(cfg.db, add_flag, flags, err, sizeof err) == TS_OK) {
        json_object_set(o, "flagged_terminals", flags);
        ts_buf sq = {0};
        json_t *sinks =
            ts_hub_sinkq_list(store, NULL, 0, &sq) == TS_OK ? json_loads(sq.data, 0, NULL) : NULL;
        if (sinks) /* per sink: pending, sent, dead, skipped, oldest age */
            json_object_set(o, "sinks", json_object_get(sinks, "sinks"));
        json_decref(sinks);
        ts_buf_free(&sq);
        char *text = json_dumps(o, JSON_COMPACT);
        if (text) {
            ts_buf_reset(&out);
            ts_buf_puts(&out, text);
            free(text);
        }
    }
    json_decref(flags);
    json_decref(o);
    if (rc == TS_OK)
        printf("%s\n", out.data);
    else
        fprintf(stderr, "tillside-hub: stats: %s\n", ts_strerror(rc));
    ts_buf_free(&out);
    ts_hub_store_close(store);
    return rc == TS_OK ? 0 : 1;
}

int main(int argc, char **argv)
{
    const char *conf = DEFAULT_CONF, *cmd = NULL;
    /* Everything the hub writes holds customer data or secrets: hub.db and
     * its -wal/-shm, the CRL, keys and certificates from pki, the import's
     * files. Owner only, as the agent, also when run outside systemd
     * (whose unit sets UMask=0077 as well). */
    umask(077);
    /* -c may come before or after the command; the first other word is the
     * command, and pki/gen take the rest of the line as their own. */
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "-c") == 0 || strcmp(argv[i], "--config") == 0) {
            if (i + 1 >= argc) {
                fprintf(stderr, "tillside-hub: %s needs a file\n", argv[i]);
                return 2;
            }
            conf = argv[++i];
        } else if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
            usage(stdout);
            return 0;
        } else if (!cmd) {
            cmd = argv[i];
            if (strcmp(cmd, "pki") == 0)
                return ts_pki_main(argc - i, argv + i);
            if (strcmp(cmd, "gen") == 0)
                return ts_hub_gen_main(argc - i, argv + i);
            if (strcmp(cmd, "erase") == 0)
                return ts_hub_erase_main(argc - i, argv + i, conf);
            if (strcmp(cmd, "import") == 0)
                return ts_hub_import_main(argc - i, argv + i, conf);
            if (strcmp(cmd, "enroll-token") == 0)
                return ts_hub_enroll_token_main(argc - i, argv + i, conf);
            if (strcmp(cmd, "revoke") == 0)
                return ts_hub_revoke_main(argc - i, argv + i, conf);
            if (strcmp(cmd, "upstream") == 0)
                return ts_hub_upstream_main(argc - i, argv + i, conf);
            if (strcmp(cmd, "crl") == 0)
                return ts_hub_crl_main(argc - i, argv + i, conf);
            if (strcmp(cmd, "fleet") == 0)
                return ts_hub_fleet_main(argc - i, argv + i, conf);
        } else {
            fprintf(stderr, "tillside-hub: unexpected argument '%s'\n", argv[i]);
            usage(stderr);
            return 2;
        }
    }
    if (!cmd) {
        usage(stderr);
        return 2;
    }
    if (strcmp(cmd, "run") == 0)
        return cmd_run(conf);
    if (strcmp(cmd, "stats") == 0)
        return cmd_stats(conf);
    if (strcmp(cmd, "check-config") == 0)
        return ts_hub_check_config_main(conf); /* cmd_check_config.c */
    if (strcmp(cmd, "version") == 0) {
        char lib[64];
        ts_tls_library(lib, sizeof lib);
        printf("tillside-hub %s\n%s, TLS 1.2 up to %s\n", TS_VERSION, lib, ts_tls_best_version());
        return 0;
    }
    fprintf(stderr, "tillside-hub: unknown command '%s'\n", cmd);
    usage(stderr);
    return 2;
}
