//! The operations of the server contract: their query text, their typed results, and helper
//! methods on [`Client`] that run them.
//!
//! Every helper declares whether its operation is idempotent, which decides how the client's
//! retry policy treats a failure that leaves the outcome unknown (see [`Idempotency`] and
//! [`crate::transport`]): reads, `login`, `purchase` (with its idempotency key), `follow`,
//! `sendMessage` (with its client message id) and `startSale` are retried; `reserveUsername`,
//! `register`, `postTweet`, `createProduct`, `createSale` and `createChat` are retried only when
//! the failed attempt certainly took no effect, and otherwise fail with
//! [`ClientError::OutcomeUnknown`].

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{json, Value};

use crate::error::ClientError;
use crate::transport::{Client, Idempotency};

/// Query checking whether a username can be claimed.
pub const AVAILABILITY_QUERY: &str = "query($name:String!,$c:Consistency){ usernameAvailability(name:$name, consistency:$c){ name canonical status reason suggestions } }";

/// Mutation reserving a username for a while, returning a token `register` accepts.
pub const RESERVE_MUTATION: &str =
    "mutation($name:String!,$ttl:Int){ reserveUsername(name:$name, ttlSeconds:$ttl){ token expiresAt } }";

/// Mutation creating an account.
pub const REGISTER_MUTATION: &str =
    "mutation($input:RegisterInput!){ register(input:$input){ token user{ id username role } } }";

/// Mutation exchanging credentials for a token.
pub const LOGIN_MUTATION: &str =
    "mutation($u:String!,$p:String!){ login(username:$u,password:$p){ token user{ id username role } } }";

/// Mutation adding a product to the catalogue (ADMIN only).
pub const CREATE_PRODUCT_MUTATION: &str = "mutation($i:CreateProductInput!){ createProduct(input:$i){ id } }";

/// Mutation putting stock of a product on sale (ADMIN only).
pub const CREATE_SALE_MUTATION: &str = "mutation($i:CreateSaleInput!){ createSale(input:$i){ id status stock sold } }";

/// Mutation opening a sale now (ADMIN only).
pub const START_SALE_MUTATION: &str = "mutation($id:ID!){ startSale(saleId:$id){ id status } }";

/// Mutation buying units of a sale as the signed-in user; a repeated idempotency key returns the
/// first order instead of buying again.
pub const PURCHASE_MUTATION: &str =
    "mutation($s:ID!,$q:Int!,$k:String!){ purchase(saleId:$s, quantity:$q, idempotencyKey:$k){ id quantity } }";

/// Query reading a sale confirmed with the leader. The consistency is written into the query
/// rather than passed as a variable so that it is valid whether or not the server declares the
/// argument nullable.
pub const SALE_LINEARIZABLE_QUERY: &str =
    "query($id:ID!){ sale(id:$id, consistency: LINEARIZABLE){ id status stock sold } }";

/// Query reading a sale from the answering node's applied state, which may lag.
pub const SALE_LOCAL_QUERY: &str = "query($id:ID!){ sale(id:$id, consistency: LOCAL){ id status stock sold } }";

/// Query describing the Raft cluster as the answering node sees it.
pub const CLUSTER_QUERY: &str = "query{ cluster{ nodeId leaderId term lastApplied members{ id addr } } }";

/// The fields of a tweet every tweet operation selects (`concat!` cannot take a constant, so a
/// test checks that each query spells them the same).
#[cfg(test)]
const TWEET_FIELDS: &str = "id body authorId author{ id username } replyToId hashtags createdAt";

/// The fields of a chat message every message operation selects (checked like
/// `TWEET_FIELDS`).
#[cfg(test)]
const MESSAGE_FIELDS: &str = "id chatId seq body senderId clientMessageId createdAt";

/// Mutation posting a tweet as the signed-in user (280 characters at most).
pub const POST_TWEET_MUTATION: &str = concat!(
    "mutation($b:String!,$r:ID){ postTweet(body:$b, replyTo:$r){ ",
    "id body authorId author{ id username } replyToId hashtags createdAt",
    " } }"
);

