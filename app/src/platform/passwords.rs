//! Password hashing: argon2id at the OWASP parameters (m = 19 MiB, t = 2, p = 1),
//! run on the blocking pool so it never stalls the async runtime, with a bound
//! on how many hashes run at once so a burst of sign-ins cannot exhaust memory.
//!
//! Unknown accounts are verified against a dummy hash so that they cost the same
//! time as known ones and response timing does not reveal who has an account.
//! The dummy is made without running argon2 (`unknown_account_hash`).

use std::sync::Arc;

use argon2::{
    Algorithm, Argon2, Params, PasswordHash, PasswordHasher as _, PasswordVerifier as _, Version,
    password_hash::{
        Output, SaltString,
        rand_core::{OsRng, RngCore as _},
    },
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

/// The hash an unknown account's password is checked against: argon2id at
/// our parameters with a random salt and a random output. No password is
/// known to give it (finding one means inverting argon2), and checking
/// against it costs what a real check costs, since the parameters set the
/// cost. Made without running argon2, which would take 19 MiB and tens of
/// milliseconds at every start; mimalloc kept that memory resident, 12 of
/// the idle server's 46 MiB (BENCHMARKS.md).
fn unknown_account_hash() -> String {
    let salt = SaltString::generate(&mut OsRng);
    let mut output = [0u8; Params::DEFAULT_OUTPUT_LEN];
    OsRng.fill_bytes(&mut output);
    let argon2 = argon2();
    PasswordHash {
        algorithm: Algorithm::Argon2id.ident(),
        version: Some(Version::V0x13.into()),
        params: argon2
            .params()
            .try_into()
            .expect("constant argon2 parameters encode"),
        salt: Some(salt.as_salt()),
        hash: Some(Output::new(&output).expect("argon2's default output length is valid")),
    }
    .to_string()
}

impl Default for Passwords {
    fn default() -> Self {
        Self::new()
    }
}

impl Passwords {
    pub fn new() -> Self {
        let concurrency = std::thread::available_parallelism().map_or(2, |n| n.get());
        let dummy_hash = unknown_account_hash();
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

    /// The dummy hash an unknown account is checked against has what sets a
    /// check's cost (algorithm, version, parameters, salt and output length)
    /// exactly as a real hash has it.
    #[tokio::test]
    async fn the_unknown_accounts_hash_is_shaped_like_a_real_one() {
        let passwords = Passwords::new();
        let real = passwords.hash("correct horse battery").await.unwrap();
        let dummy = unknown_account_hash();
        assert_ne!(dummy, unknown_account_hash(), "random each time");
        let (real, dummy) = (
            PasswordHash::new(&real).unwrap(),
            PasswordHash::new(&dummy).unwrap(),
        );
        assert_eq!(dummy.algorithm, real.algorithm);
        assert_eq!(dummy.version, real.version);
        assert_eq!(dummy.params, real.params);
        assert_eq!(dummy.salt.map(|s| s.len()), real.salt.map(|s| s.len()));
        assert_eq!(dummy.hash.map(|h| h.len()), real.hash.map(|h| h.len()));
    }

    #[tokio::test]
    async fn unknown_accounts_never_verify() {
        let passwords = Passwords::new();
        assert!(!passwords.verify("anything at all", None).await.unwrap());
    }
}
