//! Load test of a running master (issue 10): N concurrent keep-alive clients for S seconds, mixed
//! 80 % listing / 10 % add / 5 % update / 5 % remove, each request with a 5 s client timeout.
//! On a 503 a client waits the second `Retry-After` asks for (`LOAD_IGNORE_RETRY_AFTER=1`: it asks
//! again at once); `LOAD_GZIP=1`: listings are asked for with `Accept-Encoding: gzip`. Prints, per kind: answers, 503s, other 5xx, timeouts, p50/p99/max latency; then checks that every
//! acknowledged add is listed and every acknowledged removal is not.
//!
//! `cargo run --release -p mirror-tests --example load -- URL USER PASSWORD [CLIENTS] [SECONDS] [PROJECTS]`
//! (`bench/load.sh` starts a master, runs this and prints the master's peak RSS.)

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::json;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    List,
    Add,
    Update,
    Remove,
}

const KINDS: [Kind; 4] = [Kind::List, Kind::Add, Kind::Update, Kind::Remove];

#[derive(Default)]
struct Tally {
    /// Latencies of answered requests (2xx and 4xx), in microseconds.
    answered: Vec<u32>,
    overloaded: u64,
    server_errors: u64,
    timeouts: u64,
    other_errors: u64,
}

#[derive(Default)]
struct ClientResult {
    tallies: [Tally; 4],
    /// Projects whose add was acknowledged and not removed since (by an acknowledged removal).
    present: HashSet<String>,
    /// Projects whose removal was acknowledged (and not added again since).
    absent: HashSet<String>,
    /// Projects whose last write's fate is unknown (timed out): not checked.
    unknown: HashSet<String>,
}

enum Outcome {
    Ok,
    ClientError,
    Overloaded,
    ServerError,
    Timeout,
    Other,
}

async fn send(request: reqwest::RequestBuilder) -> Outcome {
    match request.send().await {
        Ok(mut r) => {
            let status = r.status();
            // The body is read whole (and dropped as it comes): an answer counts when it has arrived.
            let body = async {
                while r.chunk().await?.is_some() {}
                Ok::<(), reqwest::Error>(())
            }
            .await;
            match (status.as_u16(), body) {
                (_, Err(e)) if e.is_timeout() => Outcome::Timeout,
                (_, Err(_)) => Outcome::Other,
                (200..=299, _) => Outcome::Ok,
                (503, _) => Outcome::Overloaded,
                (500..=599, _) => Outcome::ServerError,
                _ => Outcome::ClientError,
            }
        }
        Err(e) if e.is_timeout() => Outcome::Timeout,
        Err(e) => {
            static SHOWN: AtomicBool = AtomicBool::new(false);
            if !SHOWN.swap(true, Ordering::Relaxed) {
                println!("first connection error: {e:?}");
            }
            Outcome::Other
        }
    }
}

fn project_body(id: &str, minute: u32) -> serde_json::Value {
    json!({
        "project": id, "rsync_host": "rsync.example.org", "rsync_module": format!("mod/{id}"),
        "dest": format!("load/{id}"),
        "cron_options": {"hour": "*/6", "minute": (minute % 60).to_string()},
        "rsync_options": {"basic": ["--no-motd"], "delete": "--delete-after"}
    })
}

struct Config {
    ignore_retry_after: bool,
    /// LOAD_GZIP=1: listings are asked for gzip (and read as they come, not decompressed).
    gzip: bool,
    base: String,
    user: String,
    password: String,
}

