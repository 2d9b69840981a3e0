"""Contract server for Klaviyo's Bulk Create Events endpoint: what
tillside's `klaviyo` sink must honour. Rules, each from the reference:

  https://developers.klaviyo.com/en/reference/bulk_create_events
  K1 POST /api/event-bulk-create-jobs; "Authorization: Klaviyo-API-Key
     <private key>"; 401 otherwise.
  K2 the `revision` header is required (YYYY-MM-DD).
  K3 JSON:API: Content-Type application/vnd.api+json; body
     data.type = "event-bulk-create-job",
     data.attributes["events-bulk-create"].data = [{type: "event-bulk-create",
       attributes: {profile: {data: {type: "profile", attributes: {...}}},
                    events: {data: [{type: "event", attributes: {...}}]}}}]
  K4 a profile needs an identifier (id, email, phone_number or external_id);
     an event needs metric.data.attributes.name.
  K5 up to 1,000 events per request; at most 5 MB; no string over 100 KB.
  K6 `time` after the year 2000 and at most a year ahead.
  K7 unique_id dedups an event per profile and metric; the same unique_id
     twice in one request fails the request.
  K8 answers 202 Accepted (the job is queued).
  https://developers.klaviyo.com/en/docs/rate_limits_and_error_handling
  K9 burst 10/s and steady 150/m, fixed windows; past either 429 with
     Retry-After; other answers carry RateLimit-Limit, RateLimit-Remaining
     and RateLimit-Reset (seconds, of the steady window).
  K10 errors: {"errors": [{"id", "status", "code", "title", "detail",
      "source": {"pointer"}}]}.
  https://developers.klaviyo.com/en/docs/integrate_a_platform_without_a_pre_built_klaviyo_integration
  K11 the e-commerce metrics (Placed Order, Refunded Order, ...) carry the
      order's amount as `value` (a number) and name the order in
      properties (tillside: OrderId); a refund counts against lifetime value
      through its value.
"""
import datetime
import uuid

from contract import ContractServer, Ledger, Refuse, Storm, Windows, need

PROFILE_IDS = ("id", "email", "phone_number", "external_id")


def err(status, code, detail, pointer="/data"):
    return {"errors": [{"id": str(uuid.uuid4()), "status": status, "code": code,
                        "title": code.replace("_", " ").title(), "detail": detail,
                        "source": {"pointer": pointer}}]}


