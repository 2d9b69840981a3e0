"""Contract servers for Salesforce Data Cloud's Ingestion API (streaming
insert) and the two token steps before it, written from Salesforce's
published references (each rule cites its page).

Two servers, as in production: the org's My Domain (OAuth token and the
Data Cloud token exchange) and the Data Cloud tenant (ingestion), whose
address the hub learns from the exchange's instance_url.

    dc = DataCloud(certs, client_id="...", client_secret="...",
                   source="tillside", obj="purchase_line", ttl_s=7200)
    dc.login.url      -> [sink.NAME] login_url
    dc.records        -> {line_id: record} (upsert on the primary key)
    dc.resent         -> line_ids received again after they were accepted
    dc.exchanges      -> Data Cloud tokens issued
    dc.revoke()       -> every issued token stops working (the next call: 401)
    dc.tenant.windows -> the ingestion rate limit; dc.tenant.storm (contract.Storm)
                         for a 429 storm; dc.tenant.down for outages

Rules:
- OAuth 2.0 client credentials: POST {My Domain}/services/oauth2/token,
  form grant_type=client_credentials, client_id, client_secret; 200 with
  access_token and instance_url; a bad client is 400 invalid_client.
  https://help.salesforce.com/s/articleView?id=sf.remoteaccess_oauth_client_credentials_flow.htm
- Token exchange: POST {instance_url}/services/a360/token, form grant_type=
  urn:salesforce:grant-type:external:cdp, subject_token, subject_token_type=
  urn:ietf:params:oauth:token-type:access_token; 200 {access_token,
  instance_url (the tenant), token_type "Bearer", issued_token_type,
  expires_in}.
  https://developer.salesforce.com/docs/data/data-cloud-ref/guide/c360a-api-get-started.html
- Insert: POST {tenant}/api/v1/ingest/sources/{source}/{object}, Bearer
  token, {"data": [records]}; 202 {"accepted": true}; all fields of the
  schema present (blank when no value).
  https://developer.salesforce.com/docs/atlas.en-us.c360a_api.meta/c360a_api/c360a_api_insert_records.htm
- The payload must be less than 200 KB.
  https://developer.salesforce.com/docs/atlas.en-us.c360a_api.meta/c360a_api/c360a_api_streaming_insert_example.htm
- dateTime as yyyy-MM-ddTHH:mm:ss.SSSZ; 429 when over the usage limits; an
  expired or invalid token is 401.
  https://developer.salesforce.com/docs/data/data-cloud-ref/guide/c360a-api-get-started.html
- The object's schema is the connector's (the retailer uploads it; the one
  below is docs/OPERATIONS.md's); a field of type email must hold an e-mail
  address (or be blank). Records not matching the schema are refused.
- One object per request: its name is in the path, and every record of the
  body must match that object's schema (Insert Records: "POST
  /api/v1/ingest/sources/{name}/{object-name}"); a connector has several
  objects (the consent and redemption objects of docs/OPERATIONS.md, routes
  of their own when the test names them: objects={name: "consent" |
  "redemption"}). dc.by_object[name] -> {primary key: record};
  dc.inserts -> [(object, records)] per accepted request.
"""
import os
import re
import sys
import threading
import time
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from contract import ContractServer, Storm, Windows, json_body, need  # noqa: E402

MAX_PAYLOAD = 200 * 1000  # "less than 200 KB"
RATE = (25, 1)            # not in the pages we read; settable per test
DATETIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")

# The purchase_line object of docs/OPERATIONS.md: field -> type; line_id is
# the primary key.
SCHEMA = {"line_id": "text", "message_id": "text", "order_id": "text", "customer_id": "text",
          "email": "email", "store_id": "text", "terminal": "text", "product_id": "text",
          "sku": "text", "product_name": "text", "quantity": "number", "price": "number",
          "line_total": "number", "order_total": "number", "currency": "text",
          "purchased_at": "datetime", "event_type": "text"}
PRIMARY_KEY = "line_id"
# docs/OPERATIONS.md's consent and redemption objects: (schema, primary key).
CONSENT_SCHEMA = {"consent_id": "text", "customer_id": "text", "email": "email",
                  "store_id": "text", "terminal": "text", "associate": "text",
                  "personalization": "text", "email_consent": "text", "sms_consent": "text",
                  "recorded_at": "datetime"}
REDEMPTION_SCHEMA = {"redemption_id": "text", "coupon_code": "text", "coupon_name": "text",
                     "order_id": "text", "customer_id": "text", "email": "email",
                     "store_id": "text", "terminal": "text", "redeemed_at": "datetime"}
KINDS = {"consent": (CONSENT_SCHEMA, "consent_id"),
         "redemption": (REDEMPTION_SCHEMA, "redemption_id")}


def _form(req):
    need(req.header("Content-Type", ) and
         req.header("Content-Type").startswith("application/x-www-form-urlencoded"), 400,
         {"error": "invalid_request", "error_description": "expected a form"})
    return {k: v[0] for k, v in urllib.parse.parse_qs(req.body.decode()).items()}


def _field_problem(name, want, v, valid_email=EMAIL.match):
    if want == "number":
        return None if isinstance(v, (int, float)) and not isinstance(v, bool) else "number"
    if not isinstance(v, str):
        return "text"
    if want == "datetime" and v and not DATETIME.match(v):
        return "dateTime yyyy-MM-ddTHH:mm:ss.SSSZ"
    if want == "email" and v and not valid_email(v):
        return "an e-mail address"
    return None


