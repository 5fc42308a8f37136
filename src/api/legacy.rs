//! The legacy ProvinceForSPSearchUserName service (spec 4.2, 11): one rpc-style operation,
//! `getUserProduct(productid, ip)` → `getUserProductReturn`, unqualified parts, no Authenticator.
//! Reachable only from `legacy_allow` (the HTTP layer answers 403 to everyone else).

use super::pipeline::Reply;
use crate::app::App;
use crate::config::cidr::Cidr;
use crate::soap::envelope::{self, SoapVersion};
use crate::soap::writer::{self, FaultCode};
use std::net::IpAddr;
use std::time::Instant;

pub const SERVICE: &str = "ProvinceForSPSearchUserName";
pub const PATH: &str = "/ProvinceForSPSearchUserName/services/ProvinceForSPSearchUserName";
const OP: &str = "getUserProduct";

fn namespace() -> String {
    format!("http://vnet.cn/province/v3/{SERVICE}")
}

/// May `source` use the legacy service? Never when `legacy_allow` is empty.
pub fn allowed(app: &App, source: Option<IpAddr>) -> bool {
    let Some(ip) = source else { return false };
    app.cfg.server.legacy_allow.iter().filter_map(|c| Cidr::parse(c)).any(|c| c.contains(ip))
}

/// Answer one POSTed request.
pub fn dispatch(app: &App, body: &[u8], content_type: Option<&str>) -> Reply {
    let started = Instant::now();
    let guess = if content_type.is_some_and(|c| c.to_ascii_lowercase().contains("soap+xml")) { SoapVersion::V12 } else { SoapVersion::V11 };
    let env = match envelope::decode_body(body, content_type).and_then(|xml| envelope::parse(&xml)) {
        Ok(e) => e,
        Err(e) => return fault(app, guess, FaultCode::Client, &e.to_string()),
    };
    if env.op.name != OP {
        return fault(app, env.version, FaultCode::Client, "unknown operation");
    }
    let text = |name: &str| env.op.child(name).map(|c| c.text.as_str());
    let answer = match crate::services::access::get_user_product(app, text("productid"), text("ip")) {
        Ok(a) => a,
        Err(_) => return fault(app, env.version, FaultCode::Server, "system error"),
    };
    let result = answer.split('|').next().and_then(|r| r.parse().ok()).unwrap_or(0);
    app.metrics.record_request(SERVICE, OP, result, started.elapsed().as_secs_f64());
    let (env_ns, prefix) = match env.version {
        SoapVersion::V11 => ("http://schemas.xmlsoap.org/soap/envelope/", "soap"),
        SoapVersion::V12 => ("http://www.w3.org/2003/05/soap-envelope", "env"),
    };
    let mut out = format!(
        r#"<?xml version="1.0" encoding="UTF-8"?><{prefix}:Envelope xmlns:{prefix}="{env_ns}"><{prefix}:Body><ns1:{OP}Response xmlns:ns1="{}"><{OP}Return>"#,
        namespace()
    );
    writer::escape(&mut out, &answer);
    out.push_str(&format!("</{OP}Return></ns1:{OP}Response></{prefix}:Body></{prefix}:Envelope>"));
    Reply { status: 200, content_type: writer::content_type(env.version, "UTF-8"), body: out.into_bytes(), retry_after_s: None }
}

fn fault(app: &App, version: SoapVersion, code: FaultCode, reason: &str) -> Reply {
    if code == FaultCode::Client {
        app.metrics.inc_counter("vnetd_soap_faults_total", "SOAP requests refused with a Client fault", &[("service", SERVICE)], 1);
    }
    Reply { status: 500, content_type: writer::content_type(version, "UTF-8"), body: writer::fault(version, code, reason).into_bytes(), retry_after_s: None }
}

/// The WSDL: rpc style, literal, `xsd:string` parts (spec 11).
pub fn wsdl(location: &str) -> String {
    let ns = namespace();
    let mut loc = String::new();
    writer::escape(&mut loc, location);
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<wsdl:definitions name="{SERVICE}" targetNamespace="{ns}" xmlns:tns="{ns}" xmlns:wsdl="http://schemas.xmlsoap.org/wsdl/" xmlns:soap="http://schemas.xmlsoap.org/wsdl/soap/" xmlns:xsd="http://www.w3.org/2001/XMLSchema">
<wsdl:message name="{OP}Request"><wsdl:part name="productid" type="xsd:string"/><wsdl:part name="ip" type="xsd:string"/></wsdl:message>
<wsdl:message name="{OP}Response"><wsdl:part name="{OP}Return" type="xsd:string"/></wsdl:message>
<wsdl:portType name="{SERVICE}PortType"><wsdl:operation name="{OP}" parameterOrder="productid ip"><wsdl:documentation>The local broadband user online at an IP address: result|area|account (0|CityCode|Account, -999|| none, -998|| bad input).</wsdl:documentation><wsdl:input message="tns:{OP}Request"/><wsdl:output message="tns:{OP}Response"/></wsdl:operation></wsdl:portType>
<wsdl:binding name="{SERVICE}SoapBinding" type="tns:{SERVICE}PortType"><soap:binding style="rpc" transport="http://schemas.xmlsoap.org/soap/http"/><wsdl:operation name="{OP}"><soap:operation soapAction=""/><wsdl:input><soap:body use="literal" namespace="{ns}"/></wsdl:input><wsdl:output><soap:body use="literal" namespace="{ns}"/></wsdl:output></wsdl:operation></wsdl:binding>
<wsdl:service name="{SERVICE}"><wsdl:port name="{SERVICE}Port" binding="tns:{SERVICE}SoapBinding"><soap:address location="{loc}"/></wsdl:port></wsdl:service>
</wsdl:definitions>
"#
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wsdl_is_well_formed_rpc_with_string_parts() {
        let doc = wsdl("http://h/x?a=1&b=2");
        let mut r = quick_xml::Reader::from_str(&doc);
        loop {
            match r.read_event() {
                Ok(quick_xml::events::Event::Eof) => break,
                Ok(_) => {}
                Err(e) => panic!("not well-formed: {e}"),
            }
        }
        assert!(doc.contains(r#"style="rpc""#));
        assert!(doc.contains(r#"<wsdl:part name="ip" type="xsd:string"/>"#));
    }
}