class KlaviyoServer(ContractServer):
    def __init__(self, certs, api_key, burst=10, steady=150):
        self.api_key = api_key
        self.ledger = Ledger()
        self.windows = Windows((burst, 1), (steady, 60))  # K9
        self.storm = Storm()
        super().__init__(certs, {("POST", "/api/event-bulk-create-jobs"): KlaviyoServer.bulk},
                         name="klaviyo")

    def _limit_headers(self, limit, left, reset):
        return {"RateLimit-Limit": limit, "RateLimit-Remaining": left,
                "RateLimit-Reset": max(0, int(reset))}

    def bulk(self, req):
        need(req.header("Authorization") == f"Klaviyo-API-Key {self.api_key}", 401,
             err(401, "not_authenticated", "missing or wrong private API key"))  # K1
        rev = req.header("revision") or ""
        need(len(rev) >= 10 and rev[4] == "-" and rev[7] == "-", 400,
             err(400, "invalid", "revision header required"))  # K2
        ok, wait, limit, left, reset = self.windows.take()
        if self.storm.on() or not ok:  # K9
            raise Refuse(429, err(429, "throttled", "Request was throttled."),
                         {"Retry-After": max(1, int(wait + 0.999))})
        hdrs = self._limit_headers(limit, left, reset)
        need((req.header("Content-Type") or "").startswith("application/vnd.api+json"), 415,
             err(415, "unsupported_media_type", "use application/vnd.api+json"), hdrs)  # K3
        need(len(req.body) <= 5 * 1024 * 1024, 413,
             err(413, "too_large", "payload over 5 MB"), hdrs)  # K5
        b = req.json
        need(isinstance(b, dict) and isinstance(b.get("data"), dict) and
             b["data"].get("type") == "event-bulk-create-job", 400,
             err(400, "invalid", "data.type must be event-bulk-create-job"), hdrs)  # K3
        try:
            entries = b["data"]["attributes"]["events-bulk-create"]["data"]
        except (KeyError, TypeError):
            raise Refuse(400, err(400, "invalid", "events-bulk-create.data missing"), hdrs)
        need(isinstance(entries, list), 400, err(400, "invalid", "data must be a list"), hdrs)
        events, seen = [], set()
        now = datetime.datetime.now(datetime.timezone.utc)
        for i, e in enumerate(entries):
            ptr = f"/data/attributes/events-bulk-create/data/{i}"
            need(isinstance(e, dict) and e.get("type") == "event-bulk-create", 400,
                 err(400, "invalid", "type must be event-bulk-create", ptr), hdrs)  # K3
            a = e.get("attributes") or {}
            prof = ((a.get("profile") or {}).get("data") or {})
            pa = prof.get("attributes") or {}
            need(prof.get("type") == "profile" and any(pa.get(k) for k in PROFILE_IDS), 400,
                 err(400, "invalid", "profile needs an identifier", ptr + "/attributes/profile"),
                 hdrs)  # K4
            pkey = next(f"{k}={pa[k]}" for k in PROFILE_IDS if pa.get(k))
            evs = ((a.get("events") or {}).get("data"))
            need(isinstance(evs, list) and evs, 400,
                 err(400, "invalid", "events.data required", ptr), hdrs)
            for j, ev in enumerate(evs):
                ep = f"{ptr}/attributes/events/data/{j}/attributes"
                ea = (ev or {}).get("attributes") or {}
                metric = (((ea.get("metric") or {}).get("data") or {}).get("attributes") or {})
                need(ev.get("type") == "event" and isinstance(metric.get("name"), str), 400,
                     err(400, "invalid", "metric name required", ep + "/metric"), hdrs)  # K4
                need(isinstance(ea.get("properties"), dict), 400,
                     err(400, "invalid", "properties must be an object", ep), hdrs)
                need(isinstance(ea.get("value", 0), (int, float)), 400,
                     err(400, "invalid", "value must be a number", ep + "/value"), hdrs)
                if metric["name"] in ("Placed Order", "Refunded Order"):  # K11
                    need(isinstance(ea.get("value"), (int, float)) and
                         ea["properties"].get("OrderId"), 400,
                         err(400, "invalid", metric["name"] + " needs value and OrderId", ep),
                         hdrs)
                t = ea.get("time")
                try:
                    when = datetime.datetime.fromisoformat(t.replace("Z", "+00:00"))
                except (AttributeError, ValueError):
                    raise Refuse(400, err(400, "invalid", "time must be ISO 8601", ep + "/time"),
                                 hdrs)
                need(when.year >= 2000 and when <= now + datetime.timedelta(days=365), 400,
                     err(400, "invalid", "time must be after 2000 and within a year",
                         ep + "/time"), hdrs)  # K6
                for s in _strings(ea):
                    need(len(s.encode()) <= 100 * 1024, 400,
                         err(400, "invalid", "string over 100 KB", ep), hdrs)  # K5
                uid = ea.get("unique_id")
                key = (pkey, metric["name"], uid if uid is not None else t)
                need(key not in seen, 400,
                     err(400, "duplicate", "unique_id repeated in the request", ep), hdrs)  # K7
                seen.add(key)
                events.append((key, {**ea, "profile": pa, "metric": metric["name"]}))
        need(len(events) <= 1000, 400,
             err(400, "invalid", "at most 1,000 events per request"), hdrs)  # K5
        for key, ev in events:
            self.ledger.add(key, ev)  # K7: Klaviyo drops a repeated unique_id
        return 202, {"data": {"type": "event-bulk-create-job", "id": str(uuid.uuid4()),
                              "attributes": {"status": "queued",
                                             "total_count": len(events)}}}, hdrs  # K8


def _strings(o):
    if isinstance(o, str):
        yield o
    elif isinstance(o, dict):
        for v in o.values():
            yield from _strings(v)
    elif isinstance(o, list):
        for v in o:
            yield from _strings(v)
