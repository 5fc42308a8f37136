//! Browser URL tokens (spec 5): `ID$Base64(3DES(f1$f2$…$Digest))`, where
//! `Digest = Base64(SHA1(concat of a listed set of values))`.
//!
//! Tokens here are unencoded; percent-encoding for URLs is done by the caller.

use std::fmt;

use super::auth::{ct_eq, digest_concat};
use super::tdes::TdesKey;

/// Why a token could not be opened. `Display` shows no token content.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenError {
    /// No `$` after the id, empty id, or the wrong number of `$`-separated fields.
    Malformed,
    /// No key is known for the id.
    UnknownId,
    /// Invalid Base64, bad length or padding (e.g. a wrong key), or non-UTF-8 plaintext.
    Undecryptable,
}

impl fmt::Display for TokenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Malformed => "malformed token",
            Self::UnknownId => "unknown token issuer",
            Self::Undecryptable => "token cannot be decrypted",
        })
    }
}

impl std::error::Error for TokenError {}

/// Builds `id$Base64(3DES(f1$…$fn$Digest))`, Digest over `digest_over` (no separators).
pub fn seal(key: &TdesKey, id: &str, fields: &[&str], digest_over: &[&str]) -> String {
    let mut plain = String::new();
    for f in fields {
        plain.push_str(f);
        plain.push('$');
    }
    plain.push_str(&digest_concat(digest_over));
    format!("{id}${}", key.encrypt_b64(plain.as_bytes()))
}

/// Splits a token at its first `$` into (id, encrypted body). `None` if there is no `$`
/// or the id is empty.
pub fn split_id(token: &str) -> Option<(&str, &str)> {
    token.split_once('$').filter(|(id, _)| !id.is_empty())
}

/// Decrypts a token body (spaces read as `+`) and splits the plaintext into `n_fields`
/// fields plus the Digest. The field at index `free_field` takes every surplus `$`, so it may
/// contain `$` itself; with `free_field >= n_fields` no field may contain `$`.
pub fn decrypt_body(
    key: &TdesKey,
    body: &str,
    n_fields: usize,
    free_field: usize,
) -> Result<(Vec<String>, String), TokenError> {
    let b64 = body.replace(' ', "+");
    let plain = key
        .decrypt_b64_str(&b64)
        .map_err(|_| TokenError::Undecryptable)?;
    let parts: Vec<&str> = plain.split('$').collect();
    let want = n_fields + 1;
    let mut fields: Vec<String> = if parts.len() == want {
        parts.iter().map(|p| p.to_string()).collect()
    } else if parts.len() > want && free_field < n_fields {
        let extra = parts.len() - want;
        let mut v: Vec<String> = parts[..free_field].iter().map(|p| p.to_string()).collect();
        v.push(parts[free_field..=free_field + extra].join("$"));
        v.extend(
            parts[free_field + extra + 1..]
                .iter()
                .map(|p| p.to_string()),
        );
        v
    } else {
        return Err(TokenError::Malformed);
    };
    let digest = fields.pop().ok_or(TokenError::Malformed)?;
    Ok((fields, digest))
}

/// Opens a token: splits off the id, asks `key_for_id` for its key, decrypts and splits
/// (see [`decrypt_body`]). Returns (id, fields without Digest, Digest). The Digest is not
/// checked here; use [`check_digest`] with the values the flow lists.
pub fn open(
    token: &str,
    n_fields: usize,
    free_field: usize,
    key_for_id: impl FnOnce(&str) -> Option<TdesKey>,
) -> Result<(String, Vec<String>, String), TokenError> {
    let (id, body) = split_id(token).ok_or(TokenError::Malformed)?;
    let key = key_for_id(id).ok_or(TokenError::UnknownId)?;
    let (fields, digest) = decrypt_body(&key, body, n_fields, free_field)?;
    Ok((id.to_string(), fields, digest))
}

