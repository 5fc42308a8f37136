//! Reading a SOAP request (spec 2.1, 2.2, 2.9): charset detection, the fixed XML limits enforced
//! while parsing (before any work is done), DOCTYPE refused, entities never expanded.

use encoding_rs::Encoding;
use quick_xml::events::Event;
use quick_xml::name::ResolveResult;
use quick_xml::NsReader;

pub const SOAP11_NS: &str = "http://schemas.xmlsoap.org/soap/envelope/";
pub const SOAP12_NS: &str = "http://www.w3.org/2003/05/soap-envelope";

/// Fixed limits of spec 2.9 / 11.
pub const MAX_DEPTH: usize = 32;
pub const MAX_ATTRS: usize = 64;
pub const MAX_ELEMENTS: usize = 10_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SoapVersion {
    V11,
    V12,
}

/// An element of the request body, by local name (namespaces and attributes ignored).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Elem {
    pub name: String,
    pub text: String,
    pub children: Vec<Elem>,
}

impl Elem {
    pub fn child(&self, name: &str) -> Option<&Elem> {
        self.children.iter().find(|c| c.name == name)
    }
}

#[derive(Debug)]
pub struct Envelope {
    pub version: SoapVersion,
    /// The first element of Body: the operation wrapper.
    pub op: Elem,
}

/// Why a request was refused before reaching an operation. All are `Client` faults.
#[derive(Debug, PartialEq)]
pub enum ReadError {
    Encoding(String),
    NotXml(String),
    NotEnvelope(&'static str),
    Doctype,
    Limit(&'static str),
}

impl std::fmt::Display for ReadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReadError::Encoding(e) => write!(f, "unsupported or invalid encoding: {e}"),
            ReadError::NotXml(e) => write!(f, "not well-formed XML: {e}"),
            ReadError::NotEnvelope(e) => write!(f, "not a SOAP envelope: {e}"),
            ReadError::Doctype => write!(f, "DOCTYPE is not allowed"),
            ReadError::Limit(e) => write!(f, "limit exceeded: {e}"),
        }
    }
}

/// The charset named by the XML declaration, which wins over Content-Type.
fn declared_encoding(body: &[u8]) -> Option<String> {
    let head = body.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(body);
    if !head.starts_with(b"<?xml") {
        return None;
    }
    let end = head.iter().take(512).position(|&b| b == b'>')?;
    let decl = std::str::from_utf8(&head[..end]).ok()?;
    let pos = decl.find("encoding")?;
    let rest = decl[pos + 8..].trim_start().strip_prefix('=')?.trim_start();
    let quote = rest.chars().next().filter(|c| *c == '"' || *c == '\'')?;
    let val = &rest[1..];
    let close = val.find(quote)?;
    Some(val[..close].to_string())
}

/// `charset=` of a Content-Type header.
pub fn content_type_charset(ct: &str) -> Option<String> {
    ct.split(';').skip(1).find_map(|p| {
        let (k, v) = p.split_once('=')?;
        k.trim().eq_ignore_ascii_case("charset").then(|| v.trim().trim_matches('"').to_string())
    })
}

/// Decode the body to UTF-8. Accepted: UTF-8 (and US-ASCII), GB2312, GBK, GB18030.
pub fn decode_body(body: &[u8], content_type: Option<&str>) -> Result<String, ReadError> {
    let label = declared_encoding(body).or_else(|| content_type.and_then(content_type_charset));
    let enc = match label.as_deref() {
        None => encoding_rs::UTF_8,
        Some(l) if l.eq_ignore_ascii_case("us-ascii") || l.eq_ignore_ascii_case("ascii") => encoding_rs::UTF_8,
        Some(l) => match Encoding::for_label(l.as_bytes()) {
            Some(e) if e == encoding_rs::UTF_8 || e == encoding_rs::GBK || e == encoding_rs::GB18030 => e,
            _ => return Err(ReadError::Encoding(l.chars().take(40).collect())),
        },
    };
    // GB2312 and GBK requests may use GB18030-only characters in practice; decode them all with
    // the GB18030 decoder, a superset of both.
    let enc = if enc == encoding_rs::GBK { encoding_rs::GB18030 } else { enc };
    let body = body.strip_prefix(b"\xEF\xBB\xBF").filter(|_| enc == encoding_rs::UTF_8).unwrap_or(body);
    enc.decode_without_bom_handling_and_without_replacement(body)
        .map(|c| c.into_owned())
        .ok_or_else(|| ReadError::Encoding(format!("bytes are not valid {}", enc.name())))
}

