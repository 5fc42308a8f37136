#!/usr/bin/env python3
"""End-to-end check of the browser flows (spec 5) in a real headless Chromium.

Starts `vnetd run` with a temporary config (free ports, temporary database, small Argon2
parameters, as tests/zeep/check.py does), provisions two SP peers, the example catalogue and a
user with the CLI, and runs two tiny SPs: local HTTP servers (http://localhost:PORT, so the SP
is another site than the node at http://127.0.0.1:PORT, as in real life) whose pages link to the
node with freshly sealed SSORequest / PayRequest / SSOLogoutRequest tokens, and whose ReturnURL
handlers record the SSOResponse / PayResponse they get, open it with the SP key, check its Digest
and, for a login, validate the ticket with TicketValidate over SOAP (a plain SOAP 1.1 POST with
the Authenticator computed here with pycryptodome).

Chromium (Debian's `chromium` + `chromium-driver`, driven by selenium WebDriver, headless) then
goes through, each an `ok` line:

(h) a ReturnURL outside the SP's prefixes: HTTP 400 error page, no redirect;
(f) a wrong password and an unknown account: the same one generic message;
(a) SP page -> /sso/login -> account + password -> back at the SP with an SSOResponse whose
    ticket TicketValidate accepts once (Result 0, the user's VNetUserID), then -20501;
(b) a second SP: back at once through the live VNETSSO session, no form, its ticket validates;
(c) /pay confirm for an item of the example catalogue: SP name, item name and `¥2.00` shown,
    PayResponse 0, PaymentQuery PaymentStatus 0 with the same TransactionID;
(d) /pay cancel: PayResponse -20512, PaymentQuery PaymentStatus 2;
(e) /account/password: a weak password refused with a message, a good one accepted; then the old
    password fails and the new one logs in;
(g) /sso/logout: the session ends and the browser is sent back to the SP.

Every page shown (login, pay, password, error) is also checked for `lang="zh-CN"`, a viewport
meta tag, no horizontal scrolling at 375 px, no Content-Security-Policy violation in the
browser console, and (fetched again with requests) its security headers. With
`--screenshots DIR` those four pages are saved as DIR/{login,pay,password,error}-{desktop,phone}.png
(1280 and 375 px wide).

Chromium never reaches beyond this machine: everything but loopback goes to a dead local proxy.

If selenium, chromium or chromedriver is missing the check fails (exit 1), unless
VNETD_BROWSER_TESTS=skip, then it says so and prints `0 passed, 0 failed` (exit 0).
The daemon and the browser are stopped at the end, also on failure or interruption. Last line:
`N passed, N failed`; exit status 0 iff nothing failed.

Usage: e2e.py [--bin target/debug/vnetd] [--screenshots DIR] [--keep]
Environment: VNETD_BIN, CHROMIUM (browser binary), CHROMEDRIVER, VNETD_BROWSER_TESTS=skip,
CHECK_TRACEBACK=1 (print tracebacks of failed checks).
"""

import argparse
import base64
import hashlib
import html
import http.server
import json
import os
import secrets
import shutil
import signal
import sys
import tempfile
import threading
import time
import urllib.parse
import xml.etree.ElementTree as ET

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SKIP = os.environ.get("VNETD_BROWSER_TESTS", "") == "skip"


def unavailable(why):
    """The browser tooling is missing: a failure, or a skip when VNETD_BROWSER_TESTS=skip."""
    if SKIP:
        print(f"e2e.py: skipped (VNETD_BROWSER_TESTS=skip): {why}", flush=True)
        print("0 passed, 0 failed", flush=True)
        sys.exit(0)
    print(f"e2e.py: {why}\n  install: apt-get install chromium chromium-driver fonts-wqy-microhei; "
          "pip install -r tests/browser/requirements.txt\n  or set VNETD_BROWSER_TESTS=skip to skip this check",
          file=sys.stderr, flush=True)
    print("0 passed, 1 failed", flush=True)
    sys.exit(1)


sys.path.insert(0, os.path.join(ROOT, "tests", "pylib"))
try:
    import requests
    from vnetd_testlib import Daemon as BaseDaemon, Results, authenticator, new_key, node_now, tdes_b64, tdes_open
except ImportError as e:  # pragma: no cover - environment problem, reported plainly
    print(f"e2e.py: missing Python package ({e}); pip install -r tests/browser/requirements.txt", file=sys.stderr)
    print("0 passed, 1 failed")
    sys.exit(1)

try:
    # Never let selenium look for (or download) a driver of its own: Debian's is used.
    os.environ.setdefault("SE_OFFLINE", "true")
    import selenium
    from selenium import webdriver
    from selenium.common.exceptions import TimeoutException, WebDriverException
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait
except ImportError as e:
    unavailable(f"selenium is not installed ({e})")

