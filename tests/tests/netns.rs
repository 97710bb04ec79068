//! Slaves on their own network addresses, in Linux network namespaces joined by a bridge; one
//! slave's link is cut during a sync and restored, and that slave must converge.
//! Needs root and `ip` (iproute2); without them the test says so and skips itself.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::{Command, Stdio};
use std::time::Duration;

use mirror_tests::cluster::{RSYNCD_PASSWORD, cluster_settings, served_generations};
use mirror_tests::rsyncd::{UPSTREAM_PASSWORD, UPSTREAM_USER, Upstream, free_port, generate_tree, snapshot};
use mirror_tests::{Auth, TestMaster, binary, finished_run, wait_for};
use reqwest::StatusCode;
use serde_json::json;

fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip").args(args).stdin(Stdio::null()).output().map_err(|e| format!("ip: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("ip {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim()))
    }
}

/// Namespaces, veths and the bridge of one test; removed on drop, whatever happened.
struct Net {
    tag: String,
    namespaces: Vec<String>,
}

impl Net {
    fn bridge(&self) -> String {
        format!("msbr{}", self.tag)
    }
    fn host_veth(&self, i: usize) -> String {
        format!("msh{}{i}", self.tag)
    }

    /// Bridge 10.77.0.1/24 on the host; namespace i gets 10.77.0.(11+i) behind its own veth.
    fn build(slaves: usize) -> Result<Net, String> {
        let tag = format!("{}", std::process::id() % 10000);
        let mut net = Net { tag, namespaces: Vec::new() };
        let br = net.bridge();
        ip(&["link", "add", &br, "type", "bridge"])?;
        ip(&["addr", "add", "10.77.0.1/24", "dev", &br])?;
        ip(&["link", "set", &br, "up"])?;
        for i in 0..slaves {
            let ns = format!("msns{}{i}", net.tag);
            ip(&["netns", "add", &ns])?;
            net.namespaces.push(ns.clone());
            let (host, inner) = (net.host_veth(i), format!("msn{}{i}", net.tag));
            ip(&["link", "add", &host, "type", "veth", "peer", "name", &inner])?;
            ip(&["link", "set", &inner, "netns", &ns])?;
            ip(&["link", "set", &host, "master", &br])?;
            ip(&["link", "set", &host, "up"])?;
            let addr = format!("10.77.0.{}/24", 11 + i);
            ip(&["-n", &ns, "addr", "add", &addr, "dev", &inner])?;
            ip(&["-n", &ns, "link", "set", &inner, "up"])?;
            ip(&["-n", &ns, "link", "set", "lo", "up"])?;
        }
        Ok(net)
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        for (i, ns) in self.namespaces.iter().enumerate() {
            let _ = ip(&["link", "del", &self.host_veth(i)]);
            let _ = ip(&["netns", "del", ns]);
        }
        let _ = ip(&["link", "del", &self.bridge()]);
    }
}

