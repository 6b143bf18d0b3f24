//! Accounts: register, login, the viewer, users by id or name, renames and deletion.

use async_graphql::{Context, Enum, Error, InputObject, Object, SimpleObject, ID};
use chrono::{DateTime, Utc};
use raft::model::accounts::{check_profile, ImportedAccount, IMPORT_ACCOUNTS_PER_CALL_MAX};
use raft::{
    model::names, Command, Consistency as StoreConsistency, ProfileChange, Response, Role as StoreRole,
    User as StoredUser,
};

use crate::auth::{self, viewer};
use crate::error::{api_error, code, invalid};
use crate::limits::{rate_limited, ClientKey};
use crate::usernames::{claim_form, claimable, status_of, UsernameStatus, USERNAME_INPUT_BYTES_MAX};
use crate::{ms_to_datetime, now_ms, ApiContext, Consistency};

/// Password length bounds, in characters. The upper bound caps hashing cost per request.
pub const PASSWORD_CHARS_MIN: usize = 8;
/// See [`PASSWORD_CHARS_MIN`].
pub const PASSWORD_CHARS_MAX: usize = 128;
/// Longest password in bytes: 128 characters of up to 4 bytes. Checked before characters are
/// counted or anything is hashed.
pub const PASSWORD_BYTES_MAX: usize = PASSWORD_CHARS_MAX * 4;
/// Longest display name, in characters (the state machine's rule).
pub const DISPLAY_NAME_CHARS_MAX: usize = raft::model::accounts::DISPLAY_NAME_CHARS_MAX;
/// Longest e-mail address, in bytes (RFC 5321).
pub const EMAIL_BYTES_MAX: usize = 254;

/// What an account may do.
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
pub enum Role {
    /// Administers the cluster and the catalogue.
    Admin,
    /// Everyone else.
    User,
}

/// An account as others see it; `email` only to its owner and admins.
#[derive(Debug, Clone)]
pub struct UserObject {
    pub(crate) user: StoredUser,
    pub(crate) show_private: bool,
}

#[Object(name = "User")]
impl UserObject {
    async fn id(&self) -> ID {
        ID(self.user.id.to_string())
    }
    async fn username(&self) -> &str {
        &self.user.username
    }
    async fn display_name(&self) -> &str {
        &self.user.display_name
    }
    async fn bio(&self) -> &str {
        &self.user.bio
    }
    async fn avatar_url(&self) -> Option<&str> {
        self.user.avatar_url.as_deref()
    }
    async fn role(&self) -> Role {
        match self.user.role {
            StoreRole::Admin => Role::Admin,
            StoreRole::User => Role::User,
        }
    }
    async fn created_at(&self) -> DateTime<Utc> {
        ms_to_datetime(self.user.created_at_ms)
    }
    /// Accounts following this one.
    async fn follower_count(&self, ctx: &Context<'_>) -> Result<u64, Error> {
        Ok(follow_counts(ctx, self.user.id).await?.1)
    }
    /// Accounts this one follows.
    async fn following_count(&self, ctx: &Context<'_>) -> Result<u64, Error> {
        Ok(follow_counts(ctx, self.user.id).await?.0)
    }
    /// Visible to the account itself and to admins; null for everyone else.
    async fn email(&self) -> Option<&str> {
        if self.show_private {
            self.user.email.as_deref()
        } else {
            None
        }
    }
}

/// (following, followers) of a user, from this node's state.
async fn follow_counts(ctx: &Context<'_>, user: u64) -> Result<(u64, u64), Error> {
    crate::applied::read(ctx, StoreConsistency::Local, |v| v.follow_counts(user)).await
}

/// A signed-in session.
#[derive(SimpleObject)]
pub struct AuthPayload {
    /// Send as `Authorization: Bearer <token>`.
    pub token: String,
    /// The account.
    pub user: UserObject,
}

/// The fields of a new account.
#[derive(InputObject)]
pub struct RegisterInput {
    /// 3 to 30 letters, digits, '_' or '.', one script; look-alikes of taken names are taken.
    pub username: String,
    /// 8 to 128 characters.
    #[graphql(secret)]
    pub password: String,
    /// Shown beside the username; defaults to it.
    pub display_name: Option<String>,
    /// Optional contact address.
    pub email: Option<String>,
    /// The token of a reservation of this username, if the caller holds one.
    #[graphql(secret)]
    pub reservation_token: Option<String>,
}