NODE_DEV = "3500000000000101"  # [node] device_no default
SP1_ID, SP2_ID = "35000001", "35000002"
SP1_NAME = "福建星空音乐"  # the example catalogue's name of SP 35000001
SERVICE, PERUSE = "3500000100000001", "3500000100000101"  # 单次下载, per use, 200 fen
PERUSE_NAME = "单次下载"
SPS_NS = "http://vnet.cn/province/v3/ProvinceForSP"
SOAP_NS = "http://schemas.xmlsoap.org/soap/envelope/"
DESKTOP, PHONE = (1280, 800), (375, 812)
GENERIC_LOGIN_ERROR = None  # learnt in scenario (f), reused in (e)


# ---------------------------------------------------------------- crypto (spec 2.4, 2.5, 5)

def digest(values) -> str:
    """Base64(SHA1(values concatenated without separators))."""
    return base64.b64encode(hashlib.sha1("".join(values).encode("utf-8")).digest()).decode("ascii")


def seal(key_hex: str, ident: str, fields, digest_over) -> str:
    """A browser token `ID$Base64(3DES(f1$f2$…$Digest))`, not yet URL-encoded."""
    plain = "".join(f + "$" for f in fields) + digest(digest_over)
    return f"{ident}${tdes_b64(key_hex, plain.encode('utf-8'))}"


def open_token(key_hex: str, tok: str, n_fields: int):
    """(id, fields, Digest) of a token with n_fields fields and no `$` inside a field."""
    ident, body = tok.split("$", 1)
    parts = tdes_open(key_hex, body.replace(" ", "+")).split("$")
    assert len(parts) == n_fields + 1, f"{len(parts) - 1} fields in the token, expected {n_fields}"
    return ident, parts[:-1], parts[-1]


def check_vectors():
    """Our token code reproduces the spec's vectors (shared/spec/vectors.json)."""
    path = os.path.join(ROOT, "..", "shared", "spec", "vectors.json")
    with open(path, encoding="utf-8") as f:
        v = json.load(f)
    r = v["sso_request"]
    assert seal(r["key"], r["SPID"], [r["TimeStamp"], r["ReturnURL"]],
                [r["SPID"], r["TimeStamp"], r["ReturnURL"]]) == r["SSORequest_unencoded"], "SSORequest"
    r = v["pay_request"]
    f = [r["OrderID"], r["ServiceID"], r["ServiceItemID"], r["Fee"], r["ReturnURL"], r["TimeStamp"]]
    assert seal(r["key"], r["SPID"], f, [r["SPID"], *f]) == r["PayRequest_unencoded"], "PayRequest"
    r = v["sso_logout_request"]
    f = [r["VNetUserID"], r["TimeStamp"], r["ReturnURL"]]
    assert seal(r["key"], r["SPID"], f, [r["SPID"], *f]) == r["SSOLogoutRequest_unencoded"], "SSOLogoutRequest"
    r = v["sso_response"]
    ident, f, d = open_token(r["key"], r["SSOResponse_unencoded"], 3)
    assert (ident, f, d) == (r["DeviceNo"], [r["Result"], r["Ticket"], r["TimeStamp"]], r["Digest"]), "SSOResponse"
    assert digest([f[0], ident, f[1], f[2]]) == d, "SSOResponse Digest"
    r = v["pay_response"]
    ident, f, d = open_token(r["key"], r["PayResponse_unencoded"], 4)
    assert f == [r["Result"], r["OrderID"], r["TransactionID"], r["TimeStamp"]] and d == r["Digest"], "PayResponse"
    assert digest([f[0], ident, *f[1:]]) == d, "PayResponse Digest"


# ---------------------------------------------------------------- the daemon, as an SP calls it

class Daemon(BaseDaemon):
    def add_user(self, account, password, *extra):
        out = self.cli("user", "add", "--account-type", "01", "--account", account, "--city-code", "0591",
                       "--password-stdin", *extra, stdin=password + "\n")
        return out.stdout.strip()

    # -- SOAP, as an SP calls it: a plain SOAP 1.1 envelope, fields in Authenticator order
    def soap(self, op, key_hex, fields):
        """Call ProvinceForSP `op` with `fields` [(name, value)] in Authenticator order (TimeStamp
        and Authenticator added here). Returns the response fields by local name."""
        fields = list(fields) + [("TimeStamp", node_now())]
        fields.append(("Authenticator", authenticator(key_hex, [v for _, v in fields])))
        body = "".join(f"<t:{k}>{html.escape(v)}</t:{k}>" for k, v in fields)
        env = (f'<?xml version="1.0" encoding="UTF-8"?><soapenv:Envelope xmlns:soapenv="{SOAP_NS}" '
               f'xmlns:t="{SPS_NS}"><soapenv:Body><t:{op}>{body}</t:{op}></soapenv:Body></soapenv:Envelope>')
        r = requests.post(f"{self.base}/ProvinceForSP/services/ProvinceForSP", data=env.encode("utf-8"),
                          headers={"Content-Type": "text/xml; charset=utf-8", "SOAPAction": '""'}, timeout=15)
        assert r.status_code == 200, f"{op}: HTTP {r.status_code}: {r.text[:300]}"
        root = ET.fromstring(r.content)
        resp = next((e for e in root.iter() if e.tag.split("}")[-1] == f"{op}Response"), None)
        assert resp is not None, f"{op}: no {op}Response in {r.text[:300]}"
        out = {c.tag.split("}")[-1]: (c.text or "") for c in resp}
        out["Result"] = int(out.get("Result", "-999999"))
        return out