/// Mutation making the signed-in user follow another; following twice is following once.
pub const FOLLOW_MUTATION: &str = "mutation($u:ID!){ follow(userId:$u){ id username followerCount } }";

/// Query reading a page of the signed-in user's home timeline, newest first.
pub const TIMELINE_QUERY: &str = concat!(
    "query($n:Int,$a:String,$c:Consistency){ timeline(first:$n, after:$a, consistency:$c){ ",
    "edges{ cursor node{ id body authorId author{ id username } replyToId hashtags createdAt } } ",
    "pageInfo{ hasNextPage endCursor } } }"
);

/// Mutation creating a chat owned by the signed-in user.
pub const CREATE_CHAT_MUTATION: &str =
    "mutation($n:String!,$p:[ID!]){ createChat(name:$n, participantIds:$p){ id name participantCount messageCount } }";

/// Mutation sending a message to a chat; the same client message id returns the first message.
pub const SEND_MESSAGE_MUTATION: &str = concat!(
    "mutation($c:ID!,$b:String!,$k:String!){ sendMessage(chatId:$c, body:$b, clientMessageId:$k){ ",
    "id chatId seq body senderId clientMessageId createdAt",
    " } }"
);

/// Query reading a page of a chat's messages, oldest first.
pub const MESSAGES_QUERY: &str = concat!(
    "query($c:ID!,$n:Int,$a:String){ messages(chatId:$c, first:$n, after:$a){ ",
    "edges{ cursor node{ id chatId seq body senderId clientMessageId createdAt } } ",
    "pageInfo{ hasNextPage endCursor } } }"
);

/// Subscription to a sale's stock and status changes, resumable through `afterIndex`.
pub const SALE_UPDATES_SUBSCRIPTION: &str = "subscription($s:ID!,$afterIndex:Int){ saleUpdates(saleId:$s, afterIndex:$afterIndex){ index saleId stock sold status } }";

/// Where each `saleUpdates` event carries its feed index (for [`crate::subscribe()`]).
pub const SALE_UPDATES_INDEX_PATH: &str = "saleUpdates.index";

/// Subscription to a chat's new messages, resumable through `afterIndex`.
pub const CHAT_MESSAGES_SUBSCRIPTION: &str = concat!(
    "subscription($c:ID!,$afterIndex:Int){ chatMessages(chatId:$c, afterIndex:$afterIndex){ index message{ ",
    "id chatId seq body senderId clientMessageId createdAt",
    " } } }"
);

/// Where each `chatMessages` event carries its feed index.
pub const CHAT_MESSAGES_INDEX_PATH: &str = "chatMessages.index";

/// Subscription to new tweets on the signed-in user's home timeline, resumable through
/// `afterIndex`.
pub const TIMELINE_UPDATES_SUBSCRIPTION: &str = concat!(
    "subscription($afterIndex:Int){ timelineUpdates(afterIndex:$afterIndex){ index tweet{ ",
    "id body authorId author{ id username } replyToId hashtags createdAt",
    " } } }"
);

/// Where each `timelineUpdates` event carries its feed index.
pub const TIMELINE_UPDATES_INDEX_PATH: &str = "timelineUpdates.index";

/// How fresh a read must be.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Consistency {
    /// Confirmed with the leader, so it reflects every committed write.
    Linearizable,
    /// Served from the answering node's applied state, which may lag.
    Local,
}

impl Consistency {
    /// The GraphQL enum value, e.g. `LINEARIZABLE`.
    pub fn as_graphql(self) -> &'static str {
        match self {
            Self::Linearizable => "LINEARIZABLE",
            Self::Local => "LOCAL",
        }
    }
}

