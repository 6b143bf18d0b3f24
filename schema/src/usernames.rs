//! Usernames: availability with suggestions, and short reservations.

use async_graphql::{Context, Enum, Error, Object, SimpleObject};
use chrono::{DateTime, Utc};
use raft::model::accounts::check_claim;
use raft::model::names::{self, NameError};
use raft::{Command, Consistency as StoreConsistency, ErrorCode, ReadView, Response, SmError};

use crate::error::{api_error, code, invalid};
use crate::{ms_to_datetime, now_ms, random_token, ApiContext, Consistency};

/// Suggestions returned with a name that is not available.
pub const SUGGESTIONS_MAX: usize = 5;
/// Default and bounds of a reservation's length.
pub const RESERVATION_TTL_DEFAULT_SECS: i32 = 300;
/// See [`RESERVATION_TTL_DEFAULT_SECS`].
pub const RESERVATION_TTL_MAX_SECS: i32 = 3_600;
/// Longest input looked at; longer input is INVALID without further work.
pub const USERNAME_INPUT_BYTES_MAX: usize = 256;

/// Whether a name can be registered now.
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
pub enum UsernameStatus {
    /// Free to reserve or register.
    Available,
    /// An account owns it (or a look-alike of it).
    Taken,
    /// Held by someone's reservation.
    Reserved,
    /// A reserved word, or released recently and cooling down.
    Blocked,
    /// Breaks the policy (length, characters, mixed scripts).
    Invalid,
}

/// The answer to `usernameAvailability`.
#[derive(SimpleObject, Debug, Clone)]
pub struct UsernameAvailability {
    /// The name as asked.
    pub name: String,
    /// Its canonical form (NFKC, case folded, confusable skeleton); look-alikes share it.
    pub canonical: String,
    /// The verdict.
    pub status: UsernameStatus,
    /// Why it is not available, for humans.
    pub reason: Option<String>,
    /// Available alternatives, checked against the state, when the name is not available.
    pub suggestions: Vec<String>,
    /// The applied log index the answer was read at.
    pub applied_index: u64,
}

/// The answer to `reserveUsername`.
#[derive(SimpleObject, Debug, Clone)]
pub struct Reservation {
    /// The name held.
    pub name: String,
    /// Present it as `reservationToken` to `register` before `expiresAt`.
    pub token: String,
    /// When the hold ends.
    pub expires_at: DateTime<Utc>,
}

/// The verdict on one name in one consistent view of the state.
pub(crate) fn status_of(view: &ReadView, name: &str, now: i64) -> Result<(UsernameStatus, Option<String>), SmError> {
    let canonical = names::canonical(name);
    if canonical.is_empty() {
        return Ok((UsernameStatus::Invalid, Some(NameError::Empty.to_string())));
    }
    // Ownership first: a look-alike of a taken name is TAKEN even if it breaks the policy
    // (`аlice` in Cyrillic mixes scripts, yet what a user needs to hear is that alice is taken).
    // The record's verdict is the rule apply claims by, so the two never disagree.
    let record = view.name_record(&canonical)?;
    if let Err(e) = check_claim(record.as_ref(), now, None) {
        let status = match e.code {
            ErrorCode::UsernameTaken => UsernameStatus::Taken,
            ErrorCode::UsernameReserved => UsernameStatus::Reserved,
            _ => UsernameStatus::Blocked,
        };
        return Ok((status, Some(e.message)));
    }
    Ok(match names::validate(name) {
        Ok(()) => (UsernameStatus::Available, None),
        Err(e @ NameError::Reserved { .. }) => (UsernameStatus::Blocked, Some(e.to_string())),
        Err(e) => (UsernameStatus::Invalid, Some(e.to_string())),
    })
}

/// The code of a policy refusal, as `register`, `reserveUsername` and `changeUsername` answer
/// it: a reserved word is blocked, everything else invalid.
fn policy_code(e: &NameError) -> &'static str {
    match e {
        NameError::Reserved { .. } => code::USERNAME_BLOCKED,
        _ => code::USERNAME_INVALID,
    }
}

/// Validates a name to be claimed and returns (NFKC display form, canonical form).
pub(crate) fn claimable(name: &str) -> Result<(String, String), Error> {
    claim_form(name).map_err(|(c, m)| api_error(c, m))
}

