/*
 * HQ sees every till (docs/PROTOCOL.md "Health reports", docs/OPERATIONS.md
 * "Fleet"): the health report a terminal sends with its feed polls, parsed
 * and checked strictly (fleet.c), the last one per terminal in the hub
 * database (fleet_db.c), and what reads it: `tillside-hub fleet`
 * (cmd_fleet.c), the store aggregates on /metrics (metrics.c) and the
 * read-only fleet page for HQ (fleet_http.c).
 *
 * Who a report is about comes from the verified client certificate (O, OU,
 * CN), never from the report itself.
 */
#ifndef TS_HUB_FLEET_H
#define TS_HUB_FLEET_H

#include "hub.h"

#define TS_FLEET_HEADER "X-Tillside-Health"
#define TS_FLEET_MAX_ENCODED 2048 /* base64url characters of the header value */
#define TS_FLEET_MAX_JSON 1536    /* bytes of report JSON */
#define TS_FLEET_MAX_INPUTS 16
#define TS_FLEET_MAX_TEXT 128 /* version, OS release */
#define TS_FLEET_MAX_NAME 64  /* input names */

/* Thresholds of `--unhealthy` and the page (docs/OPERATIONS.md "Fleet"). */
#define TS_FLEET_OUTBOX_OLD_S 900 /* oldest purchase waiting longer than 15 min */
#define TS_FLEET_CERT_DAYS 14     /* certificate expiring within 14 days */
#define TS_FLEET_SKEW_S 60        /* clock off the hub's by more than a minute */

struct ts_fleet_input {
    char name[TS_FLEET_MAX_NAME + 1];
    char state[16]; /* waiting, open, error */
};

/* One report; fields the agent could not know are flagged absent. */
/* One day of a terminal's transactions (the match rate, matchrate.c). */
#define TS_FLEET_MAX_TX 3
struct ts_fleet_tx {
    char day[11]; /* the terminal's local day, YYYY-MM-DD */
    int64_t all, identified;
};

struct ts_fleet_report {
    char version[TS_FLEET_MAX_TEXT + 1];
    char os[TS_FLEET_MAX_TEXT + 1]; /* /etc/os-release PRETTY_NAME, "" unknown */
    bool link_up;
    int64_t lag_s;        /* seconds since the agent last held the hub's latest; -1 never */
    int64_t cards;        /* customer cards in the cache */
    int64_t outbox_depth; /* purchases waiting to be uploaded */
    int64_t outbox_oldest_s;
    int64_t dead_letters;
    size_t ninputs;
    struct ts_fleet_input inputs[TS_FLEET_MAX_INPUTS];
    bool has_cert;
    int64_t cert_days;
    bool has_skew;
    int64_t skew_s; /* agent clock minus the hub's Date header */
    size_t ntx;     /* "tx": transactions per local day, newest first */
    struct ts_fleet_tx tx[TS_FLEET_MAX_TX];
    int64_t utc_offset_s;
};

/*
 * Parses report JSON text[0..len) (at most TS_FLEET_MAX_JSON bytes) into
 * *out: an object with "v":1 and the fields of docs/PROTOCOL.md, every one
 * of its type and range, strings printable ASCII within their bounds;
 * unknown keys are refused too, so a report is all or nothing. err says what
 * is wrong ("inputs[2].state: ...").
 */
enum ts_err ts_fleet_report_parse(const char *text, size_t len, struct ts_fleet_report *out,
                                  char *err, size_t errsz);
/* The X-Tillside-Health header value: base64url (no padding) of the JSON. */
enum ts_err ts_fleet_report_decode(const char *value, size_t len, struct ts_fleet_report *out,
                                   char *err, size_t errsz);
/* The report as compact JSON in the same format (what the database keeps
 * and the JSON endpoint shows). */
enum ts_err ts_fleet_report_json(const struct ts_fleet_report *r, ts_buf *out);

/* ---- fleet_db.c: the last report per terminal ------------------------------*/

struct ts_fleet_row {
    char tenant[64], store[64], terminal[64];
    int64_t seen_ms;     /* last feed poll */
    int64_t reported_ms; /* last report; 0 = none yet */
    bool has_report;
    struct ts_fleet_report r;
};

