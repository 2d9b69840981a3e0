/*
 * What parked requests wait on (httpd_int.h, ts_httpd_park_on): a table of
 * topics (a store's feed), each with the highest position announced for it
 * (ts_httpd_wake_topic) and the list of requests parked on it, so a change
 * to one store hands over only that store's long-polls instead of every
 * parked request. Loop thread only; plain data, no calls back into the loop.
 * The table holds at most TOPICS_MAX topics (stores); past it a request
 * parks without one and every topic wake hands it over.
 */
#include "httpd_int.h"

#include <stdlib.h>
#include <string.h>

#define TOPIC_BUCKETS 4096
#define TOPICS_MAX 65536

struct topic {
    char name[64];
    uint64_t pos;         /* highest position announced */
    struct hconn *parked; /* requests parked on it (hconn.tprev/tnext) */
    struct topic *next;   /* bucket chain */
};

static unsigned topic_hash(const char *a)
{
    return ts_hash_str(a) % TOPIC_BUCKETS;
}

struct topic *ts_httpd_topic_get(struct ts_httpd *s, const char *name, uint64_t pos)
{
    if (!s->topics && !(s->topics = calloc(TOPIC_BUCKETS, sizeof *s->topics)))
        return NULL;
    unsigned h = topic_hash(name);
    for (struct topic *t = s->topics[h]; t; t = t->next)
        if (strcmp(t->name, name) == 0)
            return t;
    struct topic *t = s->ntopics < TOPICS_MAX ? calloc(1, sizeof *t) : NULL;
    if (!t)
        return NULL;
    ts_strlcpy(t->name, name, sizeof t->name);
    t->pos = pos;
    t->next = s->topics[h];
    s->topics[h] = t;
    s->ntopics++;
    return t;
}

uint64_t ts_httpd_topic_pos(const struct topic *t)
{
    return t->pos;
}

struct hconn *ts_httpd_topic_announce(struct topic *t, uint64_t pos)
{
    if (pos <= t->pos)
        return NULL;
    t->pos = pos;
    return t->parked;
}

void ts_httpd_topic_link(struct topic *t, struct hconn *c)
{
    c->tp = t;
    c->tprev = NULL;
    c->tnext = t->parked;
    if (t->parked)
        t->parked->tprev = c;
    t->parked = c;
}

void ts_httpd_topic_unlink(struct hconn *c)
{
    struct topic *t = c->tp;
    if (!t)
        return;
    if (c->tprev)
        c->tprev->tnext = c->tnext;
    else
        t->parked = c->tnext;
    if (c->tnext)
        c->tnext->tprev = c->tprev;
    c->tp = NULL;
    c->tprev = c->tnext = NULL;
}

void ts_httpd_topics_free(struct ts_httpd *s)
{
    if (!s->topics)
        return;
    for (int i = 0; i < TOPIC_BUCKETS; i++)
        while (s->topics[i]) {
            struct topic *t = s->topics[i];
            s->topics[i] = t->next;
            free(t);
        }
    free(s->topics);
    s->topics = NULL;
    s->ntopics = 0;
}
