//! 3DES (DES-EDE3-CBC, PKCS#7) with standard padded Base64 text (spec 2.5).

use std::fmt;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use cbc::cipher::block_padding::Pkcs7;
use cbc::cipher::{BlockModeDecrypt, BlockModeEncrypt, KeyIvInit};

type Enc = cbc::Encryptor<des::TdesEde3>;
type Dec = cbc::Decryptor<des::TdesEde3>;

/// Result code for an `enc` field that cannot be decrypted (spec 2.5, 11).
pub const CODE_ENC_INVALID: i32 = -21557;
/// Result code for an `enc` field that decrypts to the empty string.
pub const CODE_ENC_EMPTY: i32 = -21555;

/// Errors of the crypto module. `Display` never shows key material or input data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CryptoError {
    /// A key or IV is not the expected number of hex digits.
    BadHex,
    /// Text is not valid standard, padded Base64.
    BadBase64,
    /// Ciphertext is empty or not a multiple of the 8-byte block size.
    BadLength,
    /// PKCS#7 padding is wrong after decryption (usually a wrong key).
    BadPadding,
    /// Plaintext is not valid UTF-8.
    NotUtf8,
    /// Argon2 parameters are out of range.
    BadParams,
}

impl fmt::Display for CryptoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::BadHex => "key or IV is not valid hex of the required length",
            Self::BadBase64 => "invalid Base64",
            Self::BadLength => "ciphertext length is not a positive multiple of 8",
            Self::BadPadding => "bad padding after decryption",
            Self::NotUtf8 => "plaintext is not UTF-8",
            Self::BadParams => "invalid Argon2 parameters",
        })
    }
}

impl std::error::Error for CryptoError {}

/// Outcome of decrypting an `enc` request field that is not a plaintext.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EncError {
    /// Invalid Base64, bad length, bad padding or non-UTF-8 plaintext (`-21557`).
    Invalid,
    /// The plaintext is empty (`-21555`).
    Empty,
}

impl EncError {
    /// The protocol Result code for this error.
    pub fn code(self) -> i32 {
        match self {
            Self::Invalid => CODE_ENC_INVALID,
            Self::Empty => CODE_ENC_EMPTY,
        }
    }
}

impl fmt::Display for EncError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Invalid => "encrypted field cannot be decrypted",
            Self::Empty => "encrypted field is empty",
        })
    }
}

impl std::error::Error for EncError {}

/// A 3DES key (24 bytes) with its CBC IV (8 bytes). Zeroed on drop; never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct TdesKey {
    key: [u8; 24],
    iv: [u8; 8],
}

impl fmt::Debug for TdesKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TdesKey(..)")
    }
}

impl Drop for TdesKey {
    fn drop(&mut self) {
        // Best effort without `unsafe`: black_box keeps the stores from being elided.
        self.key = [0; 24];
        self.iv = [0; 8];
        std::hint::black_box((&self.key, &self.iv));
    }
}

fn parse_hex<const N: usize>(s: &str) -> Result<[u8; N], CryptoError> {
    fn nibble(c: u8) -> Result<u8, CryptoError> {
        match c {
            b'0'..=b'9' => Ok(c - b'0'),
            b'a'..=b'f' => Ok(c - b'a' + 10),
            b'A'..=b'F' => Ok(c - b'A' + 10),
            _ => Err(CryptoError::BadHex),
        }
    }
    let s = s.as_bytes();
    if s.len() != 2 * N {
        return Err(CryptoError::BadHex);
    }
    let mut out = [0u8; N];
    for (o, pair) in out.iter_mut().zip(s.chunks_exact(2)) {
        *o = nibble(pair[0])? << 4 | nibble(pair[1])?;
    }
    Ok(out)
}

impl TdesKey {
    /// Builds a key from raw bytes.
    pub fn new(key: [u8; 24], iv: [u8; 8]) -> TdesKey {
        TdesKey { key, iv }
    }

    /// Parses a key from 48 hex digits and an IV from 16 hex digits (any case).
    pub fn from_hex(key_hex: &str, iv_hex: &str) -> Result<TdesKey, CryptoError> {
        Ok(TdesKey {
            key: parse_hex(key_hex)?,
            iv: parse_hex(iv_hex)?,
        })
    }

    /// DES-EDE3-CBC with PKCS#7 padding.
    pub fn encrypt(&self, plain: &[u8]) -> Vec<u8> {
        Enc::new(&self.key.into(), &self.iv.into()).encrypt_padded_vec::<Pkcs7>(plain)
    }

    /// `Base64(encrypt(plain))`, standard alphabet with padding.
    pub fn encrypt_b64(&self, plain: &[u8]) -> String {
        B64.encode(self.encrypt(plain))
    }

    /// Inverse of [`encrypt`](Self::encrypt).
    pub fn decrypt(&self, cipher: &[u8]) -> Result<Vec<u8>, CryptoError> {
        if cipher.is_empty() || !cipher.len().is_multiple_of(8) {
            return Err(CryptoError::BadLength);
        }
        Dec::new(&self.key.into(), &self.iv.into())
            .decrypt_padded_vec::<Pkcs7>(cipher)
            .map_err(|_| CryptoError::BadPadding)
    }

    /// Inverse of [`encrypt_b64`](Self::encrypt_b64).
    pub fn decrypt_b64(&self, b64: &str) -> Result<Vec<u8>, CryptoError> {
        let cipher = B64.decode(b64).map_err(|_| CryptoError::BadBase64)?;
        self.decrypt(&cipher)
    }

