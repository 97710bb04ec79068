//! Slaves: list them, add one (its token printed once), remove one, rotate its token.

use mirror_common::api::{
    AddSlave, Done, Host, Port, RemoveSlave, RotateSlaveToken, SlaveAdded, SlaveRemoved, SlaveToken, SlaveView,
};

use crate::cli::SlavesCmd;
use crate::client::{Client, Exit, Failure, Result, invalid};
use crate::render::{paint, print_json, table, time_text};

/// `host:port` (an IPv6 address as `[::1]:7000`), as `slaves` lists it.
fn slave_ref(slave: &str) -> Result<(Host, Port)> {
    let bad = || Failure::new(Exit::Usage, format!("'{slave}' is not HOST:PORT"));
    let (host, port) = slave.rsplit_once(':').ok_or_else(bad)?;
    let port: u16 = port.parse().map_err(|_| bad())?;
    let host = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
    Ok((invalid("hostname", Host::parse(host))?, invalid("port", Port::try_from(port))?))
}

pub async fn slaves(c: &Client, action: SlavesCmd, as_json: bool) -> Result<()> {
    // What a change answered: (method, a token shown once, what else it says).
    let (method, token, details) = match action {
        SlavesCmd::List => return list(c, as_json).await,
        SlavesCmd::Add { hostname, port } => {
            let body = AddSlave {
                hostname: invalid("hostname", Host::parse(hostname))?,
                port: Some(invalid("port", Port::try_from(port))?),
                comment: None,
                version: None,
            };
            let done: Done<SlaveAdded> = c.post("/add_slave/", &body).await?;
            if as_json {
                return print_json(&done);
            }
            (done.method, done.body.token, done.body.details)
        }
        SlavesCmd::Rm { slave } => {
            let (hostname, port) = slave_ref(&slave)?;
            let body = RemoveSlave { hostname, port: Some(port), comment: None, version: None };
            let done: Done<SlaveRemoved> = c.post("/remove_slave/", &body).await?;
            if as_json {
                return print_json(&done);
            }
            (done.method, None, None)
        }
        SlavesCmd::Rotate { slave } => {
            let (hostname, port) = slave_ref(&slave)?;
            let body = RotateSlaveToken { hostname, port: Some(port), comment: None, version: None };
            let done: Done<SlaveToken> = c.post("/rotate_slave_token/", &body).await?;
            if as_json {
                return print_json(&done);
            }
            (done.method, Some(done.body.token), None)
        }
    };
    // A new token is printed alone, to be put in the slave's environment.
    match token {
        Some(token) => println!("{token}"),
        None => println!("{method}: {}", details.as_deref().unwrap_or("done")),
    }
    Ok(())
}

async fn list(c: &Client, as_json: bool) -> Result<()> {
    let slaves: Vec<SlaveView> = c.get("/list_slaves/").await?;
    if as_json {
        return print_json(&slaves);
    }
    let mut t = table(&["SLAVE", "HEALTHY", "LAST SEEN", "BEHIND ON"]);
    for s in &slaves {
        let behind: Vec<String> =
            s.projects.iter().filter(|p| p.lag > 0).map(|p| format!("{} ({})", p.project, p.lag)).collect();
        t.add_row(vec![
            s.name.clone(),
            paint(if s.healthy { "success" } else { "failed" }).replace("success", "yes").replace("failed", "no"),
            time_text(s.last_seen),
            if behind.is_empty() { "-".into() } else { behind.join(", ") },
        ]);
    }
    println!("{t}");
    Ok(())
}