/// [`claimable`] with the refusal as (code, sentence), for `importAccounts`, which skips such a
/// name rather than fail the call.
pub(crate) fn claim_form(name: &str) -> Result<(String, String), (&'static str, String)> {
    if name.len() > USERNAME_INPUT_BYTES_MAX {
        return Err((code::USERNAME_INVALID, format!("username must be at most {USERNAME_INPUT_BYTES_MAX} bytes")));
    }
    names::validate(name).map_err(|e| (policy_code(&e), e.to_string()))?;
    Ok((names::normalize(name), names::canonical(name)))
}

/// Usernames' queries.
#[derive(Default)]
pub struct UsernameQuery;

#[Object]
impl UsernameQuery {
    /// Whether `name` can be registered now, and if not, why, with available alternatives.
    async fn username_availability(
        &self,
        ctx: &Context<'_>,
        name: String,
        #[graphql(desc = "Default LINEARIZABLE.")] consistency: Option<Consistency>,
    ) -> Result<UsernameAvailability, Error> {
        let consistency = consistency.unwrap_or(Consistency::Linearizable);
        if name.len() > USERNAME_INPUT_BYTES_MAX {
            return Err(invalid("name", format!("must be at most {USERNAME_INPUT_BYTES_MAX} bytes")));
        }
        let now = now_ms();
        let read = crate::applied::read_indexed(ctx, consistency.into(), |view| {
            let (status, reason) = status_of(view, &name, now)?;
            let mut suggestions = Vec::new();
            if status != UsernameStatus::Available {
                // The salt varies suggestions between askers without any randomness in apply.
                for candidate in names::suggestion_candidates(&name, now as u64 / 1000) {
                    if status_of(view, &candidate, now)?.0 == UsernameStatus::Available {
                        suggestions.push(candidate);
                        if suggestions.len() == SUGGESTIONS_MAX {
                            break;
                        }
                    }
                }
            }
            Ok((status, reason, suggestions))
        })
        .await?;
        let (status, reason, suggestions) = read.value;
        Ok(UsernameAvailability {
            canonical: names::canonical(&name),
            name,
            status,
            reason,
            suggestions,
            applied_index: read.applied_index,
        })
    }
}

/// Usernames' mutations.
#[derive(Default)]
pub struct UsernameMutation;

#[Object]
impl UsernameMutation {
    /// Holds `name` for `ttlSeconds` (default 300, at most 3600): others see RESERVED, and
    /// `register` with the returned token may take it.
    async fn reserve_username(
        &self,
        ctx: &Context<'_>,
        name: String,
        // Nullable, not `Int! = 300`: a client that declares `$ttl: Int` and leaves it unset
        // sends no value, which async-graphql passes on as null rather than as "absent", and
        // the default must apply then too.
        ttl_seconds: Option<i32>,
    ) -> Result<Reservation, Error> {
        let ttl_seconds = ttl_seconds.unwrap_or(RESERVATION_TTL_DEFAULT_SECS);
        if !(1..=RESERVATION_TTL_MAX_SECS).contains(&ttl_seconds) {
            return Err(invalid("ttlSeconds", format!("must be 1 to {RESERVATION_TTL_MAX_SECS}, got {ttl_seconds}")));
        }
        let (display, canonical) = claimable(&name)?;
        let api = ctx.data::<ApiContext>()?;
        if let Some(client) = ctx.data_opt::<crate::ClientKey>() {
            api.reservations.take(*client).map_err(|retry_after_ms| {
                crate::limits::rate_limited(
                    format!(
                        "this client made {} reservations within the hour; retry in {retry_after_ms} ms",
                        api.config.reservations_per_client_per_hour
                    ),
                    retry_after_ms,
                )
            })?;
        }
        let token = random_token();
        let cmd =
            Command::ReserveUsername { name: display.clone(), canonical, token, ttl_ms: i64::from(ttl_seconds) * 1000 };
        crate::applied::write(ctx, cmd, |r| match r {
            Response::Reserved { token, expires_at_ms } => {
                Some(Reservation { name: display, token, expires_at: ms_to_datetime(expires_at_ms) })
            }
            _ => None,
        })
        .await
    }
}

impl From<Consistency> for StoreConsistency {
    fn from(c: Consistency) -> Self {
        match c {
            Consistency::Linearizable => StoreConsistency::Linearizable,
            Consistency::Local => StoreConsistency::Local,
        }
    }
}
