/*
 * Reading the order and its lines from a stored event (sink_line.h). The
 * hub stored the till's event as sent (purchase_parse.c checked its
 * envelope), so numbers may arrive as numbers or numeric strings; a line
 * whose price cannot be read cannot be priced at any vendor and is refused
 * here, before a request, so it becomes a dead letter with a reason.
 */
#include "sink_line.h"

#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static const char *str(const json_t *o, const char *key)
{
    const json_t *v = json_object_get(o, key);
    return json_is_string(v) && json_string_length(v) > 0 ? json_string_value(v) : NULL;
}

static bool num(const json_t *v, double *out)
{
    double d;
    if (json_is_number(v)) {
        d = json_number_value(v);
    } else if (json_is_string(v) && json_string_length(v) > 0 && json_string_length(v) < 40) {
        char *end;
        d = strtod(json_string_value(v), &end);
        if (*end)
            return false;
    } else {
        return false;
    }
    if (!isfinite(d))
        return false;
    *out = d;
    return true;
}

enum ts_err ts_sink_order_of(const struct ts_sink_event *e, struct ts_sink_order *o, char *err,
                             size_t errsz)
{
    memset(o, 0, sizeof *o);
    const json_t *p = ts_sink_props(e);
    const json_t *tl = json_object_get(json_object_get((json_t *)e->event, "context"), "tillside");
    o->order_id = str(p, "order_id");
    if (!o->order_id) {
        ts_errf(err, errsz, "the purchase has no order_id");
        return TS_ERR_INVAL;
    }
    o->currency = str(p, "currency");
    o->store = str(tl, "store");
    o->terminal = str(tl, "terminal");
    o->nlines = json_array_size(json_object_get(p, "products"));
    if (num(json_object_get(p, "total"), &o->total) ||
        num(json_object_get(p, "revenue"), &o->total))
        return TS_OK;
    o->total = 0;
    for (size_t i = 0; i < o->nlines; i++) {
        struct ts_sink_line l;
        if (ts_sink_line_at(e, i, &l, err, errsz) != TS_OK)
            return TS_ERR_INVAL;
        o->total += l.price * l.quantity;
    }
    return TS_OK;
}

enum ts_err ts_sink_line_at(const struct ts_sink_event *e, size_t i, struct ts_sink_line *l,
                            char *err, size_t errsz)
{
    memset(l, 0, sizeof *l);
    const json_t *it = json_array_get(json_object_get(ts_sink_props(e), "products"), i);
    l->sku = str(it, "sku");
    l->product_id = str(it, "product_id");
    if (!l->product_id)
        l->product_id = l->sku;
    l->name = str(it, "name");
    if (!l->product_id) {
        ts_errf(err, errsz, "line %zu has no product_id or sku", i + 1);
        return TS_ERR_INVAL;
    }
    if (!num(json_object_get(it, "price"), &l->price)) {
        ts_errf(err, errsz, "line %zu (%s) has no readable price", i + 1, l->product_id);
        return TS_ERR_INVAL;
    }
    if (!num(json_object_get(it, "quantity"), &l->quantity) || l->quantity <= 0)
        l->quantity = 1;
    return TS_OK;
}

enum ts_sink_verdict ts_sink_status_verdict_keyed(int status, size_t n)
{
    return status == 403 ? TS_SINK_RETRY : ts_sink_status_verdict(status, n);
}