enum {
    TS_FLEET_STALE = 1 << 0,
    TS_FLEET_LINK_DOWN = 1 << 1,
    TS_FLEET_OUTBOX_OLD = 1 << 2,
    TS_FLEET_DEAD_LETTERS = 1 << 3,
    TS_FLEET_CERT_EXPIRING = 1 << 4,
    TS_FLEET_CLOCK_SKEW = 1 << 5,
    TS_FLEET_INPUT_NOT_OPEN = 1 << 6,
    TS_FLEET_NO_REPORT = 1 << 7,
    TS_FLEET_NPROBLEMS = 8,
};
/* The problems of a row at now_ms (TS_FLEET_* bits), and their names
 * ("stale", "link_down" ...). */
unsigned ts_fleet_problems(const struct ts_fleet_row *row, int64_t now_ms, int stale_after_s);
const char *ts_fleet_problem_name(unsigned bit);

/* The row as a JSON object (store, terminal, seen_at, age_s, stale,
 * problems, report); NULL without memory. */
struct json_t *ts_fleet_row_json(const struct ts_fleet_row *row, int64_t now_ms, int stale_after_s);

struct ts_hub_fleet;
/* The in-memory side (how recently each terminal's poll was written, so a
 * poll costs a write only every few seconds). stale_after_s sets that
 * interval. */
enum ts_err ts_hub_fleet_new(int stale_after_s, struct ts_hub_fleet **out);
void ts_hub_fleet_free(struct ts_hub_fleet *f); /* NULL ok */

/*
 * Called on every feed poll of a verified terminal: records that it was
 * seen, and its report when the request carries one (X-Tillside-Health). A
 * malformed report is logged (rate-bounded) and dropped; the poll itself
 * is never refused for it. f NULL: nothing.
 */
void ts_hub_fleet_note(struct ts_hub_fleet *f, struct ts_hub_store *s,
                       const struct ts_peer_id *peer, const struct ts_http_msg *msg,
                       int64_t now_ms);

/* Calls fn for every terminal (of store, NULL = all) ordered by store and
 * terminal; row lives during the call. */
enum ts_err ts_hub_fleet_list(struct ts_hub_store *s, const char *store,
                              void (*fn)(void *ud, const struct ts_fleet_row *row), void *ud);

/* Removes the terminals that left the fleet: terminal (of store, NULL = of
 * every store) when terminal is given, else those of store (NULL = all)
 * not seen since before_ms. fn (may be NULL) is called for each removed
 * one; *removed counts them. A terminal that polls again reappears. */
enum ts_err ts_hub_fleet_forget(struct ts_hub_store *s, const char *store, const char *terminal,
                                int64_t before_ms,
                                void (*fn)(void *ud, const char *store, const char *terminal,
                                           int64_t seen_ms),
                                void *ud, long *removed);

/* A terminal as the page lists it: what the database keeps, unparsed. */
struct ts_fleet_brief {
    const char *tenant, *store, *terminal;
    int64_t seen_ms, reported_ms;
    unsigned problems;  /* TS_FLEET_* at now_ms */
    const char *report; /* the hub's JSON form, NULL = none */
};
/* Calls fn for every terminal (of store, NULL = all) ordered by store and
 * terminal; b lives during the call. Parses no report: the page's path for
 * 10,000 terminals. */
enum ts_err ts_hub_fleet_each(struct ts_hub_store *s, const char *store, int64_t now_ms,
                              int stale_after_s,
                              void (*fn)(void *ud, const struct ts_fleet_brief *b), void *ud);

/* Store aggregates in Prometheus text (metrics.c): terminals, stale and
 * unhealthy ones, outbox depth and dead letters, per store. */
void ts_hub_fleet_metrics(struct ts_hub_store *s, int64_t now_ms, int stale_after_s, ts_buf *b);

/* ---- fleet_http.c: the fleet page for HQ -----------------------------------*/

/* GET /fleet (the page), GET /fleet.js and GET /v1/fleet (its JSON): a
 * verified client certificate of the tenant, or [fleet] admin_user with its
 * password (Basic). */
void ts_hub_fleet_page(struct ts_hub_api *api, const struct ts_httpd_req *req,
                       struct ts_httpd_resp *resp);
void ts_hub_fleet_script(struct ts_hub_api *api, const struct ts_httpd_req *req,
                         struct ts_httpd_resp *resp);
void ts_hub_fleet_json(struct ts_hub_api *api, const struct ts_httpd_req *req,
                       struct ts_httpd_resp *resp);

#endif
