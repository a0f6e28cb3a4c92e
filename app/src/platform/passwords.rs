//! Password hashing: argon2id at the OWASP parameters (m = 19 MiB, t = 2, p = 1),
//! run on the blocking pool so it never stalls the async runtime, with a bound
//! on how many hashes run at once so a burst of sign-ins cannot exhaust memory.
//!
//! Unknown accounts are verified against a dummy hash so that they cost the same
//! time as known ones and response timing does not reveal who has an account.

use std::sync::Arc;

use argon2::{
    Algorithm, Argon2, Params, PasswordHash, PasswordHasher as _, PasswordVerifier as _, Version,
    password_hash::{SaltString, rand_core::OsRng},
};
use tokio::sync::Semaphore;

use crate::error::AppError;

#[derive(Clone)]
pub struct Passwords {
    inner: Arc<Inner>,
}

struct Inner {
    permits: Semaphore,
    dummy_hash: String,
}

fn argon2() -> Argon2<'static> {
    let params = Params::new(19_456, 2, 1, None).expect("constant argon2 parameters are valid");
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

fn hash_blocking(password: &str) -> Result<String, argon2::password_hash::Error> {
    let salt = SaltString::generate(&mut OsRng);
    Ok(argon2()
        .hash_password(password.as_bytes(), &salt)?
        .to_string())
}

impl Default for Passwords {
    fn default() -> Self {
        Self::new()
    }
}

impl Passwords {
    pub fn new() -> Self {
        let concurrency = std::thread::available_parallelism().map_or(2, |n| n.get());
        // A throwaway password nobody knows; only its hash's cost matters.
        let mut seed = [0u8; 32];
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut seed);
        let dummy_hash = hash_blocking(&base64::Engine::encode(
            &base64::engine::general_purpose::STANDARD,
            seed,
        ))
        .expect("hashing a random password succeeds");
        Passwords {
            inner: Arc::new(Inner {
                permits: Semaphore::new(concurrency),
                dummy_hash,
            }),
        }
    }

    /// Runs `work` on the blocking pool once a hashing permit is free.
    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, AppError> {
        let _permit = self
            .inner
            .permits
            .acquire()
            .await
            .map_err(AppError::internal)?;
        tokio::task::spawn_blocking(work)
            .await
            .map_err(AppError::internal)
    }

    /// The argon2id hash of `password` (already checked by the caller's
    /// rules, such as `auth::domain::Password`).
    pub async fn hash(&self, password: &str) -> Result<String, AppError> {
        let plaintext = password.to_owned();
        self.run(move || hash_blocking(&plaintext))
            .await?
            .map_err(AppError::internal)
    }

    /// True when `password` matches `stored`. With no stored hash (unknown
    /// account) it checks against the dummy hash and returns false, taking the
    /// same time as a real check.
    pub async fn verify(&self, password: &str, stored: Option<String>) -> Result<bool, AppError> {
        let known = stored.is_some();
        let hash = stored.unwrap_or_else(|| self.inner.dummy_hash.clone());
        let plaintext = password.to_owned();
        let matches = self
            .run(move || {
                PasswordHash::new(&hash)
                    .map(|parsed| {
                        argon2()
                            .verify_password(plaintext.as_bytes(), &parsed)
                            .is_ok()
                    })
                    .unwrap_or(false)
            })
            .await?;
        Ok(known && matches)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hashes_are_argon2id_with_owasp_parameters_and_verify() {
        let passwords = Passwords::new();
        let hash = passwords.hash("correct horse battery").await.unwrap();
        assert!(
            hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{hash}"
        );
        assert!(!hash.contains("correct horse"));
        assert!(
            passwords
                .verify("correct horse battery", Some(hash.clone()))
                .await
                .unwrap()
        );
        assert!(
            !passwords
                .verify("wrong horse battery", Some(hash))
                .await
                .unwrap()
        );
    }

    #[tokio::test]
    async fn unknown_accounts_never_verify() {
        let passwords = Passwords::new();
        assert!(!passwords.verify("anything at all", None).await.unwrap());
    }
}
