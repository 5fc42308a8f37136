//! CSRF tokens for every form (spec 5): HMAC-SHA1 under a node secret over the form's purpose,
//! the browser's `VNETFORM` cookie (SameSite=Strict, so a cross-site POST does not carry it) and
//! the request token the form answers (SSORequest or PayRequest), with an expiry. Stateless: a
//! form survives a restart of the daemon, the secret lives in the database.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, KeyInit, Mac};
use sha1::Sha1;

type HmacSha1 = Hmac<Sha1>;

pub struct Csrf {
    key: Vec<u8>,
}

impl Csrf {
    pub fn new(key: Vec<u8>) -> Csrf {
        Csrf { key }
    }

    fn mac(&self, purpose: &str, form_cookie: &str, binding: &str, expires: i64) -> HmacSha1 {
        let mut m = <HmacSha1 as KeyInit>::new_from_slice(&self.key).expect("HMAC takes any key length");
        for part in [purpose.as_bytes(), form_cookie.as_bytes(), binding.as_bytes(), &expires.to_be_bytes()] {
            m.update(&(part.len() as u64).to_be_bytes());
            m.update(part);
        }
        m
    }

    /// A token for a form valid until `expires` (unix seconds).
    pub fn issue(&self, purpose: &str, form_cookie: &str, binding: &str, expires: i64) -> String {
        let tag = self.mac(purpose, form_cookie, binding, expires).finalize().into_bytes();
        let mut raw = expires.to_be_bytes().to_vec();
        raw.extend_from_slice(&tag);
        URL_SAFE_NO_PAD.encode(raw)
    }

    /// Is `token` a token of this purpose, cookie and binding that has not expired at `now`?
    pub fn check(&self, token: &str, purpose: &str, form_cookie: &str, binding: &str, now: i64) -> bool {
        let Ok(raw) = URL_SAFE_NO_PAD.decode(token.as_bytes()) else { return false };
        if raw.len() != 8 + 20 || form_cookie.is_empty() {
            return false;
        }
        let expires = i64::from_be_bytes(raw[..8].try_into().expect("8 bytes"));
        if expires <= now {
            return false;
        }
        // verify_slice compares in constant time.
        self.mac(purpose, form_cookie, binding, expires).verify_slice(&raw[8..]).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bound_to_purpose_cookie_binding_and_time() {
        let c = Csrf::new(b"0123456789abcdef0123456789abcdef".to_vec());
        let t = c.issue("login", "cookie-1", "SPID$abc", 2000);
        assert!(c.check(&t, "login", "cookie-1", "SPID$abc", 1999));
        assert!(!c.check(&t, "login", "cookie-1", "SPID$abc", 2000), "expired");
        assert!(!c.check(&t, "pay", "cookie-1", "SPID$abc", 1000), "other form");
        assert!(!c.check(&t, "login", "cookie-2", "SPID$abc", 1000), "other browser");
        assert!(!c.check(&t, "login", "", "SPID$abc", 1000), "no cookie");
        assert!(!c.check(&t, "login", "cookie-1", "SPID$abd", 1000), "other request");
        assert!(!Csrf::new(b"other".to_vec()).check(&t, "login", "cookie-1", "SPID$abc", 1000), "other node secret");
        let mut raw = URL_SAFE_NO_PAD.decode(&t).unwrap();
        raw[7] ^= 1; // move the expiry
        assert!(!c.check(&URL_SAFE_NO_PAD.encode(&raw), "login", "cookie-1", "SPID$abc", 1000));
        assert!(!c.check("not base64!", "login", "cookie-1", "SPID$abc", 1000));
        assert!(!c.check("", "login", "cookie-1", "SPID$abc", 1000));
    }
}
