//! `mirrorctl`: the operator's command line for a mirror-sync master. It speaks the master's HTTP
//! API with the wire types of `mirror-common`, and nothing else of the master: each resource's
//! commands have a file, `render` shows what they answer.

mod cli;
mod client;
mod cluster;
mod edit;
mod projects;
mod prompt;
mod proxy;
mod push;
mod render;
mod runs;
mod slaves;
mod targets;
mod transfer;
mod users;
mod watch;

use std::process::ExitCode;

use clap::{CommandFactory, Parser};
use cli::{Cli, Cmd, SlavesCmd, UsersCmd};
use client::{Client, Empty, Exit, Failure, Result};
use mirror_common::api::TokenResponse;

async fn run(cli: Cli) -> Result<()> {
    let url = client::resolve_url(cli.url.as_deref());
    let login = match cli.command {
        // Logging in needs no saved token (and must not renew one).
        Cmd::Login { .. } | Cmd::Completion { .. } | Cmd::Man | Cmd::SshTrigger { .. } => client::Login::None,
        _ => client::resolve_login(&url).await,
    };
    let c = Client::new(url.clone(), login.clone())?;
    let json = cli.json;
    match cli.command {
        Cmd::Login { user, password_stdin } => log_in(url, user, password_stdin).await?,
        Cmd::Proxy { listen } => proxy::serve(c, &listen).await?,
        Cmd::Token => match login {
            client::Login::Bearer(t) => println!("{t}"),
            _ => return Err(Failure::new(Exit::Auth, "no token: run `mirrorctl login` or set MIRRORCTL_TOKEN")),
        },
        Cmd::List { status, stale_after_hours, format } => {
            projects::list(&c, &status, stale_after_hours, format.as_deref(), json).await?
        }
        Cmd::Show { project } => projects::show(&c, &project, json).await?,
        Cmd::Add(add) => projects::add(&c, *add, json).await?,
        Cmd::Rm { project: Some(project), .. } => projects::remove(&c, &project, json).await?,
        Cmd::Rm { project: None, .. } => projects::remove_disabled(&c, json).await?,
        Cmd::Enable { project } => projects::switch(&c, &project, true, json).await?,
        Cmd::Disable { project } => projects::switch(&c, &project, false, json).await?,
        Cmd::Propagation { project } => projects::propagation(&c, &project, json).await?,
        Cmd::Sync { project, wait } => runs::sync(&c, &project, wait, json).await?,
        Cmd::TriggerToken { project } => runs::trigger_token(&c, &project, json).await?,
        Cmd::SshTrigger { project, archives, token_dir } => {
            push::ssh_trigger(&c.url, &project, &archives, token_dir).await?
        }
        Cmd::Stop { project } => runs::stop(&c, &project, json).await?,
        Cmd::Logs { project, run, follow } => runs::logs(&c, &project, run, follow).await?,
        Cmd::History { project, limit, config: true, patch } => {
            edit::versions(&c, &project, patch, limit, json).await?
        }
        Cmd::History { project, limit, .. } => runs::history(&c, &project, limit, json).await?,
        Cmd::Push { project, target, wait } => targets::push(&c, &project, target.as_deref(), wait, json).await?,
        Cmd::Targets { project } => targets::list(&c, &project, json).await?,
        Cmd::Slaves { action } => slaves::slaves(&c, action.unwrap_or(SlavesCmd::List), json).await?,
        Cmd::Users { action } => users::users(&c, action.unwrap_or(UsersCmd::List), json).await?,
        Cmd::Edit { project, yes, message } => edit::edit(&c, &project, yes, message).await?,
        Cmd::Versions { project, patch, limit } => edit::versions(&c, &project, patch, limit, json).await?,
        Cmd::Revert { project, version, message, password_stdin } => {
            let password =
                if password_stdin { Some(prompt::read_password(true, "upstream password: ")?) } else { None };
            edit::revert(&c, &project, version, message, password).await?
        }
        Cmd::Export { format, dest } => transfer::export(&c, &format, dest.as_deref()).await?,
        Cmd::Import { src, prune, dry_run, message } => {
            let doc = transfer::read_source(&src)?;
            transfer::send(&c, &doc, prune, dry_run, message.as_deref(), json).await?;
        }
        Cmd::Reload => {
            let report = c.post("/reload", &Empty {}).await?;
            transfer::print_report(&report, false, json)?;
        }
        Cmd::Diff { src } => {
            let doc = transfer::read_source(&src)?;
            transfer::send(&c, &doc, true, true, None, json).await?;
        }
        Cmd::Copy { from, to, prune, dry_run, message } => {
            copy(&url, &from, &to, prune, dry_run, message.as_deref(), json).await?
        }
        Cmd::Watch { since, count } => watch::watch(&c, since, count, json).await?,
        Cmd::Nodes => cluster::nodes(&c, json).await?,
        Cmd::Alerts { limit } => cluster::alerts(&c, limit, json).await?,
        Cmd::Man => clap_mangen::Man::new(Cli::command()).render(&mut std::io::stdout())?,
        Cmd::Completion { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "mirrorctl", &mut std::io::stdout());
        }
    }
    Ok(())
}

/// Logs in with a password and keeps the token for the next commands.
async fn log_in(url: String, user: String, password_stdin: bool) -> Result<()> {
    let password = prompt::read_password(password_stdin, &format!("password for {user} at {url}: "))?;
    let basic = Client::new(url.clone(), client::Login::Basic(user.clone(), password))?;
    let token: TokenResponse = basic.get("/get_token/").await?;
    let saved = client::SavedToken::from_response(url, user, token);
    let path = client::save_token(&saved)?;
    eprintln!("logged in as {}; token kept in {} until {}", saved.username, path.display(), saved.expires_at);
    Ok(())
}

/// Copies the configuration of one master to another.
async fn copy(
    url: &str,
    from: &str,
    to: &str,
    prune: bool,
    dry_run: bool,
    message: Option<&str>,
    json: bool,
) -> Result<()> {
    let (from, to) = (client::resolve_url(Some(from)), client::resolve_url(Some(to)));
    // The environment's credentials go to the master mirrorctl is pointed at, if it is one
    // of the two; the other side logs in with its own saved token only.
    let login_for = async |side: &str| {
        if side == url { client::resolve_login(side).await } else { client::resolve_login_elsewhere(side).await }
    };
    let source = Client::new(from.clone(), login_for(&from).await)?;
    let target = Client::new(to.clone(), login_for(&to).await)?;
    transfer::copy(&source, &target, prune, dry_run, message, json).await
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            eprintln!("mirrorctl: {}", f.message);
            ExitCode::from(f.exit as u8)
        }
    }
}
