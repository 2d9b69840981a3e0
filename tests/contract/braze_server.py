"""Contract server for Braze's /users/track: what tillside's `braze` sink
must honour. Rules, each from the reference:

  https://www.braze.com/docs/api/endpoints/user_data/post_user_track/
  B1 "Authorization: Bearer <REST API key>"; 401 otherwise.
  B2 Content-Type application/json; body with any of "attributes",
     "events", "purchases" arrays.
  B3 each object names its user: external_id, user_alias, braze_id, email
     or phone.
  B4 an event object: name (string), time (ISO 8601), properties (object).
     A purchase object: product_id, currency (ISO 4217), price (number),
     time, quantity (integer 1..100).
  B5 answers 201 {"message": "success", "events_processed": n,
     "purchases_processed": m} -- with "errors": [{"type", "input_array",
     "index"}] for the objects it refused while storing the rest; 400 when
     nothing could be stored.
  https://www.braze.com/docs/api/api_limits/
  B6 75 events, 75 purchases and 75 attributes per request.
  B7 3,000 requests per three seconds; every answer carries
     X-RateLimit-Limit, X-RateLimit-Remaining and X-RateLimit-Reset (a Unix
     time); 429 past it.
  https://www.braze.com/docs/api/objects_filters/event_object/
  B8 event property string values are at most 255 characters.
  https://www.braze.com/docs/user_guide/data/activation/events/recommended_events
  B9 ecommerce.order_placed: order_id (string), total_value (number),
     currency (3 letters), source (string), products: at least one of
     {product_id, product_name, variant_id (strings), quantity (integer
     >= 1), price (number)}.
  B10 ecommerce.order_refunded (same page): the same order-level schema as
     order_placed -- order_id (the refunded order), total_value, currency,
     source and products are required.
  https://www.braze.com/docs/api/endpoints/user_data/post_user_track/
  B11 "up to 75 objects in total combined between attributes, events and
     purchases" per request (the current page; B6 is the older per-array
     figure, also held).
  https://www.braze.com/docs/api/objects_filters/user_attributes_object/
  B12 an attributes object names its user (B3); "_update_existing_only" is
     a boolean; the profile field email_subscribe is "opted_in",
     "subscribed" or "unsubscribed"; subscription_groups is an array of
     {subscription_group_id (string), subscription_state "subscribed" or
     "unsubscribed"}; other keys are custom attributes (string values at
     most 255 characters). An object updates the profile: later values win.
Braze keeps no dedup key: every object stored counts (ledger key None), so
a re-sent object is a duplicate the test sees.
"""
import datetime
import time

from contract import ContractServer, Ledger, Refuse, Storm, Windows, check_type, need

USER_IDS = ("external_id", "user_alias", "braze_id", "email", "phone")


def iso(t):
    try:
        datetime.datetime.fromisoformat(t.replace("Z", "+00:00"))
        return True
    except (AttributeError, ValueError):
        return False


def event_problem(ev):
    if not any(ev.get(k) for k in USER_IDS):
        return "an object needs external_id, user_alias, braze_id, email or phone"  # B3
    for key, want in (("name", "string"), ("time", "string")):
        p = check_type(ev, key, want)
        if p:
            return p  # B4
    if not iso(ev["time"]):
        return "time must be ISO 8601"
    props = ev.get("properties", {})
    if not isinstance(props, dict):
        return "properties must be an object"
    for v in _values(props):
        if isinstance(v, str) and len(v) > 255:
            return "event property values must be at most 255 characters"  # B8
    if ev["name"] in ("ecommerce.order_placed", "ecommerce.order_refunded"):  # B9, B10
        for key, want in (("order_id", "string"), ("total_value", "number"),
                          ("currency", "string"), ("source", "string"),
                          ("products", "array")):
            p = check_type(props, key, want)
            if p:
                return ev["name"] + ": " + p
        if len(props["currency"]) != 3 or not props["products"]:
            return ev["name"] + ": currency of 3 letters, at least one product"
        for pr in props["products"]:
            for key, want in (("product_id", "string"), ("product_name", "string"),
                              ("variant_id", "string"), ("quantity", "integer"),
                              ("price", "number")):
                p = check_type(pr, key, want)
                if p:
                    return ev["name"] + " products: " + p
    return None


