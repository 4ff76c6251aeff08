//! The MLLP listener: `0x0B message 0x1C 0x0D` over TCP.
//!
//! Each connection reads into a buffer that never grows much past `max_message`;
//! bytes before a start block are skipped; a message over the limit is answered
//! with AR (and a buffer over it closes the connection); a connection silent for
//! `read_timeout`, or taking twice that to send one message, is closed; at most
//! `max_connections` are served at once (the rest wait to be accepted). A message
//! that is not HL7 gets an AR. A message not handled within `deadline` (a stalled
//! database) gets an AE, so the sender resends it, rather than a silent wait. The
//! listener stops with the service.

use std::sync::Arc;
use std::time::Duration;

use careloop_backbone::Shutdown;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

use super::adt::Header;
use super::inbound::{AckCode, Inbound, ack};

pub const START: u8 = 0x0B;
pub const END: [u8; 2] = [0x1C, 0x0D];

#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_message: usize,
    pub read_timeout: Duration,
    pub max_connections: usize,
    /// How long one message may take to handle before it is answered AE.
    pub deadline: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_message: careloop_web::limits::MAX_HL7_MESSAGE_BYTES,
            read_timeout: Duration::from_secs(30),
            max_connections: 256,
            deadline: Duration::from_secs(15),
        }
    }
}

pub fn frame(message: &str) -> Vec<u8> {
    frame_bytes(message.as_bytes())
}

/// `message` (any bytes) in an MLLP frame.
pub fn frame_bytes(message: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(message.len() + 3);
    out.push(START);
    out.extend_from_slice(message);
    out.extend_from_slice(&END);
    out
}

pub async fn serve(
    listener: TcpListener,
    inbound: Inbound,
    limits: Limits,
    mut shutdown: Shutdown,
) {
    let inbound = Arc::new(inbound);
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    loop {
        let permit = tokio::select! {
            p = slots.clone().acquire_owned() => p.expect("semaphore stays open"),
            _ = shutdown.wait() => return,
        };
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = shutdown.wait() => return,
        };
        match accepted {
            Ok((stream, _)) => {
                let inbound = inbound.clone();
                let shutdown = shutdown.clone();
                tokio::spawn(async move {
                    let _permit = permit;
                    if let Err(e) = connection(stream, &inbound, limits, shutdown).await {
                        tracing::debug!(error = %e, "MLLP connection ended");
                    }
                });
            }
            Err(e) => {
                tracing::warn!(error = %e, "MLLP accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

async fn connection(
    mut stream: TcpStream,
    inbound: &Inbound,
    limits: Limits,
    mut shutdown: Shutdown,
) -> std::io::Result<()> {
    let peer = stream.peer_addr().ok().map(|a| a.ip().to_string());
    let mut buf: Vec<u8> = Vec::with_capacity(8192);
    let mut chunk = vec![0u8; 16 * 1024];
    // When the message being received started: a sender trickling bytes cannot hold
    // a connection open for longer than two read timeouts per message.
    let mut started: Option<tokio::time::Instant> = None;
    loop {
        // Hand over every complete frame in the buffer.
        while let Some((message, consumed)) = next_frame(&buf) {
            let reply = if message.len() > limits.max_message {
                ack(&Header::default(), AckCode::AR, "message too large", None)
            } else {
                match tokio::time::timeout(
                    limits.deadline,
                    inbound.handle_from(message, peer.clone()),
                )
                .await
                {
                    Ok(reply) => reply,
                    // Nothing committed is lost: every effect is idempotent, so the resend
                    // finds what this attempt may have done.
                    Err(_) => {
                        tracing::warn!("an HL7 message past its deadline; answered AE");
                        let header =
                            super::adt::header(&super::adt::decode(message)).unwrap_or_default();
                        ack(
                            &header,
                            AckCode::AE,
                            "temporarily unable to apply; resend",
                            None,
                        )
                    }
                }
            };
            buf.drain(..consumed);
            started = None;
            stream.write_all(&frame(&reply)).await?;
        }
        // Nothing framed yet: drop what precedes a start block (noise, not HL7).
        match buf.iter().position(|b| *b == START) {
            Some(0) => {}
            Some(i) => {
                buf.drain(..i);
            }
            None => buf.clear(),
        }
        if buf.len() > limits.max_message {
            let reply = ack(&Header::default(), AckCode::AR, "message too large", None);
            stream.write_all(&frame(&reply)).await?;
            close_after_reply(stream).await;
            return Ok(());
        }
        if !buf.is_empty() {
            let since = *started.get_or_insert_with(tokio::time::Instant::now);
            if since.elapsed() > limits.read_timeout * 2 {
                return Ok(()); // too slow to finish one message
            }
        }
        let read = tokio::select! {
            r = tokio::time::timeout(limits.read_timeout, stream.read(&mut chunk)) => r,
            _ = shutdown.wait() => return Ok(()),
        };
        match read {
            Err(_) => return Ok(()), // silent too long
            Ok(Ok(0)) => return Ok(()),
            Ok(Ok(n)) => buf.extend_from_slice(&chunk[..n]),
            Ok(Err(e)) => return Err(e),
        }
    }
}

/// Closes a connection after a refusal without losing the refusal: a socket closed
/// with unread bytes sends a reset, which can discard the reply still on its way to
/// the sender. So: end our side (FIN after the reply), then read and drop what the
/// sender is still sending, for at most two seconds.
async fn close_after_reply(mut stream: TcpStream) {
    let _ = stream.shutdown().await;
    let mut sink = vec![0u8; 16 * 1024];
    let _ = tokio::time::timeout(std::time::Duration::from_secs(2), async {
        while let Ok(n) = stream.read(&mut sink).await {
            if n == 0 {
                break;
            }
        }
    })
    .await;
}

/// The first complete frame in `buf`: its content and how many bytes it used.
pub fn next_frame(buf: &[u8]) -> Option<(&[u8], usize)> {
    let start = buf.iter().position(|b| *b == START)?;
    let rest = &buf[start + 1..];
    let end = rest.windows(2).position(|w| w == END)?;
    Some((&rest[..end], start + 1 + end + 2))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_found_after_noise_and_across_messages() {
        let mut buf = b"noise".to_vec();
        buf.extend(frame("A"));
        buf.extend(frame("BB"));
        buf.extend_from_slice(&[START, b'C']);
        let (m, used) = next_frame(&buf).unwrap();
        assert_eq!(m, b"A");
        let rest = &buf[used..];
        let (m2, used2) = next_frame(rest).unwrap();
        assert_eq!(m2, b"BB");
        assert!(
            next_frame(&rest[used2..]).is_none(),
            "a partial frame waits"
        );
    }
}
