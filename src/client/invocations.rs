//! `fnvm functions invocations`: following a Function's asynchronous invocations (`POST
//! /{functionId}?async` on a worker): list them (`--status dead` for the dead letters), show
//! one with its result, retry a dead letter.

use super::{some, table, Client};
use anyhow::Result;
use clap::Subcommand;
use fnvm_control::model::Invocation;

#[derive(Debug, Subcommand)]
pub(super) enum InvocationsCommand {
    /// List a Function's asynchronous invocations, oldest first.
    List {
        /// The Function.
        function: String,
        /// Only those in this status: queued, running, succeeded or dead.
        #[arg(long)]
        status: Option<String>,
    },
    /// Show one, with its result (as JSON).
    Get {
        /// The Function.
        function: String,
        /// The invocation.
        invocation: String,
    },
    /// Queue a dead letter again, with all its attempts.
    Retry {
        /// The Function.
        function: String,
        /// The invocation.
        invocation: String,
    },
}

pub(super) fn run(c: &Client, command: InvocationsCommand, json: bool) -> Result<()> {
    match command {
        InvocationsCommand::List { function, status } => {
            let mut all: Vec<Invocation> = Vec::new();
            loop {
                let mut url = format!("{}/{function}/invocations?limit=1000", c.base());
                if let Some(s) = &status {
                    url.push_str("&status=");
                    url.push_str(s);
                }
                if let Some(last) = all.last() {
                    url.push_str("&after=");
                    url.push_str(&last.id);
                }
                let page: Vec<Invocation> = some(c.send("GET", &url, None)?)?;
                let done = page.len() < 1000;
                all.extend(page);
                if done {
                    break;
                }
            }
            if json {
                println!("{}", serde_json::to_string_pretty(&all)?);
            } else {
                table(
                    &["ID", "STATUS", "ATTEMPTS", "CREATED", "LAST ERROR"],
                    all.iter()
                        .map(|i| {
                            vec![
                                i.id.clone(),
                                i.status.to_string(),
                                format!("{}/{}", i.attempts, i.max_attempts),
                                i.created_at.to_rfc3339(),
                                // Its first line (a trap's backtrace follows; `get` shows it).
                                i.last_error
                                    .as_deref()
                                    .and_then(|e| e.lines().next())
                                    .unwrap_or_default()
                                    .to_string(),
                            ]
                        })
                        .collect(),
                );
            }
        }
        InvocationsCommand::Get {
            function,
            invocation,
        } => {
            let url = format!("{}/{function}/invocations/{invocation}", c.base());
            let i: Invocation = some(c.send("GET", &url, None)?)?;
            println!("{}", serde_json::to_string_pretty(&i)?);
        }
        InvocationsCommand::Retry {
            function,
            invocation,
        } => {
            let url = format!("{}/{function}/invocations/{invocation}/retry", c.base());
            let i: Invocation = some(c.send("POST", &url, None)?)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&i)?);
            } else {
                println!("{} queued again ({} attempts)", i.id, i.max_attempts);
            }
        }
    }
    Ok(())
}