/// Answer to a username availability check.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Availability {
    /// The name as asked.
    pub name: String,
    /// The canonical form the server compares names by.
    pub canonical: String,
    /// The verdict, e.g. `AVAILABLE` or `RESERVED`; kept as a string so that a status added on
    /// the server does not break decoding here.
    pub status: String,
    /// Why the name is not available, when it is not.
    #[serde(default)]
    pub reason: Option<String>,
    /// Similar names that are available.
    #[serde(default, deserialize_with = "null_as_default")]
    pub suggestions: Vec<String>,
}

/// A username reservation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Reservation {
    /// Token to pass as `reservationToken` when registering.
    pub token: String,
    /// When the reservation lapses, as the server renders it (a timestamp string or a number).
    #[serde(deserialize_with = "string_or_number")]
    pub expires_at: String,
}

/// Input of [`Client::register`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RegisterInput {
    /// The wanted username.
    pub username: String,
    /// The password, sent as is over the connection.
    pub password: String,
    /// Display name; omitted when `None`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    /// Email address; omitted when `None`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// Token from [`Client::reserve_username`]; omitted when `None`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reservation_token: Option<String>,
}

/// A user as the auth operations return it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    /// The user's id; GraphQL `ID` values arrive as strings, but numbers are accepted too.
    #[serde(deserialize_with = "string_or_number")]
    pub id: String,
    /// The user's username.
    pub username: String,
    /// The user's role, e.g. `ADMIN` or `USER`; `None` when the server did not send it.
    #[serde(default)]
    pub role: Option<String>,
}

/// Result of `register` and `login`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthPayload {
    /// JWT to send as `Authorization: Bearer <token>`; see [`Client::with_bearer`].
    pub token: String,
    /// The authenticated user.
    pub user: User,
}

/// Input of [`Client::create_product`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CreateProductInput {
    /// Product name.
    pub name: String,
    /// Product description.
    pub description: String,
    /// Price in cents.
    pub price_cents: u32,
}

/// A product as [`Client::create_product`] returns it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Product {
    /// The product's id.
    #[serde(deserialize_with = "string_or_number")]
    pub id: String,
}

/// Input of [`Client::create_sale`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CreateSaleInput {
    /// Id of the product on sale.
    pub product_id: String,
    /// Units offered.
    pub stock: u32,
    /// When the sale opens by itself, RFC 3339; omitted when `None`, and then the sale waits
    /// for [`Client::start_sale`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub starts_at: Option<String>,
    /// When the sale ends by itself, RFC 3339; omitted when `None`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ends_at: Option<String>,
    /// Most units one buyer may buy.
    pub per_user_limit: u32,
}

/// A sale's state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sale {
    /// The sale's id.
    #[serde(deserialize_with = "string_or_number")]
    pub id: String,
    /// The status, e.g. `SCHEDULED`, `OPEN` or `SOLD_OUT`; kept as a string so that a status
    /// added on the server does not break decoding here.
    pub status: String,
    /// Units left. Signed so that a server bug selling more than it had still decodes and can be
    /// reported.
    pub stock: i64,
    /// Units sold.
    pub sold: i64,
}

/// The part of a sale [`Client::start_sale`] returns.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SaleStatus {
    /// The sale's id.
    #[serde(deserialize_with = "string_or_number")]
    pub id: String,
    /// The status after the change.
    pub status: String,
}

/// An order as `purchase` returns it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Order {
    /// The order's id.
    #[serde(deserialize_with = "string_or_number")]
    pub id: String,
    /// Units bought.
    pub quantity: u64,
}

/// One member of the Raft cluster.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    /// The member's node id.
    #[serde(deserialize_with = "u64_lenient")]
    pub id: u64,
    /// The member's address as configured in the cluster.
    pub addr: String,
}

/// The cluster as seen by the answering node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterInfo {
    /// Id of the node that answered.
    #[serde(deserialize_with = "u64_lenient")]
    pub node_id: u64,
    /// Id of the leader that node knows of, if any.
    #[serde(default, deserialize_with = "opt_u64_lenient")]
    pub leader_id: Option<u64>,
    /// The node's current Raft term.
    #[serde(deserialize_with = "u64_lenient")]
    pub term: u64,
    /// Index of the last log entry the node applied, if any.
    #[serde(default, deserialize_with = "opt_u64_lenient")]
    pub last_applied: Option<u64>,
    /// All voters and learners.
    pub members: Vec<Member>,
}

