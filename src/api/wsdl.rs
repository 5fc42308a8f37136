//! WSDL 1.1 (document/literal wrapped, embedded XSD) generated from the operation table, so the
//! contract a toolkit sees is the one the server enforces.

use super::table;
use crate::spec::Service;
use std::fmt::Write;

pub fn wsdl(service: Service, location: &str) -> String {
    let ns = service.namespace();
    let name = service.name();
    let mut types = String::new();
    let mut messages = String::new();
    let mut port = String::new();
    let mut binding = String::new();
    for op in table::of(service) {
        let o = op.name;
        let _ = write!(types, r#"<xsd:element name="{o}"><xsd:complexType><xsd:sequence>"#);
        for f in op.request {
            let min = if f.required { 1 } else { 0 };
            let _ = write!(types, r#"<xsd:element name="{}" type="xsd:string" minOccurs="{min}"/>"#, f.name);
        }
        let _ = write!(types, r#"</xsd:sequence></xsd:complexType></xsd:element>"#);
        let _ = write!(
            types,
            r#"<xsd:element name="{o}Response"><xsd:complexType><xsd:sequence><xsd:element name="Result" type="xsd:int"/><xsd:element name="ErrDescription" type="xsd:string"/>"#
        );
        for r in op.response {
            match op.list(r) {
                Some(l) => {
                    let _ = write!(
                        types,
                        r#"<xsd:element name="{}"><xsd:complexType><xsd:sequence><xsd:element name="{}" minOccurs="0" maxOccurs="unbounded"><xsd:complexType><xsd:sequence>"#,
                        l.name, l.item
                    );
                    for f in l.fields {
                        let _ = write!(types, r#"<xsd:element name="{f}" type="xsd:string"/>"#);
                    }
                    let _ = write!(types, "</xsd:sequence></xsd:complexType></xsd:element></xsd:sequence></xsd:complexType></xsd:element>");
                }
                None => {
                    let _ = write!(types, r#"<xsd:element name="{r}" type="xsd:string"/>"#);
                }
            }
        }
        let _ = write!(types, "</xsd:sequence></xsd:complexType></xsd:element>");
        let _ = write!(
            messages,
            r#"<wsdl:message name="{o}In"><wsdl:part name="parameters" element="tns:{o}"/></wsdl:message><wsdl:message name="{o}Out"><wsdl:part name="parameters" element="tns:{o}Response"/></wsdl:message>"#
        );
        let mut doc = String::new();
        crate::soap::writer::escape(&mut doc, op.doc);
        let _ = write!(
            port,
            r#"<wsdl:operation name="{o}"><wsdl:documentation>{doc}</wsdl:documentation><wsdl:input message="tns:{o}In"/><wsdl:output message="tns:{o}Out"/></wsdl:operation>"#
        );
        let _ = write!(
            binding,
            r#"<wsdl:operation name="{o}"><soap:operation soapAction="{ns}/{o}" style="document"/><wsdl:input><soap:body use="literal"/></wsdl:input><wsdl:output><soap:body use="literal"/></wsdl:output></wsdl:operation>"#
        );
    }
    let mut loc = String::new();
    crate::soap::writer::escape(&mut loc, location);
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<wsdl:definitions name="{name}" targetNamespace="{ns}" xmlns:tns="{ns}" xmlns:wsdl="http://schemas.xmlsoap.org/wsdl/" xmlns:soap="http://schemas.xmlsoap.org/wsdl/soap/" xmlns:xsd="http://www.w3.org/2001/XMLSchema">
<wsdl:types><xsd:schema targetNamespace="{ns}" elementFormDefault="qualified">{types}</xsd:schema></wsdl:types>
{messages}
<wsdl:portType name="{name}PortType">{port}</wsdl:portType>
<wsdl:binding name="{name}SoapBinding" type="tns:{name}PortType"><soap:binding style="document" transport="http://schemas.xmlsoap.org/soap/http"/>{binding}</wsdl:binding>
<wsdl:service name="{name}"><wsdl:port name="{name}Port" binding="tns:{name}SoapBinding"><soap:address location="{loc}"/></wsdl:port></wsdl:service>
</wsdl:definitions>
"#
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wsdl_is_well_formed_and_lists_every_operation() {
        for s in Service::ALL {
            let doc = wsdl(s, "http://127.0.0.1:8080/x");
            let mut r = quick_xml::Reader::from_str(&doc);
            loop {
                match r.read_event() {
                    Ok(quick_xml::events::Event::Eof) => break,
                    Ok(_) => {}
                    Err(e) => panic!("{}: {e}", s.name()),
                }
            }
            for op in table::of(s) {
                assert!(doc.contains(&format!(r#"<wsdl:operation name="{}">"#, op.name)));
                assert!(doc.contains(&format!(r#"<xsd:element name="{}Response">"#, op.name)));
            }
        }
    }
}
