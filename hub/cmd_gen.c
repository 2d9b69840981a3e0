/*
 * `tillside-hub gen`: plausible online behaviour for demos and benchmarks,
 * sent through the real /v1/batch endpoint the way a CDP would, or written
 * as Segment events one per line (--out) for `tillside-hub import`, which
 * fills a million-customer database far faster than HTTP batches. Everything
 * but the timestamps (which trail "now") follows from --seed, including the
 * messageIds, so running it twice with one seed stores nothing new.
 */
#include "cmd.h"
#include "../sync/httpc.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DAY_MS (24LL * 3600 * 1000)
#define MAX_BODY (400u * 1024u) /* flush before the hub's 500 KB limit */

struct gen {
    uint64_t rng;
    unsigned long long seed;
    char **stores;
    size_t nstores;
    json_t *batch; /* events not sent yet */
    size_t pending_bytes;
    size_t batch_max;
    size_t sent_events, sent_batches;
    struct ts_httpc *http;
    FILE *out; /* --out: events go here, one JSON object per line */
    char auth[600];
    int64_t now;
};

/* splitmix64: small, fast and the same on every platform. */
static uint64_t rnd(struct gen *g)
{
    uint64_t z = (g->rng += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static unsigned pick(struct gen *g, unsigned n)
{
    return (unsigned)(rnd(g) % n);
}

static bool chance(struct gen *g, unsigned percent)
{
    return pick(g, 100) < percent;
}

/* ---- catalogue: 20 product lines x 10 colours = 200 products ------------- */

static const struct {
    const char *code, *name;
    double price;
} lines[] = {
    {"RUN", "Trail Runner", 89.0},       {"JKT", "Rain Jacket", 129.0},
    {"HAT", "Wool Hat", 19.0},           {"SCF", "Merino Scarf", 34.0},
    {"BCK", "Day Pack 20L", 59.0},       {"BOT", "Hiking Boot", 149.0},
    {"FLC", "Fleece Pullover", 69.0},    {"TEE", "Organic Tee", 24.0},
    {"SCK", "Trek Socks 2-pack", 15.0},  {"GLV", "Touch Gloves", 29.0},
    {"TNT", "Ultralight Tent", 299.0},   {"BAG", "Sleeping Bag", 179.0},
    {"BTL", "Steel Bottle", 22.0},       {"LMP", "Head Torch", 39.0},
    {"PNT", "Softshell Trousers", 99.0}, {"SHT", "Flannel Shirt", 49.0},
    {"VST", "Down Vest", 119.0},         {"CAP", "Running Cap", 21.0},
    {"SND", "Trail Sandal", 64.0},       {"UMB", "Storm Umbrella", 32.0},
};
static const char *colours[] = {"Black", "Navy", "Olive", "Red",   "Grey",
                                "Sand",  "Blue", "Green", "White", "Plum"};
#define NLINES (sizeof lines / sizeof lines[0])
#define NPRODUCTS (NLINES * 10)

struct product {
    char sku[24];
    char name[64];
    double price;
};

/* What people shop for together (indexes into lines[]): a customer leans to
 * one activity and one colour, so customers who view the same product view
 * and buy its companions, and the hub's co-occurrence suggestion
 * (hub/suggest.c) has something real to find. */
static const struct {
    unsigned n, line[5];
} activities[] = {
    {5, {0, 17, 8, 7, 12}}, /* running: shoes, cap, socks, tee, bottle */
    {5, {5, 4, 14, 8, 13}}, /* hiking: boots, pack, trousers, socks, torch */
    {4, {10, 11, 13, 12}},  /* camping: tent, bag, torch, bottle */
    {5, {2, 3, 9, 6, 16}},  /* cold: hat, scarf, gloves, fleece, vest */
    {4, {1, 19, 14, 15}},   /* rain: jacket, umbrella, trousers, shirt */
    {4, {18, 7, 17, 4}},    /* summer: sandals, tee, cap, pack */
};
#define NACTIVITIES (sizeof activities / sizeof activities[0])

/* A product of activity a, mostly in the person's colour. */
static unsigned companion(struct gen *g, unsigned a, unsigned colour)
{
    unsigned line = activities[a].line[pick(g, activities[a].n)];
    return line * 10 + (chance(g, 75) ? colour : pick(g, 10));
}

static void product(unsigned i, struct product *p)
{
    unsigned l = (i / 10) % (unsigned)NLINES, c = i % 10;
    snprintf(p->sku, sizeof p->sku, "SKU-%s-%02u", lines[l].code, c + 1);
    snprintf(p->name, sizeof p->name, "%s, %s", lines[l].name, colours[c]);
    p->price = lines[l].price + (double)(c % 3) * 5.0;
}

static const char *first_names[] = {
    "Ada",     "Grace",  "Alan",  "Linus", "Margaret", "Ken",   "Barbara",   "Dennis",
    "Frances", "Edsger", "Radia", "Tim",   "Hedy",     "John",  "Katherine", "Niklaus",
    "Sophie",  "Lukas",  "Emma",  "Noah",  "Mia",      "Elias", "Lena",      "Jonas",
    "Clara",   "Felix",  "Ines",  "Mateo", "Amelie",   "Oskar", "Zoe",       "Hugo",
    "Nora",    "Leon",   "Freya", "Arjun", "Yuki",     "Omar",  "Aisha",     "Pablo"};
static const char *last_names[] = {
    "Lovelace", "Hopper",   "Turing",  "Torvalds",    "Hamilton", "Thompson", "Liskov",  "Ritchie",
    "Allen",    "Dijkstra", "Perlman", "Berners-Lee", "Lamarr",   "Backus",   "Johnson", "Wirth",
    "Meier",    "Schmidt",  "Dubois",  "Rossi",       "Garcia",   "Jansen",   "Novak",   "Kowalski",
    "Nielsen",  "Silva",    "Murphy",  "Costa",       "Weber",    "Fischer",  "Martin",  "Bernard",
    "Moreau",   "Laurent",  "Bianchi", "Romano",      "Sato",     "Khan",     "Haddad",  "Lopez"};
#define NAMES(a) ((unsigned)(sizeof a / sizeof a[0]))

/* "21" + 10 digits + EAN-13 check digit. The 10 digits are an affine
 * permutation of the customer index, so ids are unique within a run and
 * look unrelated to each other. */
static void loyalty_id(unsigned long long seed, size_t i, char out[14])
{
    unsigned long long body =
        ((unsigned long long)i * 7919ULL + seed * 104729ULL + 1234567ULL) % 10000000000ULL;
    snprintf(out, 14, "21%010llu", body);
    int sum = 0;
    for (int k = 0; k < 12; k++)
        sum += (out[k] - '0') * (k % 2 ? 3 : 1);
    out[12] = (char)('0' + (10 - sum % 10) % 10);
    out[13] = '\0';
}

/* ---- sending -------------------------------------------------------------- */

/* Writes the pending events as JSON lines (--out). */
static int flush_file(struct gen *g)
{
    size_t i;
    json_t *ev;
    json_array_foreach(g->batch, i, ev)
    {
        if (json_dumpf(ev, g->out, JSON_COMPACT) != 0 || fputc('\n', g->out) == EOF) {
            perror("gen: writing events");
            return 1;
        }
    }
    g->sent_events += json_array_size(g->batch);
    g->sent_batches++;
    json_array_clear(g->batch);
    g->pending_bytes = 0;
    return 0;
}

static int flush(struct gen *g)
{
    if (json_array_size(g->batch) == 0)
        return 0;
    if (g->out)
        return flush_file(g);
    json_t *root = json_pack("{s:O}", "batch", g->batch);
    char *body = root ? json_dumps(root, JSON_COMPACT) : NULL;
    json_decref(root);
    if (!body) {
        fprintf(stderr, "gen: out of memory\n");
        return 1;
    }
    int code = 1;
    /* Retrying is safe: the hub drops events whose messageId it has seen. */
    for (int attempt = 1; attempt <= 3; attempt++) {
        struct ts_http_resp r = {0};
        int rc = ts_httpc_request(g->http, "POST", "/v1/batch", g->auth, "application/json", body,
                                  strlen(body), 30000, &r);
        if (rc != TS_OK) {
            fprintf(stderr, "gen: sending batch %zu (attempt %d): %s\n", g->sent_batches + 1,
                    attempt, ts_httpc_error(g->http));
            ts_http_resp_free(&r);
            ts_sleep_ms(500LL * attempt);
            continue;
        }
        if (r.status != 200)
            fprintf(stderr, "gen: hub refused batch %zu: HTTP %d %s\n", g->sent_batches + 1,
                    r.status, r.body.data ? r.body.data : "");
        else
            code = 0;
        ts_http_resp_free(&r);
        break;
    }
    free(body);
    if (code == 0) {
        g->sent_events += json_array_size(g->batch);
        g->sent_batches++;
        json_array_clear(g->batch);
        g->pending_bytes = 0;
    }
    return code;
}

/* Queues one event (stolen reference), flushing a full batch first. */
static int emit(struct gen *g, json_t *ev)
{
    if (!ev) {
        fprintf(stderr, "gen: out of memory\n");
        return 1;
    }
    size_t sz = json_dumpb(ev, NULL, 0, JSON_COMPACT) + 1;
    if ((json_array_size(g->batch) >= g->batch_max || g->pending_bytes + sz > MAX_BODY) && flush(g))
        return 1;
    g->pending_bytes += sz;
    return json_array_append_new(g->batch, ev) ? 1 : 0;
}

/* The common envelope: identity, messageId and timestamp. */
static json_t *envelope(struct gen *g, const char *type, const char *user, const char *anon,
                        size_t cust, unsigned *msg, int64_t at)
{
    char id[80], ts[40];
    if (at > g->now - 1000)
        at = g->now - 1000; /* nothing happens in the future */
    snprintf(id, sizeof id, "gen-%llu-%zu-%u", g->seed, cust, (*msg)++);
    ts_iso8601(at, ts, sizeof ts);
    json_t *e = json_pack("{s:s, s:s, s:s}", "type", type, "messageId", id, "timestamp", ts);
    if (e && user)
        json_object_set_new(e, "userId", json_string(user));
    if (e && anon)
        json_object_set_new(e, "anonymousId", json_string(anon));
    return e;
}

static json_t *track(struct gen *g, const char *event, const char *user, const char *anon,
                     size_t cust, unsigned *msg, int64_t at, json_t *props)
{
    json_t *e = envelope(g, "track", user, anon, cust, msg, at);
    if (!e || !props) {
        json_decref(e);
        json_decref(props);
        return NULL;
    }
    json_object_set_new(e, "event", json_string(event));
    json_object_set_new(e, "properties", props);
    return e;
}

static json_t *product_props(unsigned i, long qty)
{
    struct product p;
    product(i, &p);
    json_t *o = json_pack("{s:s, s:s, s:s, s:f}", "product_id", p.sku, "sku", p.sku, "name", p.name,
                          "price", p.price);
    if (o && qty > 0)
        json_object_set_new(o, "quantity", json_integer(qty));
    return o;
}

struct person {
    char user[64], anon[64], loyalty[14], name[96];
    const char *store;
    bool consent;
};

/* One customer's story, in time order: perhaps some anonymous browsing,
 * the identify, more views, cart changes, a wishlist entry, an order. */
static int customer(struct gen *g, size_t i, struct person *p)
{
    unsigned msg = 0;
    snprintf(p->user, sizeof p->user, "g%llu-%06zu", g->seed, i);
    snprintf(p->anon, sizeof p->anon, "anon-%llu-%06zu", g->seed, i);
    loyalty_id(g->seed, i, p->loyalty);
    const char *fn = first_names[pick(g, NAMES(first_names))];
    const char *ln = last_names[pick(g, NAMES(last_names))];
    snprintf(p->name, sizeof p->name, "%s %s", fn, ln);
    p->store = g->stores[pick(g, (unsigned)g->nstores)];
    p->consent = chance(g, 90);
    static const char *tiers[] = {"bronze", "silver", "gold", "platinum"};
    unsigned roll = pick(g, 100), tier = roll < 50 ? 0 : roll < 80 ? 1 : roll < 95 ? 2 : 3;

    /* 2-4 products this person is into, one of them strongly, from one
     * activity and mostly in one colour. */
    unsigned activity = pick(g, (unsigned)NACTIVITIES), colour = pick(g, 10);
    unsigned favs[4], nfav = 2 + pick(g, 3);
    for (unsigned k = 0; k < nfav; k++)
        favs[k] = companion(g, activity, colour);
    /* Stories start 6 to 9 days ago, so most views fall in the 7-day window
     * the card counts and some have already decayed. */
    int64_t t = g->now - 9 * DAY_MS + (int64_t)pick(g, (unsigned)(3 * DAY_MS));
    int rc = 0;
    bool browsed_anon = chance(g, 30);
    if (browsed_anon)
        for (unsigned k = 0; rc == 0 && k < 2; k++)
            rc = emit(g, track(g, "Product Viewed", NULL, p->anon, i, &msg, t += pick(g, 3600000),
                               product_props(favs[k % nfav], 0)));

    json_t *id = envelope(g, "identify", p->user, browsed_anon ? p->anon : NULL, i, &msg,
                          t += pick(g, 600000));
    json_t *traits =
        json_pack("{s:s, s:s, s:s, s:s, s:s, s:I, s:s, s:{s:b}}", "name", p->name, "firstName", fn,
                  "lastName", ln, "loyalty_id", p->loyalty, "tier", tiers[tier], "points",
                  (json_int_t)(100 * (tier + 1) + pick(g, 2000) * (tier + 1)), "home_store",
                  p->store, "consent", "personalization", p->consent);
    if (id && traits) {
        json_object_set_new(id, "traits", traits);
    } else {
        json_decref(traits);
        json_decref(id);
        id = NULL;
    }
    if (rc == 0)
        rc = emit(g, id);
    else
        json_decref(id);

    unsigned nviews = 3 + pick(g, 10);
    for (unsigned k = 0; rc == 0 && k < nviews; k++) {
        /* Half the views go to the first favourite: 3+ views are common. */
        unsigned prod = chance(g, 50)   ? favs[0]
                        : chance(g, 70) ? favs[pick(g, nfav)]
                                        : pick(g, NPRODUCTS);
        t += pick(g, (unsigned)(DAY_MS / 2));
        rc = emit(g, track(g, "Product Viewed", p->user, NULL, i, &msg, t, product_props(prod, 0)));
    }
    bool carted = chance(g, 40);
    if (rc == 0 && carted) {
        rc = emit(g, track(g, "Product Added", p->user, NULL, i, &msg, t += 60000,
                           product_props(favs[0], 1)));
        if (rc == 0 && nfav > 1)
            rc = emit(g, track(g, "Product Added", p->user, NULL, i, &msg, t += 60000,
                               product_props(favs[1], 1 + pick(g, 2))));
        if (rc == 0 && nfav > 1 && chance(g, 35))
            rc = emit(g, track(g, "Product Removed", p->user, NULL, i, &msg, t += 60000,
                               product_props(favs[1], 0)));
    }
    if (rc == 0 && chance(g, 20))
        rc = emit(g, track(g, "Product Added to Wishlist", p->user, NULL, i, &msg, t += 60000,
                           product_props(favs[nfav - 1], 0)));
    if (rc == 0 && chance(g, 25)) {
        char oid[64];
        snprintf(oid, sizeof oid, "W-%llu-%06zu", g->seed, i);
        unsigned prod = carted && chance(g, 50) ? favs[0] : companion(g, activity, colour);
        struct product pr;
        product(prod, &pr);
        json_t *props =
            json_pack("{s:s, s:f, s:f, s:s, s:[o]}", "order_id", oid, "total", pr.price, "revenue",
                      pr.price, "currency", "EUR", "products", product_props(prod, 1));
        rc = emit(g, track(g, "Order Completed", p->user, NULL, i, &msg,
                           t += pick(g, (unsigned)DAY_MS), props));
        /* Most orders move on: shipped, or waiting in the store for pickup
         * (what the associate can act on), now and then cancelled. */
        unsigned next = pick(g, 100);
        if (rc == 0 && next < 70) {
            json_t *sp = next >= 35 && next < 65 ? json_pack("{s:s, s:s}", "order_id", oid,
                                                             "status", "ready_for_pickup")
                                                 : json_pack("{s:s}", "order_id", oid);
            const char *name = next < 35   ? "Order Shipped"
                               : next < 65 ? "Order Updated"
                                           : "Order Cancelled";
            rc = emit(
                g, track(g, name, p->user, NULL, i, &msg, t += pick(g, (unsigned)DAY_MS / 4), sp));
        }
    }
    return rc;
}

static int parse_count(const char *opt, const char *v, unsigned long long max,
                       unsigned long long *out)
{
    char *end;
    unsigned long long n = strtoull(v, &end, 10);
    if (*v == '\0' || *end != '\0' || *v == '-' || n > max) {
        fprintf(stderr, "gen: %s expects a number up to %llu\n", opt, max);
        return 2;
    }
    *out = n;
    return 0;
}

int ts_hub_gen_main(int argc, char **argv)
{
    const char *url = NULL, *key = NULL, *ca = NULL, *cert = NULL, *keyf = NULL, *stores = NULL,
               *outf = NULL;
    unsigned long long customers = 0, seed = 1, batch = 200, sample = 0;
    int code = 2;
    struct gen g = {0};
    char *stores_copy = NULL;
    struct person *samples = NULL;
    for (int i = 1; i < argc; i++) {
        const char *o = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v) {
            fprintf(stderr, "gen: %s needs a value\n", o);
            goto out;
        }
        i++;
        int bad = 0;
        if (!strcmp(o, "--url"))
            url = v;
        else if (!strcmp(o, "--write-key"))
            key = v;
        else if (!strcmp(o, "--ca"))
            ca = v;
        else if (!strcmp(o, "--cert"))
            cert = v;
        else if (!strcmp(o, "--key"))
            keyf = v;
        else if (!strcmp(o, "--stores"))
            stores = v;
        else if (!strcmp(o, "--out"))
            outf = v;
        else if (!strcmp(o, "--customers"))
            bad = parse_count(o, v, 10000000, &customers);
        else if (!strcmp(o, "--seed"))
            bad = parse_count(o, v, 1000000000, &seed);
        else if (!strcmp(o, "--batch"))
            bad = parse_count(o, v, 5000, &batch);
        else if (!strcmp(o, "--sample"))
            bad = parse_count(o, v, 1000, &sample);
        else if (!strcmp(o, "-c") || !strcmp(o, "--config"))
            ; /* accepted for symmetry with the other commands; unused */
        else {
            fprintf(stderr, "gen: unknown option %s\n", o);
            bad = 2;
        }
        if (bad)
            goto out;
    }
    if ((outf ? (url || key) : (!url || !key)) || !stores || customers == 0 || batch == 0) {
        fprintf(stderr, "usage: tillside-hub gen (--url URL --write-key KEY | --out FILE) "
                        "--customers N --stores S001,S002\n"
                        "           [--ca F --cert F --key F] [--seed N] [--batch N] "
                        "[--sample K]\n");
        goto out;
    }
    code = 1;
    if (!(stores_copy = strdup(stores)) ||
        !(g.stores = calloc(strlen(stores) + 1, sizeof *g.stores)))
        goto out;
    for (char *save = NULL, *s = strtok_r(stores_copy, ",", &save); s;
         s = strtok_r(NULL, ",", &save))
        g.stores[g.nstores++] = s;
    if (g.nstores == 0) {
        fprintf(stderr, "gen: --stores names no store\n");
        code = 2;
        goto out;
    }
    if (outf) {
        /* A large buffer: a million customers are a few GB of lines. */
        if (!(g.out = fopen(outf, "w"))) {
            fprintf(stderr, "gen: %s: %s\n", outf, strerror(errno));
            goto out;
        }
        setvbuf(g.out, NULL, _IOFBF, 1u << 20);
    } else {
        char userpass[300], enc[420];
        if (snprintf(userpass, sizeof userpass, "%s:", key) >= (int)sizeof userpass) {
            fprintf(stderr, "gen: write key too long\n");
            code = 2;
            goto out;
        }
        ts_base64_encode(userpass, strlen(userpass), enc, sizeof enc);
        snprintf(g.auth, sizeof g.auth, "Authorization: Basic %s\r\n", enc);
        char err[256];
        struct ts_httpc_opts ho = {.base_url = url,
                                   .ca_file = ca,
                                   .cert_file = cert,
                                   .key_file = keyf,
                                   .user_agent = "tillside-hub-gen/" TS_VERSION};
        if (ts_httpc_new(&ho, &g.http, err, sizeof err) != TS_OK) {
            fprintf(stderr, "gen: %s\n", err);
            goto out;
        }
    }
    g.seed = seed;
    g.rng = seed * 0x2545f4914f6cdd1dULL + 1;
    g.batch_max = batch;
    g.now = ts_now_wall_ms();
    if (!(g.batch = json_array()) || !(samples = calloc(sample + 1, sizeof *samples)))
        goto out;
    size_t nsamples = 0;
    int64_t t0 = ts_now_mono_ms();
    for (size_t i = 0; i < customers; i++) {
        struct person p;
        if (customer(&g, i, &p))
            goto out;
        /* Show customers of the first store who agreed to personalization:
         * their cards have something to show when scanned. */
        if (nsamples < sample && p.consent && strcmp(p.store, g.stores[0]) == 0)
            samples[nsamples++] = p;
        if ((i + 1) % (outf ? 100000 : 1000) == 0)
            fprintf(stderr, "gen: %zu customers\n", i + 1);
    }
    if (flush(&g))
        goto out;
    if (g.out) {
        FILE *f = g.out;
        g.out = NULL;
        if (fclose(f) != 0) {
            fprintf(stderr, "gen: %s: %s\n", outf, strerror(errno));
            goto out;
        }
        fprintf(stderr, "gen: wrote %zu events for %llu customers to %s (%lld ms)\n", g.sent_events,
                customers, outf, (long long)(ts_now_mono_ms() - t0));
    } else {
        fprintf(stderr, "gen: sent %zu events for %llu customers in %zu batches (%lld ms)\n",
                g.sent_events, customers, g.sent_batches, (long long)(ts_now_mono_ms() - t0));
    }
    for (size_t i = 0; i < nsamples; i++) {
        json_t *o = json_pack("{s:s, s:s, s:s}", "loyalty_id", samples[i].loyalty, "name",
                              samples[i].name, "store", samples[i].store);
        char *s = o ? json_dumps(o, JSON_COMPACT) : NULL;
        if (s)
            printf("%s\n", s);
        free(s);
        json_decref(o);
    }
    fflush(stdout);
    code = 0;
out:
    if (g.out)
        fclose(g.out);
    ts_httpc_free(g.http);
    json_decref(g.batch);
    free(g.stores);
    free(stores_copy);
    free(samples);
    return code;
}
