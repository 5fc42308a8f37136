#!/usr/bin/env python3
"""Interoperability check: a standard SOAP toolkit (Python zeep) against the real daemon.

Starts `vnetd run` with a temporary config (free ports, temporary database, small Argon2
parameters), provisions SP, BSS, AAA and 168 peers with the CLI, then, through zeep only:

* loads the WSDL of ProvinceForSP, ProvinceForBSS and ProvinceForVNet and checks that every
  operation the WSDL declares is a callable zeep operation, and that zeep can send a request
  and read the answer of each one (a request from an unknown caller must not succeed);
* calls GetTime (no Authenticator): Result 0 and a `yyyy-MM-dd HH:mm:ss` ServerTime near now;
* ProvinceForBSS UserOpen with an `enc` Password and an Authenticator computed here with
  pycryptodome (3DES = DES-EDE3-CBC, PKCS#7; the Authenticator field order is read from the
  request element of the WSDL, not hard-coded); a repeat with the same TransactionID gives the
  same answer; a wrong Authenticator gives -21548;
* ProvinceForSP UserAuth (right and wrong password) and GetUserinfo for the created user;
* ProvinceForAAA OnlineNotify (start), then ProvinceForSP IPAuth and the legacy rpc-style
  getUserProduct (its own WSDL; `legacy_allow` admits 127.0.0.0/8) for that IP, and
  ProvinceFor168 CrossAuth for the user;
* with the example catalogue: Order, Charge, OrderQuery (a list) and BillQuery (a list).

The daemon is stopped at the end, also on failure or interruption. Last line of output:
`N passed, N failed`. Exit status 0 iff nothing failed.

Usage: check.py [--bin target/debug/vnetd] [--keep]
"""

import argparse
import datetime
import os
import re
import secrets
import shutil
import signal
import sys
import tempfile
import time
import xml.etree.ElementTree as ET

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "pylib"))
try:
    import requests
    import zeep
    import zeep.exceptions
    from vnetd_testlib import NODE_TZ, Daemon, Results, authenticator, enc, new_key, node_now
except ImportError as e:  # pragma: no cover - environment problem, reported plainly
    print(f"check.py: missing Python package ({e}); pip install -r tests/zeep/requirements.txt", file=sys.stderr)
    print("0 passed, 1 failed")
    sys.exit(1)

SP_ID = "35000001"
BSS_ID = "3500000000000201"
SERVICES = ["ProvinceForSP", "ProvinceForBSS", "ProvinceForVNet", "ProvinceForAAA", "ProvinceFor168"]
AAA_ID = "3500000000000301"
P168_ID = "3500000000000401"
LEGACY = "ProvinceForSPSearchUserName"
WSDL_NS = "http://schemas.xmlsoap.org/wsdl/"
TS_RE = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}$")

# Known answers from shared/spec/vectors.json, so a crypto mistake here is caught here.
VECTOR_KEY = "0123456789abcdeffedcba987654321089abcdef01234567"
VECTOR_ENC = ("s3cret-Pass", "x+LreGIx+yCbgGo96MkZQQ==")
VECTOR_AUTH = (
    ["35000001", "3500000100000001", "01", "fz12345678", "x+LreGIx+yCbgGo96MkZQQ==", "", "2026-11-29 10:00:00"],
    "opwvbLAERdXknnWYfSVZJAoSkbuLnq6r",
)


# ---------------------------------------------------------------- zeep helpers

def client_for(d, service):
    transport = zeep.Transport(timeout=15, operation_timeout=15)
    return zeep.Client(d.url(service) + "?wsdl", transport=transport)


def namespace(service):
    return f"http://vnet.cn/province/v3/{service}"


def request_fields(client, service, op):
    """The request element's children in declared (sequence) order: the Authenticator order."""
    element = client.get_element(f"{{{namespace(service)}}}{op}")
    return [name for name, _ in element.type.elements]


def signed(client, service, op, key, fields):
    """`fields` plus TimeStamp (if not given) and the Authenticator over every other declared
    field, in WSDL order, absent optional fields as ""."""
    fields = dict(fields)
    fields.setdefault("TimeStamp", node_now())
    order = [n for n in request_fields(client, service, op) if n != "Authenticator"]
    unknown = set(fields) - set(order)
    assert not unknown, f"{op}: fields {sorted(unknown)} are not in the WSDL"
    fields["Authenticator"] = authenticator(key, [fields.get(n, "") for n in order])
    return fields