    /// [`decrypt_b64`](Self::decrypt_b64) followed by a UTF-8 check.
    pub fn decrypt_b64_str(&self, b64: &str) -> Result<String, CryptoError> {
        String::from_utf8(self.decrypt_b64(b64)?).map_err(|_| CryptoError::NotUtf8)
    }
}

/// Decrypts an `enc` request field by the rules of spec 2.5 / 11.
pub fn decrypt_enc_field(key: &TdesKey, b64: &str) -> Result<String, EncError> {
    match key.decrypt_b64_str(b64) {
        Ok(s) if s.is_empty() => Err(EncError::Empty),
        Ok(s) => Ok(s),
        Err(_) => Err(EncError::Invalid),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    const VECTORS: &str = include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../shared/spec/vectors.json"
    ));
    const KEY: &str = "0123456789abcdeffedcba987654321089abcdef01234567";
    const IV: &str = "0102030405060708";

    fn key() -> TdesKey {
        TdesKey::from_hex(KEY, IV).expect("test key")
    }

    #[test]
    fn vectors_tdes() {
        let v: Value = serde_json::from_str(VECTORS).expect("vectors.json");
        let entries = v["tdes"].as_array().expect("tdes array");
        assert_eq!(entries.len(), 7);
        for e in entries {
            let k =
                TdesKey::from_hex(e["key"].as_str().unwrap(), e["iv"].as_str().unwrap()).unwrap();
            let plain = e["plaintext"].as_str().unwrap();
            let b64 = e["base64"].as_str().unwrap();
            assert_eq!(k.encrypt_b64(plain.as_bytes()), b64, "encrypt {plain:?}");
            assert_eq!(
                k.decrypt_b64(b64).unwrap(),
                plain.as_bytes(),
                "decrypt {b64}"
            );
        }
    }

    #[test]
    fn from_hex_rules() {
        let upper = TdesKey::from_hex(&KEY.to_uppercase(), IV).unwrap();
        assert_eq!(upper, key());
        assert_eq!(TdesKey::from_hex(&KEY[..46], IV), Err(CryptoError::BadHex));
        assert_eq!(
            TdesKey::from_hex(KEY, "01020304050607"),
            Err(CryptoError::BadHex)
        );
        let bad = format!("{}g", &KEY[..47]);
        assert_eq!(TdesKey::from_hex(&bad, IV), Err(CryptoError::BadHex));
        assert_eq!(
            TdesKey::from_hex("é".repeat(24).as_str(), IV),
            Err(CryptoError::BadHex)
        );
    }

    #[test]
    fn debug_and_display_hide_key() {
        let dbg = format!("{:?}", key());
        assert_eq!(dbg, "TdesKey(..)");
        for e in [
            CryptoError::BadHex,
            CryptoError::BadBase64,
            CryptoError::BadLength,
            CryptoError::BadPadding,
            CryptoError::NotUtf8,
            CryptoError::BadParams,
        ] {
            assert!(!e.to_string().contains("0123"));
        }
    }

    #[test]
    fn decrypt_errors() {
        let k = key();
        assert_eq!(k.decrypt_b64("not base64!"), Err(CryptoError::BadBase64));
        assert_eq!(k.decrypt_b64("i1ut7+7Vp1M"), Err(CryptoError::BadBase64)); // no padding
        assert_eq!(k.decrypt_b64(""), Err(CryptoError::BadLength));
        assert_eq!(k.decrypt_b64("AAAAAA=="), Err(CryptoError::BadLength)); // 4 bytes
        assert_eq!(k.decrypt_b64("AAAAAAAAAAAA"), Err(CryptoError::BadLength)); // 9 bytes
                                                                                // Last block decrypts to something that is not PKCS#7 padding.
        let bad_pad = k.encrypt(&[0u8; 8])[..8].to_vec();
        assert_eq!(k.decrypt(&bad_pad), Err(CryptoError::BadPadding));
        // Wrong key (other vector key): padding fails.
        let other =
            TdesKey::from_hex("a1b2c3d4e5f60718293a4b5c6d7e8f90112233445566778a", IV).unwrap();
        assert_eq!(
            other.decrypt_b64("x+LreGIx+yCbgGo96MkZQQ=="),
            Err(CryptoError::BadPadding)
        );
        // Non-UTF-8 plaintext.
        let b64 = k.encrypt_b64(&[0xff, 0xfe]);
        assert_eq!(k.decrypt_b64_str(&b64), Err(CryptoError::NotUtf8));
    }

    #[test]
    fn enc_field_rules() {
        let k = key();
        assert_eq!(
            decrypt_enc_field(&k, "x+LreGIx+yCbgGo96MkZQQ==").as_deref(),
            Ok("s3cret-Pass")
        );
        assert_eq!(
            decrypt_enc_field(&k, "w4LJOznIc5HyhYgMENBhkQ==").as_deref(),
            Ok("互联星空")
        );
        assert_eq!(decrypt_enc_field(&k, "+lVYFQ3cRpE="), Err(EncError::Empty));
        for bad in [
            "",
            "%%%",
            "AAAAAA==",
            "AAAAAAAAAAAA",
            "E7mizlUg/4PPg7OrrwMSbA==",
        ] {
            assert_eq!(decrypt_enc_field(&k, bad), Err(EncError::Invalid), "{bad}");
        }
        let non_utf8 = k.encrypt_b64(&[0xc3]);
        assert_eq!(decrypt_enc_field(&k, &non_utf8), Err(EncError::Invalid));
        assert_eq!(EncError::Invalid.code(), -21557);
        assert_eq!(EncError::Empty.code(), -21555);
    }
}
