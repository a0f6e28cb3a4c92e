//! Settings the application logic needs at request time. The server binary
//! builds them from `ENCLAVE_*` environment variables (see `server::config`);
//! tests build them directly.

use std::{collections::HashMap, time::Duration};

use super::egress::AllowEntry;
use crate::provider::Provider;

/// Where each hosted provider's API lives (overridable for tests and proxies).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderUrls {
    pub openai: String,
    pub anthropic: String,
    pub google: String,
}

impl Default for ProviderUrls {
    fn default() -> Self {
        ProviderUrls {
            openai: "https://api.openai.com/v1".into(),
            anthropic: "https://api.anthropic.com/v1".into(),
            google: "https://generativelanguage.googleapis.com/v1beta".into(),
        }
    }
}

/// Where the services the built-in tools talk to live (overridable for
/// tests, GitHub Enterprise, or a proxy).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceUrls {
    pub github: String,
    pub slack: String,
    pub telegram: String,
    /// Where Telegram posts a bot's updates to this server
    /// (`ENCLAVE_TELEGRAM_WEBHOOK_URL`); unset, the public URL when it is
    /// https, else bots are long-polled.
    pub telegram_webhook: Option<String>,
}

impl Default for ServiceUrls {
    fn default() -> Self {
        ServiceUrls {
            github: "https://api.github.com".into(),
            slack: "https://slack.com/api".into(),
            telegram: "https://api.telegram.org".into(),
            telegram_webhook: None,
        }
    }
}

/// API keys the operator provides for everyone. `Debug` shows only which
/// providers have one.
#[derive(Clone, Default)]
pub struct PlatformKeys(HashMap<Provider, String>);

impl std::fmt::Debug for PlatformKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut providers: Vec<&str> = self.0.keys().map(|p| p.as_str()).collect();
        providers.sort_unstable();
        write!(f, "PlatformKeys({providers:?}, <redacted>)")
    }
}

impl PlatformKeys {
    pub fn new(keys: HashMap<Provider, String>) -> Self {
        PlatformKeys(keys)
    }

    pub fn has(&self, provider: Provider) -> bool {
        self.0.contains_key(&provider)
    }

    /// The key, for the request to the provider only.
    pub fn expose(&self, provider: Provider) -> Option<&str> {
        self.0.get(&provider).map(String::as_str)
    }
}

/// A fixed-window limit: at most `max` events per `window`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    pub max: u32,
    pub window: Duration,
}