/// A user as `follow` returns it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UserSummary {
    /// The user's id.
    #[serde(deserialize_with = "string_or_number")]
    pub id: String,
    /// The user's username.
    pub username: String,
    /// How many accounts follow the user.
    #[serde(default)]
    pub follower_count: u64,
}

/// The author of a tweet as tweets embed it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Author {
    /// The author's id.
    #[serde(deserialize_with = "string_or_number")]
    pub id: String,
    /// The author's username.
    pub username: String,
}

/// A tweet.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Tweet {
    /// The tweet's id; ids grow with time.
    #[serde(deserialize_with = "string_or_number")]
    pub id: String,
    /// The text.
    pub body: String,
    /// The author's id.
    #[serde(deserialize_with = "string_or_number")]
    pub author_id: String,
    /// The author; `None` once their account is deleted.
    #[serde(default)]
    pub author: Option<Author>,
    /// Id of the tweet this one answers, if any.
    #[serde(default)]
    pub reply_to_id: Option<String>,
    /// Hashtags, lowercased, without `#`.
    #[serde(default, deserialize_with = "null_as_default")]
    pub hashtags: Vec<String>,
    /// When it was posted, RFC 3339.
    #[serde(default, deserialize_with = "opt_string_or_number")]
    pub created_at: Option<String>,
}

/// A chat.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Chat {
    /// The chat's id.
    #[serde(deserialize_with = "string_or_number")]
    pub id: String,
    /// The chat's name.
    pub name: String,
    /// Participants, the owner included.
    #[serde(default)]
    pub participant_count: u64,
    /// Messages sent so far.
    #[serde(default)]
    pub message_count: u64,
}

/// A chat message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Message {
    /// `chatId:seq`, the same on every node.
    pub id: String,
    /// The chat's id.
    #[serde(deserialize_with = "string_or_number")]
    pub chat_id: String,
    /// Position within the chat, from 1.
    pub seq: u64,
    /// The text.
    pub body: String,
    /// The sender's id.
    #[serde(deserialize_with = "string_or_number")]
    pub sender_id: String,
    /// The sender's idempotency key for this message.
    pub client_message_id: String,
    /// When it was sent, RFC 3339.
    #[serde(default, deserialize_with = "opt_string_or_number")]
    pub created_at: Option<String>,
}

/// One change of a sale, as `saleUpdates` delivers it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SaleUpdate {
    /// Position in the replicated event feed; resume after it with `afterIndex`.
    #[serde(deserialize_with = "u64_lenient")]
    pub index: u64,
    /// The sale's id.
    #[serde(deserialize_with = "string_or_number")]
    pub sale_id: String,
    /// Units left.
    pub stock: i64,
    /// Units sold.
    pub sold: i64,
    /// Status after the change.
    pub status: String,
}

/// Pagination state of a [`Connection`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PageInfo {
    /// Whether another page follows.
    #[serde(default)]
    pub has_next_page: bool,
    /// Cursor to pass as `after` for the next page.
    #[serde(default)]
    pub end_cursor: Option<String>,
}

/// One item of a [`Connection`] with its cursor.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Edge<T> {
    /// Cursor of this item.
    #[serde(default)]
    pub cursor: Option<String>,
    /// The item.
    pub node: T,
}

/// A page of a Relay connection, shaped as the server sends it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Connection<T> {
    /// The items of the page, in the connection's order.
    pub edges: Vec<Edge<T>>,
    /// Whether and where to go on.
    #[serde(default)]
    pub page_info: PageInfo,
}

impl<T> Connection<T> {
    /// The items, without cursors.
    pub fn nodes(&self) -> impl Iterator<Item = &T> {
        self.edges.iter().map(|e| &e.node)
    }
}

