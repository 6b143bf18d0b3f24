//! Usernames and accounts: apply functions over the `names`, `users` and `credentials` tables,
//! and the reads the schema needs.
//!
//! Who owns a canonical name is decided here, on the committed order, so two concurrent claims of
//! one name on two nodes resolve the same way everywhere: the first entry wins, the second is
//! rejected with `USERNAME_TAKEN`.

use super::tables::{self, get_json, id_key, put_json, Tables};
use super::SmError;
use crate::command::Response;
use crate::model::accounts::{check_claim, check_profile, ImportedAccount, NameRecord, SkippedAccount};
use crate::model::{DomainError, ErrorCode, ProfileChange, Role, User};
use redb::ReadableTableMetadata;

/// Most expired reservations and cooldowns one log entry's apply removes. Expired records are
/// already free to claim (see [`check_claim`]); removing them keeps the `names` table from
/// growing with every reservation ever made. Bounded so that an entry after a quiet spell does
/// not stall apply; the rest go with the following entries.
pub const NAMES_COLLECTED_PER_ENTRY_MAX: usize = 64;

pub(crate) fn reserve(
    t: &mut Tables,
    now: i64,
    canonical: &str,
    token: String,
    ttl_ms: i64,
) -> Result<Response, SmError> {
    let record: Option<NameRecord> = get_json(&t.names, canonical.as_bytes())?;
    if let Err(e) = check_claim(record.as_ref(), now, None) {
        return Ok(Response::Rejected(e));
    }
    let expires_at_ms = now.saturating_add(ttl_ms);
    put_json(&mut t.names, canonical.as_bytes(), &NameRecord::Reserved { token: token.clone(), expires_at_ms })?;
    expires(t, expires_at_ms, canonical)?;
    Ok(Response::Reserved { token, expires_at_ms })
}

fn expiry_key(at_ms: i64, canonical: &str) -> Vec<u8> {
    let mut key = (at_ms.max(0) as u64).to_be_bytes().to_vec();
    key.extend_from_slice(canonical.as_bytes());
    key
}

/// Notes that the record of `canonical` ends at `at_ms`, for [`collect_expired`].
fn expires(t: &mut Tables, at_ms: i64, canonical: &str) -> Result<(), SmError> {
    t.name_expiry.insert(expiry_key(at_ms, canonical).as_slice(), [].as_slice())?;
    Ok(())
}

/// A cooldown of `canonical` until `until_ms`.
fn cool_down(t: &mut Tables, canonical: &str, until_ms: i64) -> Result<(), SmError> {
    put_json(&mut t.names, canonical.as_bytes(), &NameRecord::Cooldown { until_ms })?;
    expires(t, until_ms, canonical)
}

/// Removes up to [`NAMES_COLLECTED_PER_ENTRY_MAX`] reservations and cooldowns that ended at or
/// before state machine time `now`, oldest first. Deterministic: it depends only on the state
/// and the entry's time, so every node removes the same records at the same index. A record
/// replaced since (a name re-reserved, claimed, or released again) is left alone; only its stale
/// expiry row goes. Returns how many records it removed.
pub(crate) fn collect_expired(t: &mut Tables, now: i64) -> Result<usize, SmError> {
    use redb::ReadableTable as _;
    let end = ((now.max(0) as u64).saturating_add(1)).to_be_bytes();
    let mut due = Vec::new();
    for item in t.name_expiry.range::<&[u8]>(..end.as_slice())?.take(NAMES_COLLECTED_PER_ENTRY_MAX) {
        due.push(item?.0.value().to_vec());
    }
    let mut removed = 0;
    for key in due {
        t.name_expiry.remove(key.as_slice())?;
        let Ok(canonical) = std::str::from_utf8(&key[8..]) else { continue };
        let ended = match get_json::<NameRecord>(&t.names, canonical.as_bytes())? {
            Some(NameRecord::Reserved { expires_at_ms, .. }) => expires_at_ms <= now,
            Some(NameRecord::Cooldown { until_ms }) => until_ms <= now,
            Some(NameRecord::Owned { .. }) | None => false,
        };
        if ended {
            t.names.remove(canonical.as_bytes())?;
            removed += 1;
        }
    }
    Ok(removed)
}

