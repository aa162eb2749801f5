//! The spool: events the store could not take, one JSON [`Pending`] per line, appended and
//! fsync'd before they are acknowledged. The first line names the spool (`{"spool_id":..}`);
//! replay records in the store, with each committed chunk, how many lines are done, so a
//! crash between commit and removal resumes exactly there. A line without its newline is the
//! tail of a write a crash interrupted; it was never acknowledged and is ignored.

use std::io::Write;
use std::path::PathBuf;

use crate::event::Pending;

pub struct Spool {
    path: PathBuf,
    max_bytes: u64,
    pending: bool,
}

/// A spooled line is a rendered event: a few hundred bytes; bounded like a line.
const MAX_SPOOL_LINE: usize = crate::event::MAX_LINE_BYTES;

impl Spool {
    /// Opens the spool; a non-empty file left by a previous run is replayed first.
    pub async fn open(path: PathBuf, max_bytes: u64) -> std::io::Result<Spool> {
        let pending = tokio::fs::metadata(&path).await.map(|m| m.len() > 0).unwrap_or(false);
        Ok(Spool { path, max_bytes, pending })
    }

    pub fn has_pending(&self) -> bool {
        self.pending
    }

    pub async fn append(&mut self, events: &[Pending]) -> std::io::Result<()> {
        let mut buf = Vec::new();
        for e in events {
            serde_json::to_writer(&mut buf, e)?;
            buf.push(b'\n');
        }
        let (path, max) = (self.path.clone(), self.max_bytes);
        tokio::task::spawn_blocking(move || {
            let mut opts = std::fs::OpenOptions::new();
            opts.create(true).append(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
            let mut f = opts.open(&path)?;
            if f.metadata()?.len() == 0 {
                let header = format!("{{\"spool_id\":\"{}\"}}\n", uuid::Uuid::new_v4());
                f.write_all(header.as_bytes())?;
            }
            if f.metadata()?.len() + buf.len() as u64 > max {
                return Err(std::io::Error::other("audit spool is full"));
            }
            f.write_all(&buf)?;
            f.sync_data()
        })
        .await
        .map_err(std::io::Error::other)??;
        self.pending = true;
        Ok(())
    }

    /// The spool's id and every complete spooled event, in spool order.
    pub async fn read(&self) -> std::io::Result<(String, Vec<Pending>)> {
        #[derive(serde::Deserialize)]
        struct Header {
            spool_id: String,
        }
        let bytes = match tokio::fs::read(&self.path).await {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((String::new(), Vec::new())),
            Err(e) => return Err(e),
        };
        let corrupt = || std::io::Error::other("audit spool line is corrupt");
        let complete = bytes.iter().rposition(|b| *b == b'\n').map_or(&bytes[..0], |i| &bytes[..=i]);
        let mut lines = complete.split(|b| *b == b'\n').filter(|l| !l.is_empty());
        let Some(first) = lines.next() else { return Ok((String::new(), Vec::new())) };
        let header: Header = serde_json::from_slice(first).map_err(|_| corrupt())?;
        let mut out = Vec::new();
        for line in lines {
            if line.len() > MAX_SPOOL_LINE {
                return Err(std::io::Error::other("audit spool line too long"));
            }
            out.push(serde_json::from_slice(line).map_err(|_| corrupt())?);
        }
        Ok((header.spool_id, out))
    }

    pub async fn clear(&mut self) -> std::io::Result<()> {
        match tokio::fs::remove_file(&self.path).await {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        self.pending = false;
        Ok(())
    }
}
