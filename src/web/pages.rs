//! The page templates (`templates/*.html`, compiled in by askama; every `{{ value }}` is
//! HTML-escaped).

use askama::Template;

#[derive(Template)]
#[template(path = "login.html")]
pub struct Login<'a> {
    pub sp_name: &'a str,
    pub error: &'a str,
    pub csrf: &'a str,
    pub sso_request: &'a str,
    pub account: &'a str,
}

#[derive(Template)]
#[template(path = "pay.html")]
pub struct Pay<'a> {
    pub sp_name: &'a str,
    pub item_name: &'a str,
    pub fee: &'a str,
    pub order_id: &'a str,
    /// The paying account when a session is live (else the page asks for account and password).
    pub user: &'a str,
    pub error: &'a str,
    pub csrf: &'a str,
    pub pay_request: &'a str,
    pub account: &'a str,
}

#[derive(Template)]
#[template(path = "password.html")]
pub struct Password<'a> {
    pub account: &'a str,
    pub error: &'a str,
    pub notice: &'a str,
    pub csrf: &'a str,
    pub logout_csrf: &'a str,
}

#[derive(Template)]
#[template(path = "message.html")]
pub struct Message<'a> {
    pub title: &'a str,
    pub text: &'a str,
    pub error: bool,
    pub link: &'a str,
    pub link_text: &'a str,
}

/// Render a template; a template that cannot render is a bug, logged, and shown as a plain line.
pub fn render(t: &impl Template) -> String {
    t.render().unwrap_or_else(|e| {
        log::error!("page template failed: {e}");
        "<!DOCTYPE html><html lang=\"zh-CN\"><meta charset=\"utf-8\"><title>系统繁忙</title><p>系统繁忙，请稍后再试。</p></html>".into()
    })
}

pub fn message(title: &str, text: &str, error: bool, link: &str, link_text: &str) -> String {
    render(&Message { title, text, error, link, link_text })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_escaped_and_pages_are_for_phones() {
        let html = render(&Login {
            sp_name: "<script>alert(1)</script>",
            error: "",
            csrf: "c\"sr'f",
            sso_request: "35000001$ab+c/=",
            account: "a&b",
        });
        assert!(!html.contains("<script>alert"), "{html}");
        assert!(html.contains("&#60;script&#62;alert(1)&#60;/script&#62;"), "{html}");
        assert!(html.contains(r#"value="c&#34;sr&#39;f""#), "{html}");
        assert!(html.contains(r#"value="a&#38;b""#), "{html}");
        assert!(html.contains(r#"<html lang="zh-CN">"#));
        assert!(html.contains(r#"name="viewport" content="width=device-width, initial-scale=1""#));
        assert!(!html.contains("<script"), "no JavaScript");
    }
}
