//! The `subscribers` scenario: fan-out of live updates to many open subscriptions.
//!
//! N graphql-transport-ws sockets, spread round-robin over `--nodes`, subscribe to one topic;
//! a paced sender causes updates at `--rate` per second, also round-robin over the nodes, for
//! `--warmup` (updates delivered and checked but not measured) and then `--duration` seconds.
//! Every delivery on every socket yields one send-to-delivery delay. Two topics, each a
//! [`fanout::Topic`]:
//!
//! - `sale` (default, `saleUpdates`, [`sale`]): an admin creates a product and a sale with a
//!   large stock; one buyer buys one unit per send, and each purchase's update is recognized on
//!   the sockets by its `sold` count.
//! - `chat` (`chatMessages`, [`chat`]): one account creates a chat and sends messages whose
//!   bodies carry their send time; all sockets belong to that account, so the chat stays within
//!   its participant limit at any N.
//!
//! The report counts deliveries (committed updates × N expected), delays, and each socket that
//! saw an index go backwards, an error or a close; the run fails if any delivery is missing.
//!
//! Layout: [`fanout`] takes a topic through the run and reports it, over [`sockets`] (opening and
//! reading the subscriptions) and [`sends`] (the paced sender); [`sale`] and [`chat`] are the
//! topics, which know nothing of each other; this module only picks one.

mod chat;
mod fanout;
mod sale;
mod sends;
mod sockets;

use client::Client;

use fanout::TopicArg;
pub(crate) use fanout::{RunSpec, SubscribersArgs, SubscribersReport};

/// Runs the scenario for the topic `--topic` names.
pub(crate) async fn run(
    client: &Client,
    args: &SubscribersArgs,
    spec: &RunSpec<'_>,
) -> anyhow::Result<SubscribersReport> {
    match args.topic {
        TopicArg::Sale => fanout::run::<sale::SaleTopic>(client, args, spec).await,
        TopicArg::Chat => fanout::run::<chat::ChatTopic>(client, args, spec).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Cli, ScenarioCommand};
    use clap::Parser;

    #[test]
    fn cli_parses_subscribers_topics() {
        let cli = Cli::try_parse_from(["loadgen", "subscribers", "--subscribers", "30"]).unwrap();
        let ScenarioCommand::Subscribers { fanout, .. } = &cli.scenario else { panic!("expected subscribers") };
        assert_eq!((fanout.topic, fanout.subscribers), (TopicArg::Sale, 30));
        let cli = Cli::try_parse_from(["loadgen", "subscribers", "--topic", "chat"]).unwrap();
        let ScenarioCommand::Subscribers { fanout, .. } = &cli.scenario else { panic!("expected subscribers") };
        assert_eq!(fanout.topic, TopicArg::Chat);
        assert!(Cli::try_parse_from(["loadgen", "subscribers", "--topic", "tweets"]).is_err());
    }
}
