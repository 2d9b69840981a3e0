/* `tillside lookup CODE [--text]`: the card from the local cache, no agent needed. */
#include "cmd.h"
#include "render.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/*
 * Looks a code up in the cache file itself, read-only, so it works with the
 * agent stopped and never competes with it for writes. Prints the card JSON
 * (or, with as_text, what the associate would read).
 */
int ts_cmd_lookup(const struct ts_agent_config *cfg, const char *code, bool as_text)
{
    char norm[TS_SCAN_MAX], keys[2][TS_IDENT_KEY_HEX], err[1200], path[TS_AGENT_PATH_MAX + 16];
    struct ts_scan scan;
    int nkeys = 0;
    if (ts_scan_from_text("cli", code, strlen(code), NULL, &scan) ||
        ts_ident_normalize(scan.data, scan.data_len, norm, sizeof norm) ||
        (nkeys = ts_agent_ident_keys(cfg, TS_IDENT_LOYALTY, norm, keys)) == 0) {
        fprintf(stderr, "tillside: not a valid code\n");
        return 1;
    }
    ts_agent_cache_path(cfg, path, sizeof path);
    struct ts_cache *c = NULL;
    if (ts_cache_open_readonly(path, &c, err, sizeof err)) {
        fprintf(stderr, "tillside: %s\n", err);
        return 1;
    }
    char *card = NULL;
    int64_t synced = 0;
    /* During a key rotation the cache may hold either version's keys. */
    int rc = TS_ERR_NOTFOUND;
    for (int k = 0; k < nkeys && rc == TS_ERR_NOTFOUND; k++)
        rc = ts_cache_lookup(c, keys[k], &card, &synced);
    ts_cache_close(c);
    if (rc == TS_ERR_NOTFOUND) {
        printf("unknown customer\n");
        return 1;
    }
    if (rc) {
        fprintf(stderr, "tillside: lookup in %s failed: %s\n", path, ts_strerror(rc));
        return 1;
    }
    if (!as_text) {
        printf("%s\n", card);
    } else {
        json_t *o = json_loads(card, 0, NULL);
        char at[32];
        ts_iso8601(synced, at, sizeof at);
        struct ts_render r = {.f = stdout};
        ts_render_card(&r, o);
        printf("  (from cache, synced %s)\n", at);
        json_decref(o);
    }
    free(card);
    return 0;
}
