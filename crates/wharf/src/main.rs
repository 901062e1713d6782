//! `wharf`: the command line.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use wharf::config::Config;

#[derive(Parser, Debug)]
#[command(
    name = "wharf",
    version,
    about = "A container image registry in one binary"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the registry (OCI distribution API on /v2, plus /healthz, /readyz, /metrics).
    Serve {
        /// TOML configuration file; every key can also be set as WHARF_<SECTION>__<KEY>.
        #[arg(long, env = "WHARF_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Apply pending metadata database migrations and exit (`serve` applies
    /// them too; run this first to upgrade the schema before rolling out nodes).
    Migrate {
        #[arg(long, env = "WHARF_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Copy a whole registry (blobs, repositories, manifests, tags, referrers,
    /// events) from the stores of one configuration into the empty stores of
    /// another, e.g. from SQLite + a directory to PostgreSQL + S3. Stop writes
    /// to the source first. Only the two files configure it: WHARF_* variables
    /// are not read.
    MigrateData {
        /// Configuration of the registry to copy from.
        #[arg(long)]
        from: PathBuf,
        /// Configuration of the registry to copy into (its database must be empty).
        #[arg(long)]
        to: PathBuf,
    },
    /// Print the effective configuration (secrets redacted) and exit.
    Config {
        #[arg(long, env = "WHARF_CONFIG")]
        config: Option<PathBuf>,
    },
    // The client of a running registry's management API: login, logout,
    // project, user, robot, system, the lifecycle, webhooks, promotion.
    #[command(flatten)]
    Client(Box<wharf::cli::Command>),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    storage::install_crypto_provider();
    match cli.command {
        Command::Serve { config } => {
            let config = Config::load(config.as_deref(), std::env::vars())?;
            wharf::logging::init(&config.log)?;
            tracing::info!(config = %config.redacted_json(), "effective configuration");
            runtime()?.block_on(async {
                let running = wharf::server::start(&config).await?;
                let token = running.shutdown_token();
                tokio::spawn(async move {
                    wharf::server::shutdown_signal().await;
                    token.cancel();
                });
                running.wait().await
            })
        }
        Command::Migrate { config } => {
            let config = Config::load(config.as_deref(), std::env::vars())?;
            wharf::logging::init(&config.log)?;
            runtime()?.block_on(async {
                let metadata = wharf::stores::Metadata::open(&config).await?;
                metadata.close().await;
                tracing::info!("the metadata database schema is up to date");
                Ok(())
            })
        }
        Command::MigrateData { from, to } => {
            let no_env = std::iter::empty::<(String, String)>;
            let from = Config::load(Some(&from), no_env())?;
            let to = Config::load(Some(&to), no_env())?;
            wharf::logging::init(&from.log)?;
            runtime()?.block_on(async {
                let summary = wharf::migrate_data::run(&from, &to).await?;
                tracing::info!(
                    blobs_copied = summary.blobs_copied,
                    blobs_already_present = summary.blobs_present,
                    bytes_copied = summary.bytes_copied,
                    rows = ?summary.rows.tables,
                    "migration finished"
                );
                Ok(())
            })
        }
        Command::Config { config } => {
            let config = Config::load(config.as_deref(), std::env::vars())?;
            #[allow(clippy::print_stdout)]
            {
                print!("{}", config.redacted_toml());
            }
            Ok(())
        }
        Command::Client(command) => std::process::exit(wharf::cli::run(*command)),
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("wharf")
        .build()
        .context("cannot start the async runtime")
}
