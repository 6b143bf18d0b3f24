//! Commands (what a log entry asks the state machine to do) and their responses.
//!
//! A command is plain data carrying everything apply needs: values computed before proposing (a
//! canonical name, a password hash, a random token, a cooldown length from the proposer's
//! configuration) travel inside it, so apply is a pure function of the entry and redb. Each
//! command touches the keys of one shard where it can (a canonical name, a user), so the state can
//! later be split across several Raft groups by key.

use serde::{Deserialize, Serialize};

use crate::model::accounts::{ImportedAccount, SkippedAccount};
use crate::model::chats::{Chat, Message};
use crate::model::sales::{Order, Product, Sale};
use crate::model::tweets::Tweet;
use crate::model::{DomainError, ProfileChange, User};

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
    /// Bring in existing accounts (admin), each claiming its name by the rules of `Register`
    /// without a reservation; a name that cannot be claimed is skipped with its reason.
    ImportAccounts {
        /// Who asks; must be an admin.
        actor: u64,
        /// At most [`crate::model::accounts::IMPORT_ACCOUNTS_PER_CALL_MAX`].
        accounts: Vec<ImportedAccount>,
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

impl Command {
    /// A short name for logs and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Command::ReserveUsername { .. } => "reserve_username",
            Command::Register { .. } => "register",
            Command::ImportAccounts { .. } => "import_accounts",
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
    /// An import was applied: how many accounts it created, and those it left out.
    Imported {
        /// Accounts created.
        imported: u64,
        /// Accounts left out, in the order given.
        skipped: Vec<SkippedAccount>,
    },
    /// An account was deleted.
    Deleted {
        /// Its id.
        user_id: u64,
    },
    /// A product was created.
    Product(Product),
    /// A sale was created or changed; this is its new state.
    Sale(Sale),
    /// A purchase succeeded (or an earlier one with the same idempotency key is returned).
    Order(Order),
    /// A chat was created or changed; this is its new state.
    Chat(Chat),
    /// A message was sent (or an earlier one with the same client message id is returned).
    Message(Message),
    /// A follow or unfollow was applied (or was already in effect); the followee's id.
    Followed {
        /// Whom the command named.
        followee: u64,
    },
    /// A tweet was posted.
    Tweet(Tweet),
    /// A tweet was deleted.
    TweetDeleted {
        /// Its id.
        tweet_id: u64,
    },
    /// The command broke a rule and changed nothing.
    Rejected(DomainError),
}

impl Response {
    /// A short name of the variant, for logs.
    pub fn kind(&self) -> &'static str {
        match self {
            Response::Reserved { .. } => "reserved",
            Response::User(..) => "user",
            Response::Imported { .. } => "imported",
            Response::Deleted { .. } => "deleted",
            Response::Product(..) => "product",
            Response::Sale(..) => "sale",
            Response::Order(..) => "order",
            Response::Chat(..) => "chat",
            Response::Message(..) => "message",
            Response::Followed { .. } => "followed",
            Response::Tweet(..) => "tweet",
            Response::TweetDeleted { .. } => "tweet_deleted",
            Response::Rejected(..) => "rejected",
        }
    }
}