# ---------------------------------------------------------------- the SPs: tiny local web servers

class SP:
    """An SP's web site at http://localhost:PORT/sp/ (its registered ReturnURL prefix).

    /sp/login            a page with a link to the node's /sso/login (SSORequest, ReturnURL /sp/back)
    /sp/login?return=URL the same with another ReturnURL (for the refused-ReturnURL scenario)
    /sp/buy?order=&item=&fee=  a link to the node's /pay (PayRequest, ReturnURL /sp/paid)
    /sp/logout?user=     a link to the node's /sso/logout (ReturnURL /sp/bye)
    /sp/back, /sp/paid, /sp/bye  the ReturnURLs: record what arrives; /sp/back validates the ticket
    Anything else (e.g. /other/…, outside the prefix) is recorded too, so a redirect there shows.
    """

    def __init__(self, node, spid, key):
        self.node, self.spid, self.key = node, spid, key
        self.events = []
        self.lock = threading.Lock()
        sp = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *_a):
                pass

            def do_GET(self):  # noqa: N802 - http.server's name
                try:
                    status, page = sp.handle(self.path)
                except Exception as e:  # noqa: BLE001 - shown in the page and the event
                    sp.record({"path": self.path, "error": f"{type(e).__name__}: {e}"})
                    status, page = 500, f"<p>SP error: {html.escape(str(e))}</p>"
                body = ("<!DOCTYPE html><html lang=\"zh-CN\"><meta charset=\"utf-8\">"
                        f"<title>SP {sp.spid}</title><body>{page}</body></html>").encode("utf-8")
                self.send_response(status)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def origin(self):
        return f"http://localhost:{self.port}"

    @property
    def prefix(self):
        return f"{self.origin}/sp/"

    def close(self):
        self.server.shutdown()
        self.server.server_close()

    def record(self, ev):
        with self.lock:
            self.events.append(ev)

    def count(self):
        with self.lock:
            return len(self.events)

    def since(self, n):
        with self.lock:
            return list(self.events[n:])

    def link(self, href, text):
        return f'<h1>SP {self.spid}</h1><p><a id="go" href="{html.escape(href)}">{html.escape(text)}</a></p>'

    def handle(self, raw_path):
        url = urllib.parse.urlsplit(raw_path)
        q = dict(urllib.parse.parse_qsl(url.query, keep_blank_values=True))
        path, node, ts = url.path, self.node.base, node_now()
        if path == "/favicon.ico":  # asked for by the browser on every site: not an event
            return 404, "<p>no icon</p>"
        if path == "/sp/login":
            ret = q.get("return") or self.prefix + "back"
            tok = seal(self.key, self.spid, [ts, ret], [self.spid, ts, ret])
            return 200, self.link(f"{node}/sso/login?SSORequest={urllib.parse.quote(tok, safe='')}", "用互联星空帐号登录")
        if path == "/sp/buy":
            ret = self.prefix + "paid"
            f = [q["order"], SERVICE, q["item"], q["fee"], ret, ts]
            tok = seal(self.key, self.spid, f, [self.spid, *f])
            return 200, self.link(f"{node}/pay?PayRequest={urllib.parse.quote(tok, safe='')}", "去支付")
        if path == "/sp/logout":
            ret = self.prefix + "bye"
            f = [q["user"], ts, ret]
            tok = seal(self.key, self.spid, f, [self.spid, *f])
            return 200, self.link(f"{node}/sso/logout?SSOLogoutRequest={urllib.parse.quote(tok, safe='')}", "退出")
        ev = {"path": path, "query": q}
        if path == "/sp/back" and "SSOResponse" in q:
            ident, f, d = open_token(self.key, q["SSOResponse"], 3)
            ev.update(device=ident, result=f[0], ticket=f[1], ts=f[2],
                      digest_ok=digest([f[0], ident, f[1], f[2]]) == d)
            if f[0] == "0":
                ev["validate"] = self.node.soap("TicketValidate", self.key, [("SPID", self.spid), ("Ticket", f[1])])
        elif path == "/sp/paid" and "PayResponse" in q:
            ident, f, d = open_token(self.key, q["PayResponse"], 4)
            ev.update(device=ident, result=f[0], order=f[1], txid=f[2], ts=f[3],
                      digest_ok=digest([f[0], ident, *f[1:]]) == d)
        self.record(ev)
        return 200, f"<h1>SP {self.spid}</h1><p id=\"got\">{html.escape(path)}</p>"


