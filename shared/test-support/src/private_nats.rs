//! A private nats-server with JetStream on its own port and store directory, so a
//! test can stop, wipe or freeze it without disturbing the other tests (which share
//! the machine's NATS).

use std::time::Duration;

use crate::eventually;

pub struct PrivateNats {
    pub port: u16,
    dir: std::path::PathBuf,
    child: Option<tokio::process::Child>,
}

impl PrivateNats {
    pub async fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let dir = std::env::temp_dir().join(format!("careloop-nats-{}", uuid::Uuid::new_v4()));
        let mut nats = PrivateNats {
            port,
            dir,
            child: None,
        };
        nats.restart().await;
        nats
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Starts the server again (after [`PrivateNats::stop`]), with the store it had.
    pub async fn restart(&mut self) {
        let child = tokio::process::Command::new("nats-server")
            .args([
                "-a",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-js",
                "-sd",
            ])
            .arg(&self.dir)
            .kill_on_drop(true)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("nats-server is installed");
        self.child = Some(child);
        let port = self.port;
        eventually(
            "nats-server listening",
            Duration::from_secs(15),
            || async move {
                tokio::net::TcpStream::connect(("127.0.0.1", port))
                    .await
                    .ok()
                    .map(|_| ())
            },
        )
        .await;
    }

    /// Kills the server (as `kill -9` would).
    pub async fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().await.unwrap();
        }
    }

    /// Deletes the server's store: the next [`PrivateNats::restart`] starts empty, as a
    /// node whose disk was lost or replaced does.
    pub fn wipe(&self) {
        assert!(
            self.child.is_none(),
            "stop the server before wiping its store"
        );
        let _ = std::fs::remove_dir_all(&self.dir);
    }

    /// Freezes the server (SIGSTOP): connections stay open and nothing answers.
    pub fn freeze(&self) {
        self.signal("-STOP");
    }

    /// Lets a frozen server go on (SIGCONT).
    pub fn thaw(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, signal: &str) {
        let pid = self
            .child
            .as_ref()
            .and_then(|c| c.id())
            .expect("the server is running");
        let ok = std::process::Command::new("kill")
            .args([signal, &pid.to_string()])
            .status()
            .expect("kill runs")
            .success();
        assert!(ok, "kill {signal} {pid}");
    }
}

impl Drop for PrivateNats {
    fn drop(&mut self) {
        // The child is killed on drop (SIGKILL ends a frozen server too).
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
