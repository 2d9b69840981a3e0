"""Contract server for Bloomreach Engagement's Tracking API batch endpoint,
written from Bloomreach's published reference (each rule cites its page).

    srv = Bloomreach(certs, token="0a1b-...", key_id="k", key_secret="s")
    srv.events      -> [(command_id, data)] of accepted customers/events commands
    srv.twice       -> command_ids accepted more than once
    srv.windows     -> the documented rate limit (contract.Windows)
    srv.storm       -> contract.Storm: 429 to everything for a while
    srv.down        -> True (connections cut) or a status such as 503

Rules:
- POST /track/v2/projects/{projectToken}/batch, body {"commands": [...]},
  1..50 commands; each {name, data, command_id?}; name one of customers,
  customers/events.
  https://documentation.bloomreach.com/engagement/reference/batch-commands-2
- Private access: HTTP Basic with the API key id and secret; refused with 401.
  https://documentation.bloomreach.com/engagement/reference/authentication
- 6,000 requests per minute per IP (100 per second); past it HTTP 429 and
  the data is ignored.
  https://documentation.bloomreach.com/engagement/docs/tracking-api-overview-2
- Whole-batch problems (JSON, structure, auth) are 4xx with success false and
  a message; an accepted batch is 200 with success true and "results", one
  {"success": bool, "errors": [...]} per command in order; a command without
  customer ids fails with "At least one id should be specified."
  https://documentation.bloomreach.com/engagement/reference/tracking-api-error-messages
- purchase / purchase_item attributes and their types (purchase_id,
  purchase_status, total_price, product_id, price, quantity, ...).
  https://documentation.bloomreach.com/engagement/docs/custom-events
- An attribute value holds at most 16 KB (128 Kbit).
  https://documentation.bloomreach.com/engagement/docs/tracking
- A consent event: event_type "consent" with action "accept" or "reject"
  (lowercase), category (string), timestamp (number), and valid_until (a
  Unix time or "unlimited") when granting; a consent event without them is
  no valid consent (refused here, so a test sees it).
  https://documentation.bloomreach.com/engagement/docs/consent and
  https://documentation.bloomreach.com/engagement/docs/help-how-to-manage-consents-through-a-scenario
"""
import base64
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from contract import ContractServer, Storm, Windows, check_type, json_body, need  # noqa: E402

MAX_COMMANDS = 50          # batch-commands-2: "up to 50 commands in a batch"
RATE = (100, 1)            # tracking-api-overview-2: 6,000/min per IP = 100/s
MAX_VALUE_BYTES = 16 * 1024  # tracking: "16Kbytes per attribute"

# custom-events: the attributes of the two e-commerce events and their types.
PURCHASE = {"purchase_id": "string", "purchase_status": "string", "total_price": "number",
            "product_ids": "array", "product_list": "array"}
PURCHASE_ITEM = {"purchase_id": "string", "purchase_status": "string", "product_id": "string",
                 "price": "number", "quantity": "number"}

# consent: the required attributes of a consent event
CONSENT = {"action": "string", "category": "string", "timestamp": "number"}


def _fail(msg):
    return {"success": False, "errors": [msg]}


class Bloomreach(ContractServer):
    def __init__(self, certs, token, key_id, key_secret, port=0):
        self.token, self.events, self.twice, self.seen = token, [], [], set()
        self.windows = Windows(RATE)
        self.storm = Storm()  # a test's 429 storm on top of the documented rate
        self.max_value = MAX_VALUE_BYTES
        self.want_auth = "Basic " + base64.b64encode(f"{key_id}:{key_secret}".encode()).decode()
        super().__init__(certs, {("POST", f"/track/v2/projects/{token}/batch"): self._batch},
                         port=port, name="bloomreach")

    def _command(self, c):
        """The per-command result of one command (and keeps an accepted event)."""
        if check_type(c, "name", "string") or c["name"] not in ("customers", "customers/events"):
            return _fail("unknown command name")
        if check_type(c, "data", "object"):
            return _fail("data must be an object")
        d = c["data"]
        ids = d.get("customer_ids")
        if not isinstance(ids, dict) or not ids or not all(
                isinstance(v, str) and v for v in ids.values()):
            return _fail("At least one id should be specified.")
        if c["name"] == "customers":
            return {"success": True}
        for key, want in (("event_type", "string"), ("properties", "object")):
            m = check_type(d, key, want)
            if m:
                return _fail(m)
        m = check_type(d, "timestamp", "number", required=False)
        if m:
            return _fail(m)
        props = d["properties"]
        for k, v in props.items():
            if isinstance(v, str) and len(v.encode()) > self.max_value:
                return _fail(f"value of '{k}' is longer than {self.max_value} bytes")
        schema = {"purchase": PURCHASE, "purchase_item": PURCHASE_ITEM,
                  "consent": CONSENT}.get(d["event_type"], {})
        for k, want in schema.items():
            m = check_type(props, k, want)
            if m:
                return _fail(m)
        if d["event_type"] == "consent":
            if props["action"] not in ("accept", "reject"):
                return _fail("consent: action must be accept or reject")
            vu = props.get("valid_until")
            if props["action"] == "accept" and not (
                    vu == "unlimited" or (isinstance(vu, (int, float)) and not
                                          isinstance(vu, bool))):
                return _fail("consent: valid_until (a Unix time or unlimited) when granting")
        cid = c.get("command_id")
        with self.lock:
            if cid is not None and cid in self.seen:
                self.twice.append(cid)
            self.seen.add(cid)
            self.events.append((cid, d))
        return {"success": True}

    def _batch(self, srv, req):
        need(req.header("Authorization") == self.want_auth, 401,
             {"success": False, "message": "Invalid credentials"})
        ok, _, _, _, _ = self.windows.take()
        need(ok and not self.storm.on(), 429, {"success": False, "message": "Too many requests"})
        body = json_body(req)
        need(isinstance(body, dict) and isinstance(body.get("commands"), list), 400,
             {"success": False, "message": "commands must be an array"})
        cmds = body["commands"]
        need(1 <= len(cmds) <= MAX_COMMANDS, 400,
             {"success": False, "message": f"1 to {MAX_COMMANDS} commands per batch"})
        return 200, {"success": True, "results": [self._command(c) for c in cmds]}, {}

    def of_type(self, event_type):
        """The data of every accepted event of event_type, in arrival order."""
        with self.lock:
            return [d for _, d in self.events if d["event_type"] == event_type]

    def purchases(self):
        """{purchase_id: (purchase properties, [purchase_item properties])}."""
        with self.lock:
            out = {}
            for _, d in self.events:
                p = d["properties"]
                e = out.setdefault(p.get("purchase_id"), [None, []])
                if d["event_type"] == "purchase":
                    e[0] = d
                elif d["event_type"] == "purchase_item":
                    e[1].append(d)
            return out