/// Parse a decoded SOAP request.
pub fn parse(xml: &str) -> Result<Envelope, ReadError> {
    let xml = xml.strip_prefix('\u{feff}').unwrap_or(xml);
    let mut reader = NsReader::from_str(xml);
    {
        let c = reader.config_mut();
        c.expand_empty_elements = true;
        c.check_end_names = true;
        c.trim_text_start = false;
        c.trim_text_end = false;
    }
    // Stack of open elements; index 0 = Envelope.
    let mut stack: Vec<Elem> = Vec::new();
    let mut version = None;
    let mut elements = 0usize;
    let mut in_body_depth: Option<usize> = None;
    let mut op: Option<Elem> = None;
    let mut first_event = true;
    loop {
        let (ns, ev) = reader.read_resolved_event().map_err(|e| ReadError::NotXml(short(&e.to_string())))?;
        let first = std::mem::replace(&mut first_event, false);
        // Outside the root element only whitespace, comments and PIs are well-formed.
        let outside = stack.is_empty();
        match ev {
            Event::DocType(_) => return Err(ReadError::Doctype),
            Event::Start(e) => {
                elements += 1;
                if elements > MAX_ELEMENTS {
                    return Err(ReadError::Limit("too many elements"));
                }
                if stack.len() + 1 > MAX_DEPTH {
                    return Err(ReadError::Limit("nesting too deep"));
                }
                let mut n = 0;
                for a in e.attributes() {
                    a.map_err(|e| ReadError::NotXml(short(&e.to_string())))?;
                    n += 1;
                    if n > MAX_ATTRS {
                        return Err(ReadError::Limit("too many attributes"));
                    }
                }
                let local = e.local_name().as_ref().to_string();
                // quick-xml reads `< a="1"/>` and `<p:>` as elements with an empty name.
                if local.is_empty() {
                    return Err(ReadError::NotXml("element without a name".into()));
                }
                if stack.is_empty() {
                    if op.is_some() || version.is_some() {
                        return Err(ReadError::NotXml("more than one root element".into()));
                    }
                    if local != "Envelope" {
                        return Err(ReadError::NotEnvelope("root element is not Envelope"));
                    }
                    version = match ns {
                        ResolveResult::Bound(n) if n.0 == SOAP11_NS => Some(SoapVersion::V11),
                        ResolveResult::Bound(n) if n.0 == SOAP12_NS => Some(SoapVersion::V12),
                        _ => return Err(ReadError::NotEnvelope("unknown envelope namespace")),
                    };
                } else if stack.len() == 1 && local == "Body" && in_body_depth.is_none() && op.is_none() {
                    in_body_depth = Some(2);
                }
                stack.push(Elem { name: local, ..Default::default() });
            }
            Event::End(_) => {
                let done = stack.pop().ok_or_else(|| ReadError::NotXml("unbalanced end tag".into()))?;
                // Depth of the element that just closed = stack.len() + 1 (1 = Envelope).
                let depth = stack.len() + 1;
                match in_body_depth {
                    // A direct child of Body: the first one is the operation.
                    Some(b) if depth == b + 1 && op.is_none() => op = Some(done),
                    Some(b) if depth > b + 1 => {
                        if let Some(parent) = stack.last_mut() {
                            parent.children.push(done);
                        }
                    }
                    Some(b) if depth == b => in_body_depth = None,
                    _ => {}
                }
            }
            Event::Text(t) => {
                let text = t.xml10_content();
                if outside && !text.trim_matches([' ', '\t', '\r', '\n']).is_empty() {
                    return Err(ReadError::NotXml("text outside the root element".into()));
                }
                if let Some(top) = stack.last_mut() {
                    top.text.push_str(&text);
                }
            }
            Event::CData(_) | Event::GeneralRef(_) if outside => {
                return Err(ReadError::NotXml("text outside the root element".into()));
            }
            Event::Decl(_) if !first => return Err(ReadError::NotXml("XML declaration not at the start".into())),
            Event::CData(t) => {
                if let Some(top) = stack.last_mut() {
                    let s: &str = t.as_ref();
                    top.text.push_str(s);
                }
            }
            Event::GeneralRef(r) => {
                let ch = match r.resolve_char_ref() {
                    Ok(Some(c)) => c.to_string(),
                    Ok(None) => match quick_xml::escape::resolve_predefined_entity(&r) {
                        Some(s) => s.to_string(),
                        None => return Err(ReadError::NotXml("undefined entity reference".into())),
                    },
                    Err(_) => return Err(ReadError::NotXml("bad character reference".into())),
                };
                if let Some(top) = stack.last_mut() {
                    top.text.push_str(&ch);
                }
            }
            Event::Empty(_) => unreachable!("expand_empty_elements is set"),
            Event::Decl(_) | Event::PI(_) | Event::Comment(_) => {}
            Event::Eof => break,
        }
    }
    if !stack.is_empty() {
        return Err(ReadError::NotXml("unexpected end of document".into()));
    }
    let version = version.ok_or(ReadError::NotEnvelope("no Envelope"))?;
    let op = op.ok_or(ReadError::NotEnvelope("Body has no operation element"))?;
    Ok(Envelope { version, op })
}

