//! Signing up and signing in the accounts the scenarios act as: buyers, authors, viewers, the
//! subscribers' account, and the admin that creates products and sales.

use std::sync::Arc;

use anyhow::{bail, Context};
use client::{AuthPayload, Client, ClientError, RegisterInput};

/// How many accounts are registered at once. Registration hashes the password, which is slow on
/// purpose, so a handful in flight keeps every node's hashing busy without queueing thousands.
pub(crate) const SIGNUP_PARALLELISM_REQUESTS: usize = 16;

/// The error code of a wrong username or password, and of a missing or expired token.
pub(crate) const UNAUTHENTICATED_CODE: &str = "UNAUTHENTICATED";

/// The error code of a registration whose username exists.
const USERNAME_TAKEN_CODE: &str = "USERNAME_TAKEN";

/// The role the first account of a cluster gets.
const ADMIN_ROLE: &str = "ADMIN";

/// Registers `username`, or signs it in if it exists. A rerun with the same names, and a
/// registration retried after its first answer was lost, both end signed in this way.
pub(crate) async fn register_or_login(
    client: &Client,
    node: usize,
    username: &str,
    password: &str,
) -> Result<AuthPayload, ClientError> {
    let input = RegisterInput { username: username.to_owned(), password: password.to_owned(), ..Default::default() };
    match client.register(node, &input).await {
        Err(e) if e.code() == USERNAME_TAKEN_CODE => client.login(node, username, password).await,
        result => result,
    }
}

/// Signs the admin in, registering it when it cannot sign in, and checks that it is ADMIN.
pub(crate) async fn sign_in_admin(client: &Client, username: &str, password: &str) -> anyhow::Result<Arc<str>> {
    let auth = match client.login(0, username, password).await {
        Ok(auth) => auth,
        Err(e) if e.code() == UNAUTHENTICATED_CODE => {
            eprintln!("admin {username:?} cannot sign in; registering it");
            match register_or_login(client, 0, username, password).await {
                Ok(auth) => auth,
                Err(e) if e.code() == UNAUTHENTICATED_CODE => {
                    bail!("admin {username:?} exists but --admin-password is not its password")
                }
                Err(e) => return Err(e).with_context(|| format!("registering admin {username:?}")),
            }
        }
        Err(e) => return Err(e).with_context(|| format!("signing in admin {username:?}")),
    };
    match auth.user.role.as_deref() {
        Some(ADMIN_ROLE) => Ok(auth.token.into()),
        role => bail!(
            "account {username:?} has role {}, not {ADMIN_ROLE}: the admin account must be the first account \
             this cluster ever registered (pass that account, or start from a fresh cluster)",
            role.unwrap_or("(none)")
        ),
    }
}
