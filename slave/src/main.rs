//! `mirror-slave`: parses arguments and runs the library.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use mirror_slave::Application;
use mirror_slave::config::Settings;
use tracing_subscriber::EnvFilter;

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
    let filter = EnvFilter::try_from_default_env().or_else(|_| EnvFilter::try_new(&settings.log))?;
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi).init();
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
