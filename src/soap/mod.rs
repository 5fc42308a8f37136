//! The SOAP layer: reading requests, writing responses and faults, WSDL.
pub mod client;
pub mod envelope;
pub mod writer;

pub use envelope::{Elem, Envelope, ReadError, SoapVersion};
pub use writer::{FaultCode, Value};
