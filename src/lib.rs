//! vnetd — the ChinaVNet (互联星空) province node, as a library so integration tests and the
//! benchmark can use its codecs; the daemon and CLI live in the `vnetd` binary.

pub mod api;
pub mod app;
pub mod centre_sim;
pub mod cli;
pub mod clock;
pub mod config;
pub mod crypto;
pub mod domain;
pub mod jobs;
pub mod runtime;
pub mod services;
pub mod soap;
pub mod spec;
pub mod store;
pub mod sync;
pub mod web;

/// The inputs the fuzz targets (`fuzz/`, fuzz/README.md) feed, named in one place: what reads
/// bytes from outside. Only re-exports; the functions are the daemon's own.
#[doc(hidden)]
pub mod fuzzing {
    /// SOAP envelope reader (spec 2.1, 2.2, 2.9): charset detection and decoding, then parsing.
    pub use crate::soap::envelope::{decode_body, parse as parse_envelope};
    /// URL tokens of spec 5: the query/form decoder, the token format, the request-token checks.
    pub use crate::crypto::token::{check_digest, decrypt_body, open as open_token, seal, split_id};
    pub use crate::web::parse_form;
    pub use crate::web::tokens::{open_with as open_request_token, origin, return_url_allowed, Layout, Opened, Refused, Rules, PAY_REQUEST, SSO_LOGOUT_REQUEST, SSO_REQUEST};
    pub use crate::{clock::Clock, crypto::TdesKey, domain::peers::{KeyVersion, Peer}};
    /// The configuration file and the catalogue file (TOML).
    pub use crate::config::Config;
    pub use crate::domain::catalog::parse as parse_catalog;
    /// `user import`'s CSV: the line splitter and the row checks (step 1, no database).
    pub use crate::cli::{user_import_check, user_import_split_csv};
    /// The HTTP/1.1 request head and body framing of the front end.
    pub use crate::api::server::head::{Chunked, Framing, Head, Scan, Scanned, Step, MAX_HEAD, MAX_HEADERS, MAX_LINE};
}