async fn client(index: usize, config: Arc<Config>, stop: Arc<AtomicBool>) -> anyhow::Result<ClientResult> {
    // One client, one keep-alive connection.
    let http = reqwest::Client::builder().timeout(Duration::from_secs(5)).pool_max_idle_per_host(1).build()?;
    let mut result = ClientResult::default();
    let mut mine: Vec<String> = Vec::new();
    let mut counter = 0u64;
    let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(index as u64);
    while !stop.load(Ordering::Relaxed) {
        let roll: u32 = rand::Rng::random_range(&mut rng, 0..100);
        let kind = match roll {
            0..80 => Kind::List,
            80..90 => Kind::Add,
            90..95 => Kind::Update,
            _ => Kind::Remove,
        };
        let auth = |r: reqwest::RequestBuilder| r.basic_auth(&config.user, Some(&config.password));
        let (request, subject) = match kind {
            Kind::List => {
                let mut list = auth(http.get(format!("{}/list_projects/", config.base)));
                if config.gzip {
                    list = list.header("accept-encoding", "gzip");
                }
                (list, None)
            }
            Kind::Add => {
                counter += 1;
                let id = format!("c{index}-{counter}");
                (
                    auth(http.post(format!("{}/add_project/", config.base))).json(&project_body(&id, index as u32)),
                    Some(id),
                )
            }
            Kind::Update => {
                // The preloaded projects are shared: updates land on them.
                let target = format!("pre{}", rand::Rng::random_range(&mut rng, 0..1000));
                let body = json!({"id": target, "rsync_host": format!("h{index}.example.org")});
                (auth(http.post(format!("{}/update_project/basic/", config.base))).json(&body), None)
            }
            Kind::Remove => match mine.pop() {
                Some(id) => {
                    (auth(http.post(format!("{}/remove_project/", config.base))).json(&json!({"id": id})), Some(id))
                }
                None => continue,
            },
        };
        let started = Instant::now();
        let outcome = send(request).await;
        let micros = u32::try_from(started.elapsed().as_micros()).unwrap_or(u32::MAX);
        let tally = &mut result.tallies[KINDS.iter().position(|k| *k == kind).unwrap_or(0)];
        match outcome {
            Outcome::Ok | Outcome::ClientError => tally.answered.push(micros),
            Outcome::Overloaded => {
                tally.overloaded += 1;
                // A well-behaved client waits as told (LOAD_IGNORE_RETRY_AFTER=1: it does not).
                if !config.ignore_retry_after {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
            Outcome::ServerError => tally.server_errors += 1,
            Outcome::Timeout => tally.timeouts += 1,
            Outcome::Other => tally.other_errors += 1,
        }
        let Some(id) = subject else { continue };
        match (kind, outcome) {
            (Kind::Add, Outcome::Ok) => {
                result.present.insert(id.clone());
                mine.push(id);
            }
            (Kind::Remove, Outcome::Ok) => {
                result.present.remove(&id);
                result.absent.insert(id);
            }
            // Refused (4xx) or overloaded (503): nothing was written, as promised.
            (Kind::Add, Outcome::ClientError | Outcome::Overloaded) => {}
            (Kind::Remove, Outcome::ClientError | Outcome::Overloaded) => mine.push(id),
            _ => {
                result.present.remove(&id);
                result.unknown.insert(id);
            }
        }
    }
    Ok(result)
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    f64::from(sorted[rank.clamp(1, sorted.len()) - 1]) / 1000.0
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [base, user, password, rest @ ..] = args.as_slice() else {
        bail!("usage: load URL USER PASSWORD [CLIENTS] [SECONDS] [PROJECTS]");
    };
    let clients: usize = rest.first().map_or(Ok(1000), |s| s.parse()).context("CLIENTS")?;
    let seconds: u64 = rest.get(1).map_or(Ok(60), |s| s.parse()).context("SECONDS")?;
    let projects: usize = rest.get(2).map_or(Ok(1000), |s| s.parse()).context("PROJECTS")?;
    let ignore_retry_after = std::env::var("LOAD_IGNORE_RETRY_AFTER").is_ok_and(|v| v == "1");
    let gzip = std::env::var("LOAD_GZIP").is_ok_and(|v| v == "1");
    let config = Arc::new(Config {
        ignore_retry_after,
        gzip,
        base: base.trim_end_matches('/').to_owned(),
        user: user.clone(),
        password: password.clone(),
    });

    // Preload, 16 at a time.
    let http = reqwest::Client::builder().timeout(Duration::from_secs(30)).build()?;
    let started = Instant::now();
    let mut pending = tokio::task::JoinSet::new();
    for i in 0..projects {
        let (http, config) = (http.clone(), Arc::clone(&config));
        pending.spawn(async move {
            let r = http
                .post(format!("{}/add_project/", config.base))
                .basic_auth(&config.user, Some(&config.password))
                .json(&project_body(&format!("pre{i}"), i as u32))
                .send()
                .await?;
            anyhow::ensure!(r.status().is_success() || r.status().as_u16() == 409, "preload: {}", r.status());
            Ok(())
        });
        while pending.len() >= 16 {
            if let Some(done) = pending.join_next().await {
                done??;
            }
        }
    }
    while let Some(done) = pending.join_next().await {
        done??;
    }
    println!("preloaded {projects} projects in {:.1} s", started.elapsed().as_secs_f64());

    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..clients {
        tasks.spawn(client(i, Arc::clone(&config), Arc::clone(&stop)));
    }
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    stop.store(true, Ordering::Relaxed);
    let mut total = ClientResult::default();
    while let Some(done) = tasks.join_next().await {
        let r = done??;
        for (t, mut r) in total.tallies.iter_mut().zip(r.tallies) {
            t.answered.append(&mut r.answered);
            t.overloaded += r.overloaded;
            t.server_errors += r.server_errors;
            t.timeouts += r.timeouts;
            t.other_errors += r.other_errors;
        }
        total.present.extend(r.present);
        total.absent.extend(r.absent);
        total.unknown.extend(r.unknown);
    }

    println!(
        "{clients} clients, {seconds} s, {projects} projects preloaded; on a 503 the clients {}; listings {}",
        if ignore_retry_after { "ask again at once" } else { "wait the Retry-After second" },
        if gzip { "asked for gzip" } else { "plain" }
    );
    println!(
        "{:<8} {:>9} {:>8} {:>8} {:>6} {:>8} {:>9} {:>9} {:>9}",
        "kind", "answered", "per s", "503", "5xx", "timeouts", "p50 ms", "p99 ms", "max ms"
    );
    let mut failed = false;
    for (kind, t) in KINDS.iter().zip(total.tallies.iter_mut()) {
        t.answered.sort_unstable();
        println!(
            "{:<8} {:>9} {:>8.0} {:>8} {:>6} {:>8} {:>9.1} {:>9.1} {:>9.1}",
            format!("{kind:?}").to_lowercase(),
            t.answered.len(),
            t.answered.len() as f64 / seconds as f64,
            t.overloaded,
            t.server_errors,
            t.timeouts,
            percentile(&t.answered, 50.0),
            percentile(&t.answered, 99.0),
            percentile(&t.answered, 100.0),
        );
        failed |= t.server_errors > 0 || t.timeouts > 0 || t.other_errors > 0;
        if t.other_errors > 0 {
            println!("  {} requests failed without an answer (connection errors)", t.other_errors);
        }
    }

    // Every acknowledged write is there, every acknowledged removal is not.
    let listing: Vec<serde_json::Value> = http
        .get(format!("{}/list_projects/", config.base))
        .basic_auth(&config.user, Some(&config.password))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let listed: HashSet<&str> = listing.iter().filter_map(|p| p["id"].as_str()).collect();
    let lost: Vec<&String> = total.present.iter().filter(|id| !listed.contains(id.as_str())).collect();
    let revived: Vec<&String> =
        total.absent.iter().filter(|id| !total.present.contains(*id) && listed.contains(id.as_str())).collect();
    println!(
        "after the run: {} projects listed; {} acknowledged adds all present: {}; {} acknowledged removals all absent: {}; {} writes of unknown fate",
        listed.len(),
        total.present.len(),
        lost.is_empty(),
        total.absent.len(),
        revived.is_empty(),
        total.unknown.len()
    );
    if !lost.is_empty() || !revived.is_empty() {
        println!("lost: {lost:?}\nstill there: {revived:?}");
        failed = true;
    }
    if failed {
        bail!("the load test failed: see above");
    }
    Ok(())
}
