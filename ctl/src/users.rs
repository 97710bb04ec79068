//! API users: list, add, remove, change a password.

use mirror_common::Secret;
use mirror_common::api::{CreateUser, Done, Name, RemoveUser, Role, UpdateUser, UserChanged, UserView};

use crate::cli::{RoleArg, UsersCmd};
use crate::client::{Client, Exit, Result, invalid};
use crate::prompt::read_password;
use crate::render::{print_json, table, time_text};

pub async fn users(c: &Client, action: UsersCmd, as_json: bool) -> Result<()> {
    let done: Done<UserChanged> = match action {
        UsersCmd::List => return list(c, as_json).await,
        UsersCmd::Add { name, role, password_stdin } => {
            let password = read_password(password_stdin, &format!("password for the new user {name}: "))?;
            let role = match role {
                RoleArg::Root => Role::Root,
                RoleArg::User => Role::User,
            };
            let username = invalid("username", Name::parse(name))?;
            let body = CreateUser {
                username,
                password: Secret::new(password),
                role: Some(role),
                comment: None,
                version: None,
            };
            c.post("/create_api_user/", &body).await?
        }
        UsersCmd::Rm { name } => {
            let body = RemoveUser { username: invalid("username", Name::parse(name))?, comment: None, version: None };
            c.post("/remove_api_user/", &body).await?
        }
        UsersCmd::Passwd { name, password_stdin } => {
            let password = read_password(password_stdin, &format!("new password for {name}: "))?;
            let mut body = UpdateUser {
                username: invalid("username", Name::parse(name.as_str()))?,
                password: Some(Secret::new(password)),
                current_password: None,
                role: None,
                comment: None,
                version: None,
            };
            match c.post("/update_api_user/", &body).await {
                // Logged in with a token, changing one's own password needs the current one
                // (with --password-stdin: the next line).
                Err(f) if f.exit == Exit::Invalid && f.message.contains("current_password") => {
                    let current = read_password(password_stdin, &format!("current password of {name}: "))?;
                    body.current_password = Some(Secret::new(current));
                    c.post("/update_api_user/", &body).await?
                }
                other => other?,
            }
        }
    };
    if as_json {
        return print_json(&done);
    }
    println!("{}: done", done.method);
    Ok(())
}

async fn list(c: &Client, as_json: bool) -> Result<()> {
    let users: Vec<UserView> = c.get("/list_users/").await?;
    if as_json {
        return print_json(&users);
    }
    let mut t = table(&["USER", "ROLE", "CREATED"]);
    for u in &users {
        t.add_row(vec![u.username.to_string(), u.role.to_string(), time_text(Some(u.created_at))]);
    }
    println!("{t}");
    Ok(())
}
