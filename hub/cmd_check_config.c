/*
 * `tillside-hub check-config`: the configuration as `run` would load it, plus
 * what `run` would only find out later: that the key and certificate files it
 * names can be read by this user, and that the database directory exists or
 * can be made. systemd runs it as ExecStartPre, so a typo shows in
 * `systemctl status` as "hub.conf:7: [hub] tls_key: ..." instead of a crash
 * loop. Exit codes: 0 ok, 1 an error (printed), as tillside-hub(1) says.
 */
#include "cmd.h"
#include "sql.h"
#include "../common/conf.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

/* A named file that cannot be read, reported against the line naming it. */
static int readable(const struct ts_conf *c, const char *sec, const char *key, const char *path)
{
    if (!path[0] || access(path, R_OK) == 0)
        return 0;
    char where[TS_HUB_PATH_MAX + 32];
    fprintf(stderr, "tillside-hub: %s: [%s] %s: cannot read %s (%s)\n",
            ts_conf_where(c, sec, key, where, sizeof where), sec, key, path, strerror(errno));
    return 1;
}

/* The directory of the database must exist and be writable, or its parent
 * must be (run makes it). */
static int db_dir_ok(const struct ts_conf *c, const char *db)
{
    char dir[TS_HUB_PATH_MAX];
    if (ts_sql_target_is_pg(db))
        return 0; /* a server: `tillside-hub stats` shows whether it answers */
    ts_strlcpy(dir, db, sizeof dir);
    char *slash = strrchr(dir, '/');
    if (!slash)
        ts_strlcpy(dir, ".", sizeof dir);
    else if (slash == dir)
        slash[1] = '\0';
    else
        *slash = '\0';
    if (access(dir, W_OK | X_OK) == 0)
        return 0;
    if (errno == ENOENT) {
        char parent[TS_HUB_PATH_MAX];
        ts_strlcpy(parent, dir, sizeof parent);
        char *ps = strrchr(parent, '/');
        if (ps && ps != parent)
            *ps = '\0';
        if (ps && access(parent, W_OK | X_OK) == 0)
            return 0;
    }
    char where[TS_HUB_PATH_MAX + 32];
    fprintf(stderr, "tillside-hub: %s: [hub] db: cannot write in %s (%s)\n",
            ts_conf_where(c, "hub", "db", where, sizeof where), dir, strerror(errno));
    return 1;
}

int ts_hub_check_config_main(const char *conf)
{
    struct ts_hub_config cfg;
    struct ts_conf *c = NULL;
    char err[1024];
    if (ts_hub_cmd_config(conf, &cfg))
        return 1;
    /* Loaded once more for the line numbers; it parsed a moment ago. */
    if (ts_conf_load(conf, &c, err, sizeof err) != TS_OK) {
        fprintf(stderr, "tillside-hub: %s\n", err);
        return 1;
    }
    int bad =
        readable(c, "hub", "tls_cert", cfg.tls_cert) + readable(c, "hub", "tls_key", cfg.tls_key) +
        readable(c, "hub", "client_ca", cfg.client_ca) +
        readable(c, "hub", "ca_cert", cfg.ca_cert) + readable(c, "hub", "ca_key", cfg.ca_key) +
        (cfg.upstream_url[0] ? readable(c, "upstream", "ca_file", cfg.upstream_ca_file) : 0) +
        db_dir_ok(c, cfg.db);
    /* Each sink's CA file; the sinks are listed without their credentials. */
    for (size_t i = 0; i < cfg.nsinks; i++) {
        const struct ts_sink_conf *k = &cfg.sinks[i];
        char sec[80];
        snprintf(sec, sizeof sec, "sink.%s", k->name);
        if (strcmp(k->name, "upstream") != 0 || ts_conf_get(c, sec, "type", NULL))
            bad += readable(c, sec, "ca_file", k->ca_file);
    }
    ts_conf_free(c);
    if (bad)
        return 1;
    /* A long-poll is held up to TS_HUB_FEED_MAX_WAIT s, and the terminal
     * is only seen again when it asks anew. */
    if (cfg.fleet_stale_after_s < TS_HUB_FEED_MAX_WAIT + 5)
        fprintf(stderr,
                "tillside-hub: warning: [fleet] stale_after_s = %d is shorter than a long-poll "
                "(%d s): long-polling terminals will show as stale\n",
                cfg.fleet_stale_after_s, TS_HUB_FEED_MAX_WAIT);
    ts_hub_sources_check(&cfg, stdout);
    ts_hub_predict_check(&cfg.predict, stdout);
    printf("%s: OK\n", conf);
    static const char *const kinds[] = {"purchases", "returns", "consent", "coupons"};
    for (size_t i = 0; i < cfg.nsinks; i++) {
        /* the kinds it gets: its send, or its type's default for its keys */
        char send[80] = "";
        for (size_t b = 0; b < sizeof kinds / sizeof kinds[0]; b++)
            if (cfg.sinks[i].send & (1u << b))
                snprintf(send + strlen(send), sizeof send - strlen(send), "%s%s",
                         send[0] ? ", " : "", kinds[b]);
        printf("sink %s: %s at %s, send = %s\n", cfg.sinks[i].name, cfg.sinks[i].type,
               cfg.sinks[i].url, send);
    }
    return 0;
}
