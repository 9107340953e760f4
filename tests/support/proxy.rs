//! `NatsProxy`: a TCP proxy in front of a [`NatsServer`](super::NatsServer)
//! that can slip a frame of its own into what the server sends its client,
//! between two of the server's frames. That is how a test plays a broken or
//! hostile server without writing one: everything else is the real server.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};

/// A frame to send the client, and whether to close the connection after it
/// (as nats-server does after most `-ERR`s).
struct Injection {
    frame: Vec<u8>,
    close: bool,
}

/// A proxy on `127.0.0.1:<random port>` to one NATS server; it stops when dropped.
pub struct NatsProxy {
    port: u16,
    /// The injector of the newest client connection.
    current: Arc<Mutex<Option<mpsc::UnboundedSender<Injection>>>>,
    accepted: watch::Receiver<usize>,
    task: tokio::task::JoinHandle<()>,
}

impl NatsProxy {
    /// Starts proxying to the server on `upstream_port`.
    pub async fn start(upstream_port: u16) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("binding the proxy");
        let port = listener.local_addr().expect("proxy address").port();
        let current = Arc::new(Mutex::new(None));
        let (count, accepted) = watch::channel(0);
        let task = tokio::spawn({
            let current = current.clone();
            async move {
                while let Ok((client, _)) = listener.accept().await {
                    let Ok(server) = TcpStream::connect(("127.0.0.1", upstream_port)).await else {
                        continue; // the client sees a closed connection and retries
                    };
                    let (inject, injections) = mpsc::unbounded_channel();
                    *current.lock().expect("proxy lock") = Some(inject);
                    count.send_modify(|n| *n += 1);
                    tokio::spawn(relay(client, server, injections));
                }
            }
        });
        NatsProxy {
            port,
            current,
            accepted,
            task,
        }
    }

    /// The URL clients connect to.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Client connections accepted so far.
    pub fn connections(&self) -> usize {
        *self.accepted.borrow()
    }

    /// Sends `frame` to the newest client connection at the next frame
    /// boundary, then closes that connection if `close`.
    pub fn inject(&self, frame: &[u8], close: bool) {
        let current = self.current.lock().expect("proxy lock");
        current
            .as_ref()
            .expect("a client is connected")
            .send(Injection {
                frame: frame.to_vec(),
                close,
            })
            .expect("the client connection is open");
    }

    /// Waits until `n` client connections were accepted.
    pub async fn wait_connections(&self, n: usize, timeout: Duration) {
        let mut accepted = self.accepted.clone();
        tokio::time::timeout(timeout, accepted.wait_for(|&got| got >= n))
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "{} connection(s) within {timeout:?}, expected {n}",
                    self.connections()
                )
            })
            .expect("the proxy is running");
    }
}

impl Drop for NatsProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Copies client -> server as is, and server -> client frame by frame so that
/// an injection lands between two whole frames.
async fn relay(
    client: TcpStream,
    server: TcpStream,
    mut injections: mpsc::UnboundedReceiver<Injection>,
) {
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    let upstream = tokio::spawn(async move {
        let _ = tokio::io::copy(&mut client_read, &mut server_write).await;
    });
    let mut buf = Vec::new();
    let mut chunk = [0_u8; 16 << 10];
    loop {
        tokio::select! {
            read = server_read.read(&mut chunk) => {
                let Ok(n @ 1..) = read else { break };
                buf.extend_from_slice(&chunk[..n]);
                while let Some(len) = frame_len(&buf) {
                    if client_write.write_all(&buf[..len]).await.is_err() {
                        break;
                    }
                    buf.drain(..len);
                }
            }
            Some(injection) = injections.recv(), if buf.is_empty() => {
                let _ = client_write.write_all(&injection.frame).await;
                if injection.close {
                    break;
                }
            }
        }
    }
    upstream.abort();
}

/// The length of the first whole frame in `buf`: a line, or for `MSG` and
/// `HMSG` the line and the payload its last argument announces.
fn frame_len(buf: &[u8]) -> Option<usize> {
    let line = buf.windows(2).position(|w| w == b"\r\n")?;
    let head = &buf[..line];
    let body = if head.starts_with(b"MSG ") || head.starts_with(b"HMSG ") {
        let last = head.rsplit(|&b| b == b' ').next()?;
        std::str::from_utf8(last).ok()?.parse::<usize>().ok()? + 2
    } else {
        0
    };
    let len = line + 2 + body;
    (buf.len() >= len).then_some(len)
}
