//! The Node.js tools the identity tests use, started as child processes: a real
//! OpenID provider (`oidc-provider`) and a SMART backend client built on the `jose`
//! library (`tests/identity/`, installed by `npm ci` there).

use std::path::PathBuf;
use std::process::Stdio;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};

pub fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("identity")
}

/// Installs the tools when they are missing (`deploy/dev/test-tools.sh`, which CI
/// runs first), or fails the test saying what to run.
pub fn require_installed() {
    if dir().join("node_modules").is_dir() {
        return;
    }
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../deploy/dev/test-tools.sh");
    let ok = std::process::Command::new("bash")
        .arg(script)
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok && dir().join("node_modules").is_dir(),
        "the identity test tools are not installed: run `bash deploy/dev/test-tools.sh`"
    );
}

/// Runs `node smart-client.mjs <args>` and returns the JSON it prints.
pub async fn smart(args: &[&str]) -> Value {
    require_installed();
    let out = Command::new("node")
        .arg("smart-client.mjs")
        .args(args)
        .current_dir(dir())
        .stdin(Stdio::null())
        .output()
        .await
        .expect("node runs");
    assert!(
        out.status.success(),
        "smart-client.mjs {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "smart-client.mjs {args:?} printed no JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// A long-running node server (the provider, a JWKS server): the first line it
/// prints, and the process, which stops when this is dropped.
pub struct Server {
    pub info: Value,
    _child: Child,
    _stdin: ChildStdin,
}

pub async fn serve(script: &str, args: &[&str]) -> Server {
    require_installed();
    let mut child = Command::new("node")
        .arg(script)
        .args(args)
        .current_dir(dir())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("node runs");
    let stdin = child.stdin.take().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let line = tokio::time::timeout(std::time::Duration::from_secs(20), lines.next_line())
        .await
        .expect("the server starts within 20 s")
        .unwrap()
        .expect("the server prints its address");
    Server {
        info: serde_json::from_str(&line).unwrap(),
        _child: child,
        _stdin: stdin,
    }
}

/// A browser's cookies, for walking a sign-in with plain HTTP (all on 127.0.0.1,
/// where cookies do not tell ports apart).
#[derive(Default, Debug)]
pub struct Jar(pub std::collections::BTreeMap<String, String>);

impl Jar {
    pub fn take(&mut self, res: &reqwest::Response) {
        for v in res.headers().get_all(reqwest::header::SET_COOKIE) {
            let v = v.to_str().unwrap_or_default();
            let pair = v.split(';').next().unwrap_or_default();
            let Some((name, value)) = pair.split_once('=') else {
                continue;
            };
            if value.is_empty() || v.contains("Max-Age=0") {
                self.0.remove(name.trim());
            } else {
                self.0.insert(name.trim().to_string(), value.to_string());
            }
        }
    }

    pub fn header(&self) -> String {
        self.0
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }
}
