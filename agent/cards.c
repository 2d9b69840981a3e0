/*
 * The agent's lookup connection to cache.db (a->cache, under a->cache_mu):
 * finding a card by its identifier keys. Its own file, below core.c,
 * resolve.c and purchase.c, which all look cards up.
 */
#include "agent.h"

#include <stdlib.h>

enum ts_err ts_agent_cache_find(struct ts_agent *a, char keys[][TS_IDENT_KEY_HEX], int nkeys,
                                char **card, int64_t *synced_ms)
{
    char *found = NULL;
    int64_t synced = 0;
    pthread_mutex_lock(&a->cache_mu);
    for (int k = 0; k < nkeys && !found; k++)
        if (ts_cache_lookup(a->cache, keys[k], &found, &synced) != TS_OK)
            found = NULL;
    pthread_mutex_unlock(&a->cache_mu);
    if (!found)
        return TS_ERR_NOTFOUND;
    *card = found;
    if (synced_ms)
        *synced_ms = synced;
    return TS_OK;
}
