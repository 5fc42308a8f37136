//! The node's listeners on the HTTP server of `api::server`: the SOAP listener (one path per
//! service, `?wsdl`, the legacy service, the browser pages) and the admin listener (`/healthz`,
//! `/readyz`, `/metrics`), on one event loop with a worker pool each.

use crate::api::legacy;
use crate::api::pipeline::{self, Reply};
use crate::api::server::tls::TlsConfig;
use crate::api::server::{Body, Hooks, Limits, Request, Response, Runtime, Server, Service};
use crate::app::App;
use crate::spec::Service as SoapService;
use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// Most connections on the admin listener.
const ADMIN_MAX_CONNECTIONS: usize = 32;
/// Worker threads and queue of the admin listener.
const ADMIN_WORKERS: usize = 2;
const ADMIN_QUEUE: usize = 32;

pub struct Listeners {
    pub soap: Server,
    pub admin: Server,
    rt: Runtime,
    /// The SOAP listener's certificate when it serves HTTPS (SIGHUP reloads it).
    pub tls: Option<Arc<TlsConfig>>,
}

impl Listeners {
    pub fn start(app: Arc<App>) -> Result<Listeners, String> {
        // Point reads run on the event loops (`Service::inline`): they share read transactions.
        let hooks = Hooks { start: crate::store::share_reads_on_this_thread, idle: crate::store::end_shared_reads };
        let rt = Runtime::with_hooks("http", 0, hooks)?;
        let s = &app.cfg.server;
        let t = &app.cfg.tls;
        let tls = if t.inbound() { Some(TlsConfig::new(&t.cert_file, &t.key_file)?) } else { None };
        let timeout = Duration::from_secs(s.read_timeout_s);
        let soap_limits = Limits { name: "soap", max_connections: s.max_connections as usize, read_timeout: timeout, workers: s.workers as usize, queue: s.queue as usize, tls: tls.clone() };
        let soap = Server::start(&rt, &s.listen, soap_limits, Arc::new(Soap { app: app.clone() }))?;
        let admin_limits = Limits { name: "admin", max_connections: ADMIN_MAX_CONNECTIONS, read_timeout: timeout, workers: ADMIN_WORKERS, queue: ADMIN_QUEUE, tls: None };
        let own = Arc::new(OnceLock::new());
        let admin_service = Arc::new(Admin { app: app.clone(), soap: soap.clone(), admin: own.clone() });
        let admin = Server::start(&rt, &s.admin_listen, admin_limits, admin_service)?;
        let _ = own.set(admin.clone());
        super::admin::declare_series(&app);
        Ok(Listeners { soap, admin, rt, tls })
    }

    pub fn soap_addr(&self) -> Option<std::net::SocketAddr> {
        self.soap.local_addr()
    }

    /// Stop taking requests and wait for the ones in progress.
    pub fn stop(self) {
        self.soap.stop(Duration::from_secs(2));
        self.admin.stop(Duration::from_secs(2));
        self.rt.stop();
    }
}

/// The admin listener's handlers (`api::admin`).
struct Admin {
    app: Arc<App>,
    soap: Server,
    admin: Arc<OnceLock<Server>>,
}

impl Service for Admin {
    fn body(&self, _: &Request) -> Body {
        Body::Skip
    }
    fn handle(&self, rq: Request) -> Response {
        super::admin::handle(&self.app, &self.soap, self.admin.get(), &rq)
    }
}

/// The SOAP listener's handlers.
struct Soap {
    app: Arc<App>,
}

/// A SOAP endpoint: one of the table's services, or the legacy service (spec 4.2).
#[derive(Clone, Copy)]
enum Endpoint {
    Service(SoapService),
    Legacy,
}

fn endpoint(path: &str) -> Option<Endpoint> {
    match SoapService::ALL.into_iter().find(|s| s.path() == path) {
        Some(s) => Some(Endpoint::Service(s)),
        None if path == legacy::PATH => Some(Endpoint::Legacy),
        None => None,
    }
}

impl Service for Soap {
    /// A POST to a SOAP endpoint or a browser page has its body read (max_body_bytes, 413
    /// beyond); anything else is answered without it.
    fn body(&self, rq: &Request) -> Body {
        let path = rq.path();
        let wanted = rq.method == "POST"
            && (crate::web::serves(path)
                || match endpoint(path) {
                    Some(Endpoint::Service(_)) => true,
                    Some(Endpoint::Legacy) => legacy::allowed(&self.app, Some(rq.remote.ip())),
                    None => false,
                });
        if wanted { Body::Read(self.app.live.max_body_bytes.load(Ordering::Relaxed)) } else { Body::Skip }
    }