impl Client {
    /// Checks whether `name` can be claimed; `consistency` `None` leaves the choice to the server.
    pub async fn username_availability(
        &self,
        node: usize,
        name: &str,
        consistency: Option<Consistency>,
    ) -> Result<Availability, ClientError> {
        let vars = json!({ "name": name, "c": consistency.map(Consistency::as_graphql) });
        let data = self.run(node, "usernameAvailability", Idempotency::Idempotent, AVAILABILITY_QUERY, vars).await?;
        field(data, "usernameAvailability")
    }

    /// Reserves `name`; `ttl_seconds` `None` leaves the lifetime to the server. Not idempotent:
    /// after an unknown outcome it fails with [`ClientError::OutcomeUnknown`]; check
    /// availability before reserving again.
    pub async fn reserve_username(
        &self,
        node: usize,
        name: &str,
        ttl_seconds: Option<u32>,
    ) -> Result<Reservation, ClientError> {
        let vars = json!({ "name": name, "ttl": ttl_seconds });
        let data = self.run(node, "reserveUsername", Idempotency::NonIdempotent, RESERVE_MUTATION, vars).await?;
        field(data, "reserveUsername")
    }

    /// Creates an account. Not idempotent: after an unknown outcome it fails with
    /// [`ClientError::OutcomeUnknown`]; try [`Client::login`] to learn whether it was created.
    pub async fn register(&self, node: usize, input: &RegisterInput) -> Result<AuthPayload, ClientError> {
        let vars = json!({ "input": input });
        let data = self.run(node, "register", Idempotency::NonIdempotent, REGISTER_MUTATION, vars).await?;
        field(data, "register")
    }

    /// Logs in with a username and password.
    pub async fn login(&self, node: usize, username: &str, password: &str) -> Result<AuthPayload, ClientError> {
        let vars = json!({ "u": username, "p": password });
        let data = self.run(node, "login", Idempotency::Idempotent, LOGIN_MUTATION, vars).await?;
        field(data, "login")
    }

    /// Adds a product to the catalogue; needs an ADMIN bearer token. Not idempotent.
    pub async fn create_product(&self, node: usize, input: &CreateProductInput) -> Result<Product, ClientError> {
        let vars = json!({ "i": input });
        let data = self.run(node, "createProduct", Idempotency::NonIdempotent, CREATE_PRODUCT_MUTATION, vars).await?;
        field(data, "createProduct")
    }

    /// Puts stock of a product on sale; needs an ADMIN bearer token. Not idempotent.
    pub async fn create_sale(&self, node: usize, input: &CreateSaleInput) -> Result<Sale, ClientError> {
        let vars = json!({ "i": input });
        let data = self.run(node, "createSale", Idempotency::NonIdempotent, CREATE_SALE_MUTATION, vars).await?;
        field(data, "createSale")
    }

    /// Opens a sale now; needs an ADMIN bearer token. Idempotent: an open sale stays open.
    pub async fn start_sale(&self, node: usize, sale_id: &str) -> Result<SaleStatus, ClientError> {
        let vars = json!({ "id": sale_id });
        let data = self.run(node, "startSale", Idempotency::Idempotent, START_SALE_MUTATION, vars).await?;
        field(data, "startSale")
    }

    /// Buys `quantity` units of a sale as the bearer token's user. Reusing `idempotency_key`
    /// returns the first order made with it instead of buying again, so this is retried even
    /// after an unknown outcome; keep the key to repeat the purchase safely later.
    pub async fn purchase(
        &self,
        node: usize,
        sale_id: &str,
        quantity: u32,
        idempotency_key: &str,
    ) -> Result<Order, ClientError> {
        let vars = purchase_variables(sale_id, quantity, idempotency_key);
        let data = self.run(node, "purchase", Idempotency::Idempotent, PURCHASE_MUTATION, vars).await?;
        field(data, "purchase")
    }