# ---------------------------------------------------------------- the browser

def find_browser():
    chromium = os.environ.get("CHROMIUM") or next(
        (p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)
    driver = os.environ.get("CHROMEDRIVER") or shutil.which("chromedriver")
    missing = [n for n, p in (("chromium", chromium), ("chromedriver (chromium-driver)", driver))
               if not p or not os.access(p, os.X_OK)]
    return chromium, driver, missing


def start_browser(chromium, driver_path):
    o = webdriver.ChromeOptions()
    o.binary_location = chromium
    for a in (
        "--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
        f"--window-size={DESKTOP[0]},{DESKTOP[1]}", "--lang=zh-CN", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--disable-default-apps", "--disable-extensions", "--disable-domain-reliability",
        "--disable-client-side-phishing-detection", "--no-pings", "--dns-prefetch-disable",
        "--metrics-recording-only", "--password-store=basic",
        # Nothing leaves the machine: loopback (localhost, 127.0.0.1) bypasses the proxy
        # implicitly, everything else goes to a closed local port and fails.
        "--proxy-server=http://127.0.0.1:9",
    ):
        o.add_argument(a)
    o.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    o.add_experimental_option("prefs", {"credentials_enable_service": False,
                                        "profile.password_manager_enabled": False})
    d = webdriver.Chrome(service=Service(driver_path), options=o)
    d.set_page_load_timeout(30)
    return d


class Browser:
    def __init__(self, driver, shots_dir):
        self.d = driver
        self.shots = shots_dir
        self.saved = []

    def wait(self, cond, what, timeout=20):
        try:
            return WebDriverWait(self.d, timeout, poll_frequency=0.1).until(lambda d: cond(d))
        except TimeoutException:
            raise AssertionError(f"timed out waiting for {what}; at {self.d.current_url} showing "
                                 f"{self.text()[:200]!r}{self.csp_note()}") from None

    def text(self):
        try:
            return self.d.find_element(By.TAG_NAME, "body").text
        except WebDriverException:
            return ""

    def console(self):
        try:
            return [e.get("message", "") for e in self.d.get_log("browser")]
        except WebDriverException:
            return []

    def csp_note(self):
        bad = [m for m in self.console() if "Content Security Policy" in m]
        return f"; CSP in the console: {bad}" if bad else ""

    def open_sp(self, sp, path):
        """Open an SP page and follow its link to the node (a real click, from the SP's origin)."""
        self.d.get(sp.origin + path)
        self.wait(lambda d: d.find_elements(By.ID, "go"), f"the SP page {path}")
        self.d.find_element(By.ID, "go").click()

    def at_node(self, path):
        node_path = lambda d: urllib.parse.urlsplit(d.current_url).path  # noqa: E731
        self.wait(lambda d: d.current_url.startswith("http://127.0.0.1:") and node_path(d) == path
                  and d.execute_script("return document.readyState") == "complete", f"the node's {path} page")

    def at_sp(self, sp, path, n_before):
        """Wait until the browser is at the SP's `path` and the SP recorded that request."""
        got = lambda: [e for e in sp.since(n_before) if e["path"] == path]  # noqa: E731
        self.wait(lambda d: d.current_url.startswith(sp.origin + path) and got(), f"the SP {sp.spid} at {path}")
        return got()[-1]

    def fill(self, **fields):
        for name, value in fields.items():
            el = self.d.find_element(By.NAME, name)
            el.clear()
            el.send_keys(value)

    def click(self, css):
        self.d.find_element(By.CSS_SELECTOR, css).click()

    def submit(self, css="button[type=submit]"):
        """Click a submit button and wait for the answer page to replace this one (so nothing of
        the old page, e.g. its message, is read as the answer)."""
        old = self.d.find_element(By.TAG_NAME, "html")
        self.click(css)

        def replaced(d):
            try:
                old.tag_name
                return False
            except WebDriverException:  # stale: the page was replaced
                return d.execute_script("return document.readyState") == "complete"
        self.wait(replaced, f"the answer to {css}")

    def alert(self):
        els = self.d.find_elements(By.CSS_SELECTOR, '[role="alert"]')
        return els[0].text.strip() if els else ""

    def node_cookies(self):
        return {c["name"]: c["value"] for c in self.d.execute_cdp_cmd("Network.getAllCookies", {})["cookies"]
                if c["domain"] == "127.0.0.1"}

    def clear_cookies(self):
        self.d.execute_cdp_cmd("Network.clearBrowserCookies", {})

    def width(self, w, h, shot=None):
        """Lay the page out w px wide (desktop rules, so an overflow shows as scrolling), check it
        does not scroll sideways and, with a name, save a full-height screenshot."""
        self.d.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                               {"width": w, "height": h, "deviceScaleFactor": 1, "mobile": False})
        sw, iw = self.d.execute_script(
            "return [document.documentElement.scrollWidth, window.innerWidth]")
        assert iw == w, f"innerWidth {iw} at {w} px"
        assert sw <= iw, f"horizontal scrolling at {w} px: scrollWidth {sw} > innerWidth {iw}"
        if shot and self.shots:
            full = self.d.execute_script("return document.documentElement.scrollHeight")
            self.d.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                                   {"width": w, "height": max(h, full), "deviceScaleFactor": 1, "mobile": False})
            path = os.path.join(self.shots, f"{shot}.png")
            assert self.d.save_screenshot(path), f"screenshot {path}"
            self.saved.append(path)

    def page_checks(self, name, status, sp=None, cookies=None):
        """The page now shown: markup, layout at 375 and 1280 px, screenshots, console, and its
        headers (the same URL fetched again with requests)."""
        d = self.d
        lang = d.execute_script("return document.documentElement.getAttribute('lang')")
        assert lang == "zh-CN", f"<html lang={lang!r}>"
        vp = d.execute_script("var m = document.querySelector('meta[name=viewport]'); return m && m.content")
        assert vp and "width=device-width" in vp, f"viewport meta {vp!r}"
        styled = d.execute_script("return getComputedStyle(document.querySelector('main')).maxWidth")
        assert styled not in ("", "none"), "the style sheet did not apply (main has no max-width)"
        try:
            self.width(*PHONE, shot=f"{name}-phone")
            self.width(*DESKTOP, shot=f"{name}-desktop")
        finally:
            d.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
        bad = [m for m in self.console() if "Content Security Policy" in m]
        assert not bad, f"CSP violations in the console: {bad}"
        r = requests.get(d.current_url, cookies=cookies or {}, allow_redirects=False, timeout=15)
        assert r.status_code == status, f"GET again answered {r.status_code}, expected {status}"
        h = r.headers
        assert h.get("Content-Type", "").startswith("text/html"), h.get("Content-Type")
        assert h.get("X-Frame-Options") == "DENY", f"X-Frame-Options {h.get('X-Frame-Options')!r}"
        assert h.get("Cache-Control") == "no-store", f"Cache-Control {h.get('Cache-Control')!r}"
        assert h.get("X-Content-Type-Options") == "nosniff", f"X-Content-Type-Options {h.get('X-Content-Type-Options')!r}"
        csp = h.get("Content-Security-Policy", "")
        for part in ("default-src 'none'", "frame-ancestors 'none'", "form-action 'self'"):
            assert part in csp, f"{part} not in the CSP {csp!r}"
        if sp is not None:
            fa = next((p for p in csp.split(";") if p.strip().startswith("form-action")), "")
            assert sp.origin in fa.split(), f"the SP's origin {sp.origin} is not in {fa.strip()!r}"
        assert "Location" not in h, f"Location {h['Location']!r}"


