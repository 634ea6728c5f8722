//! Operators: password hashes (Argon2id, PHC strings) and session tokens.
//!
//! Rules kept here:
//! - Passwords are stored only as Argon2id hashes with a random salt; a wrong password and
//!   an unknown operator fail alike.
//! - A session token is 32 random bytes; the database keeps only its SHA-256, so a copy of
//!   the database opens no session.
//! - Every form that writes carries a CSRF token derived from the session token
//!   ([`csrf_token`]); the cookie is also `SameSite=Strict` and `HttpOnly`.
//! - An operator with [`MAX_FAILURES`] failed logins within [`FAILURE_WINDOW_SECS`] cannot
//!   log in until the window ends, right password or not ([`LoginThrottle`]). Only existing
//!   operators are tracked, so the table is as small as the list of operators.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use rand_core::{OsRng, RngCore};
use std::collections::HashMap;
use thiserror::Error;

/// The session cookie's name.
pub const COOKIE: &str = "limpet_fleet_session";
/// How long a session lasts: 12 hours.
pub const SESSION_SECS: i64 = 12 * 3600;
/// The shortest password accepted.
pub const MIN_PASSWORD: usize = 12;

/// Failed logins that lock an operator out for the rest of the window.
pub const MAX_FAILURES: u32 = 5;
/// The window failed logins are counted in: 15 minutes from the first.
pub const FAILURE_WINDOW_SECS: i64 = 15 * 60;

/// Failed logins per operator.
#[derive(Debug, Default)]
pub struct LoginThrottle {
    failures: HashMap<String, (u32, i64)>,
}

impl LoginThrottle {
    /// `Err(seconds to wait)` when `operator` is locked out at `now`.
    pub fn check(&self, operator: &str, now: i64) -> Result<(), i64> {
        match self.failures.get(operator) {
            Some(&(count, since)) if count >= MAX_FAILURES && now < since + FAILURE_WINDOW_SECS => {
                Err(since + FAILURE_WINDOW_SECS - now)
            }
            _ => Ok(()),
        }
    }

    /// Counts a failed login of an existing operator.
    pub fn failed(&mut self, operator: &str, now: i64) {
        let entry = self.failures.entry(operator.to_owned()).or_insert((0, now));
        if now >= entry.1 + FAILURE_WINDOW_SECS {
            *entry = (0, now);
        }
        entry.0 = entry.0.saturating_add(1);
    }

    /// Forgets the failures of an operator who logged in.
    pub fn succeeded(&mut self, operator: &str) {
        self.failures.remove(operator);
    }
}

/// Whether the session cookie is marked `Secure` (sent by browsers over HTTPS and to
/// `localhost` only).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CookiePolicy {
    /// `Secure` (the default): the server is reached over HTTPS, or on localhost.
    #[default]
    Secure,
    /// No `Secure`: for a server reached over plain HTTP on another address (a lab
    /// network); passwords and sessions then cross the network in the clear.
    PlainHttp,
}

fn cookie_attributes(policy: CookiePolicy) -> &'static str {
    match policy {
        CookiePolicy::Secure => "HttpOnly; SameSite=Strict; Path=/; Secure",
        CookiePolicy::PlainHttp => "HttpOnly; SameSite=Strict; Path=/",
    }
}

/// The `Set-Cookie` value of a new session.
pub fn session_cookie(token: &str, policy: CookiePolicy) -> String {
    format!(
        "{COOKIE}={token}; {}; Max-Age={SESSION_SECS}",
        cookie_attributes(policy)
    )
}

/// The `Set-Cookie` value that ends a session in the browser.
pub fn cleared_cookie(policy: CookiePolicy) -> String {
    format!("{COOKIE}=; {}; Max-Age=0", cookie_attributes(policy))
}