    /// Reads a sale confirmed with the leader; `None` when there is no such sale.
    pub async fn sale_linearizable(&self, node: usize, sale_id: &str) -> Result<Option<Sale>, ClientError> {
        self.sale(node, sale_id, Consistency::Linearizable).await
    }

    /// Reads a sale at `consistency`; `None` when there is no such sale.
    pub async fn sale(
        &self,
        node: usize,
        sale_id: &str,
        consistency: Consistency,
    ) -> Result<Option<Sale>, ClientError> {
        let query = match consistency {
            Consistency::Linearizable => SALE_LINEARIZABLE_QUERY,
            Consistency::Local => SALE_LOCAL_QUERY,
        };
        let data = self.run(node, "sale", Idempotency::Idempotent, query, json!({ "id": sale_id })).await?;
        field(data, "sale")
    }

    /// Describes the cluster as node `node` sees it.
    pub async fn cluster(&self, node: usize) -> Result<ClusterInfo, ClientError> {
        let data = self.run(node, "cluster", Idempotency::Idempotent, CLUSTER_QUERY, json!({})).await?;
        field(data, "cluster")
    }

    /// Posts a tweet as the bearer token's user, optionally in reply to another. Not
    /// idempotent: after an unknown outcome it fails with [`ClientError::OutcomeUnknown`]; look
    /// at the timeline before posting again.
    pub async fn post_tweet(&self, node: usize, body: &str, reply_to: Option<&str>) -> Result<Tweet, ClientError> {
        let vars = json!({ "b": body, "r": reply_to });
        let data = self.run(node, "postTweet", Idempotency::NonIdempotent, POST_TWEET_MUTATION, vars).await?;
        field(data, "postTweet")
    }

    /// Makes the bearer token's user follow `user_id`; returns that user, `None` if there is
    /// none. Idempotent.
    pub async fn follow(&self, node: usize, user_id: &str) -> Result<Option<UserSummary>, ClientError> {
        let data = self.run(node, "follow", Idempotency::Idempotent, FOLLOW_MUTATION, json!({ "u": user_id })).await?;
        field(data, "follow")
    }

    /// Reads a page of the bearer token's user's home timeline, newest first: `first` tweets
    /// (the server's default when `None`) after the cursor `after`. `consistency` `None` leaves
    /// the choice to the server (LOCAL).
    pub async fn timeline(
        &self,
        node: usize,
        first: Option<u32>,
        after: Option<&str>,
        consistency: Option<Consistency>,
    ) -> Result<Connection<Tweet>, ClientError> {
        let vars = json!({ "n": first, "a": after, "c": consistency.map(Consistency::as_graphql) });
        let data = self.run(node, "timeline", Idempotency::Idempotent, TIMELINE_QUERY, vars).await?;
        field(data, "timeline")
    }

    /// Creates a chat owned by the bearer token's user with the given other participants. Not
    /// idempotent.
    pub async fn create_chat(&self, node: usize, name: &str, participant_ids: &[&str]) -> Result<Chat, ClientError> {
        let vars = json!({ "n": name, "p": participant_ids });
        let data = self.run(node, "createChat", Idempotency::NonIdempotent, CREATE_CHAT_MUTATION, vars).await?;
        field(data, "createChat")
    }

    /// Sends a message to a chat. `client_message_id` makes it idempotent: the same id from the
    /// same sender returns the first message, so this is retried after an unknown outcome.
    pub async fn send_message(
        &self,
        node: usize,
        chat_id: &str,
        body: &str,
        client_message_id: &str,
    ) -> Result<Message, ClientError> {
        let vars = json!({ "c": chat_id, "b": body, "k": client_message_id });
        let data = self.run(node, "sendMessage", Idempotency::Idempotent, SEND_MESSAGE_MUTATION, vars).await?;
        field(data, "sendMessage")
    }

