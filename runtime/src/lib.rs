//! What the mirror-sync master and slave share beyond the wire types of `mirror-common`: running
//! rsync (confined by `mirror-confine`, as another account, with a timeout, its output streamed and
//! its `--stats` read), the HTTP/1.1 server loop with its limits, and file-system checks. The CLI
//! does not depend on it.

pub mod fs;
pub mod logging;
pub mod rsync;
pub mod server;
