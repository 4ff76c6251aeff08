//! `careloop dev` on a bare machine: when Postgres or NATS do not answer at the
//! configured address, start private instances under `.careloop/` if their binaries
//! are installed, or say exactly what to install.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use careloop_config::Settings;
use tokio::net::TcpStream;
use tokio::process::{Child, Command};

/// Private instances started for this run; they stop when this is dropped.
pub struct Infrastructure {
    _children: Vec<Child>,
}

pub async fn ensure_infrastructure(settings: &Settings) -> anyhow::Result<Infrastructure> {
    let mut children = Vec::new();
    let data = PathBuf::from(".careloop");
    let pg = host_port(&settings.database_url, 5432)?;
    if !answers(&pg).await {
        children.push(start_postgres(&data.join("postgres"), &pg).await?);
    }
    // With a list of cluster URLs, the first server is the one looked at (and started).
    let servers = settings.nats_servers();
    let nats = host_port(servers.first().unwrap_or(&settings.nats_url), 4222)?;
    if !answers(&nats).await {
        children.push(start_nats(&data.join("nats"), &nats).await?);
    }
    Ok(Infrastructure {
        _children: children,
    })
}

/// `host:port` of a URL like `scheme://user@host:port/db`.
fn host_port(url: &str, default_port: u16) -> anyhow::Result<(String, u16)> {
    let rest = url.split("://").nth(1).unwrap_or(url);
    let authority = rest.split('/').next().unwrap_or(rest);
    let hostport = authority.rsplit('@').next().unwrap_or(authority);
    let (host, port) = match hostport.rsplit_once(':') {
        Some((h, p)) => (h.to_string(), p.parse().context("port in URL")?),
        None => (hostport.to_string(), default_port),
    };
    Ok((
        if host.is_empty() {
            "127.0.0.1".into()
        } else {
            host
        },
        port,
    ))
}

async fn answers((host, port): &(String, u16)) -> bool {
    matches!(
        tokio::time::timeout(
            Duration::from_secs(1),
            TcpStream::connect((host.as_str(), *port))
        )
        .await,
        Ok(Ok(_))
    )
}

fn find_binary(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let mut dirs: Vec<PathBuf> = std::env::split_paths(&path).collect();
    // Debian keeps the server binaries outside PATH.
    if let Ok(entries) = std::fs::read_dir("/usr/lib/postgresql") {
        dirs.extend(entries.flatten().map(|e| e.path().join("bin")));
    }
    dirs.push("/usr/sbin".into());
    dirs.into_iter().map(|d| d.join(name)).find(|p| p.is_file())
}

async fn wait_until_answers(addr: &(String, u16), what: &str) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while tokio::time::Instant::now() < deadline {
        if answers(addr).await {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    bail!(
        "{what} did not start listening on {}:{} within 30 s",
        addr.0,
        addr.1
    )
}

async fn start_postgres(dir: &Path, addr: &(String, u16)) -> anyhow::Result<Child> {
    let (Some(initdb), Some(postgres)) = (find_binary("initdb"), find_binary("postgres")) else {
        bail!(
            "Postgres does not answer at {}:{} (DATABASE_URL) and its binaries are not installed.\n\
             Install them (Debian/Ubuntu: `apt-get install postgresql`) or point DATABASE_URL at a running server.",
            addr.0,
            addr.1
        );
    };
    if !dir.join("PG_VERSION").exists() {
        std::fs::create_dir_all(dir)?;
        eprintln!(
            "careloop dev: creating a private Postgres cluster in {}",
            dir.display()
        );
        let status = Command::new(&initdb)
            .args(["-D"])
            .arg(dir)
            .args(["-U", "postgres", "--auth=trust", "--no-sync"])
            .stdout(std::process::Stdio::null())
            .status()
            .await
            .context("running initdb")?;
        if !status.success() {
            bail!(
                "initdb failed ({status}); running as root? initdb refuses root: run as another user or start Postgres yourself"
            );
        }
    }
    eprintln!(
        "careloop dev: starting a private Postgres on {}:{}",
        addr.0, addr.1
    );
    let child = Command::new(&postgres)
        .arg("-D")
        .arg(dir)
        .args(["-p", &addr.1.to_string(), "-h", &addr.0, "-k"])
        .arg(std::fs::canonicalize(dir)?)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .context("starting postgres")?;
    wait_until_answers(addr, "Postgres").await?;
    Ok(child)
}

async fn start_nats(dir: &Path, addr: &(String, u16)) -> anyhow::Result<Child> {
    let Some(nats) = find_binary("nats-server") else {
        bail!(
            "NATS does not answer at {}:{} (NATS_URL) and nats-server is not installed.\n\
             Install it (Debian/Ubuntu: `apt-get install nats-server`) or point NATS_URL at a running server with JetStream.",
            addr.0,
            addr.1
        );
    };
    std::fs::create_dir_all(dir)?;
    eprintln!(
        "careloop dev: starting a private NATS (JetStream) on {}:{}",
        addr.0, addr.1
    );
    let child = Command::new(nats)
        .args(["-a", &addr.0, "-p", &addr.1.to_string(), "-js", "-sd"])
        .arg(dir)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .context("starting nats-server")?;
    wait_until_answers(addr, "NATS").await?;
    Ok(child)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_and_port_come_from_the_url() {
        assert_eq!(
            host_port("postgres://postgres@127.0.0.1:5433/careloop", 5432).unwrap(),
            ("127.0.0.1".to_string(), 5433)
        );
        assert_eq!(
            host_port("nats://localhost", 4222).unwrap(),
            ("localhost".to_string(), 4222)
        );
    }
}