/// Constant-time check of a token Digest against `Base64(SHA1(concat of digest_over))`.
pub fn check_digest(digest: &str, digest_over: &[&str]) -> bool {
    ct_eq(digest_concat(digest_over).as_bytes(), digest.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    const VECTORS: &str = include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../shared/spec/vectors.json"
    ));
    const IV: &str = "0102030405060708";

    /// (vector name, token key, id field, token fields, digest fields, free field)
    type Layout = (
        &'static str,
        &'static str,
        &'static str,
        &'static [&'static str],
        &'static [&'static str],
        usize,
    );
    const LAYOUTS: [Layout; 5] = [
        (
            "sso_request",
            "SSORequest_unencoded",
            "SPID",
            &["TimeStamp", "ReturnURL"],
            &["SPID", "TimeStamp", "ReturnURL"],
            1,
        ),
        (
            "sso_response",
            "SSOResponse_unencoded",
            "DeviceNo",
            &["Result", "Ticket", "TimeStamp"],
            &["Result", "DeviceNo", "Ticket", "TimeStamp"],
            3,
        ),
        (
            "sso_logout_request",
            "SSOLogoutRequest_unencoded",
            "SPID",
            &["VNetUserID", "TimeStamp", "ReturnURL"],
            &["SPID", "VNetUserID", "TimeStamp", "ReturnURL"],
            2,
        ),
        (
            "pay_request",
            "PayRequest_unencoded",
            "SPID",
            &[
                "OrderID",
                "ServiceID",
                "ServiceItemID",
                "Fee",
                "ReturnURL",
                "TimeStamp",
            ],
            &[
                "SPID",
                "OrderID",
                "ServiceID",
                "ServiceItemID",
                "Fee",
                "ReturnURL",
                "TimeStamp",
            ],
            4,
        ),
        (
            "pay_response",
            "PayResponse_unencoded",
            "DeviceNo",
            &["Result", "OrderID", "TransactionID", "TimeStamp"],
            &[
                "Result",
                "DeviceNo",
                "OrderID",
                "TransactionID",
                "TimeStamp",
            ],
            4,
        ),
    ];

    fn key() -> TdesKey {
        TdesKey::from_hex("0123456789abcdeffedcba987654321089abcdef01234567", IV).unwrap()
    }

    #[test]
    fn vectors_url_tokens() {
        let v: Value = serde_json::from_str(VECTORS).expect("vectors.json");
        for (name, tok_name, id_name, field_names, digest_names, free) in LAYOUTS {
            let e = &v[name];
            let get = |n: &str| e[n].as_str().unwrap_or_else(|| panic!("{name}.{n}"));
            let key = TdesKey::from_hex(get("key"), IV).unwrap();
            let id = get(id_name);
            let fields: Vec<&str> = field_names.iter().map(|n| get(n)).collect();
            let over: Vec<&str> = digest_names.iter().map(|n| get(n)).collect();
            let expected = get(tok_name);

            assert_eq!(digest_concat(&over), get("Digest"), "{name} Digest");
            assert!(check_digest(get("Digest"), &over), "{name}");
            assert_eq!(seal(&key, id, &fields, &over), expected, "{name} token");

            let (oid, ofields, odigest) = open(expected, fields.len(), free, |i| {
                assert_eq!(i, id);
                Some(key.clone())
            })
            .unwrap_or_else(|err| panic!("{name}: {err}"));
            assert_eq!(oid, id);
            assert_eq!(ofields, fields, "{name}");
            assert_eq!(odigest, get("Digest"));
        }
    }

    #[test]
    fn dollar_inside_return_url() {
        let k = key();
        let url = "http://sp.example/cb?a=$1&b=$$2$";
        let over = ["35000001", "2026-11-29 10:00:00", url];
        let tok = seal(&k, "35000001", &["2026-11-29 10:00:00", url], &over);
        let (id, f, d) = open(&tok, 2, 1, |_| Some(k.clone())).unwrap();
        assert_eq!(id, "35000001");
        assert_eq!(f, ["2026-11-29 10:00:00", url]);
        assert!(check_digest(&d, &over));

        // Pay layout: free field in the middle.
        let fields = [
            "SPORD-1",
            "3500000100000001",
            "3500000100000101",
            "200",
            url,
            "ts",
        ];
        let tok = seal(&k, "35000001", &fields, &["x"]);
        let (_, f, d) = open(&tok, 6, 4, |_| Some(k.clone())).unwrap();
        assert_eq!(f, fields);
        assert!(check_digest(&d, &["x"]));

        // Without a free field, a surplus `$` is malformed.
        assert_eq!(
            open(&tok, 6, 6, |_| Some(k.clone())),
            Err(TokenError::Malformed)
        );
    }

    #[test]
    fn spaces_read_as_plus() {
        let v: Value = serde_json::from_str(VECTORS).unwrap();
        let tok = v["sso_logout_request"]["SSOLogoutRequest_unencoded"]
            .as_str()
            .unwrap();
        assert!(tok.contains('+'));
        let spaced = tok.replace('+', " ");
        let (_, f, _) = open(&spaced, 3, 2, |_| Some(key())).unwrap();
        assert_eq!(
            f,
            [
                "350000000001",
                "2026-11-29 10:00:00",
                "http://sp.example/bye"
            ]
        );
    }

    #[test]
    fn open_errors() {
        let k = key();
        let tok = seal(&k, "35000001", &["a", "b"], &["ab"]);
        let some = |_: &str| Some(key());
        assert_eq!(open("35000001", 2, 1, some), Err(TokenError::Malformed));
        assert_eq!(open(&tok[8..], 2, 1, some), Err(TokenError::Malformed)); // "$…"
        assert_eq!(open(&tok, 2, 1, |_| None), Err(TokenError::UnknownId));
        assert_eq!(
            open("35000001$%%%", 2, 1, some),
            Err(TokenError::Undecryptable)
        );
        assert_eq!(
            open("35000001$AAAAAA==", 2, 1, some),
            Err(TokenError::Undecryptable)
        );
        let wrong =
            TdesKey::from_hex("a1b2c3d4e5f60718293a4b5c6d7e8f90112233445566778a", IV).unwrap();
        assert_eq!(
            open(&tok, 2, 1, |_| Some(wrong)),
            Err(TokenError::Undecryptable)
        );
        // Too few fields.
        assert_eq!(open(&tok, 3, 1, some), Err(TokenError::Malformed));
        // Too many fields for the layout, free field taking them.
        let (_, f, _) = open(&tok, 1, 0, some).unwrap();
        assert_eq!(f, ["a$b"]);
        // Tampered digest is detected by check_digest.
        let (_, _, d) = open(&tok, 2, 1, some).unwrap();
        assert!(check_digest(&d, &["ab"]));
        assert!(!check_digest(&d, &["ac"]));
    }
}