    fn handle(&self, rq: Request) -> Response {
        handle_soap(&self.app, rq)
    }

    /// Point reads (`pipeline::runs_inline`) run on the event loop.
    fn inline(&self, rq: &Request) -> bool {
        rq.method == "POST"
            && matches!(endpoint(rq.path()), Some(Endpoint::Service(_)))
            && pipeline::body_operation(&rq.body).is_some_and(pipeline::runs_inline)
    }

    /// A login while the Argon2 queue is full: 503 on the event loop, without a worker.
    fn shed(&self, rq: &Request) -> Option<Response> {
        if rq.method != "POST" || !self.app.hasher.full() || !matches!(endpoint(rq.path()), Some(Endpoint::Service(_))) {
            return None;
        }
        let op = pipeline::body_operation(&rq.body)?;
        pipeline::sheds_when_hashing_is_full(op).then(|| {
            self.app.count_hash_busy(1);
            let Reply { status, content_type, body, .. } = pipeline::overloaded();
            respond(status, &content_type, body).with_header("Retry-After", "1")
        })
    }
}

fn respond(status: u16, content_type: &str, body: Vec<u8>) -> Response {
    Response::new(status, content_type, body).with_header("Cache-Control", "no-store")
}

pub(super) fn text(status: u16, msg: &str) -> Response {
    respond(status, "text/plain; charset=utf-8", msg.as_bytes().to_vec())
}

/// A browser page (spec 5).
fn handle_web(app: &App, rq: &Request) -> Response {
    let cookies: Vec<&str> = rq.headers_named("Cookie").collect();
    let cookies = cookies.join("; ");
    let wr = crate::web::WebRequest {
        method: &rq.method,
        path: rq.path(),
        query: rq.query(),
        cookies: &cookies,
        body: &rq.body,
        client_ip: rq.remote.ip().to_string(),
        tls: rq.tls,
    };
    let page = crate::web::handle(app, &wr);
    let mut resp = Response { status: page.status, headers: Vec::new(), body: page.body };
    for (name, value) in page.headers {
        resp.headers.push((name.to_string(), value));
    }
    resp
}

/// The address a WSDL names: the request's Host when it is a plain host[:port], else `listen`.
fn location(app: &App, rq: &Request, path: &str) -> String {
    let host = rq
        .header("Host")
        .map(str::to_string)
        .filter(|h| h.bytes().all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b)))
        .unwrap_or_else(|| app.cfg.server.listen.clone());
    format!("http://{host}{path}")
}

fn handle_soap(app: &App, rq: Request) -> Response {
    let path = rq.path();
    if crate::web::serves(path) {
        return handle_web(app, &rq);
    }
    let Some(endpoint) = endpoint(path) else {
        return text(404, "not found\n");
    };
    // The legacy service answers 403 to POST and `?wsdl` from outside `legacy_allow` (spec 11).
    if matches!(endpoint, Endpoint::Legacy) && !legacy::allowed(app, Some(rq.remote.ip())) {
        return text(403, "forbidden\n");
    }
    match rq.method.as_str() {
        "GET" if rq.query().eq_ignore_ascii_case("wsdl") => {
            let loc = location(app, &rq, path);
            let doc = match endpoint {
                Endpoint::Service(s) => crate::api::wsdl::wsdl(s, &loc),
                Endpoint::Legacy => legacy::wsdl(&loc),
            };
            respond(200, "text/xml; charset=UTF-8", doc.into_bytes())
        }
        "POST" => {
            let ct = rq.header("Content-Type");
            let Reply { status, content_type, body, retry_after_s } = match endpoint {
                Endpoint::Service(s) => pipeline::dispatch(app, s, &rq.body, ct, Some(rq.remote.ip())),
                Endpoint::Legacy => legacy::dispatch(app, &rq.body, ct),
            };
            match retry_after_s {
                Some(s) => respond(status, &content_type, body).with_header("Retry-After", &s.to_string()),
                None => respond(status, &content_type, body),
            }
        }
        _ => text(405, "use POST for SOAP, GET ?wsdl for the WSDL\n"),
    }
}