/// The fields of a new account, as carried by `Command::Register`.
pub(crate) struct NewAccount {
    pub username: String,
    pub canonical: String,
    pub password_hash: String,
    pub display_name: String,
    pub email: Option<String>,
    pub reservation_token: Option<String>,
}

pub(crate) fn register(t: &mut Tables, now: i64, a: NewAccount) -> Result<Response, SmError> {
    let record: Option<NameRecord> = get_json(&t.names, a.canonical.as_bytes())?;
    if let Err(e) = check_claim(record.as_ref(), now, a.reservation_token.as_deref()) {
        return Ok(Response::Rejected(e));
    }
    let id = t.counter(tables::COUNTER_NEXT_USER_ID)?.max(1);
    t.set_counter(tables::COUNTER_NEXT_USER_ID, id + 1)?;
    // The first account a cluster ever registers administers it.
    let role = if id == 1 { Role::Admin } else { Role::User };
    let fields = (a.username, a.canonical, a.display_name, a.email);
    Ok(Response::User(create_account(t, id, fields, &a.password_hash, role, now)?))
}

/// Stores a new account under `id` with its password hash, and makes it own its canonical
/// name. The caller has checked the claim and issued the id.
fn create_account(
    t: &mut Tables,
    id: u64,
    (username, canonical, display_name, email): (String, String, String, Option<String>),
    password_hash: &str,
    role: Role,
    created_at_ms: i64,
) -> Result<User, SmError> {
    let user = User {
        id,
        username,
        canonical,
        display_name,
        email,
        bio: String::new(),
        avatar_url: None,
        role,
        created_at_ms,
    };
    put_json(&mut t.users, &id_key(id), &user)?;
    t.credentials.insert(id_key(id).as_slice(), password_hash.as_bytes())?;
    put_json(&mut t.names, user.canonical.as_bytes(), &NameRecord::Owned { user_id: id })?;
    Ok(user)
}

/// Admin commands check the actor's role again at apply: the schema's guard is a fast path.
pub(crate) fn is_admin(t: &Tables, actor: u64) -> Result<bool, SmError> {
    Ok(get_json::<User>(&t.users, &id_key(actor))?.is_some_and(|u| u.role == Role::Admin))
}

/// Creates each account whose name [`check_claim`] lets anyone claim (no reservation token: an
/// import never takes a held name), in the order given, so a name given twice goes to its first
/// occurrence. The rest are skipped with their code and reason; nothing fails the whole entry
/// except a non-admin actor. Imported accounts are plain users whatever their id, keep their
/// `created_at_ms` unless it is later than `now`, and read exactly like registered ones.
pub(crate) fn import_accounts(
    t: &mut Tables,
    now: i64,
    actor: u64,
    accounts: Vec<ImportedAccount>,
) -> Result<Response, SmError> {
    if !is_admin(t, actor)? {
        return Ok(Response::Rejected(DomainError::new(
            ErrorCode::Forbidden,
            "importing accounts needs the ADMIN role",
        )));
    }
    let mut next_id = t.counter(tables::COUNTER_NEXT_USER_ID)?.max(1);
    let mut imported = 0;
    let mut skipped = Vec::new();
    for (position, a) in (0u32..).zip(accounts) {
        let record: Option<NameRecord> = get_json(&t.names, a.canonical.as_bytes())?;
        if let Err(e) = check_claim(record.as_ref(), now, None) {
            skipped.push(SkippedAccount { position, username: a.username, code: e.code, reason: e.message });
            continue;
        }
        let fields = (a.username, a.canonical, a.display_name, a.email);
        create_account(t, next_id, fields, &a.password_hash, Role::User, a.created_at_ms.min(now))?;
        next_id += 1;
        imported += 1;
    }
    t.set_counter(tables::COUNTER_NEXT_USER_ID, next_id)?;
    Ok(Response::Imported { imported, skipped })
}

pub(crate) fn update_profile(t: &mut Tables, user_id: u64, change: ProfileChange) -> Result<Response, SmError> {
    if let Err((field, m)) = check_profile(&change) {
        return Ok(Response::Rejected(DomainError::new(ErrorCode::InvalidInput, format!("{field}: {m}"))));
    }
    let Some(mut user) = get_json::<User>(&t.users, &id_key(user_id))? else {
        return Ok(not_found(user_id));
    };
    if let Some(name) = change.display_name {
        user.display_name = name;
    }
    if let Some(bio) = change.bio {
        user.bio = bio;
    }
    if let Some(url) = change.avatar_url {
        user.avatar_url = (!url.is_empty()).then_some(url);
    }
    put_json(&mut t.users, &id_key(user_id), &user)?;
    Ok(Response::User(user))
}