impl Limit {
    pub const fn new(max: u32, window_secs: u64) -> Self {
        Limit {
            max,
            window: Duration::from_secs(window_secs),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Settings {
    /// Where users reach this server (`ENCLAVE_PUBLIC_URL`), without a
    /// trailing slash: for addresses shown to them.
    pub public_url: String,
    /// Cookies get `Secure` and the `__Host-` prefix (set when the public URL is https).
    pub secure_cookies: bool,
    /// How long a session lasts after sign-in.
    pub session_ttl: Duration,
    /// Sign-in attempts per client address (all attempts count).
    pub sign_in_per_ip: Limit,
    /// Sign-in attempts per account, counted before the password is checked
    /// (a success resets it).
    pub sign_in_per_account: Limit,
    /// Sign-ups per client address.
    pub sign_up_per_ip: Limit,
    /// How many proxies in front of Enclave append to `X-Forwarded-For`
    /// (0: the header is ignored). The client is the address the outermost
    /// trusted proxy added: `proxy_hops` entries from the right.
    pub proxy_hops: u8,
    /// Requests for a reply (send, regenerate, edit) per user: each calls a
    /// provider, perhaps on the operator's key.
    pub chat_sends_per_user: Limit,
    /// Provider key tests per user (each calls the provider).
    pub key_tests_per_user: Limit,
    /// Requests per API key to `/v1` (a reply also counts against the
    /// owner's `chat_sends_per_user`).
    pub api_requests_per_key: Limit,
    /// The longest a reply may take, retries included.
    pub run_deadline: Duration,
    /// The longest a provider may be silent: before its first token, and
    /// between two pieces of a reply (keep-alive pings do not count).
    pub provider_timeout: Duration,
    /// The longest a reply may be, in bytes.
    pub max_reply_bytes: usize,
    /// This server process's name, stored with the replies it writes.
    pub instance: String,
    /// The longest one tool call may take.
    pub tool_timeout: Duration,
    /// Extra certificate authorities (PEM) trusted for users' mail servers,
    /// besides the public ones (a company's own CA).
    pub smtp_roots: Vec<Vec<u8>>,
    /// Private `host:port`s that outbound requests may reach anyway.
    pub egress_allow: Vec<AllowEntry>,
    pub provider_urls: ProviderUrls,
    pub service_urls: ServiceUrls,
    pub platform_keys: PlatformKeys,
    /// Where the offline demo model answers, when this server runs it.
    pub demo_url: Option<String>,
    /// Where Enclave's own mail goes (`ENCLAVE_SMTP_URL`, or the
    /// development catcher).
    pub mailer: super::mail::Mailer,
    /// `ENCLAVE_REQUIRE_VERIFIED_EMAIL`: accounts reach agents and chat only
    /// once their address is confirmed.
    pub require_verified_email: bool,
    /// Sign-in with Google and other OpenID Connect providers.
    pub oidc_providers: Vec<OidcProvider>,
    /// How long what users leave behind is kept (the policies' numbers).
    pub retention: Retention,
    /// Budgets and credits: who may spend how much on model calls.
    pub billing: Billing,
}

/// How model calls are paid for (`ENCLAVE_BILLING`).
#[derive(Debug, Clone, Default)]
pub struct Billing {
    pub mode: BillingMode,
    /// `ENCLAVE_BILLING_CHARGE_OWN_KEYS`: calls on a user's own provider
    /// key count too (by default only the operator's keys are charged).
    pub charge_own_keys: bool,
    /// `ENCLAVE_CURRENCY`: the ISO code amounts are in (lowercase, as
    /// Stripe takes it).
    pub currency: String,
    /// Card payments for credits (`ENCLAVE_STRIPE_*`).
    pub stripe: Option<Stripe>,
    /// What "Add credits" offers, in micro-units.
    pub top_ups: Vec<i64>,
}

/// The three ways a deployment can run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum BillingMode {
    /// Nothing is limited (usage is still recorded).
    #[default]
    Unlimited,
    /// Each user (and each team) may use so much per day or month.
    Quotas(Quotas),
    /// Users buy credits first; each charged call spends them.
    Credits,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quotas {
    pub period: QuotaPeriod,
    pub unit: QuotaUnit,
    /// Per user (`None`: no limit), in tokens or micro-units.
    pub per_user: Option<u64>,
    /// Per team, for its agents.
    pub per_team: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuotaPeriod {
    Day,
    Month,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuotaUnit {
    Tokens,
    Cost,
}

/// Stripe Checkout for buying credits.
#[derive(Clone)]
pub struct Stripe {
    /// `ENCLAVE_STRIPE_API_URL` (default `https://api.stripe.com`).
    pub api_url: String,
    /// `ENCLAVE_STRIPE_SECRET_KEY` (`sk_...`).
    pub secret_key: String,
    /// `ENCLAVE_STRIPE_WEBHOOK_SECRET` (`whsec_...`).
    pub webhook_secret: String,
}

impl std::fmt::Debug for Stripe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stripe")
            .field("api_url", &self.api_url)
            .field("secret_key", &"<redacted>")
            .field("webhook_secret", &"<redacted>")
            .finish()
    }
}

/// How long data is kept, in days: the privacy policy's numbers by
/// default, each an operator setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// `ENCLAVE_CONVERSATION_RETENTION_DAYS`: a conversation is erased this
    /// long after its last message (a user may choose a shorter time).
    pub conversation_days: u32,
    /// `ENCLAVE_ACTIVITY_RETENTION_DAYS`: the activity log and tool call
    /// records.
    pub activity_days: u32,
    /// `ENCLAVE_DELETION_GRACE_DAYS`: a deleted account can be restored by
    /// signing in for this long; then it is erased.
    pub deletion_grace_days: u32,
}

impl Default for Retention {
    fn default() -> Self {
        Retention {
            conversation_days: 90,
            activity_days: 90,
            deletion_grace_days: 30,
        }
    }
}

/// An OpenID Connect provider people may sign in with.
#[derive(Clone)]
pub struct OidcProvider {
    /// In URLs and the database: "google".
    pub id: String,
    /// On the button: "Google".
    pub name: String,
    pub issuer: String,
    pub client_id: String,
    pub client_secret: String,
}

impl std::fmt::Debug for OidcProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OidcProvider")
            .field("id", &self.id)
            .field("issuer", &self.issuer)
            .field("client_id", &self.client_id)
            .field("client_secret", &"<redacted>")
            .finish()
    }
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            public_url: "http://127.0.0.1:3000".to_owned(),
            secure_cookies: false,
            session_ttl: Duration::from_secs(30 * 24 * 3600),
            sign_in_per_ip: Limit::new(30, 15 * 60),
            sign_in_per_account: Limit::new(5, 15 * 60),
            sign_up_per_ip: Limit::new(10, 60 * 60),
            proxy_hops: 0,
            chat_sends_per_user: Limit::new(30, 60),
            key_tests_per_user: Limit::new(10, 60),
            api_requests_per_key: Limit::new(60, 60),
            run_deadline: Duration::from_secs(15 * 60),
            provider_timeout: Duration::from_secs(60),
            max_reply_bytes: 1024 * 1024,
            instance: "local".to_owned(),
            tool_timeout: Duration::from_secs(30),
            smtp_roots: Vec::new(),
            egress_allow: Vec::new(),
            provider_urls: ProviderUrls::default(),
            service_urls: ServiceUrls::default(),
            platform_keys: PlatformKeys::default(),
            demo_url: None,
            mailer: super::mail::Mailer::Off,
            require_verified_email: false,
            oidc_providers: Vec::new(),
            retention: Retention::default(),
            billing: Billing {
                currency: "usd".to_owned(),
                top_ups: vec![5_000_000, 20_000_000, 50_000_000],
                ..Billing::default()
            },
        }
    }
}
