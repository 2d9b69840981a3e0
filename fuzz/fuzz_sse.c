/* libFuzzer target: the SSE parser used by `tillside watch`, fed in two
 * pieces split at a position taken from the input. */
#include <stddef.h>
#include <stdint.h>

#include "sse.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void sink(void *ud, const struct ts_sse_event *ev)
{
    size_t *total = ud;
    *total += ev->data_len + (ev->type[0] != '\0') + (ev->id[0] != '\0');
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    size_t split = data[0] % size;
    struct ts_sse p;
    size_t total = 0;
    ts_sse_init(&p);
    ts_sse_feed(&p, (const char *)data + 1, split ? split - 1 : 0, sink, &total);
    ts_sse_feed(&p, (const char *)data + (split ? split : 1), size - (split ? split : 1), sink,
                &total);
    ts_sse_free(&p);
    return 0;
}
