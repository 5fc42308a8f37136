//! The node's listeners and the way in for every SOAP request: the HTTP server (`server`), the
//! listeners on it (`http`, the admin endpoints in `admin`), the one declaration of every served operation (`table`), the
//! generic request path (`pipeline`: envelope, caller, Authenticator, syntax, idempotency,
//! handler, response), the WSDL generated from the table (`wsdl`) and the legacy rpc service
//! (`legacy`). Handlers live in `crate::services`, browser pages in `crate::web`.

pub mod admin;
pub mod http;
pub mod legacy;
pub mod pipeline;
pub mod server;
pub mod table;
pub mod wsdl;
