//! Accounts and usernames: users, roles, profiles, what the `names` table records about a
//! canonical name, and the rules over them (the name-status rule, the profile limits).
//!
//! The username's canonical form and policy are in [`super::names`].

use serde::{Deserialize, Serialize};

use super::{DomainError, ErrorCode};

/// Longest display name, in characters.
pub const DISPLAY_NAME_CHARS_MAX: usize = 50;
/// Longest profile text, in characters.
pub const BIO_CHARS_MAX: usize = 500;
/// Longest avatar URL, in bytes.
pub const AVATAR_URL_BYTES_MAX: usize = 2_048;
/// The role of an account. The first account a cluster registers is an admin so that a fresh
/// cluster can be administered; every later one is a plain user.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Role {
    /// May administer the cluster and the catalogue.
    Admin,
    /// Everyone else.
    User,
}

/// An account as stored in the `users` table (the password hash lives apart, in `credentials`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    /// Assigned at apply time from a replicated counter, starting at 1.
    pub id: u64,
    /// The name as the user typed it (NFC), shown to others.
    pub username: String,
    /// The canonical form (NFKC, case folded, confusable skeleton) that owns the name.
    pub canonical: String,
    /// Free-form display name.
    pub display_name: String,
    /// Contact e-mail, if given.
    pub email: Option<String>,
    /// Profile text.
    pub bio: String,
    /// Profile picture URL.
    pub avatar_url: Option<String>,
    /// What the account may do.
    pub role: Role,
    /// When the account was created (state machine time).
    pub created_at_ms: i64,
}

/// Profile fields to change; `None` leaves a field as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProfileChange {
    /// New display name.
    pub display_name: Option<String>,
    /// New profile text.
    pub bio: Option<String>,
    /// New avatar URL; an empty string removes it.
    pub avatar_url: Option<String>,
}

/// Most accounts one `importAccounts` call (one log entry) carries.
pub const IMPORT_ACCOUNTS_PER_CALL_MAX: usize = 1_000;

/// An existing account brought in by `importAccounts`, checked and canonicalised before
/// proposing; apply decides only whether its name is free.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImportedAccount {
    /// The name as given (NFC).
    pub username: String,
    /// Its canonical form.
    pub canonical: String,
    /// An argon2id PHC string, checked before proposing (see the schema's `check_password_hash`).
    pub password_hash: String,
    /// Display name.
    pub display_name: String,
    /// E-mail, validated before proposing.
    pub email: Option<String>,
    /// When the account was created where it comes from (ms since the epoch); apply keeps it
    /// unless it is later than the entry's time.
    pub created_at_ms: i64,
}

/// An account an import left out, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SkippedAccount {
    /// Its position in the command's list.
    pub position: u32,
    /// The name as given.
    pub username: String,
    /// Why, as a stable code (`USERNAME_TAKEN`, `USERNAME_INVALID`, ...).
    pub code: ErrorCode,
    /// The sentence that says why.
    pub reason: String,
}

/// What the `names` table knows about a canonical name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum NameRecord {
    /// An account owns it.
    Owned {
        /// The owner.
        user_id: u64,
    },
    /// Held for whoever presents `token`, until `expires_at_ms`.
    Reserved {
        /// The capability.
        token: String,
        /// End of the hold.
        expires_at_ms: i64,
    },
    /// Released by its owner; nobody may take it before `until_ms`.
    Cooldown {
        /// End of the cooldown.
        until_ms: i64,
    },
}

/// Formats state machine time for messages: RFC 3339, UTC, seconds.
pub fn format_ms(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_else(|| format!("{ms} ms after the epoch"))
}

/// The name-status rule: whether a record lets someone holding `token` claim the name at
/// `now_ms`, and if not, the code and the sentence that say why. Apply decides claims with it;
/// the schema's `usernameAvailability` reports with it (its status follows the code), so the two
/// never disagree. Expired holds and cooldowns count as free: apply removes them (a bounded
/// number per entry), and until it has, they read as if they were gone.
pub fn check_claim(record: Option<&NameRecord>, now_ms: i64, token: Option<&str>) -> Result<(), DomainError> {
    match record {
        None => Ok(()),
        Some(NameRecord::Owned { .. }) => Err(DomainError::new(ErrorCode::UsernameTaken, "username is taken")),
        Some(NameRecord::Reserved { token: held, expires_at_ms }) if *expires_at_ms > now_ms => {
            if token == Some(held.as_str()) {
                Ok(())
            } else {
                Err(DomainError::new(
                    ErrorCode::UsernameReserved,
                    format!("username is reserved until {}", format_ms(*expires_at_ms)),
                ))
            }
        }
        Some(NameRecord::Cooldown { until_ms }) if *until_ms > now_ms => Err(DomainError::new(
            ErrorCode::UsernameBlocked,
            format!("username was released recently and is blocked until {}", format_ms(*until_ms)),
        )),
        Some(_) => Ok(()),
    }
}

/// Checks a display name.
pub fn check_display_name(name: &str) -> Result<(), String> {
    let n = name.chars().count();
    if n > DISPLAY_NAME_CHARS_MAX {
        return Err(format!("must be at most {DISPLAY_NAME_CHARS_MAX} characters, got {n}"));
    }
    if name.chars().any(char::is_control) {
        return Err("must not contain control characters".into());
    }
    Ok(())
}

/// Checks a profile change field by field: the first broken rule, as (GraphQL field, message).
/// The schema calls it as a fast path; apply calls it again as the rule.
pub fn check_profile(change: &ProfileChange) -> Result<(), (&'static str, String)> {
    if let Some(name) = &change.display_name {
        check_display_name(name).map_err(|m| ("displayName", m))?;
    }
    if let Some(bio) = &change.bio {
        let n = bio.chars().count();
        if n > BIO_CHARS_MAX {
            return Err(("bio", format!("must be at most {BIO_CHARS_MAX} characters, got {n}")));
        }
    }
    if let Some(url) = change.avatar_url.as_deref().filter(|u| !u.is_empty()) {
        check_avatar_url(url).map_err(|m| ("avatarUrl", m))?;
    }
    Ok(())
}

/// An absolute http(s) URL with a host, no spaces or control characters, of bounded length.
fn check_avatar_url(url: &str) -> Result<(), String> {
    if url.len() > AVATAR_URL_BYTES_MAX {
        return Err(format!("must be at most {AVATAR_URL_BYTES_MAX} bytes, got {}", url.len()));
    }
    let rest = url.strip_prefix("https://").or_else(|| url.strip_prefix("http://"));
    let host = rest.map(|r| r.split(['/', '?', '#']).next().unwrap_or(""));
    let ok = host.is_some_and(|h| !h.is_empty() && !h.starts_with('.') && !h.starts_with(':'))
        && !url.chars().any(|c| c.is_whitespace() || c.is_control());
    if ok {
        Ok(())
    } else {
        Err(format!("{url:?} is not an absolute http(s) URL (https://host/path)"))
    }
}
