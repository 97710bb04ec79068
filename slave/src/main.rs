//! `mirror-slave`: parses arguments and runs the library.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use mirror_slave::Application;
use mirror_slave::config::Settings;

#[derive(Parser)]
#[command(name = "mirror-slave", version, about = "mirror-sync slave: pulls projects from the master when asked")]
struct Cli {
    /// TOML configuration file; MIRROR_SLAVE__* environment variables override it.
    #[arg(long)]
    config: Option<PathBuf>,
}

async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! { _ = tokio::signal::ctrl_c() => {}, _ = term => {} }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let settings = Settings::load(cli.config.as_deref())?;
    mirror_runtime::logging::init(&settings.log, settings.log_format).map_err(|e| anyhow::anyhow!("log: {e}"))?;
    let limit = mirror_runtime::server::raise_open_file_limit();
    tracing::info!(open_files = limit, "open file limit");
    Application::build(settings).await?.run_until_stopped(shutdown_signal()).await
}

#[tokio::main]
async fn main() -> ExitCode {
    match run(Cli::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mirror-slave: {e:#}");
            ExitCode::FAILURE
        }
    }
}
