#!/usr/bin/env python3
"""The hand-written starting inputs of the fuzz targets (fuzz/README.md), written into
fuzz/seeds/<target>/. The committed corpus (fuzz/corpus/<target>/) is these plus what the
campaigns found, minimised with `cargo afl cmin`; `fuzz/run seeds` rewrites this folder.

Each input starts with the target's selector byte(s) (see the target's doc comment).
"""
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
SOAP11 = "http://schemas.xmlsoap.org/soap/envelope/"
SOAP12 = "http://www.w3.org/2003/05/soap-envelope"
SP_NS = "http://vnet.cn/province/v3/ProvinceForSP"


def write(target, name, data):
    d = os.path.join(HERE, "seeds", target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode("utf-8")
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


# ---- envelope: selector byte (Content-Type, see CONTENT_TYPES) + body
CT_NONE, CT_XML, CT_UTF8, CT_GBK, CT_GB2312, CT_GB18030, CT_SOAP12, CT_ASCII, CT_UTF16, CT_UTF16LE, CT_KOI8 = range(11)


def envelope():
    get_userinfo = (
        f'<?xml version="1.0" encoding="UTF-8"?><soap:Envelope xmlns:soap="{SOAP11}" '
        'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xmlns:xsd="http://www.w3.org/2001/XMLSchema">'
        f'<soap:Body><m:GetUserinfo xmlns:m="{SP_NS}"><m:SPID xsi:type="xsd:string">35000001</m:SPID>'
        "<m:VNetUserID>350000000001</m:VNetUserID><m:TimeStamp>2026-11-29 10:00:00</m:TimeStamp>"
        "<m:Authenticator>aHo/UKtUc+c3+949nPR68uejc5M=</m:Authenticator></m:GetUserinfo></soap:Body></soap:Envelope>"
    )
    write("envelope", "utf8-getuserinfo", bytes([CT_UTF8]) + get_userinfo.encode())
    soap12 = (
        f'<?xml version="1.0" encoding="UTF-8"?><env:Envelope xmlns:env="{SOAP12}"><env:Header><h>1</h></env:Header>'
        f'<env:Body><GetTime xmlns="{SP_NS}"><SPID>35000001</SPID></GetTime></env:Body></env:Envelope>'
    )
    write("envelope", "soap12-gettime", bytes([CT_SOAP12]) + soap12.encode())
    # A list, entities, a character reference, CDATA, comments and PIs around the root, a BOM.
    batch = (
        f'\ufeff<?xml version="1.0"?>\n<!-- c -->\n<?pi x?><s:Envelope xmlns:s="{SOAP11}"><s:Body>'
        "<BatchSync><SrcDeviceNo>3500000000000101</SrcDeviceNo><Records><Record><A>1&amp;2&#x4E92;</A>"
        "<B><![CDATA[<x>]]></B></Record><Record><A>&lt;2&gt;</A><B/></Record></Records></BatchSync>"
        "</s:Body></s:Envelope>\r\n  <!-- end -->\n"
    )
    write("envelope", "utf8-bom-list", bytes([CT_NONE]) + batch.encode())
    user_open = (
        f'<soap:Envelope xmlns:soap="{SOAP11}"><soap:Body><UserOpen><Account>互联星空用户</Account>'
        "<Alias>张三</Alias><CityCode>0591</CityCode></UserOpen></soap:Body></soap:Envelope>"
    )
    for name, enc, sel in [("GB2312", "gbk", CT_XML), ("GBK", "gbk", CT_XML), ("GB18030", "gb18030", CT_XML)]:
        doc = f'<?xml version="1.0" encoding="{name}"?>' + user_open
        write("envelope", f"{name.lower()}-declared", bytes([sel]) + doc.encode(enc))
    write("envelope", "gbk-content-type", bytes([CT_GBK]) + user_open.encode("gbk"))
    write("envelope", "gb2312-content-type", bytes([CT_GB2312]) + user_open.encode("gbk"))
    # A four-byte GB18030 sequence (U+20000) and the euro sign.
    write("envelope", "gb18030-4byte", bytes([CT_GB18030]) + user_open.replace("张三", "\U00020000€").encode("gb18030"))
    write("envelope", "ascii", bytes([CT_ASCII]) + user_open.replace("互联星空用户", "user").replace("张三", "z").encode())
    # Refused charsets: UTF-16 (declared and by Content-Type), KOI8-R.
    write("envelope", "utf16-declared", bytes([CT_NONE]) + ('<?xml version="1.0" encoding="UTF-16"?>' + user_open).encode("utf-16"))
    write("envelope", "utf16le-content-type", bytes([CT_UTF16LE]) + user_open.encode("utf-16-le"))
    write("envelope", "utf16-content-type", bytes([CT_UTF16]) + user_open.encode("utf-16"))
    write("envelope", "koi8", bytes([CT_KOI8]) + user_open.replace("互联星空用户", "u").replace("张三", "z").encode())
    # Refusals of the reader: DOCTYPE, an undefined entity, depth, a second root.
    write("envelope", "doctype", bytes([CT_UTF8]) + (f'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "b">]>' + user_open).encode())
    write("envelope", "xxe", bytes([CT_UTF8]) + user_open.replace("0591", "&xxe;").encode())
    deep = f'<s:Envelope xmlns:s="{SOAP11}"><s:Body><Op>' + "<a>" * 31 + "</a>" * 31 + "</Op></s:Body></s:Envelope>"
    write("envelope", "deep", bytes([CT_UTF8]) + deep.encode())
    attrs = "".join(f' a{i}="1"' for i in range(65))
    write("envelope", "attrs", bytes([CT_UTF8]) + f'<s:Envelope xmlns:s="{SOAP11}"><s:Body><Op{attrs}/></s:Body></s:Envelope>'.encode())
    write("envelope", "two-roots", bytes([CT_UTF8]) + (user_open + user_open).encode())


# ---- url_token: mode byte (0 query, 1 plaintext, 2 sealed fields) + ...
def url_token():
    from urllib.parse import quote
    v = json.load(open(os.path.join(ROOT, "..", "shared", "spec", "vectors.json")))
    tokens = [
        ("SSORequest", v["sso_request"]["SSORequest_unencoded"]),
        ("SSOLogoutRequest", v["sso_logout_request"]["SSOLogoutRequest_unencoded"]),
        ("PayRequest", v["pay_request"]["PayRequest_unencoded"]),
        ("SSOResponse", v["sso_response"]["SSOResponse_unencoded"]),
        ("PayResponse", v["pay_response"]["PayResponse_unencoded"]),
    ]
    for name, tok in tokens:
        write("url_token", f"query-{name}", b"\x00" + f"{name}={quote(tok, safe='')}&x=1".encode())
    # As a browser may send them: `+` left as is (read as a space), the form of a POST with csrf.
    sso = v["sso_request"]["SSORequest_unencoded"]
    write("url_token", "query-plus", b"\x00" + f"SSORequest={sso}".encode())
    write("url_token", "form-csrf", b"\x00" + f"account=13900000001&password=x&csrf=AAAAAGmZ2qA0123456789abcdefghijklmno&SSORequest={quote(sso, safe='')}".encode())
    write("url_token", "query-enc", b"\x00enc=" + quote("k7lPuRx/s6YgEOQgJscFtv0V9V6HLML3Us4TnzES1B0=", safe="").encode())
    # Plaintexts of the three request layouts (selector byte: 0 SSO, 1 logout, 2 pay).
    ts, url = "2026-11-29 10:00:00", "http://sp.example/cb?a=$1"
    write("url_token", "plain-sso", b"\x01\x00" + f"{ts}${url}$TqxRDdxomug43ceqJUCAWQKA+7w=".encode())
    write("url_token", "plain-logout", b"\x01\x01" + f"350000000001${ts}$http://sp.example/bye$WMb0Dk6B8wmvwh7c3R1D1mLIQRg=".encode())
    write("url_token", "plain-pay", b"\x01\x02" + f"SPORD-0001$3500000100000001$3500000100000101$200${url}${ts}$pCwN=".encode())
    # Field values to seal (NUL-separated); 0x80 in the selector: under the previous key.
    write("url_token", "sealed-sso", b"\x02\x00" + f"{ts}\0{url}".encode())
    write("url_token", "sealed-logout-old-key", b"\x02\x81" + f"350000000001\0{ts}\0https://shop.example/bye".encode())
    write("url_token", "sealed-pay", b"\x02\x02" + f"SPORD-0001\x003500000100000001\x003500000100000101\x00200\0{url}\0{ts}".encode())
    write("url_token", "sealed-foreign", b"\x02\x00" + f"{ts}\0http://sp.example.evil.test/".encode())


# ---- config: a config file and a catalogue file
def config():
    write("config", "default-vnetd.toml", open(os.path.join(ROOT, "etc", "vnetd.toml"), "rb").read())
    write("config", "catalog-example.toml", open(os.path.join(ROOT, "tests", "data", "catalog-example.toml"), "rb").read())
    write("config", "small.toml", '[node]\nprovince_id = "35"\ntime_offset_s = 3456000\ntimezone = "-05:30"\n'
          '[server]\nlisten = "[::1]:8080"\nlegacy_allow = ["10.0.0.0/8", "::1/128", "192.0.2.7"]\n'
          '[log]\ntarget = "stderr"\nlevel = "debug"\n[tls]\ncert_file = "c.pem"\nkey_file = "k.pem"\n')
    write("config", "unknown-key.toml", '[node]\nprovince_idd = "35"\n[nodes]\n')


# ---- user_csv: selector byte (0 as is, 1 header added, 2 header with password added) + text
HEADER = "account_type,account,city_code,user_type,credit_limit,balance,alias,binding_access_no"


def user_csv():
    rows = (
        "09,13900000001,0591,1,5000,0,张三,\n"
        '01,"acct,with,commas",0591,2,,100,"say ""hi""",0591-8888\n'
        "02,adsl-user,591,,,,,\n"
        "\n"
        "04,x,0591,3,abc,-1,,\n"
        '"unterminated,0591\n'
        "09,13900000001,0591,1,5000,0,张三,\n"
    )
    write("user_csv", "full-file", b"\x00" + f"\ufeff{HEADER}\r\n{rows}".encode())
    write("user_csv", "rows", b"\x01" + rows.encode())
    pw = (
        "09,13900000002,0591,1,,,,,Secret-pw1\n"
        "01,acct2,0591,1,,,,,$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaA\n"
        "01,acct3,0591,1,,,,,$argon2i$v=19$m=8,t=1,p=1$c2FsdA$aGFzaA\n"
        "01,acct4,0591,1,,,,,111111\n"
        "01,acct5,0591,1,,,,\n"
    )
    write("user_csv", "passwords", b"\x02" + pw.encode())
    write("user_csv", "bad-header", b"\x00account,type\n09,13900000001\n")


# ---- http_head: selector byte (read sizes) + the client's bytes (FF/FE escapes)
def http_head():
    soap = b'<?xml version="1.0"?><s:Envelope xmlns:s="x"><s:Body><GetTime/></s:Body></s:Envelope>'
    post = (b"POST /ProvinceForSP/services/ProvinceForSP HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n"
            b"Content-Type: text/xml; charset=utf-8\r\nSOAPAction: \"\"\r\nContent-Length: %d\r\n\r\n" % len(soap)) + soap
    write("http_head", "post-soap", b"\x07" + post)
    write("http_head", "pipelined-bytewise", b"\x00" + b"\r\n" + post + b"GET /ProvinceForSP/services/ProvinceForSP?wsdl HTTP/1.1\r\nHost: a\r\n\r\n"
          + b"GET /sso/login?SSORequest=x HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET / HTTP/1.1\r\nConnection: close\r\n\r\n")
    chunked = (b"POST /x HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\nExpect: 100-continue\r\n\r\n"
               b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nX-T: 1\r\n\r\n")
    write("http_head", "chunked", b"\x03" + chunked + b"GET / HTTP/1.1\r\n\r\n")
    write("http_head", "ambiguous", b"\x05POST /x HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n")
    write("http_head", "bad-lengths", b"\x06POST /x HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nPOST /x HTTP/1.1\r\nContent-Length: +5\r\n\r\n")
    write("http_head", "too-big", b"\x06POST /x HTTP/1.1\r\nContent-Length: 99999999999999999999\r\n\r\n")
    write("http_head", "lf-only", b"\x04GET /a HTTP/1.1\nHost: a\nContent-Length: 2\n\nhiGET /b HTTP/1.1\n\n")
    # Near the caps, with the escapes (FF hi lo b: b repeated; FE hi lo m: the last hi·256+lo
    # bytes m more times): a request line of exactly 8 KiB, a header line of 8 KiB + 3, 100
    # headers, and a head whose last header line ends at exactly 64 KiB (then the empty line).
    write("http_head", "8k-request-line", b"\x05GET /" + b"\xff\x1f\xf2a" + b" HTTP/1.1\r\n\r\n")
    write("http_head", "long-header", b"\x05GET / HTTP/1.1\r\nX: " + b"\xff\x20\x00b" + b"\r\n\r\n")
    write("http_head", "100-headers", b"\x05GET / HTTP/1.1\r\nX: y\r\n\xfe\x00\x06\x63\r\n")
    # 16 + (835 + 5) + 98 × (655 + 5) = 65536.
    head = (b"GET / HTTP/1.1\r\nY: " + b"\xff\x03\x43c" + b"\r\nX: " + b"\xff\x02\x8fb" + b"\r\n"
            + b"\xfe\x02\x94\x61" + b"\r\n")
    write("http_head", "64k-head", b"\x07" + head)
    write("http_head", "64k-head-bytewise", b"\x00" + head)

if __name__ == "__main__":
    for name in sys.argv[1:] or ["envelope", "url_token", "config", "user_csv", "http_head"]:
        globals()[name]()
