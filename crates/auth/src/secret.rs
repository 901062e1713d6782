//! Passwords and generated secrets: how they are made, stored and compared.
//!
//! - User passwords are stored as argon2id PHC strings (OWASP's parameters:
//!   19 MiB, 2 passes, 1 lane), each with its own random salt.
//! - Generated secrets (robot secrets, the first admin's password when none
//!   is configured) carry 256 random bits. Robot secrets are stored as their
//!   SHA-256: a slow KDF protects guessable passwords, and a 256-bit random
//!   secret cannot be guessed, so checking one costs a hash, not 20 ms.
//! - Every comparison of secret material is constant-time.

use argon2::Argon2;
use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Shortest password a local user may set.
pub const MIN_PASSWORD_LEN: usize = 8;
/// Longest password accepted anywhere: hashing has a cost, and no one types more.
pub const MAX_PASSWORD_LEN: usize = 256;

/// A password that cannot be used, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WeakPassword {
    #[error("the password must have at least {MIN_PASSWORD_LEN} characters")]
    TooShort,
    #[error("the password must have at most {MAX_PASSWORD_LEN} bytes")]
    TooLong,
}

/// Checks a new password against the policy.
pub fn check_password_policy(password: &str) -> Result<(), WeakPassword> {
    if password.chars().count() < MIN_PASSWORD_LEN {
        Err(WeakPassword::TooShort)
    } else if password.len() > MAX_PASSWORD_LEN {
        Err(WeakPassword::TooLong)
    } else {
        Ok(())
    }
}

/// The argon2id PHC string of `password`, with a fresh random salt.
pub fn hash_password(password: &str) -> String {
    Argon2::default()
        .hash_password(password.as_bytes())
        // Only a failing system random source or invalid parameters can
        // fail here, and the parameters are the library's defaults.
        .expect("argon2id hashing with default parameters")
        .to_string()
}

/// Whether `password` matches the stored PHC string. A malformed stored
/// string matches nothing.
pub fn verify_password(password: &str, stored: &str) -> bool {
    if password.len() > MAX_PASSWORD_LEN {
        return false;
    }
    let Ok(parsed) = PasswordHash::new(stored) else {
        return false;
    };
    Argon2::default()
        .verify_password(password.as_bytes(), &parsed)
        .is_ok()
}

/// Spends about as long as [`verify_password`] does, for a name that has no
/// password: an unknown user then answers as slowly as a wrong password, so
/// timing does not tell which names exist.
pub fn verify_nothing(password: &str) {
    use std::sync::OnceLock;
    static DUMMY: OnceLock<String> = OnceLock::new();
    let dummy = DUMMY.get_or_init(|| hash_password("wharf: no such user"));
    let _ = verify_password(password, dummy);
}

/// `n` random bytes from the operating system.
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    getrandom::fill(&mut bytes).expect("the operating system's random source");
    bytes
}

/// A new secret of 256 random bits, as 43 URL-safe characters.
pub fn generate_secret() -> String {
    URL_SAFE_NO_PAD.encode(random_bytes::<32>())
}

/// How a generated secret is stored: its SHA-256, hex.
pub fn secret_digest(secret: &str) -> String {
    hex_lower(&Sha256::digest(secret.as_bytes()))
}

/// Whether `secret` is the one whose [`secret_digest`] is `stored`.
pub fn verify_secret(secret: &str, stored: &str) -> bool {
    constant_time_eq(secret_digest(secret).as_bytes(), stored.as_bytes())
}

/// Constant-time equality of two byte strings (their lengths may leak).
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.ct_eq(b).into()
}

fn hex_lower(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_hash_with_argon2id_and_salt() {
        let a = hash_password("correct horse");
        let b = hash_password("correct horse");
        assert!(a.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{a}");
        assert_ne!(a, b, "each hash has its own salt");
        assert!(verify_password("correct horse", &a));
        assert!(!verify_password("correct horsf", &a));
        assert!(!verify_password("correct horse", "not a hash"));
        assert!(!verify_password(&"x".repeat(MAX_PASSWORD_LEN + 1), &a));
    }

    #[test]
    fn the_policy() {
        assert_eq!(check_password_policy("short"), Err(WeakPassword::TooShort));
        assert_eq!(
            check_password_policy("ünïcödé"),
            Err(WeakPassword::TooShort)
        );
        assert_eq!(check_password_policy("long enough"), Ok(()));
        assert_eq!(
            check_password_policy(&"x".repeat(MAX_PASSWORD_LEN + 1)),
            Err(WeakPassword::TooLong)
        );
    }

    #[test]
    fn generated_secrets() {
        let s = generate_secret();
        assert_eq!(s.len(), 43);
        assert_ne!(s, generate_secret());
        let stored = secret_digest(&s);
        assert_eq!(stored.len(), 64);
        assert!(verify_secret(&s, &stored));
        assert!(!verify_secret("guess", &stored));
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }
}
