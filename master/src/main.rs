//! `mirror-master`: parses arguments and runs the library.

use std::io::BufRead;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use mirror_common::api::Role;
use mirror_master::Application;
use mirror_master::config::{Secret, Settings};

#[derive(Parser)]
#[command(name = "mirror-master", version, about = "mirror-sync master: REST API, schedules, rsync runs")]
struct Cli {
    /// TOML configuration file; MIRROR_MASTER__* environment variables override it.
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the API (the default).
    Serve,
    /// Create an API user; the password is read from the first line of stdin.
    CreateUser {
        name: mirror_common::api::Name,
        #[arg(long, value_enum, default_value = "user")]
        role: RoleArg,
    },
    /// Copy everything a SQLite master holds into an empty PostgreSQL database, in one
    /// transaction (the password comes from MIRROR_MASTER__DATABASE_PASSWORD or
    /// database_password_file, never from the URL).
    Migrate {
        /// The SQLite file of the master being moved (stopped meanwhile).
        #[arg(long)]
        from: std::path::PathBuf,
        /// `postgres://user@host:port/database`.
        #[arg(long)]
        to: String,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum RoleArg {
    Root,
    User,
}

async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
    tracing::info!("shutdown requested");
}

fn read_password() -> anyhow::Result<Secret> {
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    let password = line.trim_end_matches(['\n', '\r']).to_owned();
    anyhow::ensure!(!password.is_empty(), "no password on stdin");
    Ok(Secret::new(password))
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let mut settings = Settings::load(cli.config.as_deref())?;
    settings.initial_root_password =
        std::env::var("MIRROR_ROOT_PASSWORD").ok().filter(|p| !p.is_empty()).map(Secret::new);
    mirror_runtime::logging::init(&settings.log, settings.log_format).map_err(|e| anyhow::anyhow!("log: {e}"))?;
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => {
            // Every connection and every rsync's pipes take descriptors; the soft default of 1,024 is low.
            let limit = mirror_runtime::server::raise_open_file_limit();
            tracing::info!(open_files = limit, "open file limit");
            let app = Application::build(settings).await?;
            // SIGHUP applies projects_dir again (tunasync's reload).
            let state = app.state().clone();
            tokio::spawn(async move {
                let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) else {
                    return;
                };
                while hup.recv().await.is_some() {
                    match mirror_master::config::declared::reload(
                        &state,
                        None,
                        "projects_dir reload (SIGHUP)",
                        mirror_master::config::declared::OnBadFile::Skip,
                    )
                    .await
                    {
                        Ok(Some(done)) => tracing::info!(changes = done.changes.len(), "reloaded on SIGHUP"),
                        Ok(None) => tracing::info!("SIGHUP: no projects_dir is set"),
                        Err(e) => tracing::error!(error = %e, "SIGHUP: projects_dir not applied; nothing changed"),
                    }
                }
            });
            app.run_until_stopped(shutdown_signal()).await
        }
        Command::CreateUser { name, role } => {
            let role = match role {
                RoleArg::Root => Role::Root,
                RoleArg::User => Role::User,
            };
            let password = read_password()?;
            mirror_master::create_user_offline(settings, &name, password, role).await?;
            eprintln!("created user '{name}' with role {}", role.as_str());
            Ok(())
        }
        Command::Migrate { from, to } => {
            let copied = mirror_master::migrate_offline(settings, &from, &to).await?;
            for (table, rows) in &copied {
                eprintln!("{table}: {rows} rows");
            }
            eprintln!("copied {} into {}", from.display(), to);
            Ok(())
        }
    }
}

fn main() -> ExitCode {
    // Thousands of runs starting at once each touch the file system through the blocking pool;
    // tokio's default of 512 threads costs far more memory than it gains here.
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().max_blocking_threads(64).build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("mirror-master: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(Cli::parse())) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mirror-master: {e:#}");
            ExitCode::FAILURE
        }
    }
}
