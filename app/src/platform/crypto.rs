//! All of Enclave's cryptography, in one place.
//!
//! Key hierarchy (envelope encryption):
//! - **Master keys (KEKs)** come from the server's configuration, never the
//!   database. The [`Keyring`] holds the current one and any previous ones
//!   still accepted during a rotation. A KEK's id is an HMAC of a fixed label
//!   under the key itself: stored next to what it wrapped, it only tells the
//!   server which of *its own* keys to try; the AEAD tag decides.
//! - **Data keys (DEKs)**: one random 256-bit key per user, stored only
//!   wrapped (AES-256-GCM) under a KEK, bound to the user's id.
//! - **System keys**: random keys the platform itself needs (the blind-index
//!   key for email look-ups), wrapped under the KEK the same way.
//!
//! Sealed value format, version 1 (documented in ARCHITECTURE.md):
//! `0x01 || nonce (12 bytes, random) || AES-256-GCM ciphertext || tag (16)`,
//! with associated data `enclave:v1|table|column|row id|owner id`, so a value
//! copied to another row, column, table or user fails to open.
//!
//! Key types have a redacted `Debug`, no `Serialize`, zeroize on drop, and
//! give out their bytes only through explicitly named methods.

use std::collections::HashMap;

use aes_gcm::{
    Aes256Gcm, KeyInit, Nonce,
    aead::{Aead, Payload},
};
use hmac::{Hmac, Mac};
use rand::RngCore as _;
use sha2::Sha256;
use uuid::Uuid;
use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::error::AppError;

/// The first byte of every sealed value.
pub const SEALED_V1: u8 = 1;
const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;
/// The shortest possible sealed value: version, nonce and tag.
pub const SEALED_MIN_LEN: usize = 1 + NONCE_LEN + TAG_LEN;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CryptoError {
    /// Wrong key, wrong place, or tampered bytes: AES-GCM cannot tell which.
    #[error("the value could not be decrypted (wrong key, wrong place, or altered)")]
    Open,
    #[error("the value is not in a known sealed format")]
    Format,
    #[error("the value was wrapped under master key {0}, which this server does not have")]
    UnknownKek(String),
    #[error("a master key must be exactly 32 bytes")]
    KeyLength,
}

/// 32 bytes of key material. Zeroized on drop; `Debug` shows nothing.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
struct Key([u8; 32]);

impl Key {
    fn random() -> Self {
        let mut bytes = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        Key(bytes)
    }

    fn cipher(&self) -> Aes256Gcm {
        Aes256Gcm::new((&self.0).into())
    }
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

fn seal_with(key: &Key, aad: &[u8], plaintext: &[u8]) -> Vec<u8> {
    let mut nonce = [0u8; NONCE_LEN];
    rand::rngs::OsRng.fill_bytes(&mut nonce);
    let ciphertext = key
        .cipher()
        .encrypt(
            Nonce::from_slice(&nonce),
            Payload {
                msg: plaintext,
                aad,
            },
        )
        // AES-GCM encryption fails only for inputs over 64 GiB.
        .expect("AES-GCM encryption of an in-memory value cannot fail");
    let mut out = Vec::with_capacity(1 + NONCE_LEN + ciphertext.len());
    out.push(SEALED_V1);
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&ciphertext);
    out
}

fn open_with(key: &Key, aad: &[u8], sealed: &[u8]) -> Result<Vec<u8>, CryptoError> {
    if sealed.len() < SEALED_MIN_LEN || sealed[0] != SEALED_V1 {
        return Err(CryptoError::Format);
    }
    let (nonce, ciphertext) = sealed[1..].split_at(NONCE_LEN);
    key.cipher()
        .decrypt(
            Nonce::from_slice(nonce),
            Payload {
                msg: ciphertext,
                aad,
            },
        )
        .map_err(|_| CryptoError::Open)
}

// ---- places and sealed values --------------------------------------------------

/// Where a sealed value lives. Its associated data binds the ciphertext there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Place {
    pub table: &'static str,
    pub column: &'static str,
    pub row: Uuid,
    pub owner: Uuid,
}

impl Place {
    pub fn new(table: &'static str, column: &'static str, row: Uuid, owner: Uuid) -> Self {
        Place {
            table,
            column,
            row,
            owner,
        }
    }

    fn aad(&self) -> Vec<u8> {
        format!(
            "enclave:v{SEALED_V1}|{}|{}|{}|{}",
            self.table, self.column, self.row, self.owner
        )
        .into_bytes()
    }
}

