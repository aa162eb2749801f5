//! A TCP proxy in front of a real server that a test can cut: every open connection is closed
//! and new ones are dropped as they arrive, until it is resumed (a database that went away
//! and came back on the same address, as the gateway sees it).

use std::net::SocketAddr;

use tokio::sync::watch;

pub struct CutProxy {
    pub addr: SocketAddr,
    cut: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for CutProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl CutProxy {
    /// Listens on 127.0.0.1:0 and forwards each connection to `upstream`.
    #[expect(clippy::unwrap_used, reason = "test setup")]
    pub async fn spawn(upstream: SocketAddr) -> CutProxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (cut, watching) = watch::channel(false);
        let task = tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                if *watching.borrow() {
                    continue; // dropped: the server is gone
                }
                let mut watching = watching.clone();
                tokio::spawn(async move {
                    let Ok(mut server) = tokio::net::TcpStream::connect(upstream).await else { return };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        _ = watching.wait_for(|c| *c) => {}
                    }
                });
            }
        });
        CutProxy { addr, cut, task }
    }

    /// Closes every connection and drops new ones.
    pub fn cut(&self) {
        self.cut.send_replace(true);
    }

    /// Lets connections through again.
    pub fn resume(&self) {
        self.cut.send_replace(false);
    }
}
