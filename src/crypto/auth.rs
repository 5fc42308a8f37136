//! SOAP message Authenticator (spec 2.4) and BatchSync RecordsDigest (spec 6.5).

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use sha1::{Digest as _, Sha1};

use super::tdes::TdesKey;

/// Raw SHA-1 of the concatenation of `values` (UTF-8, no separators).
fn sha1_concat(values: &[&str]) -> [u8; 20] {
    let mut h = Sha1::new();
    for v in values {
        h.update(v.as_bytes());
    }
    h.finalize().into()
}

/// `Base64(SHA1(data))`.
pub fn sha1_b64(data: &[u8]) -> String {
    B64.encode(Sha1::digest(data))
}

/// `Base64(SHA1(concat of values))`, the Digest of the browser tokens (spec 5).
pub fn digest_concat(values: &[&str]) -> String {
    B64.encode(sha1_concat(values))
}

/// Equality of two byte strings in time independent of where they differ.
/// (Only the lengths, which are public, may leak.)
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    a.ct_eq(b).into()
}

/// `Base64(3DES-CBC(SHA1(concat of values)))`: values in the order listed for the operation,
/// as transmitted, absent optional fields given as `""`.
pub fn authenticator(key: &TdesKey, values: &[&str]) -> String {
    key.encrypt_b64(&sha1_concat(values))
}

/// Checks a received Authenticator in constant time.
pub fn verify_authenticator(key: &TdesKey, values: &[&str], given: &str) -> bool {
    ct_eq(authenticator(key, values).as_bytes(), given.as_bytes())
}

/// The text covered by RecordsDigest: each record's fields joined by `|`, `\n` after every record.
pub fn records_text(records: &[Vec<String>]) -> String {
    let mut text = String::new();
    for rec in records {
        text.push_str(&rec.join("|"));
        text.push('\n');
    }
    text
}

/// RecordsDigest = `Base64(SHA1(records_text(records)))`.
pub fn records_digest(records: &[Vec<String>]) -> String {
    sha1_b64(records_text(records).as_bytes())
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

    fn vectors() -> Value {
        serde_json::from_str(VECTORS).expect("vectors.json")
    }

    fn s(v: &Value) -> &str {
        v.as_str().expect("string in vectors.json")
    }

    #[test]
    fn vectors_digest_sha1_base64() {
        let v = vectors();
        let entries = v["digest_sha1_base64"].as_array().unwrap();
        assert_eq!(entries.len(), 3);
        for e in entries {
            let input = s(&e["input"]);
            assert_eq!(sha1_b64(input.as_bytes()), s(&e["base64"]), "{input:?}");
            assert_eq!(digest_concat(&[input]), s(&e["base64"]));
        }
    }

    #[test]
    fn vectors_authenticator() {
        let v = vectors();
        let entries = v["authenticator"].as_array().unwrap();
        assert_eq!(entries.len(), 3);
        for e in entries {
            let key = TdesKey::from_hex(s(&e["key"]), IV).unwrap();
            let values: Vec<&str> = e["fields_in_order"]
                .as_array()
                .unwrap()
                .iter()
                .map(|f| s(&f["value"]))
                .collect();
            assert_eq!(values.concat(), s(&e["concat"]), "{}", s(&e["operation"]));
            let auth = s(&e["Authenticator"]);
            assert_eq!(authenticator(&key, &values), auth, "{}", s(&e["operation"]));
            assert!(verify_authenticator(&key, &values, auth));
        }
    }

    #[test]
    fn verify_authenticator_rejects() {
        let v = vectors();
        let e = &v["authenticator"][1];
        let key = TdesKey::from_hex(s(&e["key"]), IV).unwrap();
        let values = ["35000001", "350000000001", "2026-11-29 10:00:00"];
        let good = s(&e["Authenticator"]);
        assert!(verify_authenticator(&key, &values, good));
        assert!(!verify_authenticator(&key, &values, ""));
        assert!(!verify_authenticator(
            &key,
            &values,
            &good[..good.len() - 1]
        ));
        let mut flipped = good.to_string();
        flipped.replace_range(0..1, "B");
        assert!(!verify_authenticator(&key, &values, &flipped));
        let other = ["35000001", "350000000001", "2026-11-29 10:00:01"];
        assert!(!verify_authenticator(&key, &other, good));
        let wrong_key =
            TdesKey::from_hex("a1b2c3d4e5f60718293a4b5c6d7e8f90112233445566778a", IV).unwrap();
        assert!(!verify_authenticator(&wrong_key, &values, good));
    }

    #[test]
    fn vectors_records_digest() {
        let v = vectors();
        let rd = &v["records_digest"];
        let records: Vec<Vec<String>> = rd["records"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                r.as_array()
                    .unwrap()
                    .iter()
                    .map(|f| s(f).to_string())
                    .collect()
            })
            .collect();
        assert_eq!(records_text(&records), s(&rd["text"]));
        assert_eq!(records_digest(&records), s(&rd["RecordsDigest"]));
        // The BatchSync authenticator vector carries the same digest.
        assert_eq!(
            s(&v["authenticator"][2]["fields_in_order"][6]["value"]),
            s(&rd["RecordsDigest"])
        );
    }

    #[test]
    fn ct_eq_basics() {
        assert!(ct_eq(b"", b""));
        assert!(ct_eq(b"abc", b"abc"));
        assert!(!ct_eq(b"abc", b"abd"));
        assert!(!ct_eq(b"abc", b"ab"));
    }
}
