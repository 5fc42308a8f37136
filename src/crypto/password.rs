//! Argon2id password hashing as PHC strings (`$argon2id$v=19$m=…,t=…,p=…$salt$hash`).

use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::phc::{Output, ParamsString, Salt};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use std::cell::RefCell;

thread_local! {
    /// This thread's Argon2 working memory, allocated once and reused: a fresh 19 MiB buffer per
    /// hash is kept by glibc after it is freed, and peak RSS grew past 3 GiB under login load.
    static MEM: RefCell<Vec<Block>> = const { RefCell::new(Vec::new()) };
}

fn with_blocks<R>(n: usize, f: impl FnOnce(&mut [Block]) -> R) -> R {
    MEM.with(|m| {
        let mut m = m.borrow_mut();
        if m.len() < n {
            m.resize(n, Block::default());
        }
        f(&mut m[..n])
    })
}

use super::tdes::CryptoError;

/// `n` bytes from the operating system's secure random source.
///
/// # Panics
/// If the OS random source fails, which leaves no safe way to continue.
pub fn random_bytes(n: usize) -> Vec<u8> {
    let mut buf = vec![0u8; n];
    getrandom::fill(&mut buf).expect("OS random number generator failed");
    buf
}

/// Argon2id hasher with the configured cost parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PasswordHasher {
    m_kib: u32,
    t: u32,
    p: u32,
}

impl PasswordHasher {
    /// Memory in KiB, iterations, parallelism; rejects values Argon2 does not accept.
    pub fn new(m_kib: u32, t: u32, p: u32) -> Result<Self, CryptoError> {
        Params::new(m_kib, t, p, None).map_err(|_| CryptoError::BadParams)?;
        Ok(PasswordHasher { m_kib, t, p })
    }

    fn argon2(&self) -> Argon2<'static> {
        // Validated in `new`, so this cannot fail; fall back to defaults rather than panic.
        let params = Params::new(self.m_kib, self.t, self.p, None).unwrap_or_default();
        Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
    }

    /// Hashes `password` with a fresh random 16-byte salt; returns the PHC string.
    pub fn hash(&self, password: &str) -> String {
        let salt = random_bytes(16);
        let a = self.argon2();
        let params = Params::new(self.m_kib, self.t, self.p, None).unwrap_or_default();
        let mut out = [0u8; 32];
        with_blocks(params.block_count(), |b| a.hash_password_into_with_memory(password.as_bytes(), &salt, &mut out, b))
            .expect("Argon2 hashing with validated parameters");
        PasswordHash {
            algorithm: Algorithm::Argon2id.ident(),
            version: Some(Version::V0x13.into()),
            params: ParamsString::try_from(&params).expect("params"),
            salt: Some(Salt::new(&salt).expect("salt")),
            hash: Some(Output::new(&out).expect("output")),
        }
        .to_string()
    }

    /// Verifies `password` against a PHC string, using the parameters stored in it.
    /// A malformed string, or one for another algorithm, verifies false.
    pub fn verify(&self, phc: &str, password: &str) -> bool {
        let Ok(hash) = PasswordHash::new(phc) else {
            return false;
        };
        if hash.algorithm != Algorithm::Argon2id.ident() {
            return false;
        }
        let (Some(salt), Some(expected)) = (&hash.salt, &hash.hash) else { return false };
        let Ok(params) = Params::try_from(&hash) else { return false };
        let Ok(version) = Version::try_from(hash.version.unwrap_or(0x13)) else { return false };
        let a = Argon2::new(Algorithm::Argon2id, version, params.clone());
        let mut out = vec![0u8; expected.len()];
        let ok = with_blocks(params.block_count(), |b| a.hash_password_into_with_memory(password.as_bytes(), salt.as_ref(), &mut out, b));
        ok.is_ok() && Output::new(&out).is_ok_and(|o| &o == expected)
    }

    /// True when `phc` was not made with Argon2id v19 and exactly this hasher's parameters
    /// (or is malformed), so the password should be hashed again after a successful login.
    pub fn needs_rehash(&self, phc: &str) -> bool {
        let Ok(hash) = PasswordHash::new(phc) else {
            return true;
        };
        let Ok(params) = Params::try_from(&hash) else {
            return true;
        };
        hash.algorithm != Algorithm::Argon2id.ident()
            || hash.version != Some(Version::V0x13.into())
            || (params.m_cost(), params.t_cost(), params.p_cost()) != (self.m_kib, self.t, self.p)
    }
}

