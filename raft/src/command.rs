//! Commands (what a log entry asks the state machine to do) and their responses.
//!
//! A command is plain data carrying everything apply needs: values computed before proposing (a
//! canonical name, a password hash, a random token, a cooldown length from the proposer's
//! configuration) travel inside it, so apply is a pure function of the entry and redb. Each
//! command touches the keys of one shard where it can (a canonical name, a user), so the state can
//! later be split across several Raft groups by key.

use serde::{Deserialize, Serialize};

/// The stable error codes of the GraphQL contract that the state machine can decide.
///
/// Business rules are decided at apply time on the committed order; a rejected command is still a
/// committed entry, but it changes nothing and answers with one of these.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ErrorCode {
    /// The caller may not do this.
    Forbidden,
    /// The input broke a rule.
    InvalidInput,
    /// The thing named does not exist.
    NotFound,
    /// The name has an owner.
    UsernameTaken,
    /// The name is held by someone else's reservation.
    UsernameReserved,
    /// The name is reserved by policy or cooling down after a release.
    UsernameBlocked,
    /// The name breaks the username policy.
    UsernameInvalid,
    /// Credentials did not match.
    Unauthenticated,
    /// Not enough stock left for the purchase.
    SoldOut,
    /// The sale is not open (not started yet, or ended).
    SaleNotOpen,
    /// The purchase would exceed the per-user limit.
    LimitExceeded,
}

impl ErrorCode {
    /// The code as it appears in a GraphQL error's `extensions.code`.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::Forbidden => "FORBIDDEN",
            ErrorCode::InvalidInput => "INVALID_INPUT",
            ErrorCode::NotFound => "NOT_FOUND",
            ErrorCode::UsernameTaken => "USERNAME_TAKEN",
            ErrorCode::UsernameReserved => "USERNAME_RESERVED",
            ErrorCode::UsernameBlocked => "USERNAME_BLOCKED",
            ErrorCode::UsernameInvalid => "USERNAME_INVALID",
            ErrorCode::Unauthenticated => "UNAUTHENTICATED",
            ErrorCode::SoldOut => "SOLD_OUT",
            ErrorCode::SaleNotOpen => "SALE_NOT_OPEN",
            ErrorCode::LimitExceeded => "LIMIT_EXCEEDED",
        }
    }
}

/// A rule the state machine refused a command for, with a message that names the rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{message}")]
pub struct DomainError {
    /// The stable code.
    pub code: ErrorCode,
    /// A sentence for humans naming the rule and the values that broke it.
    pub message: String,
}

impl DomainError {
    /// A refusal with `code` and a message.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        DomainError { code, message: message.into() }
    }
}

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

