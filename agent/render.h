/* Text rendering of customer cards for terminals (tillside scan/lookup/watch). */
#ifndef TS_RENDER_H
#define TS_RENDER_H

#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>

struct ts_render {
    FILE *f;
    int width;  /* display columns; lines are cut to fit (0 = no limit) */
    bool color; /* ANSI bold/colours */
};

/* The card: name, tier and points, interests with their signal, orders,
 * suggestion. Prints only name and tier when consent is false. */
void ts_render_card(const struct ts_render *r, json_t *card);
/* A whole session (found / unknown / invalid) with its freshness line. */
void ts_render_session(const struct ts_render *r, json_t *session);

#endif
