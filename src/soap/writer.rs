//! Writing SOAP responses and faults (spec 2.1, 11): document/literal wrapped, fields qualified in
//! the service's namespace, every listed element present in order.

use super::envelope::{SoapVersion, SOAP11_NS, SOAP12_NS};

/// Escape text for element content.
pub fn escape(out: &mut String, s: &str) {
    // Most values need nothing escaped or dropped: copied at once. (0xEF leads U+FFFE/U+FFFF.)
    if !s.bytes().any(|b| matches!(b, b'<' | b'>' | b'&' | b'"' | b'\r' | 0xEF) || (b < 0x20 && b != b'\t' && b != b'\n')) {
        out.push_str(s);
        return;
    }
    for c in s.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            // A literal CR would reach the reader as LF (XML 1.0 2.11): keep the value as signed.
            '\r' => out.push_str("&#13;"),
            // Characters XML 1.0 cannot carry are dropped rather than breaking the document.
            c if (c as u32) < 0x20 && c != '\t' && c != '\n' => {}
            '\u{FFFE}' | '\u{FFFF}' => {}
            c => out.push(c),
        }
    }
}

pub use crate::spec::Value;

/// Build a response document. `fields` are in the declared order; `list_item` gives the item
/// element name of each list field.
pub fn response(
    version: SoapVersion,
    ns: &str,
    op: &str,
    fields: &[(&str, Value, &str)],
    charset: &str,
) -> String {
    response_with(version, ns, op, charset, |out| write_fields(out, fields))
}

/// A response document whose fields `body` writes (with `write_text` and `write_list`).
pub fn response_with(version: SoapVersion, ns: &str, op: &str, charset: &str, body: impl FnOnce(&mut String)) -> String {
    let mut out = String::with_capacity(1024);
    let (env_ns, prefix) = match version {
        SoapVersion::V11 => (SOAP11_NS, "soap"),
        SoapVersion::V12 => (SOAP12_NS, "env"),
    };
    for part in ["<?xml version=\"1.0\" encoding=\"", charset, "\"?><", prefix, ":Envelope xmlns:", prefix, "=\"", env_ns, "\"><", prefix, ":Body><", op, "Response xmlns=\"", ns, "\">"] {
        out.push_str(part);
    }
    body(&mut out);
    for part in ["</", op, "Response></", prefix, ":Body></", prefix, ":Envelope>"] {
        out.push_str(part);
    }
    out
}

/// `<name>text</name>`, the text escaped.
pub fn write_text(out: &mut String, name: &str, text: &str) {
    out.push('<');
    out.push_str(name);
    out.push('>');
    escape(out, text);
    out.push_str("</");
    out.push_str(name);
    out.push('>');
}

/// A list: `<name>` with one `<item>` per entry, its fields in order.
pub fn write_list(out: &mut String, name: &str, item: &str, items: &[Vec<(String, String)>]) {
    let open = |out: &mut String, tag: &str| {
        out.push('<');
        out.push_str(tag);
        out.push('>');
    };
    let close = |out: &mut String, tag: &str| {
        out.push_str("</");
        out.push_str(tag);
        out.push('>');
    };
    open(out, name);
    for it in items {
        open(out, item);
        for (k, v) in it {
            write_text(out, k, v);
        }
        close(out, item);
    }
    close(out, name);
}

/// Write `fields` in order as child elements: text escaped, a list as container + items.
pub fn write_fields(out: &mut String, fields: &[(&str, Value, &str)]) {
    for (name, value, item) in fields {
        match value {
            Value::Text(t) => write_text(out, name, t),
            Value::List(items) => write_list(out, name, item, items),
        }
    }
}

/// Who caused a fault.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum FaultCode {
    Client,
    Server,
}

/// A SOAP fault document (HTTP 500). `reason` must never carry internals.
pub fn fault(version: SoapVersion, code: FaultCode, reason: &str) -> String {
    let mut r = String::new();
    escape(&mut r, reason);
    match version {
        SoapVersion::V11 => {
            let c = match code {
                FaultCode::Client => "soap:Client",
                FaultCode::Server => "soap:Server",
            };
            format!(
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?><soap:Envelope xmlns:soap=\"{SOAP11_NS}\"><soap:Body><soap:Fault><faultcode>{c}</faultcode><faultstring>{r}</faultstring></soap:Fault></soap:Body></soap:Envelope>"
            )
        }
        SoapVersion::V12 => {
            let c = match code {
                FaultCode::Client => "env:Sender",
                FaultCode::Server => "env:Receiver",
            };
            format!(
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?><env:Envelope xmlns:env=\"{SOAP12_NS}\"><env:Body><env:Fault><env:Code><env:Value>{c}</env:Value></env:Code><env:Reason><env:Text xml:lang=\"en\">{r}</env:Text></env:Reason></env:Fault></env:Body></env:Envelope>"
            )
        }
    }
}

/// Content-Type of a response.
pub fn content_type(version: SoapVersion, charset: &str) -> String {
    match version {
        SoapVersion::V11 => format!("text/xml; charset={charset}"),
        SoapVersion::V12 => format!("application/soap+xml; charset={charset}"),
    }
}

/// Encode a response for a peer: UTF-8, or GBK bytes declared `gb2312` with characters GBK
/// cannot encode written as character references (spec 11).
pub fn encode_for(doc: String, gb2312: bool) -> Vec<u8> {
    if !gb2312 {
        return doc.into_bytes();
    }
    let (bytes, _, _) = encoding_rs::GBK.encode(&doc);
    bytes.into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn response_shape() {
        let doc = response(
            SoapVersion::V11,
            "urn:ns",
            "GetTime",
            &[
                ("Result", Value::Text("0".into()), ""),
                ("ErrDescription", Value::Text("".into()), ""),
                ("Orders", Value::List(vec![vec![("OrderID".into(), "a<b".into())]]), "Order"),
            ],
            "UTF-8",
        );
        assert!(doc.contains("<GetTimeResponse xmlns=\"urn:ns\"><Result>0</Result><ErrDescription></ErrDescription><Orders><Order><OrderID>a&lt;b</OrderID></Order></Orders></GetTimeResponse>"), "{doc}");
        let parsed = crate::soap::envelope::parse(&doc).unwrap();
        assert_eq!(parsed.op.name, "GetTimeResponse");
    }

    #[test]
    fn escape_drops_characters_xml_forbids() {
        let mut out = String::new();
        escape(&mut out, "a\u{1}\u{FFFE}\u{FFFF}\u{FFFD}\t<b>");
        assert_eq!(out, "a\u{FFFD}\t&lt;b&gt;");
    }

    #[test]
    fn a_carriage_return_survives_the_round_trip() {
        let doc = crate::soap::client::request("urn:x", "Op", &[("A", Value::Text("x\r\ny\rz".into()), "")]);
        let env = crate::soap::envelope::parse(&doc).unwrap();
        assert_eq!(env.op.child("A").unwrap().text, "x\r\ny\rz");
    }

    #[test]
    fn gbk_with_char_refs() {
        let doc = "<a>互联€😀</a>";
        let b = encode_for(doc.to_string(), true);
        let back = encoding_rs::GBK.decode(&b).0;
        assert_eq!(back, "<a>互联€&#128512;</a>");
    }

    #[test]
    fn faults() {
        let f = fault(SoapVersion::V11, FaultCode::Client, "DOCTYPE is not allowed");
        assert!(f.contains("<faultcode>soap:Client</faultcode>"));
        let f = fault(SoapVersion::V12, FaultCode::Server, "x");
        assert!(f.contains("env:Receiver"));
    }
}