#[tokio::test]
async fn a_slave_whose_link_is_cut_during_a_sync_converges() {
    let net = match Net::build(3) {
        Ok(n) => n,
        Err(e) => {
            eprintln!(
                "\n*** SKIPPED a_slave_whose_link_is_cut_during_a_sync_converges: network namespaces unavailable ({e}) ***\n"
            );
            return;
        }
    };
    let upstream = Upstream::start().await;
    generate_tree(&upstream.data(), 20);
    std::fs::write(upstream.data().join("slow.bin"), vec![5u8; 600 * 1024]).unwrap();

    // The master listens where the namespaces reach it: the bridge address.
    let dir = tempfile::tempdir().unwrap();
    let mut settings = cluster_settings(dir.path());
    settings.listen = "10.77.0.1:0".into();
    settings.rsyncd.host = mirror_common::api::Host::from_static("10.77.0.1");
    let m = TestMaster::start_with(dir, settings).await;

    let work = tempfile::tempdir().unwrap();
    let password_file = work.path().join("rsync.password");
    std::fs::write(&password_file, format!("{RSYNCD_PASSWORD}\n")).unwrap();
    std::fs::set_permissions(&password_file, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let mut children = Vec::new();
    let mut roots = Vec::new();
    for (i, ns) in net.namespaces.iter().enumerate() {
        let addr = format!("10.77.0.{}", 11 + i);
        let port = free_port();
        let root = work.path().join(format!("slave{i}"));
        // Registered first: the slave starts with the token the master issues for it.
        let r = m.api.post("/add_slave/", &json!({"hostname": addr, "port": port}), &Auth::root()).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
        let token = r.body["token"].as_str().unwrap().to_owned();
        let child = tokio::process::Command::new("ip")
            .args(["netns", "exec", ns])
            .arg(binary("mirror-slave"))
            .env("MIRROR_SLAVE__LISTEN", format!("{addr}:{port}"))
            .env("MIRROR_SLAVE__ROOT", &root)
            .env("MIRROR_SLAVE__MASTER_URL", &m.api.base)
            .env("MIRROR_SLAVE__TOKEN", &token)
            .env("MIRROR_SLAVE__RSYNC_PASSWORD_FILE", &password_file)
            .env("MIRROR_SLAVE__STATE_FILE", work.path().join(format!("state{i}.json")))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        children.push(child);
        roots.push(root);
        // Reachable from the host through the bridge once it serves.
        let status_url = format!("http://{addr}:{port}/status");
        let client = m.api.client.clone();
        wait_for(30, "a slave in its namespace", || {
            let (client, url) = (client.clone(), status_url.clone());
            async move { client.get(url).send().await.ok().filter(|r| r.status().is_success()).map(|_| ()) }
        })
        .await;
    }

    let project = json!({
        "project": "netns", "rsync_host": "127.0.0.1", "rsync_port": upstream.port, "rsync_module": "data",
        "rsync_user": UPSTREAM_USER, "rsync_password": UPSTREAM_PASSWORD, "dest": "netns",
        "rsync_options": {"basic": ["--bwlimit=300", "--timeout=20"], "delete": "--delete"},
    });
    assert_eq!(m.api.post("/add_project/", &project, &Auth::root()).await.status, StatusCode::CREATED);
    let r = m.api.get("/syncup/?id=netns", &Auth::root()).await;
    let run = finished_run(&m.api, r.body["run_id"].as_i64().unwrap(), 60).await;
    assert_eq!(run["status"], json!("success"), "{run}");

    // Cut slave 2's link while the slaves pull, keep it down a while, then restore it.
    let cut = net.host_veth(2);
    wait_for(20, "the pulls to start", || async {
        let p = m.api.get("/projects/netns/propagation", &Auth::root()).await.body;
        let running = p["slaves"].as_array()?.iter().filter(|s| s["latest_status"] == json!("running")).count();
        (running >= 1).then_some(())
    })
    .await;
    ip(&["link", "set", &cut, "down"]).unwrap();
    wait_for(30, "the two connected slaves", || async {
        let served = served_generations(&m.api, "netns").await;
        (served.iter().filter(|(_, g)| *g == 1).count() >= 2).then_some(())
    })
    .await;
    let served = served_generations(&m.api, "netns").await;
    assert_eq!(served.iter().find(|(s, _)| s.starts_with("10.77.0.13")).map(|(_, g)| *g), Some(0), "{served:?}");
    tokio::time::sleep(Duration::from_secs(3)).await;
    ip(&["link", "set", &cut, "up"]).unwrap();

    // No operator call: the reconciler (or the resumed transfer) brings it to generation 1.
    wait_for(90, "the cut slave to converge", || async {
        let served = served_generations(&m.api, "netns").await;
        (served.len() == 3 && served.iter().all(|(_, g)| *g == 1)).then_some(())
    })
    .await;
    for root in &roots {
        assert_eq!(snapshot(&root.join("netns")), snapshot(&upstream.data()), "{}", root.display());
    }
    drop(children);
}