/// A password that cannot be set.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum PasswordError {
    /// Too short.
    #[error("password of operator {operator} is shorter than {MIN_PASSWORD} characters")]
    TooShort {
        /// The operator.
        operator: String,
    },
    /// A bad operator name.
    #[error("operator name {0:?} is not 1 to 64 letters, digits, '.', '-' or '_'")]
    Name(String),
    /// The hasher failed.
    #[error("hashing the password: {0}")]
    Hash(String),
}

/// Whether `name` is an operator name.
pub fn valid_operator(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
}

/// The Argon2id hash (PHC string) of a new operator password.
pub fn hash_password(operator: &str, password: &str) -> Result<String, PasswordError> {
    if !valid_operator(operator) {
        return Err(PasswordError::Name(operator.to_owned()));
    }
    if password.chars().count() < MIN_PASSWORD {
        return Err(PasswordError::TooShort {
            operator: operator.to_owned(),
        });
    }
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| PasswordError::Hash(e.to_string()))
}

/// Whether `password` matches a stored hash (false for an unparsable hash).
pub fn verify_password(stored: &str, password: &str) -> bool {
    PasswordHash::new(stored).is_ok_and(|h| {
        Argon2::default()
            .verify_password(password.as_bytes(), &h)
            .is_ok()
    })
}

/// A new session token (hex).
pub fn new_token() -> String {
    let mut bytes = [0u8; 32];
    OsRng.fill_bytes(&mut bytes);
    hex::encode(bytes)
}

/// The CSRF token of a session: a hash of the session token under its own label.
pub fn csrf_token(session_token: &str) -> String {
    let full = crate::store::sha256_hex(format!("limpet-fleet-csrf\0{session_token}").as_bytes());
    full[..32].to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_verify_only_themselves() {
        let h = hash_password("ada", "correct horse battery").unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(verify_password(&h, "correct horse battery"));
        assert!(!verify_password(&h, "correct horse batterY"));
        assert!(!verify_password("not a hash", "correct horse battery"));
        assert_eq!(
            hash_password("ada", "short"),
            Err(PasswordError::TooShort {
                operator: "ada".into()
            })
        );
        assert!(matches!(
            hash_password("a b", "correct horse battery"),
            Err(PasswordError::Name(_))
        ));
    }

    #[test]
    fn repeated_failures_lock_an_operator_out_for_the_window() {
        let mut t = LoginThrottle::default();
        for i in 0..MAX_FAILURES {
            assert_eq!(t.check("ada", 100), Ok(()));
            t.failed("ada", 100 + i64::from(i));
        }
        assert_eq!(t.check("ada", 200), Err(100 + FAILURE_WINDOW_SECS - 200));
        assert_eq!(t.check("bob", 200), Ok(()));
        assert_eq!(t.check("ada", 100 + FAILURE_WINDOW_SECS), Ok(()));
        // A new window starts counting from one.
        t.failed("ada", 100 + FAILURE_WINDOW_SECS);
        assert_eq!(t.check("ada", 100 + FAILURE_WINDOW_SECS), Ok(()));
        t.succeeded("ada");
        assert!(t.failures.is_empty());
    }

    #[test]
    fn cookies_are_secure_unless_asked_otherwise() {
        let secure = session_cookie("abc", CookiePolicy::default());
        assert_eq!(
            secure,
            "limpet_fleet_session=abc; HttpOnly; SameSite=Strict; Path=/; Secure; Max-Age=43200"
        );
        assert!(!session_cookie("abc", CookiePolicy::PlainHttp).contains("Secure"));
        assert!(cleared_cookie(CookiePolicy::Secure).ends_with("Secure; Max-Age=0"));
    }

    #[test]
    fn tokens_are_random_and_csrf_tokens_differ_per_session() {
        let (a, b) = (new_token(), new_token());
        assert_ne!(a, b);
        assert_eq!(a.len(), 64);
        assert_ne!(csrf_token(&a), csrf_token(&b));
        assert_eq!(csrf_token(&a), csrf_token(&a));
    }
}
