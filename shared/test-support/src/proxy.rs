//! A TCP proxy a test can stall: while stalled it accepts connections and reads
//! nothing, forwards nothing, answers nothing, as a hung server does (a Postgres
//! stopped with SIGSTOP, a network partition that drops packets). Connections are
//! never closed by a stall; they carry on when it ends.

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

pub struct StallProxy {
    pub addr: SocketAddr,
    stalled: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl StallProxy {
    /// Listens on a free loopback port and forwards to `upstream`.
    pub async fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("a free port");
        let addr = listener.local_addr().expect("an address");
        let (stalled, watch) = watch::channel(false);
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let watch = watch.clone();
                tokio::spawn(async move {
                    if let Ok(server) = TcpStream::connect(upstream).await {
                        let (cr, cw) = client.into_split();
                        let (sr, sw) = server.into_split();
                        tokio::spawn(pipe(cr, sw, watch.clone()));
                        tokio::spawn(pipe(sr, cw, watch));
                    }
                });
            }
        });
        StallProxy {
            addr,
            stalled,
            task,
        }
    }

    /// From now on nothing passes, either way.
    pub fn stall(&self) {
        let _ = self.stalled.send(true);
    }

    /// Everything held passes again.
    pub fn resume(&self) {
        let _ = self.stalled.send(false);
    }
}

impl Drop for StallProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn pipe(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut stalled: watch::Receiver<bool>,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        // Not even reading while stalled: the sender's bytes wait in the socket.
        if stalled.wait_for(|s| !*s).await.is_err() {
            return;
        }
        let n = tokio::select! {
            r = from.read(&mut buf) => match r {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            },
            // A stall that starts while waiting for bytes holds them too.
            _ = stalled.wait_for(|s| *s) => continue,
        };
        if stalled.wait_for(|s| !*s).await.is_err() {
            return;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}
