//! An incremental Server-Sent Events scanner for inspecting a stream on the side while the
//! bytes themselves are forwarded unchanged. Bounded: an event larger than the limit is an
//! error, never an unbounded buffer.

use crate::Error;

/// One complete event's meaning to Gatehouse.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SseEvent<'a> {
    /// The joined `data:` lines of an event.
    Data(&'a [u8]),
    /// OpenAI's end-of-stream sentinel, `data: [DONE]`.
    Done,
}

#[derive(Debug)]
pub struct SseScanner {
    line: Vec<u8>,
    data: Vec<u8>,
    has_data: bool,
    max_event_bytes: usize,
}

impl SseScanner {
    pub fn new(max_event_bytes: usize) -> Self {
        Self { line: Vec::new(), data: Vec::new(), has_data: false, max_event_bytes }
    }

    /// Feeds the next chunk (any split, even mid-line) and calls `on_event` for each event
    /// the chunk completes. Lines wholly inside the chunk are read in place, without a copy.
    pub fn feed(&mut self, chunk: &[u8], mut on_event: impl FnMut(SseEvent<'_>)) -> Result<(), Error> {
        let mut rest = chunk;
        while let Some(pos) = memchr::memchr(b'\n', rest) {
            let (head, tail) = rest.split_at(pos);
            rest = &tail[1..];
            if self.line.len() + head.len() > self.max_event_bytes {
                return Err(Error::EventTooLarge);
            }
            if self.line.is_empty() {
                self.end_line(head, &mut on_event)?;
            } else {
                let mut line = std::mem::take(&mut self.line);
                line.extend_from_slice(head);
                let ended = self.end_line(&line, &mut on_event);
                line.clear();
                self.line = line;
                ended?;
            }
        }
        if self.line.len() + rest.len() > self.max_event_bytes {
            return Err(Error::EventTooLarge);
        }
        self.line.extend_from_slice(rest);
        Ok(())
    }

    fn end_line(&mut self, line: &[u8], on_event: &mut impl FnMut(SseEvent<'_>)) -> Result<(), Error> {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            if self.has_data {
                if self.data == b"[DONE]" {
                    on_event(SseEvent::Done);
                } else {
                    on_event(SseEvent::Data(&self.data));
                }
            }
            self.data.clear();
            self.has_data = false;
            return Ok(());
        }
        if let Some(value) = line.strip_prefix(b"data:") {
            let value = value.strip_prefix(b" ").unwrap_or(value);
            if self.data.len() + value.len() + 1 > self.max_event_bytes {
                return Err(Error::EventTooLarge);
            }
            if self.has_data {
                self.data.push(b'\n');
            }
            self.data.extend_from_slice(value);
            self.has_data = true;
        }
        // comments (":"), event:, id: and retry: carry nothing Gatehouse acts on
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn collect(chunks: &[&[u8]]) -> Result<Vec<String>, Error> {
        let mut s = SseScanner::new(1024);
        let mut out = Vec::new();
        for c in chunks {
            s.feed(c, |e| {
                out.push(match e {
                    SseEvent::Data(d) => String::from_utf8_lossy(d).into_owned(),
                    SseEvent::Done => "<done>".to_owned(),
                })
            })?;
        }
        Ok(out)
    }

    #[test]
    fn events_survive_any_split() {
        let whole: &[u8] = b"data: {\"a\":1}\n\n: comment\nevent: x\ndata: line1\ndata: line2\r\n\r\ndata: [DONE]\n\n";
        let expected = vec!["{\"a\":1}", "line1\nline2", "<done>"];
        assert_eq!(collect(&[whole]).unwrap(), expected);
        for cut in 0..whole.len() {
            let (a, b) = whole.split_at(cut);
            assert_eq!(collect(&[a, b]).unwrap(), expected, "split at {cut}");
        }
    }

    #[test]
    fn oversized_events_are_refused() {
        let big = vec![b'x'; 2048];
        assert_eq!(collect(&[b"data: ", &big]).unwrap_err(), Error::EventTooLarge);
        let mut lines = Vec::new();
        for _ in 0..200 {
            lines.extend_from_slice(b"data: 0123456789\n");
        }
        assert_eq!(collect(&[&lines]).unwrap_err(), Error::EventTooLarge);
    }

    proptest! {
        #[test]
        fn never_panics(chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..64), 0..16)) {
            let mut s = SseScanner::new(128);
            for c in &chunks {
                if s.feed(c, |_| {}).is_err() { break; }
            }
        }
    }
}
