//! Safe publish (issue 16) against a real rsync daemon: two-stage sync keeps a reader from ever
//! seeing an index that names a missing file (one stage does not), and the upstream's update lock
//! holds stage 2 back.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use mirror_tests::rsyncd::{UPSTREAM_PASSWORD, UPSTREAM_USER, Upstream, snapshot};
use mirror_tests::{Auth, TestMaster, finished_run, wait_for};
use reqwest::StatusCode;
use serde_json::{Value, json};

const PACKAGES: &str = "dists/stable/main/binary-amd64/Packages";
const LOCK: &str = "Archive-Update-in-Progress-m1";

fn write(root: &Path, rel: &str, content: &[u8]) {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, content).unwrap();
}

/// A Debian-shaped archive: an index naming its packages, a Release, the pool.
fn archive(root: &Path, packages: &[(&str, usize)]) {
    let mut index = String::new();
    for (name, size) in packages {
        let file = format!("pool/main/{}/{name}", &name[..1]);
        if !root.join(&file).exists() {
            write(root, &file, &vec![b'x'; *size]);
        }
        index.push_str(&format!("Package: {name}\nFilename: {file}\n\n"));
    }
    write(root, PACKAGES, index.as_bytes());
    write(root, "dists/stable/Release", format!("Packages: {}\n", packages.len()).as_bytes());
}

fn project(name: &str, upstream: &Upstream, extra: Value) -> Value {
    let mut p = json!({
        "project": name, "rsync_host": "127.0.0.1", "rsync_port": upstream.port, "rsync_module": "data",
        "rsync_user": UPSTREAM_USER, "rsync_password": UPSTREAM_PASSWORD, "dest": name,
        // Slow enough that a 400 KB package takes about two seconds to arrive.
        "rsync_options": {"basic": ["--no-motd", "--bwlimit=200"], "delete": "--delete"},
    });
    for (k, v) in extra.as_object().unwrap() {
        p[k] = v.clone();
    }
    p
}

async fn run(m: &TestMaster, id: &str) -> i64 {
    let r = m.api.post(&format!("/syncup/?id={id}"), &json!({}), &Auth::user()).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text);
    r.body["run_id"].as_i64().unwrap()
}

/// What a reader looping over the tree saw: indexes naming a file that was not there, and
/// whether the master's update lock showed.
struct Seen {
    broken: Vec<String>,
    lock_seen: bool,
}