def attribute_problem(a):
    if not any(a.get(k) for k in USER_IDS):
        return "an object needs external_id, user_alias, braze_id, email or phone"  # B3
    p = check_type(a, "_update_existing_only", "boolean", required=False)
    if p:
        return p  # B12
    if "email_subscribe" in a and a["email_subscribe"] not in ("opted_in", "subscribed",
                                                               "unsubscribed"):
        return "email_subscribe must be opted_in, subscribed or unsubscribed"  # B12
    groups = a.get("subscription_groups", [])
    if not isinstance(groups, list):
        return "subscription_groups must be an array"
    for g in groups:
        if (check_type(g, "subscription_group_id", "string") or
                g.get("subscription_state") not in ("subscribed", "unsubscribed")):
            return "subscription_groups: subscription_group_id and subscription_state " \
                   "(subscribed or unsubscribed)"  # B12
    for v in a.values():
        if isinstance(v, str) and len(v) > 255:
            return "attribute string values must be at most 255 characters"
    return None


def purchase_problem(p):
    if not any(p.get(k) for k in USER_IDS):
        return "an object needs external_id, user_alias, braze_id, email or phone"  # B3
    for key, want in (("product_id", "string"), ("currency", "string"), ("price", "number"),
                      ("time", "string")):
        q = check_type(p, key, want)
        if q:
            return q  # B4
    q = p.get("quantity", 1)
    if not isinstance(q, int) or not 1 <= q <= 100:
        return "quantity must be an integer from 1 to 100"
    if len(p["currency"]) != 3 or not iso(p["time"]):
        return "currency of 3 letters and an ISO 8601 time"
    return None


def _values(o):
    if isinstance(o, dict):
        for v in o.values():
            yield from _values(v)
    elif isinstance(o, list):
        for v in o:
            yield from _values(v)
    else:
        yield o


class BrazeServer(ContractServer):
    def __init__(self, certs, api_key, per_3s=3000):
        self.api_key = api_key
        self.ledger = Ledger()
        self.windows = Windows((per_3s, 3))  # B7
        self.storm = Storm()
        super().__init__(certs, {("POST", "/users/track"): BrazeServer.track}, name="braze")

    def track(self, req):
        ok, wait, limit, left, reset = self.windows.take()
        hdrs = {"X-RateLimit-Limit": limit, "X-RateLimit-Remaining": left,
                "X-RateLimit-Reset": int(time.time() + reset + 0.999)}  # B7
        need(req.header("Authorization") == f"Bearer {self.api_key}", 401,
             {"message": "Invalid API key"}, hdrs)  # B1
        if self.storm.on() or not ok:
            raise Refuse(429, {"message": "API rate limit exceeded"}, hdrs)  # B7
        need((req.header("Content-Type") or "").startswith("application/json"), 400,
             {"message": "Content-Type must be application/json"}, hdrs)  # B2
        b = req.json
        need(isinstance(b, dict), 400, {"message": "body must be a JSON object"}, hdrs)
        arrays = {k: b.get(k, []) for k in ("events", "purchases", "attributes")}
        for k, v in arrays.items():
            need(isinstance(v, list), 400, {"message": f"{k} must be an array"}, hdrs)  # B2
            need(len(v) <= 75, 400, {"message": f"at most 75 {k} per request"}, hdrs)  # B6
        need(sum(len(v) for v in arrays.values()) <= 75, 400,
             {"message": "at most 75 objects per request"}, hdrs)  # B11
        errors, stored = [], {"events": 0, "purchases": 0, "attributes": 0}
        for name, check in (("events", event_problem), ("purchases", purchase_problem),
                            ("attributes", attribute_problem)):
            for i, o in enumerate(arrays[name]):
                why = check(o) if isinstance(o, dict) else "not an object"
                if why:
                    errors.append({"type": why, "input_array": name, "index": i})  # B5
                else:
                    stored[name] += 1
                    self.ledger.add(None, dict(o, _array=name))
        total = sum(len(v) for v in arrays.values())
        body = {"message": "success", "events_processed": stored["events"],
                "purchases_processed": stored["purchases"],
                "attributes_processed": stored["attributes"]}
        if errors:
            body["errors"] = errors
            if sum(stored.values()) == 0 and total:
                body["message"] = "Valid data must be provided in the 'attributes', 'events', or 'purchases' fields."
                return 400, body, hdrs  # B5
        return 201, body, hdrs

    def stored(self, array, pred=lambda o: True):
        """The objects of one array ("events", "purchases", "attributes")
        stored so far that satisfy pred, in arrival order."""
        with self.ledger.lock:
            return [o for o in self.ledger.items if o["_array"] == array and pred(o)]
