//! The browser flows (spec 5): SSO login and logout, payment confirmation, password change.
//! Plain server-rendered pages (templates in `templates/`, every value HTML-escaped by askama),
//! no JavaScript, sent with CSP, frame denial and no caching. This module holds the HTTP side
//! (parsing, cookies, headers) and the routing; the flows are in `sso.rs`, `pay.rs`,
//! `password.rs`.

mod pages;
mod password;
mod pay;
mod sso;
pub mod tokens;

use crate::app::App;
use crate::domain::sso as store_sso;
use percent_encoding::percent_decode;
use std::collections::HashMap;

pub const SESSION_COOKIE: &str = "VNETSSO";
/// The browser's form cookie: what CSRF tokens are bound to.
pub const FORM_COOKIE: &str = "VNETFORM";
const CSS: &str = include_str!("vnetd.css");

/// Paths served here (everything else on the SOAP listener is SOAP or 404).
pub fn serves(path: &str) -> bool {
    matches!(path, "/sso/login" | "/sso/logout" | "/pay" | "/account/password" | "/static/vnetd.css")
}

/// A browser request, as the listener read it.
pub struct WebRequest<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub query: &'a str,
    /// Every `Cookie` header value, joined with `; `.
    pub cookies: &'a str,
    pub body: &'a [u8],
    pub client_ip: String,
    /// It came over TLS: the cookies set are `Secure` (spec 5).
    pub tls: bool,
}

/// An answer to the browser.
pub struct WebResponse {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
}

/// Decode `application/x-www-form-urlencoded` (also a query string): `+` is a space. The first
/// occurrence of a name wins.
pub fn parse_form(s: &[u8]) -> HashMap<String, String> {
    let mut out = HashMap::new();
    for pair in s.split(|b| *b == b'&') {
        if pair.is_empty() {
            continue;
        }
        let (k, v) = match pair.iter().position(|b| *b == b'=') {
            Some(i) => (&pair[..i], &pair[i + 1..]),
            None => (pair, &[][..]),
        };
        let dec = |x: &[u8]| {
            let plus: Vec<u8> = x.iter().map(|b| if *b == b'+' { b' ' } else { *b }).collect();
            percent_decode(&plus).decode_utf8_lossy().into_owned()
        };
        out.entry(dec(k)).or_insert_with(|| dec(v));
    }
    out
}

fn parse_cookies(h: &str) -> HashMap<&str, &str> {
    h.split(';').filter_map(|c| c.trim().split_once('=')).collect()
}

/// Per-request state: the app, the request, its cookies and the cookies to set.
pub struct Ctx<'a> {
    pub app: &'a App,
    pub rq: &'a WebRequest<'a>,
    pub form: HashMap<String, String>,
    form_cookie: String,
    session_cookie: Option<String>,
    set_cookies: Vec<String>,
}