def call(client, op, fields):
    return client.service[op](**fields)


def call_until_known(client, op, fields, timeout=6.0):
    """The daemon refreshes its peer cache every second: a peer added just now may still be
    unknown (-20001) for a moment."""
    deadline = time.monotonic() + timeout
    while True:
        r = call(client, op, fields)
        if r.Result != -20001 or time.monotonic() > deadline:
            return r
        time.sleep(0.2)


def text(v):
    return "" if v is None else str(v)


def expect(resp, **want):
    for k, v in want.items():
        got = resp[k]
        assert got == v, f"{k} = {got!r}, expected {v!r} (Result {resp['Result']}, ErrDescription {text(resp['ErrDescription'])!r})"


# ---------------------------------------------------------------- the checks

def check_vectors():
    assert enc(VECTOR_KEY, VECTOR_ENC[0]) == VECTOR_ENC[1], "3DES vector"
    assert authenticator(VECTOR_KEY, VECTOR_AUTH[0]) == VECTOR_AUTH[1], "Authenticator vector"


def check_cli_agrees(d, key):
    """Our Python crypto and the `vnetd encrypt` / `vnetd authenticator` helpers agree."""
    e = d.cli("encrypt", "--key", key, "Zeep-Pass1").stdout.strip()
    assert e == enc(key, "Zeep-Pass1"), f"vnetd encrypt gave {e}"
    vals = ["35000001", "", "01", "acct", e, "", "2026-01-01 00:00:00"]
    a = d.cli("authenticator", "--key", key, *vals).stdout.strip()
    assert a == authenticator(key, vals), f"vnetd authenticator gave {a}"


def check_wsdl(d, service):
    xml = requests.get(d.url(service) + "?wsdl", timeout=15)
    assert xml.status_code == 200, f"GET ?wsdl answered {xml.status_code}"
    root = ET.fromstring(xml.content)
    declared = [o.get("name") for pt in root.iter(f"{{{WSDL_NS}}}portType") for o in pt.findall(f"{{{WSDL_NS}}}operation")]
    assert declared, "the WSDL declares no operation"
    client = client_for(d, service)
    binding_ops = set()
    for svc in client.wsdl.services.values():
        for port in svc.ports.values():
            binding_ops |= set(port.binding._operations)
    for name in declared:
        assert name in binding_ops, f"{name} is declared but zeep has no binding operation for it"
        assert callable(client.service[name]), f"{name} is not callable"
        # The request element must be readable with its fields in order.
        assert request_fields(client, service, name), f"{name}: empty request element"
    return client, declared


def check_every_operation_round_trips(client, service, declared):
    """zeep can send each declared operation and parse the answer; an unknown caller never
    succeeds (GetTime needs no caller and does)."""
    problems = []
    for name in declared:
        fields = {}
        for f in request_fields(client, service, name):
            if f == "SPID":
                fields[f] = "99999999"
            elif f == "SrcDeviceNo":
                fields[f] = "9999999999999999"
            elif f in ("TimeStamp",):
                fields[f] = node_now()
            else:
                fields[f] = "x"
        try:
            r = call(client, name, fields)
        except Exception as e:  # noqa: BLE001
            problems.append(f"{name}: {type(e).__name__}: {e}")
            continue
        if not isinstance(r.Result, int):
            problems.append(f"{name}: Result {r.Result!r} is not an int")
        elif name == "GetTime":
            if r.Result != 0:
                problems.append(f"GetTime: Result {r.Result}")
        elif r.Result == 0:
            problems.append(f"{name}: an unknown caller got Result 0")
    assert not problems, "; ".join(problems)


