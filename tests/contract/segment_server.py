"""Contract server for Segment's HTTP Tracking API batch endpoint (and
RudderStack's, which copies it): what tillside's `segment` and `rudderstack`
sinks must honour. Rules, each from the reference:

  https://segment.com/docs/connections/sources/catalog/libraries/server/http-api/
  R1 "Authentication": HTTP Basic, the source's write key as the user name
     and an empty password.
  R2 "Headers": Content-Type must be application/json.
  R3 "Max request size": a batch is at most 500 KB, each event at most
     32 KB; past either Segment answers 400 for the whole request.
  R4 "Errors": every payload needs a userId or anonymousId; a track event
     needs `event`; 400 otherwise (for the whole batch).
  R5 "Rate limits": no hard limit, but "do not exceed 500 requests per
     second" -- enforced here as 429 with Retry-After past 500/s.
  R6 messageId is the dedup key: an event with a messageId seen before is
     dropped (counted in ledger.duplicates).
  R7 "Batch": {"batch": [...]} with each element a full call (type track ...).
RudderStack (https://www.rudderstack.com/docs/api/http-api/): the same
shape and auth; batch up to 4 MB (max_batch below).
"""
import base64
import json

from contract import ContractServer, Ledger, Refuse, Storm, Windows, need

TYPES = {"track", "identify", "page", "screen", "group", "alias"}


class SegmentServer(ContractServer):
    def __init__(self, certs, write_key, max_batch=500 * 1024, rate=500):
        self.write_key = write_key
        self.max_batch = max_batch
        self.ledger = Ledger()
        self.windows = Windows((rate, 1))  # R5
        self.storm = Storm()
        self.refuse = lambda event: None  # a test's extra vendor-side refusal: reason or None
        super().__init__(certs, {("POST", "/v1/batch"): SegmentServer.batch}, name="segment")

    def batch(self, req):
        auth = req.header("Authorization") or ""
        want = "Basic " + base64.b64encode(f"{self.write_key}:".encode()).decode()
        need(auth == want, 401, {"success": False, "message": "invalid write key"})  # R1
        need((req.header("Content-Type") or "").startswith("application/json"), 400,
             {"success": False, "message": "Content-Type must be application/json"})  # R2
        ok, wait, limit, left, reset = self.windows.take()
        if self.storm.on() or not ok:  # R5
            raise Refuse(429, {"success": False, "message": "rate limit"},
                         {"Retry-After": max(1, int(wait + 0.999))})
        need(len(req.body) <= self.max_batch, 400,
             {"success": False, "message": "batch exceeds 500 KB"})  # R3
        need(req.json is not None and isinstance(req.json.get("batch"), list), 400,
             {"success": False, "message": "expected {\"batch\": [...]}"})  # R7
        for ev in req.json["batch"]:
            need(isinstance(ev, dict) and ev.get("type") in TYPES, 400,
                 {"success": False, "message": "each call needs a known type"})  # R7
            need(len(json.dumps(ev, separators=(",", ":"))) <= 32 * 1024, 400,
                 {"success": False, "message": "event exceeds 32 KB"})  # R3
            need(ev.get("userId") or ev.get("anonymousId"), 400,
                 {"success": False, "message": "userId or anonymousId required"})  # R4
            need(ev["type"] != "track" or isinstance(ev.get("event"), str), 400,
                 {"success": False, "message": "track needs event"})  # R4
            why = self.refuse(ev)
            need(why is None, 400, {"success": False, "message": why})
        for ev in req.json["batch"]:
            self.ledger.add(ev.get("messageId"), ev)  # R6
        return 200, {"success": True}, {}