# ---------------------------------------------------------------- the scenarios

class World:
    pass


def setup(w):
    d = w.d
    d.cli("peer", "add", "--id", SP1_ID, "--kind", "sp", "--key", w.sp1.key, "--name", SP1_NAME,
          "--return-url", w.sp1.prefix)
    d.cli("peer", "add", "--id", SP2_ID, "--kind", "sp", "--key", w.sp2.key, "--name", "第二商户",
          "--return-url", w.sp2.prefix)
    d.cli("catalog", "import", os.path.join(ROOT, "tests", "data", "catalog-example.toml"))
    w.uid = d.add_user(w.account, w.password, "--credit-limit", "1000000")
    assert len(w.uid) == 12 and w.uid.isdigit(), f"user add printed {w.uid!r}"
    # The daemon reloads peers within a second or two: wait until both SPs are known.
    deadline = time.monotonic() + 10
    for sp in (w.sp1, w.sp2):
        while True:
            r = d.soap("TicketValidate", sp.key, [("SPID", sp.spid), ("Ticket", "no-such-ticket")])
            if r["Result"] == -20501:
                break
            assert r["Result"] == -20001 and time.monotonic() < deadline, f"SP {sp.spid}: TicketValidate {r}"
            time.sleep(0.2)


def scenario_h_foreign_return_url(w, b):
    """(h) ReturnURL outside the SP's prefixes: a 400 error page, no redirect."""
    n = w.sp1.count()
    foreign = f"{w.sp1.origin}/other/steal"
    b.open_sp(w.sp1, "/sp/login?" + urllib.parse.urlencode({"return": foreign}))
    b.at_node("/sso/login")
    assert "请求无效" in b.text(), f"page shows {b.text()[:200]!r}"
    assert not b.d.find_elements(By.NAME, "password"), "a login form was shown"
    b.page_checks("error", 400)
    time.sleep(0.3)
    assert w.sp1.count() == n, f"the SP got a request after all: {w.sp1.since(n)}"
    assert b.d.current_url.startswith(w.d.base), f"the browser left the node: {b.d.current_url}"


