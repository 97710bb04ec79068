//! `mirror-confine [--parent PID] [--unconfined | [--rw DIR]... [--ro PATH]...] -- PROGRAM [ARG]...`:
//! restricts itself with Landlock, then execs PROGRAM. With `--parent`, it starts PROGRAM as its
//! child instead and stays: when PID (the master or slave that started it) is gone, whatever way it
//! ended, it kills PROGRAM's process group. `--unconfined`: no Landlock, the guard only. `--probe`
//! says whether this kernel can confine.
//! Exit 126 when it cannot confine or exec: the program never runs unconfined.

use std::os::unix::process::CommandExt;
use std::process::ExitCode;

use mirror_confine::{
    Enforced, Invocation, Policy, apply_limits, check_parent, parse_args, resolve_program, restrict, supervise,
};

fn fail(message: &str) -> ExitCode {
    eprintln!("mirror-confine: {message}");
    ExitCode::from(126)
}

fn main() -> ExitCode {
    let invocation = match parse_args(std::env::args_os().skip(1)) {
        Ok(i) => i,
        Err(e) => return fail(&e),
    };
    match invocation {
        Invocation::Probe => match restrict(&Policy::default(), None) {
            Ok(Enforced::Fully) => {
                println!("landlock: fully enforced");
                ExitCode::SUCCESS
            }
            Ok(Enforced::Partially) => {
                println!("landlock: enforced (without signal scoping)");
                ExitCode::SUCCESS
            }
            Err(e) => fail(&e),
        },
        Invocation::Run { launch, program, args } => {
            if let Some(parent) = launch.parent
                && let Err(e) = check_parent(parent)
            {
                return fail(&e);
            }
            if let Err(e) = apply_limits(&launch.limits) {
                return fail(&e);
            }
            let Some(resolved) = resolve_program(&program) else {
                return fail(&format!("{} not found in PATH", program.to_string_lossy()));
            };
            if let Some(policy) = &launch.policy
                && let Err(e) = restrict(policy, Some(&resolved))
            {
                return fail(&e);
            }
            // argv[0] stays the program's path, so the process shows as the program itself.
            let mut command = std::process::Command::new(&resolved);
            command.arg0(&program).args(&args);
            match launch.parent {
                Some(parent) => supervise(command, parent),
                None => {
                    let error = command.exec();
                    fail(&format!("cannot exec {}: {error}", resolved.display()))
                }
            }
        }
    }
}