impl<'a> Ctx<'a> {
    fn new(app: &'a App, rq: &'a WebRequest<'a>) -> Ctx<'a> {
        let cookies = parse_cookies(rq.cookies);
        let mut set_cookies = Vec::new();
        let form_cookie = match cookies.get(FORM_COOKIE).filter(|v| v.len() == 22) {
            Some(v) => v.to_string(),
            None => {
                let v = store_sso::new_secret(16);
                set_cookies.push(format!("{FORM_COOKIE}={v}; Path=/; HttpOnly; SameSite=Strict"));
                v
            }
        };
        let form = if rq.method == "POST" { parse_form(rq.body) } else { parse_form(rq.query.as_bytes()) };
        Ctx { app, rq, form, form_cookie, session_cookie: cookies.get(SESSION_COOKIE).map(|s| s.to_string()), set_cookies }
    }

    pub fn field(&self, name: &str) -> &str {
        self.form.get(name).map(String::as_str).unwrap_or("")
    }

    /// A CSRF token for a form of `purpose` answering the request token `binding`, valid for
    /// the session idle time.
    pub fn csrf(&self, purpose: &str, binding: &str) -> String {
        let expires = self.app.clock.unix() + self.app.cfg.security.sso_idle_minutes * 60;
        self.app.csrf.issue(purpose, &self.form_cookie, binding, expires)
    }

    pub fn csrf_ok(&self, purpose: &str, binding: &str) -> bool {
        self.app.csrf.check(self.field("csrf"), purpose, &self.form_cookie, binding, self.app.clock.unix())
    }

    /// The browser's live SSO session, if any.
    pub fn session(&self) -> Result<Option<store_sso::Session>, crate::store::DbError> {
        let Some(cookie) = self.session_cookie.as_deref() else { return Ok(None) };
        let (now, lim) = (self.app.clock.unix(), crate::services::sso::limits(self.app));
        self.app.store.read(|c| store_sso::session(c, cookie, now, lim))
    }

    /// Start a session for `user` (ending the browser's previous one) and set its cookie.
    pub fn start_session(&mut self, user: store_sso::SessionUser) -> Result<store_sso::Session, crate::store::DbError> {
        let old = self.session_cookie.as_deref().map(store_sso::digest);
        let now = self.app.clock.unix();
        let u = user.clone();
        let cookie = self.app.store.write(move |c| {
            if let Some(old) = old {
                store_sso::end_session(c, &old)?;
            }
            store_sso::create_session(c, &u, now)
        })?;
        self.set_cookies.push(format!("{SESSION_COOKIE}={cookie}; Path=/; HttpOnly; SameSite=Lax"));
        let id_hash = store_sso::digest(&cookie);
        self.session_cookie = Some(cookie);
        Ok(store_sso::Session { id_hash, user })
    }

    /// Forget the browser's session cookie.
    pub fn clear_session_cookie(&mut self) {
        self.set_cookies.push(format!("{SESSION_COOKIE}=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0"));
    }

    fn finish(self, status: u16, mut headers: Vec<(&'static str, String)>, body: Vec<u8>) -> WebResponse {
        let secure = self.rq.tls;
        for c in self.set_cookies {
            headers.push(("Set-Cookie", if secure { c + "; Secure" } else { c }));
        }
        headers.push(("Cache-Control", "no-store".into()));
        headers.push(("Pragma", "no-cache".into()));
        headers.push(("X-Frame-Options", "DENY".into()));
        headers.push(("X-Content-Type-Options", "nosniff".into()));
        headers.push(("Referrer-Policy", "no-referrer".into()));
        WebResponse { status, headers, body }
    }

    /// An HTML page. `form_action` lists the origins (beyond 'self') the page's forms may end
    /// up at: the SP's ReturnURLs, since browsers apply `form-action` to the redirect after a POST.
    pub fn page(self, status: u16, html: String, form_action: &[String]) -> WebResponse {
        let mut fa = String::from("'self'");
        for o in form_action {
            fa.push(' ');
            fa.push_str(o);
        }
        let csp = format!(
            "default-src 'none'; style-src 'self'; img-src 'self'; form-action {fa}; frame-ancestors 'none'; base-uri 'none'"
        );
        let headers = vec![("Content-Type", "text/html; charset=utf-8".to_string()), ("Content-Security-Policy", csp)];
        self.finish(status, headers, html.into_bytes())
    }

    /// A redirect (302 to an SP's ReturnURL, 303 after a form to one of our pages).
    pub fn redirect(self, status: u16, location: String) -> WebResponse {
        self.finish(status, vec![("Location", location), ("Content-Type", "text/plain; charset=utf-8".into())], Vec::new())
    }

    /// A page with a title and one message (errors, confirmations).
    pub fn message(self, status: u16, title: &str, text: &str, error: bool) -> WebResponse {
        let html = pages::message(title, text, error, "", "");
        self.page(status, html, &[])
    }

    /// The answer to a database failure: logged once here, the user sees a plain message.
    pub fn db_error(self, e: &crate::store::DbError) -> WebResponse {
        log::error!("browser flow: database error: {e}");
        self.message(500, "系统繁忙", "系统暂时无法处理您的请求，请稍后再试。", true)
    }

    /// A refused request token: HTTP 400, no redirect (spec 11).
    pub fn refused(self, what: &str, r: tokens::Refused) -> WebResponse {
        self.app.metrics.inc_counter("vnetd_web_refused_total", "Browser requests refused (bad token, CSRF)", &[("reason", r.reason())], 1);
        log::info!("browser flow: {what} refused ({})", r.reason());
        let text = match r {
            tokens::Refused::Invalid => "请求无效或已被篡改。请回到商户网站重新操作。",
            tokens::Refused::Stale => "请求已过期。请回到商户网站重新操作。",
            tokens::Refused::ForeignReturnUrl => "返回地址未在互联星空登记，已拒绝跳转。请联系商户。",
        };
        self.message(400, "请求无效", text, true)
    }

    /// A form whose CSRF token does not verify (another site's form, or one too old).
    pub fn csrf_refused(self) -> WebResponse {
        self.app.metrics.inc_counter("vnetd_web_refused_total", "Browser requests refused (bad token, CSRF)", &[("reason", "csrf")], 1);
        self.message(403, "页面已失效", "页面已失效或来自其他网站。请回到商户网站重新操作。", true)
    }
}

/// Answer one browser request.
pub fn handle(app: &App, rq: &WebRequest) -> WebResponse {
    let started = std::time::Instant::now();
    let ctx = Ctx::new(app, rq);
    let resp = match (rq.method, rq.path) {
        ("GET" | "HEAD", "/static/vnetd.css") => WebResponse {
            status: 200,
            headers: vec![
                ("Content-Type", "text/css; charset=utf-8".into()),
                ("Cache-Control", "public, max-age=3600".into()),
                ("X-Content-Type-Options", "nosniff".into()),
            ],
            body: CSS.as_bytes().to_vec(),
        },
        ("GET", "/sso/login") => sso::login_page(ctx),
        ("POST", "/sso/login") => sso::login_submit(ctx),
        ("GET", "/sso/logout") => sso::logout_redirect(ctx),
        ("POST", "/sso/logout") => sso::logout_submit(ctx),
        ("GET", "/pay") => pay::pay_page(ctx),
        ("POST", "/pay") => pay::pay_submit(ctx),
        ("GET", "/account/password") => password::page(ctx),
        ("POST", "/account/password") => password::submit(ctx),
        _ => ctx.message(405, "不支持的请求", "此页面不支持该请求方式。", true),
    };
    app.metrics.record_request("web", rq.path, resp.status as i32, started.elapsed().as_secs_f64());
    resp
}

/// `¥2.00` for 200 fen (spec 11).
pub fn yuan(fen: i64) -> String {
    format!("¥{}.{:02}", fen / 100, fen % 100)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms_and_money() {
        let f = parse_form(b"a=1&b=x+y%2Bz&c=%E4%BA%92&a=2&d");
        assert_eq!((f["a"].as_str(), f["b"].as_str(), f["c"].as_str(), f["d"].as_str()), ("1", "x y+z", "互", ""));
        assert_eq!(yuan(200), "¥2.00");
        assert_eq!(yuan(5), "¥0.05");
        assert_eq!(yuan(123456), "¥1234.56");
        let c = parse_cookies("VNETSSO=abc; other=1;VNETFORM=x=y");
        assert_eq!((c["VNETSSO"], c["other"], c["VNETFORM"]), ("abc", "1", "x=y"));
    }
}
