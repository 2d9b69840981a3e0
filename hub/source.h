/*
 * Inbound CDP sources (source.c, docs/PROTOCOL.md "Sources"): each
 * [source.NAME] section of hub.conf names a vendor's outbound webhook that
 * POSTs to /v1/sources/NAME. This header holds only what the configuration
 * needs, so hub.h can embed it; the adapters' shared plumbing is in
 * source_int.h.
 */
#ifndef TS_HUB_SOURCE_H
#define TS_HUB_SOURCE_H

#include "../common/ts.h"

#include <stdbool.h>
#include <stddef.h>

#define TS_HUB_MAX_SOURCES 16

enum ts_hub_source_type {
    TS_SRC_SEGMENT = 1, /* segment_webhook: Segment Webhooks (Actions) */
    TS_SRC_RUDDERSTACK, /* rudderstack_webhook */
    TS_SRC_BRAZE,       /* braze_currents: Currents custom HTTP connector */
    TS_SRC_KLAVIYO,     /* klaviyo_webhook: Klaviyo system webhooks */
    TS_SRC_BLOOMREACH,  /* bloomreach_webhook: Engagement scenario webhooks */
    TS_SRC_SALESFORCE,  /* salesforce_data_action: Data Cloud webhook data action */
};

struct ts_hub_source_conf {
    char name[64];    /* the NAME of /v1/sources/NAME */
    int type;         /* enum ts_hub_source_type */
    char secret[256]; /* signing secret, bearer token or password; never logged */
    char user[128];   /* bloomreach_webhook: the Basic-auth user name */
    char header[64];  /* rudderstack_webhook: the header carrying the secret */
    int window_s;     /* signed send time may be at most this far from now; 0 = unchecked */
};

struct ts_hub_config;
struct ts_conf;

/* Reads every [source.NAME] section into o->sources (config.c). */
enum ts_err ts_hub_sources_conf(const struct ts_conf *c, struct ts_hub_config *o, char *err,
                                size_t errsz);
/* check-config: one line per source on out (names and types, no secrets);
 * returns 0. */
int ts_hub_sources_check(const struct ts_hub_config *cfg, void *out_file);
struct ts_hub_api;
struct ts_hub_store;
struct ts_httpd_req;
struct ts_httpd_resp;

/* POST /v1/sources/NAME (any path under /v1/sources/ comes here). */
void ts_hub_sources_handle(struct ts_hub_api *api, const struct ts_httpd_req *req,
                           struct ts_httpd_resp *resp);
/* The sources' counters in Prometheus text (metrics.c). */
void ts_hub_sources_metrics(const struct ts_hub_config *cfg, ts_buf *b);
/* The replay cache's table (a schema part, store.c). */
enum ts_err ts_hub_source_schema(struct ts_hub_store *s);
/* The type's name in hub.conf ("braze_currents"), "?" when unknown. */
const char *ts_hub_source_type_name(int type);

#endif