class DataCloud:
    def __init__(self, certs, client_id, client_secret, source, obj, ttl_s=7200, objects=None):
        self.client_id, self.client_secret, self.ttl_s = client_id, client_secret, ttl_s
        self.records, self.resent = {}, []
        self.by_object, self.inserts = {obj: self.records}, []
        self.schemas = {obj: (SCHEMA, PRIMARY_KEY)}
        for name, kind in (objects or {}).items():
            self.schemas[name] = KINDS[kind]
            self.by_object[name] = {}
        self.core_tokens, self.dc_tokens = set(), {}  # token -> expiry (monotonic)
        self.exchanges = 0
        self.lock = threading.Lock()
        self.login = ContractServer(certs, {("POST", "/services/oauth2/token"): self._oauth,
                                            ("POST", "/services/a360/token"): self._exchange},
                                    name="salesforce-login")
        self.tenant = ContractServer(
            certs, {("POST", f"/api/v1/ingest/sources/{source}/{name}"):
                    (lambda srv, req, name=name: self._insert(srv, req, name))
                    for name in self.schemas},
            name="datacloud-tenant")
        self.tenant.windows = Windows(RATE)
        self.tenant.storm = Storm()
        self.valid_email = EMAIL.match  # a test may relax the schema it refused with
        self.unauthorized = 0  # 401 answers of the tenant

    def stop(self):
        self.login.stop()
        self.tenant.stop()

    def revoke(self):
        with self.lock:
            self.core_tokens.clear()
            self.dc_tokens.clear()

    def _oauth(self, srv, req):
        f = _form(req)
        need(f.get("grant_type") == "client_credentials", 400,
             {"error": "unsupported_grant_type", "error_description": "grant type not supported"})
        need(f.get("client_id") == self.client_id and
             f.get("client_secret") == self.client_secret, 400,
             {"error": "invalid_client", "error_description": "invalid client credentials"})
        tok = "00D!core-" + os.urandom(8).hex()
        with self.lock:
            self.core_tokens.add(tok)
        return 200, {"access_token": tok, "instance_url": self.login.url, "token_type": "Bearer",
                     "issued_at": str(int(time.time() * 1000)), "scope": "cdp_ingest_api api",
                     "id": f"{self.login.url}/id/00D/005"}, {}

    def _exchange(self, srv, req):
        f = _form(req)
        need(f.get("grant_type") == "urn:salesforce:grant-type:external:cdp", 400,
             {"error": "unsupported_grant_type", "error_description": "grant type not supported"})
        need(f.get("subject_token_type") == "urn:ietf:params:oauth:token-type:access_token", 400,
             {"error": "invalid_request", "error_description": "subject_token_type"})
        with self.lock:
            known = f.get("subject_token") in self.core_tokens
        need(known, 401, {"error": "invalid_grant", "error_description": "invalid subject token"})
        tok = "dc-" + os.urandom(12).hex()
        with self.lock:
            self.dc_tokens[tok] = time.monotonic() + self.ttl_s
            self.exchanges += 1
        # The tenant as a bare host name, as Data Cloud answers it.
        return 200, {"access_token": tok, "instance_url": f"localhost:{self.tenant.port}",
                     "token_type": "Bearer",
                     "issued_token_type": "urn:ietf:params:oauth:token-type:jwt",
                     "expires_in": self.ttl_s}, {}

    def _insert(self, srv, req, obj):
        schema, pkey = self.schemas[obj]
        auth = req.header("Authorization") or ""
        with self.lock:
            exp = self.dc_tokens.get(auth[7:]) if auth.startswith("Bearer ") else None
        if exp is None or exp <= time.monotonic():
            with self.lock:
                self.unauthorized += 1
        need(exp is not None and exp > time.monotonic(), 401,
             [{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}])
        ok, _, _, _, _ = srv.windows.take()
        need(ok and not srv.storm.on(), 429, [{"message": "Too many requests", "errorCode": "REQUEST_LIMIT_EXCEEDED"}])
        need(len(req.body) < MAX_PAYLOAD, 413,
             [{"message": f"payload of {len(req.body)} bytes is not under 200 KB",
               "errorCode": "PAYLOAD_TOO_LARGE"}])
        body = json_body(req)
        need(isinstance(body, dict) and isinstance(body.get("data"), list) and body["data"], 400,
             [{"message": "expected {\"data\": [records]}", "errorCode": "INVALID_INPUT"}])
        for i, r in enumerate(body["data"]):
            need(isinstance(r, dict), 400, [{"message": f"data[{i}] is not an object",
                                             "errorCode": "INVALID_INPUT"}])
            missing = sorted(set(schema) - set(r))
            extra = sorted(set(r) - set(schema))
            need(not missing and not extra, 400,
                 [{"message": f"data[{i}]: missing {missing}, unknown {extra}",
                   "errorCode": "INVALID_INPUT"}])
            for k, want in schema.items():
                p = _field_problem(k, want, r[k], self.valid_email)
                need(p is None, 400, [{"message": f"data[{i}].{k}: expected {p}",
                                       "errorCode": "INVALID_INPUT"}])
            need(r[pkey] != "", 400, [{"message": f"data[{i}]: blank primary key",
                                       "errorCode": "INVALID_INPUT"}])
        with self.lock:
            records = self.by_object[obj]
            for r in body["data"]:
                if r[pkey] in records:
                    self.resent.append(r[pkey])
                records[r[pkey]] = r
            self.inserts.append((obj, [r[pkey] for r in body["data"]]))
        return 202, {"accepted": True}, {}