fn short(s: &str) -> String {
    s.chars().take(120).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(body: &str) -> String {
        format!(r#"<?xml version="1.0"?><soap:Envelope xmlns:soap="{SOAP11_NS}"><soap:Body>{body}</soap:Body></soap:Envelope>"#)
    }

    #[test]
    fn reads_operation_by_local_name() {
        let x = env(r#"<m:GetTime xmlns:m="urn:x" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"><m:SPID xsi:type="xsd:string">35000001</m:SPID><Other>a&amp;b&#x4E92;</Other><Empty/></m:GetTime>"#);
        let e = parse(&x).unwrap();
        assert_eq!(e.version, SoapVersion::V11);
        assert_eq!(e.op.name, "GetTime");
        assert_eq!(e.op.child("SPID").unwrap().text, "35000001");
        assert_eq!(e.op.child("Other").unwrap().text, "a&b互");
        assert_eq!(e.op.child("Empty").unwrap().text, "");
    }

    #[test]
    fn soap12_and_header() {
        let x = format!(r#"<e:Envelope xmlns:e="{SOAP12_NS}"><e:Header><h>1</h></e:Header><e:Body><Op><A>1</A></Op></e:Body></e:Envelope>"#);
        let e = parse(&x).unwrap();
        assert_eq!(e.version, SoapVersion::V12);
        assert_eq!(e.op.name, "Op");
        assert_eq!(e.op.children.len(), 1);
    }

    #[test]
    fn lists_nest() {
        let e = parse(&env("<Op><Rs><R><A>1</A></R><R><A>2</A></R></Rs></Op>")).unwrap();
        let rs = e.op.child("Rs").unwrap();
        assert_eq!(rs.children.len(), 2);
        assert_eq!(rs.children[1].child("A").unwrap().text, "2");
    }

    #[test]
    fn refusals() {
        assert!(matches!(parse("not xml").unwrap_err(), ReadError::NotXml(_)));
        assert_eq!(parse("<!-- only a comment -->").unwrap_err(), ReadError::NotEnvelope("no Envelope"));
        assert!(matches!(parse(&env("<Op><b></Op>")).unwrap_err(), ReadError::NotXml(_)));
        assert!(matches!(parse("<Envelope><Body><X/></Body></Envelope>").unwrap_err(), ReadError::NotEnvelope(_)));
        let dt = format!("<?xml version=\"1.0\"?><!DOCTYPE x [<!ENTITY a \"b\">]>{}", env("<Op/>"));
        assert_eq!(parse(&dt).unwrap_err(), ReadError::Doctype);
        assert!(matches!(parse(&env("<Op><A>&xxe;</A></Op>")).unwrap_err(), ReadError::NotXml(_)));
        assert!(matches!(parse(&env("")).unwrap_err(), ReadError::NotEnvelope(_)));
        // An operation without a name (found by fuzz/ envelope: it was read as operation "").
        for nameless in ["< a=\"1\"/>", "<m:/>", "<Op><  ></  ></Op>"] {
            assert!(matches!(parse(&env(nameless)).unwrap_err(), ReadError::NotXml(_)), "{nameless}");
        }
        for bad in [format!("junk{}", env("<Op/>")), format!("{}junk", env("<Op/>")), format!("{}&amp;", env("<Op/>")), format!("{}<?xml version=\"1.0\"?>", env("<Op/>"))] {
            assert!(matches!(parse(&bad).unwrap_err(), ReadError::NotXml(_)), "{bad}");
        }
        assert!(parse(&format!("\u{feff}\n<!-- c -->{}\n<?pi?>\n", env("<Op/>").replacen("<?xml version=\"1.0\"?>", "", 1))).is_ok());
    }

    #[test]
    fn limits() {
        let deep = format!("<Op>{}{}</Op>", "<a>".repeat(40), "</a>".repeat(40));
        assert_eq!(parse(&env(&deep)).unwrap_err(), ReadError::Limit("nesting too deep"));
        let attrs: String = (0..65).map(|i| format!(" a{i}=\"1\"")).collect();
        assert_eq!(parse(&env(&format!("<Op{attrs}/>"))).unwrap_err(), ReadError::Limit("too many attributes"));
        let many = format!("<Op>{}</Op>", "<a/>".repeat(10_001));
        assert_eq!(parse(&env(&many)).unwrap_err(), ReadError::Limit("too many elements"));
    }

    #[test]
    fn encodings() {
        let (gbk, _, _) = encoding_rs::GBK.encode("<?xml version=\"1.0\" encoding=\"GB2312\"?><a>互联星空</a>");
        assert_eq!(decode_body(&gbk, None).unwrap(), "<?xml version=\"1.0\" encoding=\"GB2312\"?><a>互联星空</a>");
        let (gbk, _, _) = encoding_rs::GBK.encode("<a>互联</a>");
        assert_eq!(decode_body(&gbk, Some("text/xml; charset=gbk")).unwrap(), "<a>互联</a>");
        assert!(decode_body(&gbk, Some("text/xml; charset=utf-8")).is_err());
        assert!(decode_body(b"<a/>", Some("text/xml; charset=koi8-r")).is_err());
        assert_eq!(decode_body("\u{feff}<a/>".as_bytes(), None).unwrap(), "<a/>");
        assert_eq!(content_type_charset("text/xml; charset=\"GB18030\""), Some("GB18030".into()));
    }
}