/// An existing account to bring in with `importAccounts`.
#[derive(InputObject)]
pub struct ImportAccountInput {
    /// Claimed by the rules of `register`; a name that cannot be claimed is skipped.
    pub username: String,
    /// An argon2id PHC string, `$argon2id$v=19$m=…,t=…,p=…$salt$hash`, that `login` verifies;
    /// at most 64 MiB and three passes' worth of work per verification.
    #[graphql(secret)]
    pub password_hash: String,
    /// Defaults to the username.
    pub display_name: Option<String>,
    /// Optional contact address.
    pub email: Option<String>,
    /// When the account was created where it comes from; defaults to now. Not in the future.
    pub created_at: Option<DateTime<Utc>>,
}

/// What an `importAccounts` call did.
#[derive(SimpleObject)]
pub struct ImportAccountsPayload {
    /// Accounts created.
    pub imported: u64,
    /// Accounts left out, in the order given, each with its reason.
    pub skipped: Vec<SkippedAccount>,
}

/// An account an import left out.
#[derive(SimpleObject)]
pub struct SkippedAccount {
    /// The name as given.
    pub username: String,
    /// Why, as a stable code: USERNAME_TAKEN (also a name given twice in one call, or already
    /// imported), USERNAME_RESERVED, USERNAME_BLOCKED or USERNAME_INVALID.
    pub code: String,
    /// The sentence that says why.
    pub reason: String,
}

/// Profile fields to change; omitted fields stay as they are.
#[derive(InputObject)]
pub struct UpdateProfileInput {
    /// Up to 50 characters.
    pub display_name: Option<String>,
    /// Up to 500 characters.
    pub bio: Option<String>,
    /// An absolute http(s) URL, up to 2048 bytes; "" removes it.
    pub avatar_url: Option<String>,
}

fn check_password(password: &str) -> Result<(), Error> {
    if password.len() > PASSWORD_BYTES_MAX {
        return Err(invalid("password", format!("must be at most {PASSWORD_BYTES_MAX} bytes")));
    }
    let n = password.chars().count();
    if !(PASSWORD_CHARS_MIN..=PASSWORD_CHARS_MAX).contains(&n) {
        return Err(invalid(
            "password",
            format!("must be {PASSWORD_CHARS_MIN} to {PASSWORD_CHARS_MAX} characters, got {n}"),
        ));
    }
    Ok(())
}

fn check_display_name(field: &str, name: &str) -> Result<(), Error> {
    raft::model::accounts::check_display_name(name).map_err(|m| invalid(field, m))
}

fn check_email(field: &str, email: &str) -> Result<(), Error> {
    let ok = email.len() <= EMAIL_BYTES_MAX
        && !email.chars().any(|c| c.is_whitespace() || c.is_control())
        && match email.split_once('@') {
            Some((local, domain)) => {
                !local.is_empty() && domain.contains('.') && !domain.starts_with('.') && !domain.ends_with('.')
            }
            None => false,
        };
    if ok {
        Ok(())
    } else {
        Err(invalid(
            field,
            format!("{email:?} is not an e-mail address (name@domain.tld, at most {EMAIL_BYTES_MAX} bytes)"),
        ))
    }
}

/// A name's verdict on this node's state, to refuse hopeless claims before paying for a hash.
/// Only a fast path: the state machine decides again on the committed order.
async fn precheck(ctx: &Context<'_>, name: &str) -> Result<(), Error> {
    let now = now_ms();
    let (status, reason) = crate::applied::read(ctx, StoreConsistency::Local, |v| status_of(v, name, now)).await?;
    let reason = reason.unwrap_or_default();
    match status {
        UsernameStatus::Taken => Err(api_error(code::USERNAME_TAKEN, reason)),
        // A reserved name may be the caller's own reservation: let apply decide.
        UsernameStatus::Available | UsernameStatus::Reserved => Ok(()),
        UsernameStatus::Blocked => Err(api_error(code::USERNAME_BLOCKED, reason)),
        UsernameStatus::Invalid => Err(api_error(code::USERNAME_INVALID, reason)),
    }
}

/// Proposes a command that answers with the user it changed.
async fn write_user(ctx: &Context<'_>, cmd: Command) -> Result<StoredUser, Error> {
    crate::applied::write(ctx, cmd, |r| match r {
        Response::User(u) => Some(u),
        _ => None,
    })
    .await
}

/// Account queries.
#[derive(Default)]
pub struct AccountQuery;

#[Object]
impl AccountQuery {
    /// The signed-in account.
    async fn viewer(&self, ctx: &Context<'_>) -> Result<UserObject, Error> {
        let user = viewer(ctx).await?;
        Ok(UserObject { user, show_private: true })
    }

