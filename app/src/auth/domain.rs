//! Sign-up input as domain types: each parses (and normalises) on construction,
//! so code past the server function boundary never sees unchecked input.

use crate::error::{AppError, FieldError};

pub const PASSWORD_MIN_CHARS: usize = 8;
/// OWASP ASVS 5.0 asks that at least 64 characters be allowed; argon2 hashes any
/// length in the same time, so the ceiling only bounds request size.
pub const PASSWORD_MAX_CHARS: usize = 128;
pub const NAME_MAX_CHARS: usize = 100;
pub const EMAIL_MAX_CHARS: usize = 254;

/// An email address, trimmed and lower-cased, so one mailbox is one account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email(String);

impl Email {
    pub fn parse(raw: &str) -> Result<Self, String> {
        let email = raw.trim().to_lowercase();
        if email.is_empty() {
            return Err("Enter your email address.".into());
        }
        if email.chars().count() > EMAIL_MAX_CHARS {
            return Err(format!(
                "An email address has at most {EMAIL_MAX_CHARS} characters."
            ));
        }
        let invalid = || "Enter a valid email address, like name@example.com.".to_owned();
        let (local, domain) = email.rsplit_once('@').ok_or_else(invalid)?;
        let domain_ok = domain.contains('.')
            && !domain.starts_with('.')
            && !domain.ends_with('.')
            && !domain.contains("..")
            && domain
                .chars()
                .all(|c| c.is_alphanumeric() || c == '-' || c == '.');
        let local_ok = !local.is_empty()
            && !local.contains('@')
            && local.chars().all(|c| !c.is_whitespace() && !c.is_control());
        if !(domain_ok && local_ok) {
            return Err(invalid());
        }
        Ok(Email(email))
    }
}

impl AsRef<str> for Email {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// A first or last name: trimmed, non-empty, bounded, no control characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PersonName(String);

impl PersonName {
    pub fn parse(raw: &str, label: &str) -> Result<Self, String> {
        let name = raw.trim();
        if name.is_empty() {
            return Err(format!("Enter your {label}."));
        }
        if name.chars().count() > NAME_MAX_CHARS {
            return Err(format!(
                "Your {label} can have at most {NAME_MAX_CHARS} characters."
            ));
        }
        if name.chars().any(char::is_control) {
            return Err(format!(
                "Your {label} contains characters that are not allowed."
            ));
        }
        Ok(PersonName(name.to_owned()))
    }
}

impl AsRef<str> for PersonName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// A password that meets the length rules. There are no composition rules
/// (ASVS 5.0 2.1.9). `Debug` is redacted and there is no `Display`, so it cannot
/// end up in a log line or an error by accident.
#[derive(Clone, PartialEq, Eq)]
pub struct Password(String);

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Password(<redacted>)")
    }
}

impl Password {
    pub fn parse(raw: String) -> Result<Self, String> {
        let chars = raw.chars().count();
        if chars < PASSWORD_MIN_CHARS {
            return Err(format!(
                "Use at least {PASSWORD_MIN_CHARS} characters for your password."
            ));
        }
        if chars > PASSWORD_MAX_CHARS {
            return Err(format!(
                "A password can have at most {PASSWORD_MAX_CHARS} characters."
            ));
        }
        Ok(Password(raw))
    }

    /// The plaintext, for hashing only.
    pub fn expose_for_hashing(&self) -> &str {
        &self.0
    }
}

/// A valid sign-up form.
#[derive(Debug, Clone)]
pub struct NewAccount {
    pub first_name: PersonName,
    pub last_name: PersonName,
    pub email: Email,
    pub password: Password,
}

impl NewAccount {
    /// Checks every field and reports every problem at once, each next to its field.
    pub fn parse(
        first_name: &str,
        last_name: &str,
        email: &str,
        password: String,
        age_confirmed: bool,
    ) -> Result<Self, AppError> {
        let mut errors = Vec::new();
        let mut check = |field: &str, result: Result<(), String>| {
            if let Err(message) = result {
                errors.push(FieldError {
                    field: field.to_owned(),
                    message,
                });
            }
        };
        let first = PersonName::parse(first_name, "first name");
        let last = PersonName::parse(last_name, "last name");
        let email = Email::parse(email);
        let password = Password::parse(password);
        check(
            "first_name",
            first.as_ref().map(|_| ()).map_err(Clone::clone),
        );
        check("last_name", last.as_ref().map(|_| ()).map_err(Clone::clone));
        check("email", email.as_ref().map(|_| ()).map_err(Clone::clone));
        check(
            "password",
            password.as_ref().map(|_| ()).map_err(Clone::clone),
        );
        check(
            "age_confirmed",
            if age_confirmed {
                Ok(())
            } else {
                Err("You must be 16 or older to use Enclave.".to_owned())
            },
        );
        match (first, last, email, password) {
            (Ok(first_name), Ok(last_name), Ok(email), Ok(password)) if errors.is_empty() => {
                Ok(NewAccount {
                    first_name,
                    last_name,
                    email,
                    password,
                })
            }
            _ => Err(AppError::Invalid(errors)),
        }
    }
}