/// A sealed value as stored in a `sealed` column. It can only be made by
/// [`DataKey::seal`] (or read back from the database), so plaintext cannot be
/// written to a sensitive column through this type; the `sealed` SQL domain
/// refuses anything without the format's version byte and minimum length.
#[derive(Clone, PartialEq, Eq)]
pub struct Sealed(Vec<u8>);

impl std::fmt::Debug for Sealed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Sealed({} bytes)", self.0.len())
    }
}

impl Sealed {
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// Wraps bytes read from a sealed column; they are checked when opened.
    pub fn from_stored(bytes: Vec<u8>) -> Self {
        Sealed(bytes)
    }
}

impl sqlx::Type<sqlx::Postgres> for Sealed {
    fn type_info() -> sqlx::postgres::PgTypeInfo {
        <Vec<u8> as sqlx::Type<sqlx::Postgres>>::type_info()
    }

    fn compatible(ty: &sqlx::postgres::PgTypeInfo) -> bool {
        <Vec<u8> as sqlx::Type<sqlx::Postgres>>::compatible(ty)
    }
}

impl sqlx::postgres::PgHasArrayType for Sealed {
    fn array_type_info() -> sqlx::postgres::PgTypeInfo {
        <Vec<u8> as sqlx::postgres::PgHasArrayType>::array_type_info()
    }
}

impl<'q> sqlx::Encode<'q, sqlx::Postgres> for Sealed {
    fn encode_by_ref(
        &self,
        buf: &mut sqlx::postgres::PgArgumentBuffer,
    ) -> Result<sqlx::encode::IsNull, sqlx::error::BoxDynError> {
        <Vec<u8> as sqlx::Encode<'q, sqlx::Postgres>>::encode_by_ref(&self.0, buf)
    }
}

impl<'r> sqlx::Decode<'r, sqlx::Postgres> for Sealed {
    fn decode(value: sqlx::postgres::PgValueRef<'r>) -> Result<Self, sqlx::error::BoxDynError> {
        Ok(Sealed(
            <Vec<u8> as sqlx::Decode<'r, sqlx::Postgres>>::decode(value)?,
        ))
    }
}

// ---- data keys -----------------------------------------------------------------

/// A user's data key: seals and opens everything that user stores.
#[derive(Clone)]
pub struct DataKey(Key);

impl std::fmt::Debug for DataKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DataKey(<redacted>)")
    }
}

impl DataKey {
    pub fn generate() -> Self {
        DataKey(Key::random())
    }

    pub fn seal(&self, place: Place, plaintext: &[u8]) -> Sealed {
        Sealed(seal_with(&self.0, &place.aad(), plaintext))
    }

    pub fn seal_str(&self, place: Place, plaintext: &str) -> Sealed {
        self.seal(place, plaintext.as_bytes())
    }

    pub fn open(&self, place: Place, sealed: &Sealed) -> Result<Vec<u8>, CryptoError> {
        open_with(&self.0, &place.aad(), &sealed.0)
    }

    pub fn open_string(&self, place: Place, sealed: &Sealed) -> Result<String, CryptoError> {
        String::from_utf8(self.open(place, sealed)?).map_err(|_| CryptoError::Format)
    }

    /// Opens a sealed text for a request: a value that does not open is an
    /// internal error whose log line names only its place (table, column,
    /// row), never its content.
    pub fn open_text(&self, place: Place, sealed: &Sealed) -> Result<String, AppError> {
        self.open_string(place, sealed).map_err(|e| {
            AppError::internal(format!(
                "{}.{} of {}: {e}",
                place.table, place.column, place.row
            ))
        })
    }

    /// `open_text` for a nullable column.
    pub fn open_optional(
        &self,
        place: Place,
        sealed: Option<&Sealed>,
    ) -> Result<Option<String>, AppError> {
        sealed.map(|s| self.open_text(place, s)).transpose()
    }
}

/// A data key as stored: wrapped under master key `kek_id`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WrappedKey {
    pub kek_id: String,
    pub bytes: Vec<u8>,
}

// ---- master keys -----------------------------------------------------------------

/// One master key and its id.
#[derive(Clone)]
pub struct Kek {
    id: String,
    key: Key,
}

impl std::fmt::Debug for Kek {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Kek({}, <redacted>)", self.id)
    }
}