def check_get_time(client):
    r = call(client, "GetTime", {})
    expect(r, Result=0)
    st = text(r.ServerTime)
    assert TS_RE.match(st), f"ServerTime {st!r} is not yyyy-MM-dd HH:mm:ss"
    server = datetime.datetime.strptime(st, "%Y-%m-%d %H:%M:%S").replace(tzinfo=NODE_TZ)
    skew = abs((server - datetime.datetime.now(NODE_TZ)).total_seconds())
    assert skew < 120, f"ServerTime {st} is {skew:.0f} s away from now (UTC+08:00)"
    assert text(r.ErrDescription) == "", f"ErrDescription {r.ErrDescription!r}"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    candidates = [os.path.join(root, "target", p, "vnetd") for p in ("debug", "release")]
    built = sorted((b for b in candidates if os.path.exists(b)), key=os.path.getmtime)
    ap.add_argument("--bin", default=os.environ.get("VNETD_BIN") or (built[-1] if built else candidates[0]),
                    help="the vnetd binary (default: $VNETD_BIN, else the newer of target/{debug,release}/vnetd)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory (config, database, log)")
    args = ap.parse_args()
    if not os.access(args.bin, os.X_OK):
        print(f"check.py: no vnetd binary at {args.bin} (build it first, or pass --bin)", file=sys.stderr)
        print("0 passed, 1 failed")
        return 1
    res = Results()
    workdir = tempfile.mkdtemp(prefix="vnetd-zeep-")
    d = Daemon(args.bin, workdir, server_extra='legacy_allow = ["127.0.0.0/8"]\n')

    # A SIGTERM/SIGINT/SIGHUP to this script still stops the daemon (via the finally below).
    def interrupted(signum, _frame):
        raise KeyboardInterrupt(f"signal {signum}")
    for s in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(s, interrupted)

    print(f"vnetd zeep check: {args.bin}, zeep {zeep.__version__}, SOAP port {d.port}, admin port {d.admin_port}, dir {workdir}", flush=True)
    try:
        checks(res, d)
    except KeyboardInterrupt as e:
        res.fail("interrupted", e)
    finally:
        status = d.stop()
        if d.proc is not None:
            if status == 0:
                res.ok("daemon stops cleanly on SIGTERM")
            else:
                res.fail("daemon stops cleanly on SIGTERM", f"exit status {status}" if status is not None else "had to be killed")
        if res.failed:
            print(f"--- last lines of the daemon log ({d.log_path}):\n{d.log_tail()}", flush=True)
        if args.keep or res.failed:
            print(f"kept {workdir}", flush=True)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
        print(f"{res.passed} passed, {res.failed} failed", flush=True)
    return 0 if res.failed == 0 and res.passed > 0 else 1