fn watch_tree(dest: PathBuf, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<Seen> {
    std::thread::spawn(move || {
        let mut seen = Seen { broken: Vec::new(), lock_seen: false };
        while !stop.load(Ordering::SeqCst) {
            seen.lock_seen |= dest.join(LOCK).exists();
            if let Ok(index) = std::fs::read_to_string(dest.join(PACKAGES)) {
                for file in index.lines().filter_map(|l| l.strip_prefix("Filename: ")) {
                    if !dest.join(file).exists() {
                        seen.broken.push(file.to_owned());
                    }
                }
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        seen
    })
}

/// Syncs `id` while a reader loops over its tree; returns the run and what the reader saw.
async fn sync_watched(m: &TestMaster, id: &str) -> (Value, Seen) {
    let stop = Arc::new(AtomicBool::new(false));
    let reader = watch_tree(m.mirror_root().join(id), stop.clone());
    let run = finished_run(&m.api, run(m, id).await, 60).await;
    stop.store(true, Ordering::SeqCst);
    (run, reader.join().unwrap())
}

#[tokio::test]
async fn one_stage_shows_an_index_naming_a_missing_file_and_two_stages_never_do() {
    let upstream = Upstream::start().await;
    archive(&upstream.data(), &[("a_1.deb", 1000)]);
    let dir = tempfile::tempdir().unwrap();
    let mut s = TestMaster::settings_in(dir.path());
    s.mirror_name = Some(mirror_common::names::Name::from_static("m1"));
    let m = TestMaster::start_with(dir, s).await;
    for body in [
        project("single", &upstream, json!({})),
        project("staged", &upstream, json!({"stages": {"profile": "debian"}})),
    ] {
        assert_eq!(m.api.post("/add_project/", &body, &Auth::root()).await.status, StatusCode::CREATED);
    }
    for id in ["single", "staged"] {
        assert_eq!(finished_run(&m.api, run(&m, id).await, 60).await["status"], json!("success"));
    }

    // A new version: a new, large package, named by the new index.
    archive(&upstream.data(), &[("a_1.deb", 1000), ("b_2.deb", 400 * 1024)]);
    let (single, seen) = sync_watched(&m, "single").await;
    assert_eq!(single["status"], json!("success"), "{single}");
    assert!(!seen.broken.is_empty(), "one stage: the reader saw the new index before its package");
    println!("one stage: {} reads of an index naming a missing file", seen.broken.len());

    let (staged, seen) = sync_watched(&m, "staged").await;
    assert_eq!(staged["status"], json!("success"), "{staged}");
    assert!(
        seen.broken.is_empty(),
        "two stages: the index named missing files {:?}",
        &seen.broken[..5.min(seen.broken.len())]
    );
    assert!(seen.lock_seen, "the master's Archive-Update-in-Progress showed while it synced");
    let dest = m.mirror_root().join("staged");
    assert!(!dest.join(LOCK).exists(), "and is gone after");
    assert_eq!(snapshot(&dest), snapshot(&upstream.data()));

    // A package removed upstream goes in stage 2 (--delete-delay), after the new index.
    archive(&upstream.data(), &[("b_2.deb", 400 * 1024)]);
    std::fs::remove_file(upstream.data().join("pool/main/a/a_1.deb")).unwrap();
    let (removed, seen) = sync_watched(&m, "staged").await;
    assert_eq!(removed["status"], json!("success"), "{removed}");
    assert!(seen.broken.is_empty(), "{:?}", seen.broken);
    assert_eq!(snapshot(&dest), snapshot(&upstream.data()));
}

#[tokio::test]
async fn the_upstreams_update_lock_holds_stage_two_back() {
    let upstream = Upstream::start().await;
    archive(&upstream.data(), &[("a_1.deb", 100)]);
    let dir = tempfile::tempdir().unwrap();
    let mut s = TestMaster::settings_in(dir.path());
    s.mirror_name = Some(mirror_common::names::Name::from_static("m1"));
    s.upstream_lock_retry_secs = 1;
    s.upstream_lock_wait_secs = 3;
    let m = TestMaster::start_with(dir, s).await;
    let body = project(
        "locked",
        &upstream,
        json!({"stages": {"profile": "debian"}, "trace": true, "rsync_options": {"basic": ["--no-motd"], "delete": "--delete"}}),
    );
    assert_eq!(m.api.post("/add_project/", &body, &Auth::root()).await.status, StatusCode::CREATED);
    assert_eq!(finished_run(&m.api, run(&m, "locked").await, 60).await["status"], json!("success"));
    let dest = m.mirror_root().join("locked");

    // The upstream is updating, and stays so: stage 2 never runs; the old index stays.
    let upstream_lock = upstream.data().join("Archive-Update-in-Progress-upstream.example");
    std::fs::write(&upstream_lock, b"upstream.example\n").unwrap();
    archive(&upstream.data(), &[("a_1.deb", 100), ("c_3.deb", 100)]);
    let held = finished_run(&m.api, run(&m, "locked").await, 60).await;
    assert_eq!(held["status"], json!("failed"), "{held}");
    assert!(held["message"].as_str().unwrap().contains("still being updated"), "{held}");
    assert!(!std::fs::read_to_string(dest.join(PACKAGES)).unwrap().contains("c_3.deb"), "the old index stays");
    assert!(dest.join("pool/main/c/c_3.deb").exists(), "stage 1 brought the package");
    assert!(!dest.join("Archive-Update-in-Progress-upstream.example").exists(), "an upstream lock is never published");
    assert_eq!(m.api.get("/projects/locked", &Auth::root()).await.body["generation"], json!(1));

    // The upstream finishes during the wait: the run goes on and succeeds. (Stage 1 has run once
    // the new package is there; the lock is then found and stage 1 retried each second.)
    archive(&upstream.data(), &[("a_1.deb", 100), ("c_3.deb", 100), ("d_4.deb", 100)]);
    let id = run(&m, "locked").await;
    wait_for(30, "stage 1 to have brought the new package", || async {
        dest.join("pool/main/d/d_4.deb").exists().then_some(())
    })
    .await;
    std::fs::remove_file(&upstream_lock).unwrap();
    let done = finished_run(&m.api, id, 60).await;
    assert_eq!(done["status"], json!("success"), "{done}");
    assert!(std::fs::read_to_string(dest.join(PACKAGES)).unwrap().contains("c_3.deb"));
    // The trace file tells the time of each stage, as ftpsync's does.
    let trace = std::fs::read_to_string(dest.join("project/trace/m1")).unwrap();
    assert!(
        trace.contains("Total time spent in stage1 rsync: ") && trace.contains("Total time spent in stage2 rsync: "),
        "{trace}"
    );
    std::fs::remove_dir_all(dest.join("project")).unwrap();
    assert_eq!(snapshot(&dest), snapshot(&upstream.data()));
}

mod flip {
    use super::*;
    use mirror_tests::cluster::{cluster_settings, served_generations, start_slaves};

    /// Files of 20 KB, each holding only its generation's word.
    fn tree(root: &Path, generation: &str, files: std::ops::Range<usize>) {
        for i in files {
            write(root, &format!("v/{i:02}.txt"), generation.repeat(5 * 1024).as_bytes());
        }
    }

    /// A reader that resolves the project's path once per scan (as an rsync daemon does for each
    /// connection) and reads every file under it: the generations it saw in one scan.
    fn scan(link: &Path) -> Option<std::collections::BTreeSet<String>> {
        let dir = std::fs::canonicalize(link).ok()?;
        let entries = std::fs::read_dir(dir.join("v")).ok()?;
        Some(
            entries
                .flatten()
                .filter_map(|e| std::fs::read_to_string(e.path()).ok())
                .map(|t| t[..4].to_owned())
                .collect(),
        )
    }

    #[tokio::test]
    async fn every_slave_flips_together_and_no_reader_sees_a_mixed_tree() {
        let upstream = Upstream::start().await;
        tree(&upstream.data(), "gen1", 0..40);
        let dir = tempfile::tempdir().unwrap();
        let s = cluster_settings(dir.path());
        let m = TestMaster::start_with(dir, s).await;
        let slaves = start_slaves(&m.api, 3).await;
        // The same tree twice: with flip, and without (the control: its readers must see a mix).
        // Pulls are slowed (800 KB at 400 KB/s) so that readers scan during them.
        for (id, flip) in [("flipped", true), ("direct", false)] {
            let body = json!({
                "project": id, "rsync_host": "127.0.0.1", "rsync_port": upstream.port, "rsync_module": "data",
                "rsync_user": UPSTREAM_USER, "rsync_password": UPSTREAM_PASSWORD, "dest": format!("pub/{id}"),
                "rsync_options": {"basic": ["--no-motd", "--bwlimit=400"], "delete": "--delete"}, "flip": flip,
            });
            assert_eq!(m.api.post("/add_project/", &body, &Auth::root()).await.status, StatusCode::CREATED);
        }
        let all_at = |id: &'static str, g: i64| {
            let api = m.api.clone();
            async move {
                wait_for(30, &format!("every slave at generation {g} of {id}"), || async {
                    let served = served_generations(&api, id).await;
                    (served.len() == 3 && served.iter().all(|(_, s)| *s == g)).then_some(())
                })
                .await
            }
        };
        for id in ["flipped", "direct"] {
            assert_eq!(finished_run(&m.api, run(&m, id).await, 60).await["status"], json!("success"));
            all_at(id, 1).await;
        }
        for s in &slaves {
            let link = s.root().join("pub/flipped");
            assert!(std::fs::symlink_metadata(&link).unwrap().is_symlink(), "the served tree is a symlink");
            assert_eq!(snapshot(&link), snapshot(&upstream.data()));
        }

        // Generation 2: every file changes, one goes, one comes. A reader loops on each slave.
        tree(&upstream.data(), "gen2", 0..39);
        std::fs::remove_file(upstream.data().join("v/39.txt")).unwrap();
        write(&upstream.data(), "v/40.txt", b"gen2");
        let stop = Arc::new(AtomicBool::new(false));
        let readers: Vec<_> = slaves
            .iter()
            .map(|s| s.root().join("pub/flipped"))
            .chain([slaves[0].root().join("pub/direct")])
            .map(|link| {
                let stop = stop.clone();
                std::thread::spawn(move || {
                    let (mut scans, mut mixed) = (0u64, Vec::new());
                    while !stop.load(Ordering::SeqCst) {
                        if let Some(seen) = scan(&link) {
                            scans += 1;
                            if seen.len() > 1 {
                                mixed.push(seen);
                            }
                        }
                    }
                    (scans, mixed)
                })
            })
            .collect();
        let (flipped, direct) = (run(&m, "flipped").await, run(&m, "direct").await);
        for r in [flipped, direct] {
            assert_eq!(finished_run(&m.api, r, 60).await["status"], json!("success"));
        }
        all_at("flipped", 2).await;
        all_at("direct", 2).await;
        stop.store(true, Ordering::SeqCst);
        let mut results: Vec<(u64, Vec<_>)> = readers.into_iter().map(|r| r.join().unwrap()).collect();
        let (control_scans, control_mixed) = results.pop().unwrap();
        assert!(!control_mixed.is_empty(), "without flip a reader saw a mixed tree ({control_scans} scans)");
        println!("without flip: {} of {control_scans} scans saw two generations at once", control_mixed.len());
        for (s, (scans, mixed)) in slaves.iter().zip(results) {
            assert!(scans > 10, "the reader read: {scans} scans");
            assert!(mixed.is_empty(), "slave {}: a scan saw {:?}", s.port, mixed.first());
            assert_eq!(snapshot(&s.root().join("pub/flipped")), snapshot(&upstream.data()));
            println!("with flip, slave {}: {scans} scans, none mixed", s.port);
        }
        let view = m.api.get("/projects/flipped/propagation", &Auth::root()).await.body;
        let spread = view["flip_spread_ms"].as_i64().unwrap();
        println!("generation 2: the last slave flipped {spread} ms after the first");
        assert!(spread <= 100, "{view}");
        for s in view["slaves"].as_array().unwrap() {
            assert_eq!((s["staged_generation"].as_i64(), s["generation"].as_i64()), (Some(2), Some(2)), "{s}");
            assert!(s["flipped_at"].is_string(), "{s}");
        }
        // mirrorctl shows it too.
        let out = tokio::process::Command::new(mirror_tests::binary("mirrorctl"))
            .args(["propagation", "flipped"])
            .env_clear()
            .env("HOME", m.dir.path())
            .env("MIRRORCTL_URL", &m.api.base)
            .env("MIRRORCTL_TOKEN", m.api.token(&Auth::root()).await)
            .output()
            .await
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains(&format!("last flip {spread} ms after the first")) && text.contains("STAGED"), "{text}");
    }

    /// A slave that does not stage in time (down) does not hold the others back beyond
    /// `publish_timeout_secs`: they publish, it is marked a laggard, and it publishes as soon as it
    /// has staged, once back.
    #[tokio::test]
    async fn a_laggard_waits_for_no_one_after_the_publish_timeout() {
        let upstream = Upstream::start().await;
        tree(&upstream.data(), "gen1", 0..5);
        write(&upstream.data(), "keep.txt", b"the same in every generation");
        let dir = tempfile::tempdir().unwrap();
        let mut s = cluster_settings(dir.path());
        s.publish_timeout_secs = 2;
        let m = TestMaster::start_with(dir, s).await;
        let mut slaves = start_slaves(&m.api, 3).await;
        let body = json!({
            "project": "lag", "rsync_host": "127.0.0.1", "rsync_port": upstream.port, "rsync_module": "data",
            "rsync_user": UPSTREAM_USER, "rsync_password": UPSTREAM_PASSWORD, "dest": "pub/lag",
            "rsync_options": {"basic": ["--no-motd"], "delete": "--delete"}, "flip": true,
        });
        assert_eq!(m.api.post("/add_project/", &body, &Auth::root()).await.status, StatusCode::CREATED);
        let served = |g: i64, n: usize| {
            let api = m.api.clone();
            async move {
                wait_for(30, &format!("{n} slaves at generation {g}"), || async {
                    let served = served_generations(&api, "lag").await;
                    (served.iter().filter(|(_, s)| *s == g).count() == n).then_some(served)
                })
                .await
            }
        };
        assert_eq!(finished_run(&m.api, run(&m, "lag").await, 60).await["status"], json!("success"));
        served(1, 3).await;

        slaves[2].kill().await;
        let laggard = format!("127.0.0.1:{}", slaves[2].port);
        tree(&upstream.data(), "gen2", 0..5);
        assert_eq!(finished_run(&m.api, run(&m, "lag").await, 60).await["status"], json!("success"));
        let now = served(2, 2).await;
        assert!(now.iter().any(|(n, g)| *n == laggard && *g == 1), "{now:?}");
        let view = m.api.get("/projects/lag/propagation", &Auth::root()).await.body;
        assert_eq!(view["laggards"], json!([laggard]), "{view}");
        assert_eq!(std::fs::read_to_string(slaves[2].root().join("pub/lag/v/00.txt")).unwrap()[..4], *"gen1");
        // A staged generation costs only its changes: an unchanged file is a hard link.
        use std::os::unix::fs::MetadataExt;
        let gens = slaves[0].root().join(".mirror-sync-gen/lag");
        let inode = |g: &str| std::fs::metadata(gens.join(g).join("keep.txt")).unwrap().ino();
        assert_eq!(inode("1"), inode("2"), "keep.txt is shared by generations 1 and 2");

        slaves[2].restart().await;
        served(2, 3).await;
        assert_eq!(snapshot(&slaves[2].root().join("pub/lag")), snapshot(&upstream.data()));
    }
}