def scenario_f_generic_message(w, b):
    """(f) a wrong password and an unknown account get the same one message."""
    global GENERIC_LOGIN_ERROR
    b.open_sp(w.sp1, "/sp/login")
    b.at_node("/sso/login")
    assert b.d.find_elements(By.NAME, "password"), "no password field"
    assert SP1_NAME in b.text(), f"the SP's name is not shown: {b.text()[:200]!r}"
    b.page_checks("login", 200, sp=w.sp1)
    b.fill(account=w.account, password=w.password + "-wrong")
    b.submit()
    b.at_node("/sso/login")
    wrong = b.alert()
    b.fill(account="nobody" + secrets.token_hex(3), password=w.password + "-wrong")
    b.submit()
    b.at_node("/sso/login")
    unknown = b.alert()
    assert wrong and wrong == unknown, f"wrong password: {wrong!r}; unknown account: {unknown!r}"
    assert w.account not in wrong, f"the message names the account: {wrong!r}"
    assert "VNETSSO" not in b.node_cookies(), "a session after failed logins"
    GENERIC_LOGIN_ERROR = wrong
    print(f"       generic message: {wrong}", flush=True)


def login_at_sp(w, b, sp, password, expect_form=True):
    """SP page -> node login (form filled if shown) -> back at the SP; returns the SP's event."""
    n = sp.count()
    b.open_sp(sp, "/sp/login")
    if expect_form:
        b.at_node("/sso/login")
        b.fill(account=w.account, password=password)
        b.click("button[type=submit]")  # the answer is a redirect to the SP: waited for below
    ev = b.at_sp(sp, "/sp/back", n)
    assert "error" not in ev, ev["error"]
    assert ev.get("result") == "0", f"SSOResponse {ev}"
    assert ev["device"] == NODE_DEV and ev["digest_ok"], f"SSOResponse DeviceNo/Digest: {ev}"
    return ev


def scenario_a_login(w, b):
    """(a) login at the node, back at the SP, TicketValidate once."""
    ev = login_at_sp(w, b, w.sp1, w.password)
    v = ev["validate"]
    assert v["Result"] == 0 and v["VNetUserID"] == w.uid and v["Account"] == w.account, f"TicketValidate {v}"
    again = w.d.soap("TicketValidate", w.sp1.key, [("SPID", SP1_ID), ("Ticket", ev["ticket"])])
    assert again["Result"] == -20501, f"second TicketValidate {again}"
    sso = b.node_cookies().get("VNETSSO", "")
    assert len(sso) == 43, f"VNETSSO cookie {len(sso)} characters"


def scenario_b_second_sp(w, b):
    """(b) another SP: back at once through the live session, no form."""
    ev = login_at_sp(w, b, w.sp2, None, expect_form=False)
    v = ev["validate"]
    assert v["Result"] == 0 and v["VNetUserID"] == w.uid, f"TicketValidate at SP 2 {v}"


def pay_page(w, b, order, fee):
    b.open_sp(w.sp1, "/sp/buy?" + urllib.parse.urlencode({"order": order, "item": PERUSE, "fee": fee}))
    b.at_node("/pay")


def pay_answer(w, b, n):
    ev = b.at_sp(w.sp1, "/sp/paid", n)
    assert "error" not in ev, ev["error"]
    assert ev.get("device") == NODE_DEV and ev.get("digest_ok"), f"PayResponse DeviceNo/Digest: {ev}"
    return ev


