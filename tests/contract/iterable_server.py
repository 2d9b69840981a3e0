"""Contract server for Iterable's Commerce API trackPurchase, written from
Iterable's published API reference (each rule cites its page).

    srv = Iterable(certs, api_key="...")
    srv.purchases -> {id: body} of tracked purchases (one per id)
    srv.repeats   -> ids sent again after they were tracked (dedup absorbed them)
    srv.events    -> {id: body} of custom events (/api/events/track)
    srv.users     -> {email or userId: dataFields} after /api/users/update
    srv.updates   -> [body] of every accepted /api/users/update, in order
    srv.n429()    -> how many requests were answered 429
    srv.windows   -> the rate limit (contract.Windows)
    srv.storm     -> contract.Storm: 429 to everything for a while
    srv.down      -> True (connections cut) or a status such as 503

Rules:
- POST /api/commerce/trackPurchase with the project's key in the "Api-Key"
  header; a wrong key is 401 {"code": "BadApiKey"}.
  https://api.iterable.com/api/docs#commerce_trackPurchase and
  https://support.iterable.com/hc/en-us/articles/360043464871 (API keys)
- Body: user (object with email or userId, string), items (array of
  {id: string, name: string, price: number, quantity: integer, sku?:
  string}), total (number) required; id (string), createdAt (integer,
  seconds) and dataFields (object) optional.
  https://api.iterable.com/api/docs#commerce_trackPurchase
- "id": a purchase with an id already tracked is not tracked again.
  https://api.iterable.com/api/docs#commerce_trackPurchase
- Answers: 200 {"msg", "code": "Success", "params"}; 400 with code
  BadJsonBody, BadParams, InvalidEmailAddressError; 401 BadApiKey.
  https://api.iterable.com/api/docs (Response codes)
- POST /api/events/track (a custom event, how a refund reaches Iterable: its
  Commerce API has trackPurchase and updateCart only): eventName (string)
  required, email or userId (string), id (string: "if an event exists with
  that id, the event will be updated", so a resend is no second event),
  createdAt (integer, seconds) and dataFields (object) optional.
  https://api.iterable.com/api/docs#events_track
- POST /api/users/update (how a consent choice reaches Iterable): email or
  userId (string; "if both are passed in, email takes precedence"),
  dataFields (object, "data fields to store in the user profile"; merged
  into the profile's fields), preferUserId and mergeNestedObjects
  (booleans) optional.
  https://api.iterable.com/api/docs#users_updateUser
- Rate: per endpoint and project, 429 past it. The trackPurchase figure was
  not in the material available to us; 10 requests/second is the default
  here (Iterable's figure for its bulk track endpoint), settable per test,
  counted in fixed one-second windows over all endpoints together (stricter
  than per endpoint).
"""
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from contract import ContractServer, Storm, Windows, check_type  # noqa: E402

RATE = (10, 1)
EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


def _err(status, code, msg):
    return status, {"msg": msg, "code": code, "params": None}, {}


class Iterable(ContractServer):
    def __init__(self, certs, api_key, port=0):
        self.api_key, self.purchases, self.repeats = api_key, {}, []
        self.events = {}  # id -> body of tracked custom events
        self.users, self.updates = {}, []
        self.windows = Windows(RATE)
        self.storm = Storm()
        self.valid_email = EMAIL.match  # a test may let the project take what it refused
        super().__init__(certs, {("POST", "/api/commerce/trackPurchase"): self._track,
                                 ("POST", "/api/events/track"): self._event,
                                 ("POST", "/api/users/update"): self._update},
                         port=port, name="iterable")

    def _gate(self, req):
        """The key, the rate limit and a JSON object body: an answer, or None."""
        if req.header("Api-Key") != self.api_key:
            return _err(401, "BadApiKey", "Invalid API key")
        ok, _, _, _, _ = self.windows.take()
        if not ok or self.storm.on():
            return _err(429, "RateLimitExceeded", "Too many requests")
        if not isinstance(req.json, dict):
            return _err(400, "BadJsonBody", "body is not a JSON object")
        return None

    def _event(self, srv, req):
        refused = self._gate(req)
        if refused:
            return refused
        b = req.json
        problems = [m for m in (check_type(b, "eventName", "string"),
                                check_type(b, "id", "string", required=False),
                                check_type(b, "createdAt", "integer", required=False),
                                check_type(b, "dataFields", "object", required=False)) if m]
        if problems:
            return _err(400, "BadParams", "; ".join(problems))
        if not (isinstance(b.get("email"), str) or isinstance(b.get("userId"), str)):
            return _err(400, "BadParams", "an event needs an email or a userId")
        with self.lock:
            if b.get("id") in self.events:
                self.repeats.append(b["id"])
            self.events[b.get("id")] = b  # the same id updates the event
        return 200, {"msg": "", "code": "Success", "params": {"id": b.get("id")}}, {}

    def n429(self):
        return self.count(lambda r: r.status == 429)

    def _update(self, srv, req):
        refused = self._gate(req)
        if refused:
            return refused
        b = req.json
        problems = [m for m in (check_type(b, "dataFields", "object", required=False),
                                check_type(b, "preferUserId", "boolean", required=False),
                                check_type(b, "mergeNestedObjects", "boolean", required=False))
                    if m]
        if problems:
            return _err(400, "BadParams", "; ".join(problems))
        who = b.get("email") if isinstance(b.get("email"), str) else b.get("userId")
        if not isinstance(who, str) or not who:
            return _err(400, "BadParams", "either email or userId must be specified")
        if "email" in b and not self.valid_email(str(b["email"])):
            return _err(400, "InvalidEmailAddressError", f"Invalid email: {b['email']}")
        with self.lock:
            self.users.setdefault(who, {}).update(b.get("dataFields") or {})
            self.updates.append(b)
        return 200, {"msg": "", "code": "Success", "params": None}, {}

    def _track(self, srv, req):
        refused = self._gate(req)
        if refused:
            return refused
        b = req.json
        problems = [m for m in (check_type(b, "user", "object"), check_type(b, "items", "array"),
                                check_type(b, "total", "number"),
                                check_type(b, "id", "string", required=False),
                                check_type(b, "createdAt", "integer", required=False),
                                check_type(b, "dataFields", "object", required=False)) if m]
        if problems:
            return _err(400, "BadParams", "; ".join(problems))
        u = b["user"]
        if not (isinstance(u.get("email"), str) or isinstance(u.get("userId"), str)):
            return _err(400, "BadParams", "user needs an email or a userId")
        if "email" in u and not self.valid_email(str(u["email"])):
            return _err(400, "InvalidEmailAddressError", f"Invalid email: {u['email']}")
        for i, it in enumerate(b["items"]):
            for key, want in (("id", "string"), ("name", "string"), ("price", "number"),
                              ("quantity", "integer")):
                m = check_type(it, key, want)
                if m:
                    return _err(400, "BadParams", f"items[{i}]: {m}")
            m = check_type(it, "sku", "string", required=False)
            if m:
                return _err(400, "BadParams", f"items[{i}]: {m}")
        pid = b.get("id")
        with self.lock:
            if pid is not None and pid in self.purchases:
                self.repeats.append(pid)
            else:
                self.purchases[pid] = b
        return 200, {"msg": "", "code": "Success", "params": {"id": pid}}, {}

