//! HTTP listeners: the SOAP listener (one path per service, `?wsdl`) and the admin listener
//! (`/healthz`, `/readyz`, `/metrics`). tiny_http is our patched copy (vendor/tiny_http): socket
//! deadlines, header limits, bounded draining, a connection cap with 503, no accept-thread death.

use crate::app::App;
use crate::api::legacy;
use crate::api::pipeline::{self, Reply};
use crate::spec::Service;
use std::io::Read;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tiny_http::{Header, Method, Request, Response, Server};

/// Worker threads taking requests off the SOAP listener (at least; see `workers`).
pub const SOAP_WORKERS: usize = 64;
/// Most connections on the admin listener (and so its worker threads).
const ADMIN_MAX_CONNECTIONS: usize = 32;

/// Worker threads for a listener of at most `max_connections` connections. A worker blocks
/// while it reads a request body or drains an unread one (up to `read_timeout_s`), so fewer
/// workers than connections would let that many slow clients (well under the cap) stall every
/// other request: a connection has at most one request whose body is being read, so one worker
/// per connection always leaves one free. (Pipelined requests blocked behind a response the
/// client does not read are a separate known limit: vendor/tiny_http/VNETD-PATCHES.md.)
fn workers(min: usize, max_connections: usize) -> usize {
    min.max(max_connections)
}

pub fn limits(app: &App) -> tiny_http::Limits {
    let t = Duration::from_secs(app.cfg.server.read_timeout_s);
    tiny_http::Limits {
        max_connections: app.cfg.server.max_connections as usize,
        read_timeout: t,
        write_timeout: t,
        ..tiny_http::Limits::default()
    }
}

pub struct Listeners {
    pub soap: Arc<Server>,
    pub admin: Arc<Server>,
    /// Worker threads of the SOAP listener (the highest connection cap a SIGHUP may set).
    pub soap_workers: usize,
    threads: Vec<std::thread::JoinHandle<()>>,
    stopping: Arc<AtomicBool>,
}

impl Listeners {
    pub fn start(app: Arc<App>) -> Result<Listeners, String> {
        let soap_addr = app.cfg.listen_addr();
        let admin_addr = app.cfg.admin_addr();
        let soap = Arc::new(
            Server::http_with_limits(soap_addr, limits(&app)).map_err(|e| format!("cannot listen on {soap_addr}: {e}"))?,
        );
        let admin_limits = tiny_http::Limits { max_connections: ADMIN_MAX_CONNECTIONS, ..limits(&app) };
        let admin = Arc::new(
            Server::http_with_limits(admin_addr, admin_limits).map_err(|e| format!("cannot listen on {admin_addr}: {e}"))?,
        );
        super::admin::declare_series(&app);
        let stopping = Arc::new(AtomicBool::new(false));
        let mut threads = Vec::new();
        for i in 0..workers(SOAP_WORKERS, app.cfg.server.max_connections as usize) {
            let (app, server, stopping) = (app.clone(), soap.clone(), stopping.clone());
            threads.push(
                std::thread::Builder::new()
                    .name(format!("soap-{i}"))
                    .spawn(move || serve(&server, &stopping, |rq| handle_soap(&app, rq)))
                    .map_err(|e| format!("cannot start worker: {e}"))?,
            );
        }
        for i in 0..workers(2, ADMIN_MAX_CONNECTIONS) {
            let (app, server, stopping, soap) = (app.clone(), admin.clone(), stopping.clone(), soap.clone());
            threads.push(
                std::thread::Builder::new()
                    .name(format!("admin-{i}"))
                    .spawn(move || serve(&server, &stopping, |rq| super::admin::handle(&app, &soap, &server, rq)))
                    .map_err(|e| format!("cannot start worker: {e}"))?,
            );
        }
        let soap_workers = workers(SOAP_WORKERS, app.cfg.server.max_connections as usize);
        Ok(Listeners { soap, admin, soap_workers, threads, stopping })
    }

    pub fn soap_addr(&self) -> Option<std::net::SocketAddr> {
        self.soap.server_addr().to_ip()
    }

    /// Stop taking requests and wait for the ones in progress.
    pub fn stop(self) {
        self.stopping.store(true, Ordering::SeqCst);
        for _ in 0..self.threads.len() {
            self.soap.unblock();
            self.admin.unblock();
        }
        for t in self.threads {
            let _ = t.join();
        }
    }
}

