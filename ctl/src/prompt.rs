//! Passwords: from a 0600 file, from stdin, or asked for on the terminal (never from argv).

use std::io::IsTerminal;

use crate::client::{Exit, Failure, Result};

/// The first line of a password file, which must not be readable by others.
pub fn password_from_file(path: &std::path::Path) -> Result<String> {
    use std::os::unix::fs::PermissionsExt;
    let shown = path.display();
    let meta = std::fs::metadata(path).map_err(|e| Failure::new(Exit::Usage, format!("{shown}: {e}")))?;
    if meta.permissions().mode() & 0o077 != 0 {
        return Err(Failure::new(Exit::Usage, format!("{shown}: readable by others: chmod 600 it first")));
    }
    let text = std::fs::read_to_string(path).map_err(|e| Failure::new(Exit::Usage, format!("{shown}: {e}")))?;
    let line = text.lines().next().unwrap_or("").to_owned();
    if line.is_empty() {
        return Err(Failure::new(Exit::Usage, format!("{shown}: no password on its first line")));
    }
    Ok(line)
}

pub fn read_password(from_stdin: bool, prompt: &str) -> Result<String> {
    let password = if from_stdin || !std::io::stdin().is_terminal() {
        let mut line = String::new();
        std::io::stdin().read_line(&mut line)?;
        line.trim_end_matches(['\n', '\r']).to_owned()
    } else {
        rpassword::prompt_password(prompt)?
    };
    if password.is_empty() {
        return Err(Failure::new(Exit::Usage, "no password given"));
    }
    Ok(password)
}
