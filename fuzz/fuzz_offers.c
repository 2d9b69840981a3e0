/*
 * libFuzzer target: what a terminal sends to redeem an offer (hub/offers.c,
 * POST /v1/offers/redeem), and the CDP's `offers` trait inside a Segment
 * batch (hub/segment.c). Beyond "no crash": an accepted request's code is 1
 * to 64 printable bytes and its cid and receipt printable; every offer the
 * trait parser keeps has such a code, a bounded description and no negative
 * expiry, and there are at most TS_SEG_MAX_OFFERS of them.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "offers.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void printable_or_die(const char *s, size_t min, size_t max, const char *what)
{
    size_t n = strlen(s);
    if (n < min || n > max)
        goto bad;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20 || (unsigned char)s[i] == 0x7f)
            goto bad;
    return;
bad:
    fprintf(stderr, "fuzz_offers: %s \"%s\" accepted\n", what, s);
    abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct ts_hub_redeem_req r;
    char err[200];
    if (ts_hub_offers_parse_redeem((const char *)data, size, &r, err, sizeof err) == TS_OK) {
        printable_or_die(r.code, 1, TS_OFFER_MAX_CODE, "code");
        printable_or_die(r.cid, 0, sizeof r.cid - 1, "cid");
        printable_or_die(r.receipt, 0, sizeof r.receipt - 1, "receipt");
    }
    struct ts_seg_batch *b = NULL;
    if (ts_seg_parse((const char *)data, size, 1700000000000LL, &b, err, sizeof err) == TS_OK) {
        for (size_t i = 0; i < b->n; i++) {
            const struct ts_seg_event *e = &b->ev[i];
            if (e->noffers > TS_SEG_MAX_OFFERS || (e->noffers && !e->has_offers))
                abort();
            for (size_t k = 0; k < e->noffers; k++) {
                const struct ts_seg_offer *o = &e->offers[k];
                printable_or_die(o->code, 1, TS_OFFER_MAX_CODE, "offer code");
                if (o->expires_ms < 0 ||
                    (o->description && strlen(o->description) > TS_SEG_MAX_TEXT))
                    abort();
                for (const char *c = o->code; *c; c++)
                    if (*c == ' ')
                        abort();
            }
        }
        ts_seg_batch_free(b);
    }
    return 0;
}