    /// An account by `id` or by `username` (any look-alike spelling finds it). Exactly one.
    async fn user(
        &self,
        ctx: &Context<'_>,
        id: Option<ID>,
        username: Option<String>,
        #[graphql(desc = "Default LOCAL.")] consistency: Option<Consistency>,
    ) -> Result<Option<UserObject>, Error> {
        let consistency = consistency.unwrap_or(Consistency::Local);
        let found = match (id, username) {
            (Some(id), None) => {
                let id: u64 = id.parse().map_err(|_| invalid("id", format!("{:?} is not a user id", id.0)))?;
                crate::applied::read(ctx, consistency.into(), |v| v.user(id)).await?
            }
            (None, Some(name)) => {
                let canonical = names::canonical(&name);
                crate::applied::read(ctx, consistency.into(), |v| v.user_by_canonical(&canonical)).await?
            }
            _ => return Err(invalid("user", "give exactly one of id and username")),
        };
        let Some(user) = found else { return Ok(None) };
        let show_private = match auth::viewer(ctx).await {
            Ok(v) => v.id == user.id || v.role == StoreRole::Admin,
            Err(_) => false,
        };
        Ok(Some(UserObject { user, show_private }))
    }
}

/// Account mutations.
#[derive(Default)]
pub struct AccountMutation;

#[Object]
impl AccountMutation {
    /// Creates an account and signs it in. The first account of a cluster is an ADMIN.
    async fn register(&self, ctx: &Context<'_>, input: RegisterInput) -> Result<AuthPayload, Error> {
        let api = ctx.data::<ApiContext>()?;
        let (username, canonical) = claimable(&input.username)?;
        check_password(&input.password)?;
        let display_name = input.display_name.unwrap_or_else(|| username.clone());
        check_display_name("displayName", &display_name)?;
        if let Some(email) = &input.email {
            check_email("email", email)?;
        }
        precheck(ctx, &input.username).await?;
        let password_hash = api.auth.hash(ctx.data_opt::<ClientKey>().copied(), input.password).await?;
        let cmd = Command::Register {
            username,
            canonical,
            password_hash,
            display_name,
            email: input.email,
            reservation_token: input.reservation_token,
        };
        let user = write_user(ctx, cmd).await?;
        let token = api.auth.issue(&user)?;
        Ok(AuthPayload { token, user: UserObject { user, show_private: true } })
    }

    /// Brings in existing accounts (ADMIN), at most 1,000 per call, as one log entry. Each name
    /// is claimed by the rules of `register` (canonical form, policy, uniqueness; no reservation
    /// is taken), in the order given; a name that cannot be claimed is skipped with its code and
    /// reason. A malformed password hash, display name, e-mail or date fails the whole call with
    /// INVALID_INPUT naming `accounts[i].field`, and nothing is imported. Imported accounts are
    /// plain users and sign in with `login` and their old password. Safe to repeat: accounts
    /// already imported are skipped as USERNAME_TAKEN.
    async fn import_accounts(
        &self,
        ctx: &Context<'_>,
        accounts: Vec<ImportAccountInput>,
    ) -> Result<ImportAccountsPayload, Error> {
        let me = auth::admin(ctx).await?;
        if accounts.len() > IMPORT_ACCOUNTS_PER_CALL_MAX {
            return Err(invalid(
                "accounts",
                format!("at most {IMPORT_ACCOUNTS_PER_CALL_MAX} accounts per call, got {}", accounts.len()),
            ));
        }
        let now = now_ms();
        let mut skipped = Vec::new();
        let mut list = Vec::with_capacity(accounts.len());
        // The position in `accounts` of each entry of `list`.
        let mut positions = Vec::with_capacity(accounts.len());
        for (i, a) in accounts.into_iter().enumerate() {
            let at = |field: &str| format!("accounts[{i}].{field}");
            auth::check_password_hash(&a.password_hash).map_err(|m| invalid(&at("passwordHash"), m))?;
            if let Some(name) = &a.display_name {
                check_display_name(&at("displayName"), name)?;
            }
            if let Some(email) = &a.email {
                check_email(&at("email"), email)?;
            }
            let created_at_ms = match a.created_at {
                Some(t) if t.timestamp_millis() > now => {
                    return Err(invalid(&at("createdAt"), format!("{t} is in the future")));
                }
                Some(t) if t.timestamp_millis() < 0 => {
                    return Err(invalid(&at("createdAt"), format!("{t} is before 1970")));
                }
                Some(t) => t.timestamp_millis(),
                None => now,
            };
            match claim_form(&a.username) {
                Ok((username, canonical)) => {
                    positions.push(i);
                    list.push(ImportedAccount {
                        display_name: a.display_name.unwrap_or_else(|| username.clone()),
                        username,
                        canonical,
                        password_hash: a.password_hash,
                        email: a.email,
                        created_at_ms,
                    });
                }
                Err((code, reason)) => {
                    skipped.push((i, SkippedAccount { username: a.username, code: code.into(), reason }))
                }
            }
        }
        let (imported, refused) = if list.is_empty() {
            (0, Vec::new())
        } else {
            let cmd = Command::ImportAccounts { actor: me.id, accounts: list };
            crate::applied::write(ctx, cmd, |r| match r {
                Response::Imported { imported, skipped } => Some((imported, skipped)),
                _ => None,
            })
            .await?
        };
        for s in refused {
            let i = positions.get(s.position as usize).copied().unwrap_or(usize::MAX);
            skipped.push((i, SkippedAccount { username: s.username, code: s.code.as_str().into(), reason: s.reason }));
        }
        skipped.sort_by_key(|(i, _)| *i);
        Ok(ImportAccountsPayload { imported, skipped: skipped.into_iter().map(|(_, s)| s).collect() })
    }

