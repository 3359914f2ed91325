//! `fnvm functions trigger pulsar set|get|delete`: a Function's Pulsar trigger (the broker, the
//! topic or pattern, the token, structured or raw messages, the dead-letter topic).

use super::{some, Client};
use anyhow::{Context, Result};
use clap::Subcommand;
use fnvm_control::model::{PulsarTrigger, PulsarTriggerSpec};
use std::path::PathBuf;

#[derive(Debug, Subcommand)]
pub(super) enum TriggerCommand {
    /// A Pulsar trigger: each message on the topic is one invocation.
    #[command(subcommand)]
    Pulsar(PulsarCommand),
}

#[derive(Debug, Subcommand)]
pub(super) enum PulsarCommand {
    /// Set (or replace) the trigger.
    Set {
        /// The Function.
        function: String,
        /// The broker: pulsar://host:port or pulsar+ssl://host:port.
        #[arg(long)]
        url: String,
        /// The topic (persistent://tenant/namespace/topic), or a pattern with --regex.
        #[arg(long)]
        topic: String,
        /// The topic is a regular expression over the topics of its namespace.
        #[arg(long)]
        regex: bool,
        /// A file holding the broker's authentication token (not shown again).
        #[arg(long, value_name = "FILE")]
        token_file: Option<PathBuf>,
        /// Give the function the structured JSON document instead of the raw payload.
        #[arg(long)]
        structured: bool,
        /// Where failed messages go (default: fnvm-FUNCTION-DLQ in the topic's namespace).
        #[arg(long)]
        dead_letter_topic: Option<String>,
    },
    /// Show the trigger.
    Get {
        /// The Function.
        function: String,
    },
    /// Remove the trigger.
    Delete {
        /// The Function.
        function: String,
    },
}

pub(super) fn run(c: &Client, command: TriggerCommand, json: bool) -> Result<()> {
    let TriggerCommand::Pulsar(command) = command;
    let url = |f: &str| format!("{}/{f}/trigger-pulsar", c.base());
    match command {
        PulsarCommand::Set {
            function,
            url: pulsar_url,
            topic,
            regex,
            token_file,
            structured,
            dead_letter_topic,
        } => {
            let pulsar_token = match token_file {
                Some(f) => Some(
                    std::fs::read_to_string(&f)
                        .with_context(|| format!("reading {}", f.display()))?
                        .trim()
                        .to_string(),
                ),
                None => None,
            };
            let spec = PulsarTriggerSpec {
                pulsar_url,
                pulsar_token,
                pulsar_topic_fqdn: topic,
                pulsar_topic_fqdn_is_regex: regex,
                structured,
                dead_letter_topic,
            };
            let t: PulsarTrigger =
                some(c.send("POST", &url(&function), Some(&serde_json::to_value(&spec)?))?)?;
            print_trigger(&t, json)?;
        }
        PulsarCommand::Get { function } => {
            let t: PulsarTrigger = some(c.send("GET", &url(&function), None)?)?;
            print_trigger(&t, json)?;
        }
        PulsarCommand::Delete { function } => {
            c.send::<serde_json::Value>("DELETE", &url(&function), None)?;
            if !json {
                println!("removed the Pulsar trigger of {function}");
            }
        }
    }
    Ok(())
}

fn print_trigger(t: &PulsarTrigger, json: bool) -> Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(t)?);
        return Ok(());
    }
    let topic = if t.pulsar_topic_fqdn_is_regex {
        format!("{} (pattern)", t.pulsar_topic_fqdn)
    } else {
        t.pulsar_topic_fqdn.clone()
    };
    for (k, v) in [
        ("function", t.function_id.clone()),
        ("broker", t.pulsar_url.clone()),
        ("topic", topic),
        ("subscription", t.subscription.clone()),
        (
            "messages",
            if t.structured { "structured" } else { "raw" }.into(),
        ),
        ("dead letters", t.dead_letter_topic.clone()),
        ("token", if t.has_token { "set" } else { "none" }.into()),
        ("updated", t.updated_at.to_rfc3339()),
    ] {
        println!("{k:<13} {v}");
    }
    Ok(())
}