/// Where to go after signing in: only a path on this site. Anything else
/// (another host, `//evil`, `/\evil`, a scheme) falls back to the dashboard,
/// so the `next` parameter cannot be used as an open redirect.
pub fn safe_next(next: Option<&str>) -> String {
    const DEFAULT: &str = "/dashboard";
    let Some(next) = next.map(str::trim).filter(|n| !n.is_empty()) else {
        return DEFAULT.to_owned();
    };
    let local = next.starts_with('/')
        && !next.starts_with("//")
        && !next.starts_with("/\\")
        && !next.chars().any(|c| c.is_control() || c == '\\');
    if local {
        next.to_owned()
    } else {
        DEFAULT.to_owned()
    }
}

/// Where sign-up sends the browser: the "check your inbox" page, carrying a
/// safe `next` on to the sign-in it links to.
pub fn check_email_path(next: Option<&str>) -> String {
    match next.map(str::trim).filter(|n| !n.is_empty()) {
        Some(_) => format!(
            "/check-email?next={}",
            crate::ui::encode_component(&safe_next(next))
        ),
        None => "/check-email".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_email_carries_only_a_safe_next() {
        assert_eq!(check_email_path(None), "/check-email");
        assert_eq!(check_email_path(Some(" ")), "/check-email");
        assert_eq!(
            check_email_path(Some("/agents/1?x=y")),
            "/check-email?next=%2Fagents%2F1%3Fx%3Dy"
        );
        assert_eq!(
            check_email_path(Some("https://evil.example/")),
            "/check-email?next=%2Fdashboard"
        );
    }

    #[test]
    fn email_is_trimmed_and_lowercased() {
        let email = Email::parse("  Ada.Lovelace@Example.COM ").unwrap();
        assert_eq!(email.as_ref(), "ada.lovelace@example.com");
    }

    #[test]
    fn malformed_emails_are_refused() {
        for bad in [
            "",
            "   ",
            "ada",
            "ada@",
            "@example.com",
            "ada@example",
            "ada@.example.com",
            "ada@example..com",
            "ada lovelace@example.com",
            "ada@exa mple.com",
            "ada@example.com.",
        ] {
            assert!(Email::parse(bad).is_err(), "{bad:?} was accepted");
        }
        let long = format!("{}@example.com", "a".repeat(250));
        assert!(Email::parse(&long).is_err());
    }

    #[test]
    fn password_length_rules_follow_asvs() {
        assert!(Password::parse("1234567".into()).is_err());
        assert!(Password::parse("12345678".into()).is_ok());
        // No composition rules: eight of one letter is allowed.
        assert!(Password::parse("aaaaaaaa".into()).is_ok());
        // 64 characters must be allowed, and multi-byte characters count once.
        assert!(Password::parse("é".repeat(64)).is_ok());
        assert!(Password::parse("x".repeat(PASSWORD_MAX_CHARS)).is_ok());
        assert!(Password::parse("x".repeat(PASSWORD_MAX_CHARS + 1)).is_err());
        // Seven two-byte characters are still seven characters.
        assert!(Password::parse("é".repeat(7)).is_err());
    }

    #[test]
    fn password_debug_is_redacted() {
        let password = Password::parse("canary-password-123".into()).unwrap();
        assert!(!format!("{password:?}").contains("canary"));
    }

    #[test]
    fn names_are_trimmed_and_bounded() {
        assert_eq!(
            PersonName::parse("  Ada ", "first name").unwrap().as_ref(),
            "Ada"
        );
        assert!(PersonName::parse("   ", "first name").is_err());
        assert!(PersonName::parse(&"a".repeat(101), "first name").is_err());
        assert!(PersonName::parse("Ada\u{0}", "first name").is_err());
    }

    #[test]
    fn new_account_reports_every_bad_field() {
        let err = NewAccount::parse("", "", "nope", "short".into(), false).unwrap_err();
        for field in [
            "first_name",
            "last_name",
            "email",
            "password",
            "age_confirmed",
        ] {
            assert!(err.field_message(field).is_some(), "no message for {field}");
        }
    }

    #[test]
    fn new_account_requires_age_confirmation() {
        let err = NewAccount::parse(
            "Ada",
            "Lovelace",
            "ada@example.com",
            "long enough".into(),
            false,
        )
        .unwrap_err();
        assert_eq!(
            err.field_message("age_confirmed").as_deref(),
            Some("You must be 16 or older to use Enclave.")
        );
        assert!(
            NewAccount::parse(
                "Ada",
                "Lovelace",
                "ada@example.com",
                "long enough".into(),
                true
            )
            .is_ok()
        );
    }

    #[test]
    fn next_is_only_ever_a_local_path() {
        assert_eq!(safe_next(Some("/settings?tab=1")), "/settings?tab=1");
        assert_eq!(safe_next(None), "/dashboard");
        for hostile in [
            "https://evil.example",
            "//evil.example",
            "/\\evil.example",
            "javascript:alert(1)",
            "evil.example",
            "/\tevil",
        ] {
            assert_eq!(safe_next(Some(hostile)), "/dashboard", "{hostile:?}");
        }
    }
}