    /// Reads a page of a chat's messages, oldest first, after the cursor `after`.
    pub async fn messages(
        &self,
        node: usize,
        chat_id: &str,
        first: Option<u32>,
        after: Option<&str>,
    ) -> Result<Connection<Message>, ClientError> {
        let vars = json!({ "c": chat_id, "n": first, "a": after });
        let data = self.run(node, "messages", Idempotency::Idempotent, MESSAGES_QUERY, vars).await?;
        field(data, "messages")
    }
}

/// The variables of [`PURCHASE_MUTATION`], for callers that send it through
/// [`Client::execute`] themselves.
pub fn purchase_variables(sale_id: &str, quantity: u32, idempotency_key: &str) -> Value {
    json!({ "s": sale_id, "q": quantity, "k": idempotency_key })
}

/// Takes the top-level field `name` out of `data` and decodes it; public so that callers of
/// [`Client::execute`] decode answers the same way the typed helpers do.
pub fn field<T: DeserializeOwned>(mut data: Value, name: &str) -> Result<T, ClientError> {
    let value = data
        .get_mut(name)
        .map(Value::take)
        .ok_or_else(|| ClientError::Decode(format!("data has no field {name:?}")))?;
    serde_json::from_value(value).map_err(|e| ClientError::Decode(format!("{name}: {e}")))
}

/// Accepts a string or a number and keeps its text, because the server may render ids and
/// timestamps either way and the client only passes them along.
fn string_or_number<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    match Value::deserialize(d)? {
        Value::String(s) => Ok(s),
        Value::Number(n) => Ok(n.to_string()),
        other => Err(serde::de::Error::custom(format!("expected string or number, got {other}"))),
    }
}

/// [`string_or_number`] that also accepts `null`.
fn opt_string_or_number<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    match Value::deserialize(d)? {
        Value::Null => Ok(None),
        Value::String(s) => Ok(Some(s)),
        Value::Number(n) => Ok(Some(n.to_string())),
        other => Err(serde::de::Error::custom(format!("expected string or number, got {other}"))),
    }
}

/// Accepts a non-negative integer as a number or a decimal string, because GraphQL `Int` is only
/// 32 bits and a server may render 64-bit Raft ids and indexes as strings.
fn u64_lenient<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    opt_u64_lenient(d)?.ok_or_else(|| serde::de::Error::custom("expected an integer, got null"))
}

/// [`u64_lenient`] that also accepts `null`.
fn opt_u64_lenient<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    match Value::deserialize(d)? {
        Value::Null => Ok(None),
        Value::Number(n) => {
            n.as_u64().map(Some).ok_or_else(|| serde::de::Error::custom(format!("expected a u64, got {n}")))
        }
        Value::String(s) => {
            s.parse().map(Some).map_err(|_| serde::de::Error::custom(format!("expected a u64, got {s:?}")))
        }
        other => Err(serde::de::Error::custom(format!("expected an integer, got {other}"))),
    }
}

