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
  https://developers.klaviyo.com/en/docs/collect_email_and_sms_consent_via_api
  (consent at Klaviyo is a subscription state per channel, set by the two
  bulk subscription jobs; each endpoint has its own rate limit)
  https://developers.klaviyo.com/en/reference/bulk_subscribe_profiles
  K12 POST /api/profile-subscription-bulk-create-jobs, K1/K2/K3 auth,
      revision and media type; data.type "profile-subscription-bulk-create-job",
      attributes.profiles.data = [{type "profile", attributes {email |
      phone_number, subscriptions {email {marketing {consent "SUBSCRIBED"}},
      sms {...}}}}] (attributes.subscriptions required; email or phone number
      required); optional custom_source (string) and relationships.list.data
      {type "list", id}; up to 1,000 profiles; consented_at only with
      historical_import; rate burst 75/s, steady 750/m; 202.
  https://developers.klaviyo.com/en/reference/bulk_unsubscribe_profiles
  K13 POST /api/profile-subscription-bulk-delete-jobs: data.type
      "profile-subscription-bulk-delete-job", the same profiles with
      {consent "UNSUBSCRIBED"}; "Maximum number of profiles per call: 100";
      rate burst 75/s, steady 750/m; 202.
  https://developers.klaviyo.com/en/reference/create_or_update_profile
  K14 POST /api/profile-import: {data: {type "profile", attributes {email |
      phone_number | external_id, properties {...}}}}, one profile; rate
      burst 75/s, steady 700/m; 200 (updated) or 201 (created) with the
      profile.
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
        # K12-K14: what the consent endpoints stored, in arrival order:
        # subscriptions [(email, channel, "SUBSCRIBED" | "UNSUBSCRIBED", list id)],
        # profiles {profile key: properties merged}; consent_requests [(path, n)].
        self.subscriptions, self.profiles, self.consent_requests = [], {}, []
        self.consent_windows = {"sub": Windows((75, 1), (750, 60)),
                                "unsub": Windows((75, 1), (750, 60)),
                                "profile": Windows((75, 1), (700, 60))}
        super().__init__(certs, {("POST", "/api/event-bulk-create-jobs"): KlaviyoServer.bulk,
                                 ("POST", "/api/profile-subscription-bulk-create-jobs"):
                                     lambda srv, req: srv.subscription(req, True),
                                 ("POST", "/api/profile-subscription-bulk-delete-jobs"):
                                     lambda srv, req: srv.subscription(req, False),
                                 ("POST", "/api/profile-import"): KlaviyoServer.profile_import},
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


    def _common(self, req, windows):
        """K1, K2, the endpoint's own rate windows and K3's media type; the
        RateLimit headers of the answer."""
        need(req.header("Authorization") == f"Klaviyo-API-Key {self.api_key}", 401,
             err(401, "not_authenticated", "missing or wrong private API key"))  # K1
        rev = req.header("revision") or ""
        need(len(rev) >= 10 and rev[4] == "-" and rev[7] == "-", 400,
             err(400, "invalid", "revision header required"))  # K2
        ok, wait, limit, left, reset = windows.take()
        if self.storm.on() or not ok:
            raise Refuse(429, err(429, "throttled", "Request was throttled."),
                         {"Retry-After": max(1, int(wait + 0.999))})
        hdrs = self._limit_headers(limit, left, reset)
        need((req.header("Content-Type") or "").startswith("application/vnd.api+json"), 415,
             err(415, "unsupported_media_type", "use application/vnd.api+json"), hdrs)  # K3
        need(isinstance(req.json, dict) and isinstance(req.json.get("data"), dict), 400,
             err(400, "invalid", "data must be an object"), hdrs)
        return req.json["data"], hdrs

    def subscription(self, req, subscribe):
        """K12 (subscribe) and K13 (unsubscribe)."""
        d, hdrs = self._common(req, self.consent_windows["sub" if subscribe else "unsub"])
        job = "profile-subscription-bulk-%s-job" % ("create" if subscribe else "delete")
        want = "SUBSCRIBED" if subscribe else "UNSUBSCRIBED"
        need(d.get("type") == job, 400, err(400, "invalid", f"data.type must be {job}"), hdrs)
        a = d.get("attributes")
        need(isinstance(a, dict) and isinstance((a.get("profiles") or {}).get("data"), list),
             400, err(400, "invalid", "attributes.profiles.data required",
                      "/data/attributes/profiles"), hdrs)
        if "custom_source" in a:
            need(isinstance(a["custom_source"], str), 400,
                 err(400, "invalid", "custom_source must be a string"), hdrs)  # K12
        profiles = a["profiles"]["data"]
        cap = 1000 if subscribe else 100  # K12, K13
        need(1 <= len(profiles) <= cap, 400,
             err(400, "invalid", f"1 to {cap} profiles per call"), hdrs)
        list_id = None
        rel = d.get("relationships")
        if rel is not None:
            ld = ((rel or {}).get("list") or {}).get("data") or {}
            need(ld.get("type") == "list" and isinstance(ld.get("id"), str) and ld["id"], 400,
                 err(400, "invalid", "relationships.list.data needs type list and id",
                     "/data/relationships/list"), hdrs)  # K12
            list_id = ld["id"]
        got = []
        for i, p in enumerate(profiles):
            ptr = f"/data/attributes/profiles/data/{i}"
            pa = (p or {}).get("attributes") or {}
            need(p.get("type") == "profile" and (pa.get("email") or pa.get("phone_number")), 400,
                 err(400, "invalid", "a profile needs email or phone_number", ptr), hdrs)
            subs = pa.get("subscriptions")
            need(isinstance(subs, dict) and subs, 400,
                 err(400, "invalid", "attributes.subscriptions required", ptr), hdrs)
            for ch, params in subs.items():
                need(ch in ("email", "sms", "whatsapp", "push") and isinstance(params, dict), 400,
                     err(400, "invalid", f"unknown channel {ch}", ptr), hdrs)
                m = params.get("marketing")
                need(isinstance(m, dict) and m.get("consent") == want, 400,
                     err(400, "invalid", f"{ch}.marketing.consent must be {want}", ptr), hdrs)
                need("consented_at" not in m or a.get("historical_import") is True, 400,
                     err(400, "invalid", "consented_at only with historical_import", ptr), hdrs)
                need(ch != "email" or pa.get("email"), 400,
                     err(400, "invalid", "the email channel needs email", ptr), hdrs)
                need(ch != "sms" or pa.get("phone_number"), 400,
                     err(400, "invalid", "the sms channel needs phone_number", ptr), hdrs)
                got.append((pa.get("email") if ch == "email" else pa.get("phone_number"), ch,
                            want, list_id))
        with self.lock:
            self.subscriptions.extend(got)
            self.consent_requests.append((req.path, len(profiles)))
        return 202, b"", hdrs

    def profile_import(self, req):
        """K14: Create or Update Profile."""
        d, hdrs = self._common(req, self.consent_windows["profile"])
        need(d.get("type") == "profile", 400, err(400, "invalid", "data.type must be profile"),
             hdrs)
        pa = d.get("attributes")
        need(isinstance(pa, dict) and any(pa.get(k) for k in ("email", "phone_number",
                                                              "external_id")), 400,
             err(400, "invalid", "a profile needs email, phone_number or external_id",
                 "/data/attributes"), hdrs)
        props = pa.get("properties", {})
        need(isinstance(props, dict), 400,
             err(400, "invalid", "properties must be an object", "/data/attributes/properties"),
             hdrs)
        key = next(f"{k}={pa[k]}" for k in ("external_id", "email", "phone_number") if pa.get(k))
        with self.lock:
            created = key not in self.profiles
            self.profiles.setdefault(key, {}).update(props)
            self.consent_requests.append((req.path, 1))
        return (201 if created else 200), {"data": {"type": "profile", "id": str(uuid.uuid4()),
                                                    "attributes": pa}}, hdrs


def _strings(o):
    if isinstance(o, str):
        yield o
    elif isinstance(o, dict):
        for v in o.values():
            yield from _strings(v)
    elif isinstance(o, list):
        for v in o:
            yield from _strings(v)
