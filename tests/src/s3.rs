//! A real S3-compatible server for the tests: `s3s-fs` (a directory served over the S3 protocol,
//! signatures checked) on a loopback port, inside the test process. Every request is counted by
//! method, so a test can say "this push made no write"; it can be stopped and started again on
//! the same port (a store that is down, then back).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use hyper::service::Service;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tempfile::TempDir;

pub const ACCESS_KEY: &str = "mirror-test-key";
pub const SECRET_KEY: &str = "mirror-test-secret-0123456789";

/// `[[s3_credentials]]` entry `local` of a master: the key id in the configuration, the secret
/// in a 0600 file written under `dir`.
/// The `local` credentials entry, usable with `endpoint` only.
pub fn credentials(
    dir: &std::path::Path,
    key: &str,
    secret: &str,
    endpoint: &str,
) -> mirror_master::config::S3Credentials {
    use std::os::unix::fs::PermissionsExt;
    let file = dir.join("s3.secret");
    std::fs::write(&file, format!("{secret}\n")).unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
    mirror_master::config::S3Credentials {
        name: mirror_common::api::Name::from_static("local"),
        access_key_id: Some(key.to_owned()),
        access_key_id_env: None,
        secret_access_key_env: None,
        secret_access_key_file: Some(file),
        endpoints: vec![endpoint.to_owned()],
        buckets: Vec::new(),
    }
}

pub struct S3Server {
    pub dir: TempDir,
    pub port: u16,
    requests: Arc<Mutex<BTreeMap<String, u64>>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl S3Server {
    /// Serves a fresh directory with `buckets` made.
    pub async fn start(buckets: &[&str]) -> S3Server {
        let dir = tempfile::tempdir().unwrap();
        for b in buckets {
            std::fs::create_dir_all(dir.path().join(b)).unwrap();
        }
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let mut server = S3Server { dir, port, requests: Arc::default(), task: None };
        server.serve(listener);
        server
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Where an object's content is on disk.
    pub fn object(&self, bucket: &str, key: &str) -> PathBuf {
        self.dir.path().join(bucket).join(key)
    }

    /// Every object of a bucket (relative keys), sorted.
    pub fn keys(&self, bucket: &str) -> Vec<String> {
        let root = self.dir.path().join(bucket);
        let mut out = Vec::new();
        let mut dirs = vec![root.clone()];
        while let Some(d) = dirs.pop() {
            for e in std::fs::read_dir(&d).unwrap().flatten() {
                if e.file_type().unwrap().is_dir() {
                    dirs.push(e.path());
                } else {
                    out.push(e.path().strip_prefix(&root).unwrap().to_string_lossy().into_owned());
                }
            }
        }
        out.sort();
        out
    }

    fn serve(&mut self, listener: tokio::net::TcpListener) {
        let fs = s3s_fs::FileSystem::new(self.dir.path()).unwrap();
        let mut builder = s3s::service::S3ServiceBuilder::new(fs);
        builder.set_auth(s3s::auth::SimpleAuth::from_single(ACCESS_KEY, SECRET_KEY));
        let service = builder.build();
        let requests = self.requests.clone();
        self.task = Some(tokio::spawn(async move {
            // Connections live in this set: stopping the server ends them all.
            let mut connections = tokio::task::JoinSet::new();
            loop {
                let Ok((socket, _)) = listener.accept().await else { continue };
                let (service, requests) = (service.clone(), requests.clone());
                let counted = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    *requests.lock().unwrap().entry(req.method().to_string()).or_insert(0) += 1;
                    Service::call(&service, req)
                });
                connections.spawn(async move {
                    let http = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                    let _ = http.serve_connection(TokioIo::new(socket), counted).await;
                });
                while connections.try_join_next().is_some() {}
            }
        }));
    }

    /// Stops answering: the port refuses connections.
    pub async fn stop(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
            let _ = t.await;
        }
    }

    /// Serves again on the same port.
    pub async fn restart(&mut self) {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", self.port)).await.unwrap();
        self.serve(listener);
    }

    /// Requests by method since the last call.
    pub fn take_requests(&self) -> BTreeMap<String, u64> {
        std::mem::take(&mut *self.requests.lock().unwrap())
    }

    /// PUT, POST and DELETE requests since the last `take_requests`.
    pub fn writes(&self) -> u64 {
        let r = self.requests.lock().unwrap();
        ["PUT", "POST", "DELETE"].iter().map(|m| r.get(*m).copied().unwrap_or(0)).sum()
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}