/// Decodes `null` as the type's default, since a nullable list field may come back null.
fn null_as_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn availability_decodes_with_null_optionals() {
        let data = json!({"usernameAvailability": {
            "name": "Alice", "canonical": "alice", "status": "AVAILABLE",
            "reason": null, "suggestions": null,
        }});
        let got: Availability = field(data, "usernameAvailability").unwrap();
        assert_eq!(got.status, "AVAILABLE");
        assert_eq!(got.reason, None);
        assert!(got.suggestions.is_empty());
    }

    #[test]
    fn cluster_accepts_numbers_or_strings() {
        let data = json!({"cluster": {
            "nodeId": "2", "leaderId": 1, "term": 5, "lastApplied": null,
            "members": [{"id": 1, "addr": "a:1"}, {"id": "2", "addr": "b:2"}],
        }});
        let got: ClusterInfo = field(data, "cluster").unwrap();
        assert_eq!(got.node_id, 2);
        assert_eq!(got.leader_id, Some(1));
        assert_eq!(got.last_applied, None);
        assert_eq!(got.members[1].id, 2);
    }

    #[test]
    fn missing_field_is_decode_error() {
        let got = field::<Reservation>(json!({"other": {}}), "reserveUsername");
        assert!(matches!(got, Err(ClientError::Decode(_))));
    }

    #[test]
    fn sale_input_is_camel_case_and_omits_unset_times() {
        let input = CreateSaleInput {
            product_id: "7".into(),
            stock: 10,
            starts_at: Some("2030-01-01T00:00:00.000Z".into()),
            per_user_limit: 2,
            ..Default::default()
        };
        assert_eq!(
            serde_json::to_value(&input).unwrap(),
            json!({"productId": "7", "stock": 10, "startsAt": "2030-01-01T00:00:00.000Z", "perUserLimit": 2})
        );
    }

    #[test]
    fn orders_sales_and_roles_decode() {
        let order: Order = field(json!({"purchase": {"id": 12, "quantity": 3}}), "purchase").unwrap();
        assert_eq!(order, Order { id: "12".into(), quantity: 3 });
        let sale: Option<Sale> =
            field(json!({"sale": {"id": "4", "status": "OPEN", "stock": 9, "sold": 1}}), "sale").unwrap();
        assert_eq!(sale.map(|s| (s.stock, s.sold)), Some((9, 1)));
        let missing: Option<Sale> = field(json!({"sale": null}), "sale").unwrap();
        assert_eq!(missing, None);
        let auth: AuthPayload =
            field(json!({"login": {"token": "t", "user": {"id": "1", "username": "a", "role": "ADMIN"}}}), "login")
                .unwrap();
        assert_eq!(auth.user.role.as_deref(), Some("ADMIN"));
    }

    #[test]
    fn register_input_omits_unset_optionals() {
        let input = RegisterInput {
            username: "bob".into(),
            password: "pw".into(),
            reservation_token: Some("t".into()),
            ..Default::default()
        };
        assert_eq!(
            serde_json::to_value(&input).unwrap(),
            json!({"username": "bob", "password": "pw", "reservationToken": "t"})
        );
    }

    #[test]
    fn tweet_and_message_queries_select_the_same_fields() {
        for q in [POST_TWEET_MUTATION, TIMELINE_QUERY, TIMELINE_UPDATES_SUBSCRIPTION] {
            assert!(q.contains(TWEET_FIELDS), "{q}");
        }
        for q in [SEND_MESSAGE_MUTATION, MESSAGES_QUERY, CHAT_MESSAGES_SUBSCRIPTION] {
            assert!(q.contains(MESSAGE_FIELDS), "{q}");
        }
    }

    #[test]
    fn timeline_connection_decodes_and_reserializes_in_the_server_shape() {
        let data = json!({"timeline": {
            "edges": [{"cursor": "9", "node": {"id": "9", "body": "hi #rust", "authorId": "2",
                       "author": {"id": "2", "username": "bob"}, "replyToId": null,
                       "hashtags": ["rust"], "createdAt": "2030-01-01T00:00:00Z"}}],
            "pageInfo": {"hasNextPage": true, "endCursor": "9"},
        }});
        let page: Connection<Tweet> = field(data.clone(), "timeline").unwrap();
        let tweet = page.nodes().next().unwrap();
        assert_eq!((tweet.id.as_str(), tweet.author.as_ref().map(|a| a.username.as_str())), ("9", Some("bob")));
        assert!(page.page_info.has_next_page);
        assert_eq!(serde_json::to_value(&page).unwrap(), data["timeline"]);
    }

    #[test]
    fn sale_updates_and_follows_decode() {
        let u: SaleUpdate = field(
            json!({"saleUpdates": {"index": "17", "saleId": 3, "stock": 9, "sold": 1, "status": "OPEN"}}),
            "saleUpdates",
        )
        .unwrap();
        assert_eq!((u.index, u.sale_id.as_str(), u.sold), (17, "3", 1));
        let f: Option<UserSummary> =
            field(json!({"follow": {"id": "4", "username": "ann", "followerCount": 2}}), "follow").unwrap();
        assert_eq!(f.map(|u| u.follower_count), Some(2));
    }
}