def scenario_c_pay_confirm(w, b):
    """(c) /pay confirm: names and fee shown, PayResponse 0, PaymentQuery 0."""
    order = "SPORD-0001"
    pay_page(w, b, order, "200")
    t = b.text()
    for shown in (SP1_NAME, PERUSE_NAME, "¥2.00", order, w.account):
        assert shown in t, f"{shown!r} not on the page: {t[:300]!r}"
    b.page_checks("pay", 200, sp=w.sp1, cookies=b.node_cookies())
    pq = w.d.soap("PaymentQuery", w.sp1.key, [("SPID", SP1_ID), ("OrderID", order)])
    assert (pq["Result"], pq["PaymentStatus"]) == (0, "1"), f"PaymentQuery before confirming: {pq}"
    n = w.sp1.count()
    b.click('button[name="action"][value="confirm"]')
    ev = pay_answer(w, b, n)
    assert (ev["result"], ev["order"]) == ("0", order) and ev["txid"].startswith("PY"), f"PayResponse {ev}"
    pq = w.d.soap("PaymentQuery", w.sp1.key, [("SPID", SP1_ID), ("OrderID", order)])
    assert (pq["Result"], pq["PaymentStatus"], pq["TransactionID"], pq["Fee"]) == (0, "0", ev["txid"], "200"), \
        f"PaymentQuery {pq}, PayResponse TransactionID {ev['txid']}"


def scenario_d_pay_cancel(w, b):
    """(d) /pay cancel: PayResponse -20512, PaymentStatus 2."""
    order = "SPORD-0002"
    pay_page(w, b, order, "200")
    n = w.sp1.count()
    b.click('button[name="action"][value="cancel"]')
    ev = pay_answer(w, b, n)
    assert (ev["result"], ev["order"], ev["txid"]) == ("-20512", order, ""), f"PayResponse {ev}"
    pq = w.d.soap("PaymentQuery", w.sp1.key, [("SPID", SP1_ID), ("OrderID", order)])
    assert (pq["Result"], pq["PaymentStatus"]) == (0, "2"), f"PaymentQuery {pq}"


def scenario_e_password_change(w, b):
    """(e) weak refused with a message, good accepted; old password fails, new one works."""
    b.d.get(w.d.base + "/account/password")
    b.at_node("/account/password")
    assert w.account in b.text(), f"the account is not shown: {b.text()[:200]!r}"
    b.page_checks("password", 200, cookies=b.node_cookies())
    b.fill(old_password=w.password, new_password="aaaaaa", new_password2="aaaaaa")
    b.submit("form[action='/account/password'] button[type=submit]")
    b.at_node("/account/password")
    assert "过于简单" in b.alert(), f"weak password message {b.alert()!r}"
    new = "E2e-" + secrets.token_hex(5)
    b.fill(old_password=w.password, new_password=new, new_password2=new)
    b.submit("form[action='/account/password'] button[type=submit]")
    b.at_node("/account/password")
    notice = " ".join(e.text for e in b.d.find_elements(By.CSS_SELECTOR, '[role="status"]'))
    assert "密码已修改" in notice, f"notice {notice!r}, alert {b.alert()!r}"
    # A fresh browser session: the old password fails (same generic message), the new one logs in.
    b.clear_cookies()
    b.open_sp(w.sp1, "/sp/login")
    b.at_node("/sso/login")
    b.fill(account=w.account, password=w.password)
    b.submit()
    b.at_node("/sso/login")
    assert b.alert(), "no message for the old password"
    if GENERIC_LOGIN_ERROR:
        assert b.alert() == GENERIC_LOGIN_ERROR, f"old password: {b.alert()!r}"
    w.password = new
    ev = login_at_sp(w, b, w.sp1, new)
    assert ev["validate"]["Result"] == 0 and ev["validate"]["VNetUserID"] == w.uid, f"TicketValidate {ev['validate']}"


def scenario_g_logout(w, b):
    """(g) /sso/logout ends the session and redirects back to the SP."""
    assert "VNETSSO" in b.node_cookies(), "no session to end"
    n = w.sp1.count()
    b.open_sp(w.sp1, "/sp/logout?" + urllib.parse.urlencode({"user": w.uid}))
    b.at_sp(w.sp1, "/sp/bye", n)
    assert "VNETSSO" not in b.node_cookies(), "the VNETSSO cookie is still set"
    b.open_sp(w.sp1, "/sp/login")
    b.at_node("/sso/login")
    assert b.d.find_elements(By.NAME, "password"), "no login form after logout: the session is still live"