fn serve(server: &Server, stopping: &AtomicBool, handle: impl Fn(Request)) {
    while !stopping.load(Ordering::SeqCst) {
        match server.recv() {
            Ok(rq) => {
                if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| handle(rq))).is_err() {
                    log::error!("a request handler panicked; the request was dropped");
                }
            }
            // `unblock` (shutdown) also lands here; the loop then sees the flag.
            Err(_) if stopping.load(Ordering::SeqCst) => break,
            Err(e) => {
                log::error!("listener error: {e}");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

fn header(name: &str, value: &str) -> Header {
    Header::from_bytes(name.as_bytes(), value.as_bytes()).expect("static header")
}

pub fn respond(rq: Request, status: u16, content_type: &str, body: Vec<u8>) {
    let resp = Response::from_data(body)
        .with_status_code(status)
        .with_header(header("Content-Type", content_type))
        .with_header(header("Cache-Control", "no-store"));
    if let Err(e) = rq.respond(resp) {
        log::debug!("cannot write response: {e}");
    }
}

pub(super) fn text(rq: Request, status: u16, msg: &str) {
    respond(rq, status, "text/plain; charset=utf-8", msg.as_bytes().to_vec());
}

/// Read a request body of at most `max_body_bytes`; Err is the answer already sent.
fn read_body(app: &App, rq: &mut Request) -> Result<Vec<u8>, u16> {
    let max = app.live.max_body_bytes.load(Ordering::Relaxed);
    if rq.body_length().is_some_and(|n| n as u64 > max) {
        return Err(413);
    }
    let mut body = Vec::with_capacity(rq.body_length().unwrap_or(4096).min(max as usize));
    match rq.as_reader().take(max + 1).read_to_end(&mut body) {
        Ok(_) if body.len() as u64 > max => Err(413),
        Ok(_) => Ok(body),
        Err(e) => {
            log::debug!("cannot read request body: {e}");
            Err(408)
        }
    }
}

fn body_error(app: &App, rq: Request, status: u16) {
    super::admin::count_refused(app, "soap", status);
    match status {
        413 => text(rq, 413, "request body too large\n"),
        _ => text(rq, 408, "request body not received in time\n"),
    }
}

/// A browser page (spec 5).
fn handle_web(app: &App, mut rq: Request, path: String, query: String) {
    let method = rq.method().as_str().to_string();
    let body = if method == "POST" {
        match read_body(app, &mut rq) {
            Ok(b) => b,
            Err(status) => return body_error(app, rq, status),
        }
    } else {
        Vec::new()
    };
    let cookies: Vec<&str> = rq.headers().iter().filter(|h| h.field.equiv("Cookie")).map(|h| h.value.as_str()).collect();
    let cookies = cookies.join("; ");
    let client_ip = rq.remote_addr().map(|a| a.ip().to_string()).unwrap_or_default();
    let wr = crate::web::WebRequest { method: &method, path: &path, query: &query, cookies: &cookies, body: &body, client_ip };
    let page = crate::web::handle(app, &wr);
    let mut resp = Response::from_data(page.body).with_status_code(page.status);
    for (name, value) in &page.headers {
        match Header::from_bytes(name.as_bytes(), value.as_bytes()) {
            Ok(h) => resp.add_header(h),
            Err(()) => log::error!("browser flow: header {name} not sendable"),
        }
    }
    if let Err(e) = rq.respond(resp) {
        log::debug!("cannot write response: {e}");
    }
}

/// The address a WSDL names: the request's Host when it is a plain host[:port], else `listen`.
fn location(app: &App, rq: &Request, path: &str) -> String {
    let host = rq
        .headers()
        .iter()
        .find(|h| h.field.equiv("Host"))
        .map(|h| h.value.as_str().to_string())
        .filter(|h| h.bytes().all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b)))
        .unwrap_or_else(|| app.cfg.server.listen.clone());
    format!("http://{host}{path}")
}

/// A SOAP endpoint: one of the table's services, or the legacy service (spec 4.2).
#[derive(Clone, Copy)]
enum Endpoint {
    Service(Service),
    Legacy,
}

fn handle_soap(app: &App, mut rq: Request) {
    let url = rq.url().to_string();
    let (path, query) = url.split_once('?').unwrap_or((&url, ""));
    if crate::web::serves(path) {
        return handle_web(app, rq, path.to_string(), query.to_string());
    }
    let endpoint = match Service::ALL.into_iter().find(|s| s.path() == path) {
        Some(s) => Endpoint::Service(s),
        None if path == legacy::PATH => Endpoint::Legacy,
        None => return text(rq, 404, "not found\n"),
    };
    // The legacy service answers 403 to POST and `?wsdl` from outside `legacy_allow` (spec 11).
    if matches!(endpoint, Endpoint::Legacy) && !legacy::allowed(app, rq.remote_addr().map(|a| a.ip())) {
        return text(rq, 403, "forbidden\n");
    }
    match rq.method() {
        Method::Get if query.eq_ignore_ascii_case("wsdl") => {
            let loc = location(app, &rq, path);
            let doc = match endpoint {
                Endpoint::Service(s) => crate::api::wsdl::wsdl(s, &loc),
                Endpoint::Legacy => legacy::wsdl(&loc),
            };
            respond(rq, 200, "text/xml; charset=UTF-8", doc.into_bytes());
        }
        Method::Post => {
            let body = match read_body(app, &mut rq) {
                Ok(b) => b,
                Err(status) => return body_error(app, rq, status),
            };
            let ct = rq.headers().iter().find(|h| h.field.equiv("Content-Type")).map(|h| h.value.as_str().to_string());
            let Reply { status, content_type, body } = match endpoint {
                Endpoint::Service(s) => pipeline::dispatch(app, s, &body, ct.as_deref(), rq.remote_addr().map(|a| a.ip())),
                Endpoint::Legacy => legacy::dispatch(app, &body, ct.as_deref()),
            };
            respond(rq, status, &content_type, body);
        }
        _ => text(rq, 405, "use POST for SOAP, GET ?wsdl for the WSDL\n"),
    }
}
