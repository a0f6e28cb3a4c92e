//! Accounts, sign-in and sessions.
//!
//! `domain` validates input, `api` holds the server functions, `server` (ssr
//! only) the rules they call, `pages` the sign-in and sign-up pages.

#[cfg(feature = "ssr")]
pub mod account;
pub mod api;
pub mod domain;
#[cfg(feature = "ssr")]
pub mod links;
#[cfg(feature = "ssr")]
pub mod oidc;
pub mod pages;
#[cfg(feature = "ssr")]
pub mod passkeys;
#[cfg(feature = "ssr")]
pub mod reset;
#[cfg(feature = "ssr")]
pub mod server;
#[cfg(feature = "ssr")]
pub mod two_factor;
#[cfg(feature = "ssr")]
pub mod verify;
pub mod webauthn;

use serde::{Deserialize, Serialize};

/// What the UI may know about the signed-in user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserView {
    pub first_name: String,
    pub last_name: String,
    pub email: String,
    /// Whether the address was confirmed through a mailed link.
    #[serde(default)]
    pub email_verified: bool,
    /// A platform administrator (Admin in the header).
    #[serde(default)]
    pub is_admin: bool,
}

/// One live session, as Settings → Sessions lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionView {
    pub id: String,
    /// "Firefox 133", from the User-Agent the session was opened with.
    pub browser: String,
    /// "Windows 10", "Linux", "iPhone".
    pub system: String,
    /// The address the session was opened from.
    pub address: String,
    pub signed_in: String,
    pub last_seen: String,
    /// The session of the browser asking.
    pub current: bool,
}

/// A two-factor enrolment in progress: the secret as text and as a QR code
/// (an SVG drawn on the server).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TotpSetup {
    pub secret: String,
    pub qr_svg: String,
}

/// A sign-in provider account connected to the user's, for settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdentityView {
    pub id: String,
    /// "Google".
    pub provider: String,
    /// The address the provider gave.
    pub email: String,
    pub connected: String,
}

/// The sentence for a provider sign-in's `?problem=` word (the callback
/// puts a fixed word in the URL, never free text).
pub fn provider_problem(word: &str) -> Option<&'static str> {
    Some(match word {
        "failed" => {
            "Signing in with that provider did not work: its answer could not be verified. Try again."
        }
        "expired" => {
            "That sign-in took too long, was used already, or was started in another browser. Start again."
        }
        "account-exists" => {
            "An Enclave account already uses this address. Sign in with your password, then connect the provider in Settings → Sign-in methods."
        }
        "no-account" => "No Enclave account uses this address yet. Create one on the sign-up page.",
        "unverified" => {
            "The provider has not confirmed this email address, so it cannot be used here."
        }
        "linked-elsewhere" => "That provider account is connected to another Enclave account.",
        "unknown" => "This server does not offer that provider.",
        "age" => "Please confirm that you are 16 or older.",
        _ => return None,
    })
}

/// One of the user's passkeys, for settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PasskeyView {
    pub id: String,
    pub name: String,
    pub added: String,
    pub last_used: Option<String>,
}

/// A WebAuthn ceremony handed to the browser: its id and the options for
/// `navigator.credentials` (JSON).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PasskeyCeremony {
    pub id: String,
    pub options: String,
}

/// A sign-in provider this server offers, for the sign-in page's buttons.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProviderButton {
    pub id: String,
    pub name: String,
}

/// Settings → Two-factor: whether it is on, and recovery codes left.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TwoFactorStatus {
    pub on: bool,
    pub recovery_codes_left: i64,
}

/// What a sign-up form posted without JavaScript held when it failed, so
/// the page comes back filled in with the reason (never the password). The
/// server renders the page with it (`POST /sign-up`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignUpEcho {
    pub first_name: String,
    pub last_name: String,
    pub email: String,
    pub age_confirmed: bool,
    pub next: String,
    pub error: Option<crate::error::AppError>,
}