impl Kek {
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, CryptoError> {
        let bytes: [u8; 32] = bytes.try_into().map_err(|_| CryptoError::KeyLength)?;
        let key = Key(bytes);
        let mut mac =
            <Hmac<Sha256> as Mac>::new_from_slice(&key.0).expect("HMAC takes any key length");
        mac.update(b"enclave:kek-id:v1");
        let digest = mac.finalize().into_bytes();
        let id = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
        Ok(Kek { id, key })
    }

    pub fn id(&self) -> &str {
        &self.id
    }
}

/// What a wrapped key is bound to (its associated data).
fn wrap_aad(purpose: &str, subject: &str) -> Vec<u8> {
    format!("enclave:wrap:v1|{purpose}|{subject}").into_bytes()
}

/// The server's master keys: the current one wraps, all of them unwrap.
#[derive(Clone, Debug)]
pub struct Keyring {
    current: Kek,
    by_id: HashMap<String, Kek>,
}

impl Keyring {
    pub fn new(current: Kek, previous: Vec<Kek>) -> Self {
        let mut by_id: HashMap<String, Kek> =
            previous.into_iter().map(|k| (k.id.clone(), k)).collect();
        by_id.insert(current.id.clone(), current.clone());
        Keyring { current, by_id }
    }

    pub fn current_id(&self) -> &str {
        &self.current.id
    }

    /// How many master keys this server accepts.
    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    pub fn knows(&self, kek_id: &str) -> bool {
        self.by_id.contains_key(kek_id)
    }

    fn wrap_key(&self, key: &Key, aad: &[u8]) -> WrappedKey {
        WrappedKey {
            kek_id: self.current.id.clone(),
            bytes: seal_with(&self.current.key, aad, &key.0),
        }
    }

    fn unwrap_key(&self, wrapped: &WrappedKey, aad: &[u8]) -> Result<Key, CryptoError> {
        let kek = self
            .by_id
            .get(&wrapped.kek_id)
            .ok_or_else(|| CryptoError::UnknownKek(wrapped.kek_id.clone()))?;
        let mut bytes = open_with(&kek.key, aad, &wrapped.bytes)?;
        let key: Result<[u8; 32], _> = bytes.as_slice().try_into();
        bytes.zeroize();
        Ok(Key(key.map_err(|_| CryptoError::Format)?))
    }

    /// Wraps a user's data key under the current master key, bound to the user.
    pub fn wrap_data_key(&self, key: &DataKey, user: Uuid) -> WrappedKey {
        self.wrap_key(&key.0, &wrap_aad("user-dek", &user.to_string()))
    }

    pub fn unwrap_data_key(
        &self,
        wrapped: &WrappedKey,
        user: Uuid,
    ) -> Result<DataKey, CryptoError> {
        self.unwrap_key(wrapped, &wrap_aad("user-dek", &user.to_string()))
            .map(DataKey)
    }

    /// Re-wraps under the current master key (the step of a rotation).
    pub fn rewrap_data_key(
        &self,
        wrapped: &WrappedKey,
        user: Uuid,
    ) -> Result<WrappedKey, CryptoError> {
        Ok(self.wrap_data_key(&self.unwrap_data_key(wrapped, user)?, user))
    }

    /// Wraps a team's data key under the current master key, bound to the
    /// team (a user's wrapped key moved onto a team does not open).
    pub fn wrap_team_key(&self, key: &DataKey, team: Uuid) -> WrappedKey {
        self.wrap_key(&key.0, &wrap_aad("team-dek", &team.to_string()))
    }

    pub fn unwrap_team_key(
        &self,
        wrapped: &WrappedKey,
        team: Uuid,
    ) -> Result<DataKey, CryptoError> {
        self.unwrap_key(wrapped, &wrap_aad("team-dek", &team.to_string()))
            .map(DataKey)
    }

    pub fn rewrap_team_key(
        &self,
        wrapped: &WrappedKey,
        team: Uuid,
    ) -> Result<WrappedKey, CryptoError> {
        Ok(self.wrap_team_key(&self.unwrap_team_key(wrapped, team)?, team))
    }

    pub fn wrap_system_key(&self, key: &BlindIndexKey, name: &str) -> WrappedKey {
        self.wrap_key(&key.0, &wrap_aad("system", name))
    }

    pub fn unwrap_system_key(
        &self,
        wrapped: &WrappedKey,
        name: &str,
    ) -> Result<BlindIndexKey, CryptoError> {
        self.unwrap_key(wrapped, &wrap_aad("system", name))
            .map(BlindIndexKey)
    }

