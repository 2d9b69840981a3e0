/*
 * The registry of sink vendors (hub/sink.h): every vendor file's const
 * struct ts_sink_vendor, by type name. Adding a vendor: its file
 * hub/sink_<type>.c, its line in hub/CMakeLists.txt, and its name here
 * (docs/ARCHITECTURE.md "Sinks: one file per vendor").
 */
#include "sink.h"

#include <string.h>

extern const struct ts_sink_vendor ts_sink_segment, ts_sink_rudderstack, ts_sink_klaviyo,
    ts_sink_braze, ts_sink_bloomreach, ts_sink_salesforce, ts_sink_iterable;

/* Adding a vendor: its file defines one const struct ts_sink_vendor and it
 * is named here (docs/ARCHITECTURE.md "Sinks"). */
static const struct ts_sink_vendor *const vendors[] = {
    &ts_sink_segment,    &ts_sink_rudderstack, &ts_sink_klaviyo,  &ts_sink_braze,
    &ts_sink_bloomreach, &ts_sink_salesforce,  &ts_sink_iterable,
};

const struct ts_sink_vendor *ts_sink_vendor_at(size_t i)
{
    return i < sizeof vendors / sizeof vendors[0] ? vendors[i] : NULL;
}

const struct ts_sink_vendor *ts_sink_vendor_find(const char *type)
{
    for (size_t i = 0; type && ts_sink_vendor_at(i); i++)
        if (strcmp(vendors[i]->type, type) == 0)
            return vendors[i];
    return NULL;
}