def checks(res, d):
    sp_key, bss_key, aaa_key, p168_key = new_key(), new_key(), new_key(), new_key()
    res.run("python crypto reproduces spec vectors", check_vectors)
    d.start()
    if res.run("daemon starts and healthcheck answers", d.wait_healthy) is None:
        return
    res.run("peer add (sp, bss, aaa, p168) with the CLI", lambda: (
        d.cli("peer", "add", "--id", SP_ID, "--kind", "sp", "--key", sp_key, "--name", "zeep SP"),
        d.cli("peer", "add", "--id", BSS_ID, "--kind", "bss", "--key", bss_key, "--name", "zeep BSS"),
        d.cli("peer", "add", "--id", AAA_ID, "--kind", "aaa", "--key", aaa_key, "--name", "zeep AAA"),
        d.cli("peer", "add", "--id", P168_ID, "--kind", "p168", "--key", p168_key, "--name", "zeep 168")))
    res.run("vnetd encrypt/authenticator agree with pycryptodome", check_cli_agrees, d, sp_key)

    clients = {}
    for service in SERVICES:
        got = res.run(f"{service}: WSDL loads, every declared operation is a zeep operation", check_wsdl, d, service)
        if got:
            client, declared = got
            clients[service] = client
            print(f"       {service}: {', '.join(declared)}", flush=True)
            res.run(f"{service}: every operation round-trips through zeep", check_every_operation_round_trips,
                    client, service, declared)
    sp, bss = clients.get("ProvinceForSP"), clients.get("ProvinceForBSS")
    if sp is None or bss is None:
        return

    res.run("ProvinceForSP GetTime: Result 0, ServerTime yyyy-MM-dd HH:mm:ss near now", check_get_time, sp)

    # --- BSS opens a user
    suffix = secrets.token_hex(4)
    account, password, city = f"zeep{suffix}", f"Zp-{secrets.token_hex(5)}", "0591"
    txid = f"zeep-{secrets.token_hex(8)}"
    open_fields = signed(bss, "ProvinceForBSS", "UserOpen", bss_key, {
        "SrcDeviceNo": BSS_ID, "AccountType": "01", "Account": account,
        "Password": enc(bss_key, password), "CityCode": city, "UserType": "1",
        "CreditLimit": "30000",
        # Balance, Alias, BindingAccessNo absent: they count as "" in the Authenticator.
        "TransactionID": txid,
    })

    def user_open():
        r = call_until_known(bss, "UserOpen", open_fields)
        expect(r, Result=0)
        uid = text(r.VNetUserID)
        assert re.fullmatch(r"35\d{10}", uid), f"VNetUserID {uid!r} is not 35 + 10 digits"
        return uid
    uid = res.run("ProvinceForBSS UserOpen (enc Password, Authenticator in WSDL order): Result 0, VNetUserID", user_open)

    def user_open_repeat():
        r = call(bss, "UserOpen", open_fields)
        expect(r, Result=0, VNetUserID=uid)
    res.run("ProvinceForBSS UserOpen repeated with the same TransactionID: same answer", user_open_repeat)

    def user_open_bad_auth():
        f = signed(bss, "ProvinceForBSS", "UserOpen", bss_key, {
            "SrcDeviceNo": BSS_ID, "AccountType": "01", "Account": f"zeepbad{suffix}", "CityCode": city,
            "UserType": "1", "TransactionID": f"zeep-bad-{suffix}"})
        f["Account"] = f"zeepbad2{suffix}"  # changed after signing
        expect(call(bss, "UserOpen", f), Result=-21548)
    res.run("ProvinceForBSS UserOpen with a wrong Authenticator: -21548", user_open_bad_auth)

    # --- the SP authenticates the user and reads the profile
    def user_auth():
        f = signed(sp, "ProvinceForSP", "UserAuth", sp_key, {
            "SPID": SP_ID, "AccountType": "01", "Account": account, "Password": enc(sp_key, password)})
        r = call_until_known(sp, "UserAuth", f)
        expect(r, Result=0, VNetUserID=uid, ProvinceID="35", CityCode=city, UserType="1", Status="00")
    res.run("ProvinceForSP UserAuth: Result 0 and the user's VNetUserID, ProvinceID, CityCode, UserType, Status", user_auth)

    def user_auth_wrong_password():
        f = signed(sp, "ProvinceForSP", "UserAuth", sp_key, {
            "SPID": SP_ID, "AccountType": "01", "Account": account, "Password": enc(sp_key, password + "x")})
        expect(call(sp, "UserAuth", f), Result=-20501)
    res.run("ProvinceForSP UserAuth with a wrong password: -20501", user_auth_wrong_password)

    def get_userinfo():
        f = signed(sp, "ProvinceForSP", "GetUserinfo", sp_key, {"SPID": SP_ID, "VNetUserID": uid})
        r = call(sp, "GetUserinfo", f)
        expect(r, Result=0, VNetUserID=uid, AccountType="01", Account=account, ProvinceID="35",
               CityCode=city, UserType="1", Status="00")
        for k in ("Alias", "NumFlag", "ContractID", "ErrDescription"):
            assert text(r[k]) == "", f"{k} = {r[k]!r}, expected empty"
    res.run("ProvinceForSP GetUserinfo: Result 0 and the profile of the opened user", get_userinfo)

    def get_userinfo_unknown():
        f = signed(sp, "ProvinceForSP", "GetUserinfo", sp_key, {"SPID": SP_ID, "VNetUserID": "359999999999"})
        expect(call(sp, "GetUserinfo", f), Result=-1)
    res.run("ProvinceForSP GetUserinfo of an unknown VNetUserID: -1", get_userinfo_unknown)

    # --- the access network: the AAA reports a session, the SP authenticates by IP, the legacy
    # service answers by IP, the 168 platform authenticates the user
    aaa, p168 = clients.get("ProvinceForAAA"), clients.get("ProvinceFor168")
    user_ip = f"10.{secrets.randbelow(250)}.{secrets.randbelow(250)}.{1 + secrets.randbelow(250)}"

    def online_notify():
        f = signed(aaa, "ProvinceForAAA", "OnlineNotify", aaa_key, {
            "SrcDeviceNo": AAA_ID, "ActionType": "1", "Account": account, "UserIP": user_ip,
            "SessionID": f"zs-{suffix}", "EventTime": node_now()})
        expect(call_until_known(aaa, "OnlineNotify", f), Result=0)
        return True
    online = res.run("ProvinceForAAA OnlineNotify start: Result 0", online_notify) if aaa else None

    def ip_auth():
        f = signed(sp, "ProvinceForSP", "IPAuth", sp_key, {"SPID": SP_ID, "UserIP": user_ip})
        expect(call(sp, "IPAuth", f), Result=0, AccountType="01", Account=account, VNetUserID=uid, ProvinceID="35",
               CityCode=city, UserType="1")
    if online is not None:
        res.run("ProvinceForSP IPAuth: the user online at that IP", ip_auth)

    def legacy():
        client = client_for(d, LEGACY)
        names = sorted(client.wsdl.bindings[f"{{{namespace(LEGACY)}}}{LEGACY}SoapBinding"]._operations)
        assert names == ["getUserProduct"], names
        assert client.service.getUserProduct("P1", user_ip) == f"0|{city}|{account}"
        assert client.service.getUserProduct("P1", "10.255.255.254") == "-999||"
        assert client.service.getUserProduct("P1", "not-an-ip") == "-998||"
    if online is not None:
        res.run("ProvinceForSPSearchUserName getUserProduct (rpc WSDL): 0|area|account, -999||, -998||", legacy)

    def cross_auth():
        f = signed(p168, "ProvinceFor168", "CrossAuth", p168_key, {
            "SrcDeviceNo": P168_ID, "AccountType": "01", "Account": account, "Password": enc(p168_key, password)})
        expect(call_until_known(p168, "CrossAuth", f), Result=0, VNetUserID=uid, CityCode=city, Status="00")
    if p168:
        res.run("ProvinceFor168 CrossAuth: Result 0 and the user", cross_auth)

    # --- ordering and charging on the example catalogue (lists read through zeep)
    svc, per_use, monthly = "3500000100000001", "3500000100000101", "3500000100000102"
    catalog = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "data", "catalog-example.toml")
    if res.run("catalog import of the example catalogue", lambda: d.cli("catalog", "import", catalog)) is None:
        return

    def order():
        f = signed(sp, "ProvinceForSP", "Order", sp_key, {
            "SPID": SP_ID, "ServiceID": svc, "ServiceItemID": monthly, "VNetUserID": uid, "IfExtend": "1",
            "TransactionID": f"zo-{suffix}"})
        r = call(sp, "Order", f)
        expect(r, Result=0)
        assert TS_RE.match(text(r.StartTime)) and text(r.EndTime).endswith("23:59:59"), (r.StartTime, r.EndTime)
        return text(r.OrderID)
    order_id = res.run("ProvinceForSP Order of a monthly item: Result 0, OrderID, period to the month's end", order)

    def charge():
        f = signed(sp, "ProvinceForSP", "Charge", sp_key, {
            "SPID": SP_ID, "ServiceID": svc, "ServiceItemID": per_use, "VNetUserID": uid, "Fee": "600",
            "BatchCount": "3", "TransactionID": f"zc-{suffix}"})
        expect(call(sp, "Charge", f), Result=0, TransactionID=f"zc-{suffix}")
    res.run("ProvinceForSP Charge (BatchCount 3): Result 0", charge)

    def order_query():
        f = signed(sp, "ProvinceForSP", "OrderQuery", sp_key, {"SPID": SP_ID, "VNetUserID": uid})
        r = call(sp, "OrderQuery", f)
        expect(r, Result=0)
        orders = r.Orders.Order
        assert len(orders) == 1, orders
        o = orders[0]
        assert (text(o.OrderID), text(o.ServiceItemID), text(o.Status), text(o.IfExtend)) == (order_id, monthly, "active", "1"), o
    res.run("ProvinceForSP OrderQuery: the order in the Orders list", order_query)

    def bill_query():
        month = node_now()[:7].replace("-", "")
        f = signed(bss, "ProvinceForBSS", "BillQuery", bss_key, {"SrcDeviceNo": BSS_ID, "VNetUserID": uid, "BillMonth": month})
        r = call(bss, "BillQuery", f)
        expect(r, Result=0, TotalFee="1600")
        items = [(text(i.ServiceItemID), text(i.Count), text(i.Fee)) for i in r.Items.Item]
        assert items == [(per_use, "3", "600"), (monthly, "1", "1000")], items
    res.run("ProvinceForBSS BillQuery: TotalFee and Items grouped by item", bill_query)


if __name__ == "__main__":
    sys.exit(main())
