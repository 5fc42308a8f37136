//! Cryptography of the node: 3DES `enc` fields and Authenticators (spec 2.4, 2.5), browser URL
//! tokens (spec 5), BatchSync RecordsDigest (spec 6.5) and Argon2id password hashes.

pub mod auth;
pub mod csrf;
pub mod password;
pub mod tdes;
pub mod token;

pub use auth::{
    authenticator, ct_eq, digest_concat, records_digest, records_text, sha1_b64,
    verify_authenticator,
};
pub use password::{random_bytes, PasswordHasher};
pub use tdes::{decrypt_enc_field, CryptoError, EncError, TdesKey};
pub use token::TokenError;
