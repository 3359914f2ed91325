//! `fnvm fleet workers`: the fleet's workers as the metadata store knows them (an operator's
//! token: `fnvm admin token create --operator`), live ones first.

use super::{some, ApiArgs, Client};
use anyhow::{anyhow, Result};
use clap::{Args, Subcommand};
use fnvm_control::model::{FleetWorker, Timestamp};
use std::time::Duration;

/// Options of `fnvm fleet`.
#[derive(Debug, Args)]
pub struct FleetArgs {
    #[command(flatten)]
    conn: ApiArgs,
    #[command(subcommand)]
    command: FleetCommand,
}

#[derive(Debug, Subcommand)]
enum FleetCommand {
    /// The registered workers: where each serves, whether its lease runs, its capacity and load.
    Workers,
}

/// Runs a `fleet` command.
pub fn run(args: FleetArgs) -> Result<std::process::ExitCode> {
    let token = args
        .conn
        .token
        .ok_or_else(|| anyhow!("no token: pass --token or set FNVM_TOKEN (an operator's)"))?;
    let api = args.conn.api.trim_end_matches('/');
    let c = Client::new(api, token, String::new(), Duration::from_secs(60));
    match args.command {
        FleetCommand::Workers => {
            let url = format!("{}/v4/fleet/workers", c.api);
            let workers: Vec<FleetWorker> = some(c.send("GET", &url, None)?)?;
            if args.conn.json {
                println!("{}", serde_json::to_string_pretty(&workers)?);
            } else {
                print_workers(&workers);
            }
        }
    }
    Ok(std::process::ExitCode::SUCCESS)
}

fn print_workers(workers: &[FleetWorker]) {
    println!(
        "{:<36}  {:<5}  {:<28}  {:>5}  {:>11}  {:>9}  {:>11}  {:>8}",
        "ID", "STATE", "URL", "CORES", "SLOTS USED", "IN FLIGHT", "DEPLOYMENTS", "RENEWED"
    );
    let now = Timestamp::now().0;
    for w in workers {
        let r = &w.report;
        println!(
            "{:<36}  {:<5}  {:<28}  {:>5}  {:>11}  {:>9}  {:>11}  {:>7}s",
            r.id,
            if w.live { "live" } else { "dead" },
            r.url,
            r.cores,
            format!("{}/{}", r.slots_in_use, r.slots),
            r.in_flight,
            r.deployments,
            (now - w.renewed_at.0).max(0) / 1000,
        );
    }
}