    /// Signs in. An unknown user and a wrong password get the same answer, in the same time.
    async fn login(
        &self,
        ctx: &Context<'_>,
        username: String,
        #[graphql(secret)] password: String,
    ) -> Result<AuthPayload, Error> {
        let api = ctx.data::<ApiContext>()?;
        if password.len() > PASSWORD_BYTES_MAX || username.len() > USERNAME_INPUT_BYTES_MAX {
            return Err(api_error(code::UNAUTHENTICATED, "invalid username or password"));
        }
        let canonical = names::canonical(&username);
        // Refused before the password is looked at: see LoginThrottle.
        let client = ctx.data_opt::<ClientKey>().copied();
        let throttle_key = client.unwrap_or(ClientKey::of(std::net::Ipv4Addr::UNSPECIFIED.into()));
        if let Err(retry_after_ms) = api.logins.check(&canonical, throttle_key) {
            return Err(rate_limited(
                format!("too many failed sign-ins to this account; retry in {retry_after_ms} ms"),
                retry_after_ms,
            ));
        }
        let found =
            crate::applied::read(ctx, StoreConsistency::Linearizable, |v| match v.user_by_canonical(&canonical)? {
                Some(u) => {
                    let hash = v.password_hash(u.id)?;
                    Ok(Some((u, hash)))
                }
                None => Ok(None),
            })
            .await?;
        let (user, hash) = match found {
            Some((u, h)) => (Some(u), h),
            None => (None, None),
        };
        let matched = api.auth.verify_password(client, password, hash).await?;
        api.logins.record(&canonical, throttle_key, matched);
        if !matched {
            return Err(api_error(code::UNAUTHENTICATED, "invalid username or password"));
        }
        let user = user.ok_or_else(|| api_error(code::UNAUTHENTICATED, "invalid username or password"))?;
        let token = api.auth.issue(&user)?;
        Ok(AuthPayload { token, user: UserObject { user, show_private: true } })
    }

    /// Moves the viewer to `newName`. The old name is blocked for the cooldown, then free.
    async fn change_username(
        &self,
        ctx: &Context<'_>,
        new_name: String,
        #[graphql(secret)] reservation_token: Option<String>,
    ) -> Result<UserObject, Error> {
        let api = ctx.data::<ApiContext>()?;
        let me = viewer(ctx).await?;
        let (username, canonical) = claimable(&new_name)?;
        let cmd = Command::ChangeUsername {
            user_id: me.id,
            username,
            canonical,
            reservation_token,
            cooldown_ms: api.config.username_cooldown_secs.saturating_mul(1000),
        };
        let user = write_user(ctx, cmd).await?;
        Ok(UserObject { user, show_private: true })
    }

    /// Changes the viewer's own profile. Each field is checked (INVALID_INPUT names the field).
    async fn update_profile(&self, ctx: &Context<'_>, input: UpdateProfileInput) -> Result<UserObject, Error> {
        let me = viewer(ctx).await?;
        let change = ProfileChange { display_name: input.display_name, bio: input.bio, avatar_url: input.avatar_url };
        check_profile(&change).map_err(|(field, m)| invalid(field, m))?;
        let user = write_user(ctx, Command::UpdateProfile { user_id: me.id, change }).await?;
        Ok(UserObject { user, show_private: true })
    }

    /// Deletes the viewer's account, all in one command. Its name is blocked for the cooldown,
    /// then free. Its follows (both ways) and its tweets go, from every timeline, hashtag and
    /// search; it leaves its chats (ownership passes to the lowest remaining id) and its messages
    /// stay with a null `sender`; its orders stay for accounting with a null `user`.
    async fn delete_account(&self, ctx: &Context<'_>) -> Result<bool, Error> {
        let api = ctx.data::<ApiContext>()?;
        let me = viewer(ctx).await?;
        let cmd = Command::DeleteAccount {
            user_id: me.id,
            cooldown_ms: api.config.username_cooldown_secs.saturating_mul(1000),
        };
        crate::applied::write(ctx, cmd, |r| match r {
            Response::Deleted { .. } => Some(true),
            _ => None,
        })
        .await
    }
}