/// Is `phc` a well-formed Argon2id PHC string (`$argon2id$v=19$m=…,t=…,p=…$salt$hash`) with
/// parameters Argon2 accepts? (For imported hashes, which are stored as they are.)
pub fn is_argon2id_phc(phc: &str) -> bool {
    let Ok(hash) = PasswordHash::new(phc) else {
        return false;
    };
    hash.algorithm == Algorithm::Argon2id.ident()
        && hash.salt.is_some()
        && hash.hash.is_some()
        && Params::try_from(&hash).is_ok()
        && Version::try_from(hash.version.unwrap_or(0x13)).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small() -> PasswordHasher {
        PasswordHasher::new(256, 1, 1).unwrap()
    }

    #[test]
    fn phc_strings() {
        let phc = small().hash("s3cret-Pass");
        assert!(is_argon2id_phc(&phc));
        assert!(!is_argon2id_phc("$argon2id$v=19$m=256,t=1,p=1$nosalt"));
        assert!(!is_argon2id_phc(&phc.replace("argon2id", "argon2i")));
        assert!(!is_argon2id_phc("$argon2id$"));
        assert!(!is_argon2id_phc("plain text"));
    }

    #[test]
    fn hash_and_verify() {
        let h = small();
        let phc = h.hash("s3cret-Pass");
        assert!(phc.starts_with("$argon2id$v=19$m=256,t=1,p=1$"), "{phc}");
        assert!(h.verify(&phc, "s3cret-Pass"));
        assert!(!h.verify(&phc, "s3cret-pass"));
        assert!(!h.verify(&phc, ""));
        let h2 = h.hash("s3cret-Pass");
        assert_ne!(phc, h2, "salt must be random");
        let uni = h.hash("互联星空");
        assert!(h.verify(&uni, "互联星空"));
    }

    #[test]
    fn params_come_from_phc() {
        let old = small().hash("pw123456");
        let new = PasswordHasher::new(512, 2, 1).unwrap();
        assert!(new.verify(&old, "pw123456"));
        assert!(new.needs_rehash(&old));
        assert!(!small().needs_rehash(&old));
        assert!(small().needs_rehash("garbage"));
        assert!(small().needs_rehash(&old.replacen("v=19", "v=16", 1)));
    }

    #[test]
    fn malformed_phc_is_false() {
        let h = small();
        let good = h.hash("pw123456");
        for bad in [
            "",
            "not a hash",
            "$argon2id$",
            "$argon2id$v=19$m=256,t=1,p=1$",
            &good[..good.len() - 5],
            &good.replacen("argon2id", "argon2i", 1),
            &good.replacen("m=256", "m=abc", 1),
            &good.replacen("m=256", "m=1", 1),
            "$2b$12$abcdefghijklmnopqrstuuABCDEFGHIJKLMNOPQRSTUVWXYZ01234",
        ] {
            assert!(!h.verify(bad, "pw123456"), "{bad:?}");
        }
    }

    #[test]
    fn bad_params_rejected() {
        assert_eq!(PasswordHasher::new(0, 1, 1), Err(CryptoError::BadParams));
        assert_eq!(PasswordHasher::new(256, 0, 1), Err(CryptoError::BadParams));
        assert_eq!(PasswordHasher::new(256, 1, 0), Err(CryptoError::BadParams));
        assert!(PasswordHasher::new(19456, 2, 1).is_ok());
    }

    #[test]
    fn random_bytes_len() {
        assert_eq!(random_bytes(32).len(), 32);
        assert_ne!(random_bytes(16), random_bytes(16));
    }
}