def checks(res, w, chromium, driver_path, shots):
    res.run("python token code reproduces the spec vectors (shared/spec/vectors.json)", check_vectors)
    w.d.start()
    if res.run("daemon starts and healthcheck answers", w.d.wait_healthy) is None:
        return
    if res.run("two SP peers (--return-url http://localhost:PORT/sp/), catalogue and a user with the CLI",
               setup, w) is None:
        return
    driver = res.run("headless Chromium starts (selenium WebDriver, chromium-driver)", start_browser, chromium, driver_path)
    if driver is None:
        return
    w.driver = driver
    print(f"       {driver.capabilities.get('browserName')} {driver.capabilities.get('browserVersion')}, "
          f"selenium {selenium.__version__}", flush=True)
    b = Browser(driver, shots)
    for name, fn in (
        ("(h) ReturnURL outside the SP's prefixes: HTTP 400 error page, no redirect; page checks", scenario_h_foreign_return_url),
        ("(f) wrong password and unknown account: one generic message; login page checks", scenario_f_generic_message),
        ("(a) SP -> /sso/login -> account+password -> SP ReturnURL; TicketValidate 0 with the VNetUserID, again -20501", scenario_a_login),
        ("(b) a second SP: back at once through the live VNETSSO session (no form); its ticket validates", scenario_b_second_sp),
        ("(c) /pay confirm: SP name, item, ¥2.00 shown; PayResponse 0; PaymentQuery PaymentStatus 0; pay page checks", scenario_c_pay_confirm),
        ("(d) /pay cancel: PayResponse -20512; PaymentQuery PaymentStatus 2", scenario_d_pay_cancel),
        ("(e) /account/password: weak refused with a message, good accepted; old password fails, new logs in; page checks", scenario_e_password_change),
        ("(g) /sso/logout: session ended, redirected back to the SP", scenario_g_logout),
    ):
        res.run(name, fn, w, b)
    if shots:
        print(f"       screenshots: {', '.join(sorted(os.path.basename(p) for p in b.saved))}", flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    candidates = [os.path.join(ROOT, "target", p, "vnetd") for p in ("debug", "release")]
    built = sorted((b for b in candidates if os.path.exists(b)), key=os.path.getmtime)
    ap.add_argument("--bin", default=os.environ.get("VNETD_BIN") or (built[-1] if built else candidates[0]),
                    help="the vnetd binary (default: $VNETD_BIN, else the newer of target/{debug,release}/vnetd)")
    ap.add_argument("--screenshots", metavar="DIR", help="save {login,pay,password,error}-{desktop,phone}.png in DIR")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory (config, database, log)")
    args = ap.parse_args()
    started = time.monotonic()

    chromium, driver_path, missing = find_browser()
    if missing:
        unavailable(f"{' and '.join(missing)} not found (set CHROMIUM / CHROMEDRIVER, or install them)")
    if not os.access(args.bin, os.X_OK):
        print(f"e2e.py: no vnetd binary at {args.bin} (build it first, or pass --bin)", file=sys.stderr)
        print("0 passed, 1 failed")
        return 1
    shots = os.path.abspath(args.screenshots) if args.screenshots else None
    if shots:
        os.makedirs(shots, exist_ok=True)

    res = Results()
    workdir = tempfile.mkdtemp(prefix="vnetd-e2e-")
    w = World()
    w.d = Daemon(args.bin, workdir)
    # A fresh database each run: fixed names (they show in the screenshots), random passwords.
    w.account, w.password = "fz12345678", f"E2e-Pass-{secrets.token_hex(4)}"
    w.driver = None
    w.sp1 = SP(w.d, SP1_ID, new_key())
    w.sp2 = SP(w.d, SP2_ID, new_key())

    # A SIGTERM/SIGINT/SIGHUP to this script still stops the browser and the daemon.
    def interrupted(signum, _frame):
        raise KeyboardInterrupt(f"signal {signum}")
    for s in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(s, interrupted)

    print(f"vnetd browser e2e: {args.bin}, {chromium}, {driver_path}, node {w.d.base}, "
          f"SPs {w.sp1.origin} {w.sp2.origin}, dir {workdir}", flush=True)
    try:
        checks(res, w, chromium, driver_path, shots)
    except KeyboardInterrupt as e:
        res.fail("interrupted", e)
    finally:
        if w.driver is not None:
            try:
                w.driver.quit()
            except Exception as e:  # noqa: BLE001
                print(f"       (stopping the browser: {type(e).__name__}: {e})", flush=True)
        for sp in (w.sp1, w.sp2):
            sp.close()
        status = w.d.stop()
        if w.d.proc is not None:
            if status == 0:
                res.ok("daemon stops cleanly on SIGTERM")
            else:
                res.fail("daemon stops cleanly on SIGTERM", f"exit status {status}" if status is not None else "had to be killed")
        if res.failed:
            print(f"--- last lines of the daemon log ({w.d.log_path}):\n{w.d.log_tail()}", flush=True)
        if args.keep or res.failed:
            print(f"kept {workdir}", flush=True)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
        print(f"e2e took {time.monotonic() - started:.1f} s", flush=True)
        print(f"{res.passed} passed, {res.failed} failed", flush=True)
    return 0 if res.failed == 0 and res.passed > 0 else 1


if __name__ == "__main__":
    sys.exit(main())