/// What a log entry asks the state machine to do.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Command {
    /// Hold `canonical` for whoever has `token`, until `at + ttl_ms`.
    ReserveUsername {
        /// The name as typed.
        name: String,
        /// Its canonical form, computed before proposing.
        canonical: String,
        /// A random capability generated before proposing; `register` with it may take the name.
        token: String,
        /// How long the hold lasts.
        ttl_ms: i64,
    },
    /// Create an account owning `canonical`.
    Register {
        /// The name as typed (NFC).
        username: String,
        /// Its canonical form, computed before proposing.
        canonical: String,
        /// An argon2id PHC string, computed before proposing.
        password_hash: String,
        /// Display name.
        display_name: String,
        /// E-mail, validated before proposing.
        email: Option<String>,
        /// The token of a reservation of this name, if the caller holds one.
        reservation_token: Option<String>,
    },
    /// Move an account to a new name; the old one cools down for `cooldown_ms`.
    ChangeUsername {
        /// The account.
        user_id: u64,
        /// The new name as typed.
        username: String,
        /// Its canonical form.
        canonical: String,
        /// A reservation of the new name, if held.
        reservation_token: Option<String>,
        /// How long the released name stays blocked (from the proposer's configuration).
        cooldown_ms: i64,
    },
    /// Delete an account; its name cools down for `cooldown_ms`.
    DeleteAccount {
        /// The account.
        user_id: u64,
        /// How long the released name stays blocked.
        cooldown_ms: i64,
    },
    /// Add a product to the catalogue (admin).
    CreateProduct {
        /// Who asks; must be an admin.
        actor: u64,
        /// Name.
        name: String,
        /// Description.
        description: String,
        /// Price in cents.
        price_cents: u64,
    },
    /// Put `stock` units of a product on sale (admin).
    CreateSale {
        /// Who asks; must be an admin.
        actor: u64,
        /// What is sold.
        product_id: u64,
        /// Units offered.
        stock: u64,
        /// Opens by itself at this time, judged by the stamped time of each purchase.
        starts_at_ms: Option<i64>,
        /// Ends by itself at this time.
        ends_at_ms: Option<i64>,
        /// Most units one buyer may hold.
        per_user_limit: u64,
    },
    /// Open a sale now (admin).
    StartSale {
        /// Who asks; must be an admin.
        actor: u64,
        /// The sale.
        sale_id: u64,
    },
    /// Close a sale now (admin).
    EndSale {
        /// Who asks; must be an admin.
        actor: u64,
        /// The sale.
        sale_id: u64,
    },
    /// Buy `quantity` units; all or nothing.
    Purchase {
        /// The buyer.
        user_id: u64,
        /// The sale.
        sale_id: u64,
        /// Units.
        quantity: u64,
        /// The buyer's key: a repeat returns the first order instead of buying again.
        idempotency_key: String,
    },
    /// Change some of an account's profile fields.
    UpdateProfile {
        /// The account; only its owner proposes this.
        user_id: u64,
        /// The fields to change.
        change: ProfileChange,
    },
    /// Create a chat owned by `actor`, who is its first participant.
    CreateChat {
        /// Who asks; becomes the owner.
        actor: u64,
        /// Name.
        name: String,
        /// Other participants (the actor is added anyway; repeats are ignored).
        participant_ids: Vec<u64>,
    },
    /// Add users to a chat (any participant may).
    AddParticipants {
        /// Who asks; must be a participant.
        actor: u64,
        /// The chat.
        chat_id: u64,
        /// Users to add; those already in are ignored.
        user_ids: Vec<u64>,
    },
    /// Remove a participant: the owner may remove anyone, anyone may remove themself.
    RemoveParticipant {
        /// Who asks.
        actor: u64,
        /// The chat.
        chat_id: u64,
        /// Who leaves.
        user_id: u64,
    },
    /// Send a message to a chat.
    SendMessage {
        /// The sender; must be a participant.
        sender_id: u64,
        /// The chat.
        chat_id: u64,
        /// 1 to 4000 characters.
        body: String,
        /// The sender's key: a repeat returns the first message rather than a duplicate.
        client_message_id: String,
    },
    /// `follower` follows `followee` (idempotent; following oneself is refused).
    Follow {
        /// Who follows.
        follower: u64,
        /// Whom.
        followee: u64,
    },
    /// `follower` stops following `followee` (idempotent).
    Unfollow {
        /// Who unfollows.
        follower: u64,
        /// Whom.
        followee: u64,
    },
    /// Post a tweet; hashtags and mentions are extracted at apply.
    PostTweet {
        /// The author.
        author: u64,
        /// 1 to 280 grapheme clusters.
        body: String,
        /// The tweet this replies to, if any.
        reply_to: Option<u64>,
    },
    /// Delete a tweet (its author only) and every index entry that names it.
    DeleteTweet {
        /// Who asks; must be the author.
        actor: u64,
        /// The tweet.
        tweet_id: u64,
    },
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

impl Command {
    /// A short name for logs and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Command::ReserveUsername { .. } => "reserve_username",
            Command::Register { .. } => "register",
            Command::ChangeUsername { .. } => "change_username",
            Command::DeleteAccount { .. } => "delete_account",
            Command::CreateProduct { .. } => "create_product",
            Command::CreateSale { .. } => "create_sale",
            Command::StartSale { .. } => "start_sale",
            Command::EndSale { .. } => "end_sale",
            Command::Purchase { .. } => "purchase",
            Command::UpdateProfile { .. } => "update_profile",
            Command::CreateChat { .. } => "create_chat",
            Command::AddParticipants { .. } => "add_participants",
            Command::RemoveParticipant { .. } => "remove_participant",
            Command::SendMessage { .. } => "send_message",
            Command::Follow { .. } => "follow",
            Command::Unfollow { .. } => "unfollow",
            Command::PostTweet { .. } => "post_tweet",
            Command::DeleteTweet { .. } => "delete_tweet",
        }
    }
}

/// The result of applying one command.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Response {
    /// A reservation was made.
    Reserved {
        /// The capability to present at `register`.
        token: String,
        /// When the hold ends (state machine time, ms since the epoch).
        expires_at_ms: i64,
    },
    /// An account was created or changed; this is its new state.
    User(User),
    /// An account was deleted.
    Deleted {
        /// Its id.
        user_id: u64,
    },
    /// A product was created.
    Product(crate::state_machine::sales::Product),
    /// A sale was created or changed; this is its new state.
    Sale(crate::state_machine::sales::Sale),
    /// A purchase succeeded (or an earlier one with the same idempotency key is returned).
    Order(crate::state_machine::sales::Order),
    /// A chat was created or changed; this is its new state.
    Chat(crate::state_machine::chats::Chat),
    /// A message was sent (or an earlier one with the same client message id is returned).
    Message(crate::state_machine::chats::Message),
    /// A follow or unfollow was applied (or was already in effect); the followee's id.
    Followed {
        /// Whom the command named.
        followee: u64,
    },
    /// A tweet was posted.
    Tweet(crate::state_machine::tweets::Tweet),
    /// A tweet was deleted.
    TweetDeleted {
        /// Its id.
        tweet_id: u64,
    },
    /// The command broke a rule and changed nothing.
    Rejected(DomainError),
}