    pub fn rewrap_system_key(
        &self,
        wrapped: &WrappedKey,
        name: &str,
    ) -> Result<WrappedKey, CryptoError> {
        Ok(self.wrap_system_key(&self.unwrap_system_key(wrapped, name)?, name))
    }
}

// ---- blind index -----------------------------------------------------------------

/// Keys the blind index: an HMAC that finds an email without storing it.
/// It is a random key wrapped by the KEK (not derived from it), so rotating
/// the master key is a re-wrap and never forces re-indexing every address.
#[derive(Clone)]
pub struct BlindIndexKey(Key);

impl std::fmt::Debug for BlindIndexKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BlindIndexKey(<redacted>)")
    }
}

impl BlindIndexKey {
    pub fn generate() -> Self {
        BlindIndexKey(Key::random())
    }

    /// The index of `value` within `purpose` (e.g. "email"): 32 bytes.
    pub fn index(&self, purpose: &str, value: &str) -> Vec<u8> {
        let mut mac =
            <Hmac<Sha256> as Mac>::new_from_slice(&self.0.0).expect("HMAC takes any key length");
        mac.update(purpose.as_bytes());
        mac.update(b"|");
        mac.update(value.as_bytes());
        mac.finalize().into_bytes().to_vec()
    }
}

/// A fresh 256-bit random token, base64url (43 characters): for session
/// cookies, mailed links, OAuth states and API tokens.
pub fn random_token() -> String {
    use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// What is stored of a random token or identifier, and looked up: its
/// SHA-256 (a token has 256 bits, so no salt or slow hash is needed; a
/// passkey's credential id is public and only needs a fixed-size key).
pub fn token_hash(token: impl AsRef<[u8]>) -> Vec<u8> {
    use sha2::Digest as _;
    Sha256::digest(token.as_ref()).to_vec()
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use proptest::prelude::*;

    use super::*;

    fn place() -> Place {
        Place::new(
            "users",
            "first_name",
            Uuid::from_u128(1),
            Uuid::from_u128(2),
        )
    }

    fn kek(byte: u8) -> Kek {
        Kek::from_bytes(&[byte; 32]).unwrap()
    }

    #[test]
    fn round_trip() {
        let key = DataKey::generate();
        let sealed = key.seal_str(place(), "Ada");
        assert_eq!(key.open_string(place(), &sealed).unwrap(), "Ada");
        assert_eq!(sealed.as_bytes()[0], SEALED_V1);
        assert_eq!(sealed.as_bytes().len(), SEALED_MIN_LEN + 3);
    }

    #[test]
    fn any_tampered_byte_fails() {
        let key = DataKey::generate();
        let sealed = key.seal_str(place(), "a secret worth keeping");
        for i in 0..sealed.as_bytes().len() {
            let mut bytes = sealed.as_bytes().to_vec();
            bytes[i] ^= 0x01;
            assert!(
                key.open(place(), &Sealed::from_stored(bytes)).is_err(),
                "flipping byte {i} went unnoticed"
            );
        }
        let truncated = Sealed::from_stored(sealed.as_bytes()[..SEALED_MIN_LEN - 1].to_vec());
        assert_eq!(key.open(place(), &truncated), Err(CryptoError::Format));
    }

    #[test]
    fn a_value_moved_to_another_place_fails() {
        let key = DataKey::generate();
        let here = place();
        let sealed = key.seal_str(here, "Ada");
        let elsewhere = [
            Place {
                row: Uuid::from_u128(9),
                ..here
            },
            Place {
                owner: Uuid::from_u128(9),
                ..here
            },
            Place {
                column: "last_name",
                ..here
            },
            Place {
                table: "agents",
                ..here
            },
        ];
        for place in elsewhere {
            assert_eq!(
                key.open(place, &sealed),
                Err(CryptoError::Open),
                "{place:?}"
            );
        }
        // And another user's key cannot open it at all.
        assert_eq!(
            DataKey::generate().open(here, &sealed),
            Err(CryptoError::Open)
        );
    }

    #[test]
    fn wrapped_keys_need_the_right_master_key_and_user() {
        let user = Uuid::from_u128(7);
        let dek = DataKey::generate();
        let sealed = dek.seal_str(place(), "Ada");
        let ring = Keyring::new(kek(1), vec![]);
        let wrapped = ring.wrap_data_key(&dek, user);
        assert_eq!(wrapped.kek_id, kek(1).id());

        let back = ring.unwrap_data_key(&wrapped, user).unwrap();
        assert_eq!(back.open_string(place(), &sealed).unwrap(), "Ada");
        // Bound to the user: another user's row cannot borrow this key.
        assert!(ring.unwrap_data_key(&wrapped, Uuid::from_u128(8)).is_err());

        // A server with another master key does not know this one...
        let other = Keyring::new(kek(2), vec![]);
        assert_eq!(
            other.unwrap_data_key(&wrapped, user).unwrap_err(),
            CryptoError::UnknownKek(kek(1).id().to_owned())
        );
        // ...and a forged id naming its own key still fails the tag.
        let forged = WrappedKey {
            kek_id: kek(2).id().to_owned(),
            bytes: wrapped.bytes.clone(),
        };
        assert_eq!(
            other.unwrap_data_key(&forged, user).unwrap_err(),
            CryptoError::Open
        );
    }

    #[test]
    fn rotation_rewraps_under_the_new_key_and_old_data_still_opens() {
        let user = Uuid::from_u128(7);
        let dek = DataKey::generate();
        let sealed = dek.seal_str(place(), "Ada");
        let old = Keyring::new(kek(1), vec![]);
        let wrapped = old.wrap_data_key(&dek, user);

        let during = Keyring::new(kek(2), vec![kek(1)]);
        let rewrapped = during.rewrap_data_key(&wrapped, user).unwrap();
        assert_eq!(rewrapped.kek_id, kek(2).id());

        let after = Keyring::new(kek(2), vec![]);
        let back = after.unwrap_data_key(&rewrapped, user).unwrap();
        assert_eq!(back.open_string(place(), &sealed).unwrap(), "Ada");
        assert!(after.unwrap_data_key(&wrapped, user).is_err());
    }

    #[test]
    fn kek_ids_are_stable_and_distinct() {
        assert_eq!(kek(1).id(), kek(1).id());
        assert_ne!(kek(1).id(), kek(2).id());
        assert_eq!(kek(1).id().len(), 16);
        assert!(Kek::from_bytes(&[0; 31]).is_err());
    }

    #[test]
    fn blind_index_is_deterministic_keyed_and_purpose_bound() {
        let key = BlindIndexKey::generate();
        assert_eq!(
            key.index("email", "a@example.com"),
            key.index("email", "a@example.com")
        );
        assert_ne!(
            key.index("email", "a@example.com"),
            key.index("email", "b@example.com")
        );
        assert_ne!(
            key.index("email", "a@example.com"),
            key.index("phone", "a@example.com")
        );
        assert_ne!(
            key.index("email", "a@example.com"),
            BlindIndexKey::generate().index("email", "a@example.com")
        );
    }

    #[test]
    fn key_types_never_print_their_bytes() {
        let ring = Keyring::new(kek(0xAB), vec![]);
        for text in [
            format!("{ring:?}"),
            format!("{:?}", DataKey::generate()),
            format!("{:?}", BlindIndexKey::generate()),
        ] {
            assert!(text.contains("redacted"), "{text}");
            assert!(
                !text.contains("171") && !text.to_lowercase().contains("abab"),
                "{text}"
            );
        }
    }

    #[test]
    fn nonces_never_repeat_across_a_million_seals() {
        let key = DataKey::generate();
        let mut seen = HashSet::with_capacity(1_000_000);
        for _ in 0..1_000_000 {
            let sealed = key.seal(place(), b"");
            let nonce: [u8; NONCE_LEN] = sealed.as_bytes()[1..1 + NONCE_LEN].try_into().unwrap();
            assert!(seen.insert(nonce), "a nonce repeated");
        }
    }

    proptest! {
        #[test]
        fn any_value_round_trips_and_only_in_its_place(
            plaintext in proptest::collection::vec(any::<u8>(), 0..2048),
            row in any::<u128>(),
            owner in any::<u128>(),
            other in any::<u128>(),
        ) {
            let key = DataKey::generate();
            let here = Place::new("messages", "body", Uuid::from_u128(row), Uuid::from_u128(owner));
            let sealed = key.seal(here, &plaintext);
            prop_assert_eq!(key.open(here, &sealed).unwrap(), plaintext);
            prop_assume!(other != row);
            let moved = Place { row: Uuid::from_u128(other), ..here };
            prop_assert!(key.open(moved, &sealed).is_err());
        }
    }
}