fn not_found(user_id: u64) -> Response {
    Response::Rejected(DomainError::new(ErrorCode::NotFound, format!("no user with id {user_id}")))
}

pub(crate) fn change_username(
    t: &mut Tables,
    now: i64,
    user_id: u64,
    username: String,
    canonical: String,
    token: Option<String>,
    cooldown_ms: i64,
) -> Result<Response, SmError> {
    let Some(mut user) = get_json::<User>(&t.users, &id_key(user_id))? else {
        return Ok(not_found(user_id));
    };
    if canonical != user.canonical {
        let record: Option<NameRecord> = get_json(&t.names, canonical.as_bytes())?;
        if let Err(e) = check_claim(record.as_ref(), now, token.as_deref()) {
            return Ok(Response::Rejected(e));
        }
        cool_down(t, &user.canonical, now.saturating_add(cooldown_ms))?;
        put_json(&mut t.names, canonical.as_bytes(), &NameRecord::Owned { user_id })?;
        user.canonical = canonical;
    }
    // Same canonical form: only the spelling changes (say `alice` to `Alice`), and the name
    // never leaves its owner.
    user.username = username;
    put_json(&mut t.users, &id_key(user_id), &user)?;
    Ok(Response::User(user))
}

/// Deletes an account, in this one command's apply so no node ever shows half of it:
/// - the account and its password hash go; its name cools down for `cooldown_ms`, then is free;
/// - its follows go both ways and its tweets with every index entry ([`super::tweets::forget_account`]);
/// - it leaves every chat, ownership passing on ([`super::chats::leave_all`]); its messages stay;
/// - its orders, buyer totals and leaderboard rows stay: sales are accounting, and stock + sold
///   must keep adding up; they show a null user.
///
/// Ids are never reused, so rows that keep the id (messages, orders) never name a newcomer.
pub(crate) fn delete_account(t: &mut Tables, now: i64, user_id: u64, cooldown_ms: i64) -> Result<Response, SmError> {
    let Some(user) = get_json::<User>(&t.users, &id_key(user_id))? else {
        return Ok(not_found(user_id));
    };
    t.users.remove(id_key(user_id).as_slice())?;
    t.credentials.remove(id_key(user_id).as_slice())?;
    cool_down(t, &user.canonical, now.saturating_add(cooldown_ms))?;
    super::tweets::forget_account(t, user_id)?;
    super::chats::leave_all(t, user_id)?;
    t.emit(crate::events::ACCOUNTS_TOPIC.to_string(), now, crate::events::EventPayload::AccountDeleted { user_id });
    Ok(Response::Deleted { user_id })
}

/// Reads of this domain on a consistent snapshot of the state.
impl super::ReadView {
    /// The account with this id.
    pub fn user(&self, id: u64) -> Result<Option<User>, SmError> {
        let table = self.txn.open_table(tables::USERS)?;
        get_json(&table, &id_key(id))
    }

    /// What the `names` table holds for a canonical name.
    pub fn name_record(&self, canonical: &str) -> Result<Option<NameRecord>, SmError> {
        let table = self.txn.open_table(tables::NAMES)?;
        get_json(&table, canonical.as_bytes())
    }

    /// The account owning a canonical name.
    pub fn user_by_canonical(&self, canonical: &str) -> Result<Option<User>, SmError> {
        match self.name_record(canonical)? {
            Some(NameRecord::Owned { user_id }) => self.user(user_id),
            _ => Ok(None),
        }
    }

    /// The password hash (argon2id PHC string) of an account.
    pub fn password_hash(&self, user_id: u64) -> Result<Option<String>, SmError> {
        let table = self.txn.open_table(tables::CREDENTIALS)?;
        Ok(table.get(id_key(user_id).as_slice())?.map(|v| String::from_utf8_lossy(v.value()).into_owned()))
    }

    /// How many accounts exist, counted without a scan.
    pub fn user_count(&self) -> Result<u64, SmError> {
        let table = self.txn.open_table(tables::USERS)?;
        Ok(table.len()?)
    }
}
