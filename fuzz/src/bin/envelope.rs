//! The SOAP envelope reader (spec 2.1, 2.2, 2.9), as the pipeline calls it: `decode_body` with
//! the request's Content-Type, then `parse`.
//!
//! Input: one byte choosing the Content-Type (none, UTF-8, GBK, GB2312, GB18030, US-ASCII, and
//! charsets the node refuses: UTF-16, KOI8-R, an empty one), then the body.
//!
//! Asserts: a refusal is an `Encoding` error from the decoder; decoding grows the text at most
//! 3× (a lone GB18030 byte 0x80 is '€'); a parsed envelope keeps the limits (depth, element
//! count), holds no more name and text bytes than the document had, and reads the same again
//! after being written back with the response writer's escaping, in UTF-8 and in GB18030.

use afl::fuzz;
use vnetd::fuzzing::{decode_body, parse_envelope};
use vnetd::soap::envelope::{ReadError, SoapVersion, MAX_DEPTH, MAX_ELEMENTS, SOAP11_NS, SOAP12_NS};
use vnetd::soap::writer::escape;
use vnetd::soap::{Elem, Envelope};

const CONTENT_TYPES: [Option<&str>; 12] = [
    None,
    Some("text/xml"),
    Some("text/xml; charset=utf-8"),
    Some("text/xml; charset=GBK"),
    Some("text/xml; charset=gb2312"),
    Some("text/xml; charset=GB18030"),
    Some("application/soap+xml; charset=\"gb18030\"; action=\"urn:x\""),
    Some("text/xml; charset=us-ascii"),
    Some("text/xml; charset=UTF-16"),
    Some("text/xml; charset=utf-16le"),
    Some("text/xml; charset=koi8-r"),
    Some("text/xml; charset="),
];

fn main() {
    fuzz!(|data: &[u8]| {
        let Some((&sel, body)) = data.split_first() else { return };
        let ct = CONTENT_TYPES[sel as usize % CONTENT_TYPES.len()];
        match decode_body(body, ct) {
            Ok(xml) => {
                assert!(xml.len() <= 3 * body.len(), "decoded {} bytes from {}", xml.len(), body.len());
                check_parse(&xml);
            }
            Err(e) => {
                assert!(matches!(e, ReadError::Encoding(_)), "decoder refused with {e:?}");
                assert!(e.to_string().chars().count() < 200, "refusal text is bounded");
            }
        }
    });
}

/// Depth (1 = the element itself), element count and name + text bytes of a subtree.
fn measure(e: &Elem) -> (usize, usize, usize) {
    let (mut depth, mut count, mut bytes) = (0, 1, e.name.len() + e.text.len());
    for c in &e.children {
        let (d, n, b) = measure(c);
        depth = depth.max(d);
        count += n;
        bytes += b;
    }
    (depth + 1, count, bytes)
}

fn check_parse(xml: &str) {
    let env = match parse_envelope(xml) {
        Ok(env) => env,
        Err(e) => {
            assert!(e.to_string().chars().count() < 200, "refusal text is bounded");
            return;
        }
    };
    assert!(!env.op.name.is_empty());
    let (depth, count, bytes) = measure(&env.op);
    // Envelope and Body are above the operation.
    assert!(depth + 2 <= MAX_DEPTH, "depth {depth}");
    assert!(count + 2 <= MAX_ELEMENTS, "count {count}");
    assert!(bytes <= xml.len(), "{bytes} name and text bytes from a {}-byte document", xml.len());
    if plain_names(&env.op) {
        round_trip(&env);
    }
}

/// Names that read back as themselves when written without a prefix.
fn plain_names(e: &Elem) -> bool {
    let mut b = e.name.bytes();
    b.next().is_some_and(|c| c.is_ascii_alphabetic() || c == b'_')
        && b.all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'-' | b'.'))
        && e.children.iter().all(plain_names)
}

fn write_elem(out: &mut String, e: &Elem) {
    out.push('<');
    out.push_str(&e.name);
    out.push('>');
    escape(out, &e.text);
    for c in &e.children {
        write_elem(out, c);
    }
    out.push_str("</");
    out.push_str(&e.name);
    out.push('>');
}

/// What `escape` keeps of a text: characters XML 1.0 cannot carry are dropped.
fn kept(e: &Elem) -> Elem {
    let text = e
        .text
        .chars()
        .filter(|&c| !((c as u32) < 0x20 && !matches!(c, '\t' | '\n' | '\r')) && c != '\u{FFFE}' && c != '\u{FFFF}')
        .collect();
    Elem { name: e.name.clone(), text, children: e.children.iter().map(kept).collect() }
}

fn round_trip(env: &Envelope) {
    let ns = match env.version {
        SoapVersion::V11 => SOAP11_NS,
        SoapVersion::V12 => SOAP12_NS,
    };
    let mut op = String::new();
    write_elem(&mut op, &env.op);
    let want = kept(&env.op);
    for (charset, ct) in [("UTF-8", "text/xml; charset=utf-8"), ("GB18030", "text/xml")] {
        let doc = format!(
            "<?xml version=\"1.0\" encoding=\"{charset}\"?><s:Envelope xmlns:s=\"{ns}\"><s:Body>{op}</s:Body></s:Envelope>"
        );
        let bytes = if charset == "GB18030" { encoding_rs::GB18030.encode(&doc).0.into_owned() } else { doc.into_bytes() };
        let xml = decode_body(&bytes, Some(ct)).unwrap_or_else(|e| panic!("written back in {charset}: {e}"));
        let again = parse_envelope(&xml).unwrap_or_else(|e| panic!("written back in {charset}: {e}"));
        assert_eq!(again.version, env.version);
        assert_eq!(again.op, want, "written back in {charset}");
    }
}
