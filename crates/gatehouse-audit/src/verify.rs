//! Verification of chains from the store, an export or the JSONL mirror. Every source feeds
//! the same [`ChainCheck`]: the retention anchor and checkpoints first (signatures checked),
//! then records in seq order, each hash recomputed over the exact stored bytes.
//!
//! What is detected, and as what:
//! - a changed byte in a line: `modified` at that record;
//! - a deleted, inserted or swapped record: `seq_gap` or `unlinked`;
//! - a chain rewritten consistently (hashes recomputed) without the key: `rewritten` at the
//!   first checkpoint that no longer matches;
//! - a truncated tail: `truncated` (a checkpoint names a seq past the last record);
//! - a forged or altered checkpoint or anchor: `checkpoint_forged` / `anchor_forged`.
//!
//! Records after the newest checkpoint are linked but not yet signed; the report says how
//! many (the checkpoint interval bounds that window). Deleting a tail together with the
//! checkpoints after it is only visible against a checkpoint saved earlier: pass it as a
//! witness.

use std::collections::{BTreeMap, HashMap};
use std::io::BufRead;
use std::path::Path;

use gatehouse_security::chain::{Anchor, link};
use gatehouse_security::checkpoint::CheckpointVerifier;
use gatehouse_store::{AuditFilter, Store};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::event::{LineHead, MAX_LINE_BYTES};
use crate::export::{MANIFEST_ORIGIN, MAX_MANIFEST_BYTES, Manifest, ManifestChain};
use crate::writer::origin;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Problem {
    /// The line's bytes do not hash to the stored hash.
    Modified,
    /// The record does not point at its predecessor.
    Unlinked,
    /// Sequence numbers skip, repeat or go backwards.
    SeqGap,
    /// The line is not a well-formed event for this position.
    Malformed,
    /// A checkpoint's signature does not verify, or it names another log.
    CheckpointForged,
    /// A valid checkpoint does not match the record at its seq: the chain was rewritten.
    Rewritten,
    /// A checkpoint names a seq beyond the last record: the tail is missing.
    Truncated,
    /// The retention anchor's signature does not verify.
    AnchorForged,
    /// An export's manifest is missing its signature, does not verify or is not a manifest.
    ManifestForged,
    /// A record or chain the signed manifest does not list (added to the export).
    Unlisted,
    /// The records of a chain differ from what the signed manifest lists (one was removed,
    /// swapped or added within the selection).
    Missing,
}

impl Problem {
    pub fn as_str(self) -> &'static str {
        match self {
            Problem::Modified => "modified",
            Problem::Unlinked => "unlinked",
            Problem::SeqGap => "seq_gap",
            Problem::Malformed => "malformed",
            Problem::CheckpointForged => "checkpoint_forged",
            Problem::Rewritten => "rewritten",
            Problem::Truncated => "truncated",
            Problem::AnchorForged => "anchor_forged",
            Problem::ManifestForged => "manifest_forged",
            Problem::Unlisted => "unlisted",
            Problem::Missing => "missing",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, thiserror::Error)]
#[error("chain {chain}: {} at seq {seq}", problem.as_str())]
pub struct Failure {
    pub chain: String,
    pub seq: u64,
    pub problem: Problem,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ChainReport {
    pub chain: String,
    pub records: u64,
    /// The seq the verified range starts after (the retention anchor), 0 from genesis.
    pub anchored_at: u64,
    pub last_seq: u64,
    pub checkpoints: u64,
    /// The newest seq covered by a valid checkpoint.
    pub signed_through: u64,
    /// Gaps skipped in a filtered export.
    pub gaps: u64,
}

/// Verifies one chain incrementally.
pub struct ChainCheck {
    report: ChainReport,
    at: Anchor,
    checkpoints: BTreeMap<u64, [u8; 32]>,
    allow_gaps: bool,
}

impl ChainCheck {
    /// `anchor`: `(seq, hash, note)` of a retention anchor; `checkpoints`: `(seq, note)`.
    pub fn new<'a>(
        chain: &str,
        key: &CheckpointVerifier,
        anchor: Option<(u64, &[u8], &str)>,
        checkpoints: impl IntoIterator<Item = (u64, &'a str)>,
        allow_gaps: bool,
    ) -> Result<ChainCheck, Failure> {
        let fail = |seq, problem| Failure { chain: chain.to_owned(), seq, problem };
        let origin = origin(chain);
        let mut at = Anchor::GENESIS;
        if let Some((seq, hash, note)) = anchor {
            let cp = key.verify(note).map_err(|_| fail(seq, Problem::AnchorForged))?;
            if cp.origin != origin || cp.anchor.next_seq != seq + 1 || cp.anchor.hash[..] != *hash {
                return Err(fail(seq, Problem::AnchorForged));
            }
            at = cp.anchor;
        }
        let mut map = BTreeMap::new();
        for (seq, note) in checkpoints {
            let cp = key.verify(note).map_err(|_| fail(seq, Problem::CheckpointForged))?;
            if cp.origin != origin || cp.anchor.next_seq != seq + 1 {
                return Err(fail(seq, Problem::CheckpointForged));
            }
            if seq < at.next_seq {
                // covered by the anchor: must agree with it where they meet
                if seq + 1 == at.next_seq && cp.anchor.hash != at.hash {
                    return Err(fail(seq, Problem::Rewritten));
                }
                continue;
            }
            map.insert(seq, cp.anchor.hash);
        }
        let report = ChainReport {
            chain: chain.to_owned(),
            anchored_at: at.next_seq - 1,
            last_seq: at.next_seq - 1,
            checkpoints: map.len() as u64,
            ..ChainReport::default()
        };
        Ok(ChainCheck { report, at, checkpoints: map, allow_gaps })
    }

    fn fail(&self, seq: u64, problem: Problem) -> Failure {
        Failure { chain: self.report.chain.clone(), seq, problem }
    }

    /// The next record. `line` must be the stored bytes.
    pub fn push(&mut self, seq: u64, prev_hash: &[u8], hash: &[u8], line: &[u8]) -> Result<(), Failure> {
        if seq != self.at.next_seq {
            if !(self.allow_gaps && seq > self.at.next_seq) {
                return Err(self.fail(seq, Problem::SeqGap));
            }
            // a filtered export: continue from this record's own claim
            self.report.gaps += 1;
            let prev: [u8; 32] = prev_hash.try_into().map_err(|_| self.fail(seq, Problem::Malformed))?;
            self.at = Anchor { next_seq: seq, hash: prev };
        }
        if prev_hash != self.at.hash {
            return Err(self.fail(seq, Problem::Unlinked));
        }
        let computed = link(&self.at.hash, line);
        if computed[..] != *hash {
            return Err(self.fail(seq, Problem::Modified));
        }
        if line.len() > MAX_LINE_BYTES {
            return Err(self.fail(seq, Problem::Malformed));
        }
        let head: LineHead = serde_json::from_slice(line).map_err(|_| self.fail(seq, Problem::Malformed))?;
        if head.seq != seq || head.chain != self.report.chain {
            return Err(self.fail(seq, Problem::Malformed));
        }
        if let Some(signed) = self.checkpoints.get(&seq) {
            if *signed != computed {
                return Err(self.fail(seq, Problem::Rewritten));
            }
            self.report.signed_through = seq;
        }
        self.at = Anchor { next_seq: seq + 1, hash: computed };
        self.report.records += 1;
        self.report.last_seq = seq;
        Ok(())
    }

    pub fn finish(self) -> Result<ChainReport, Failure> {
        if !self.allow_gaps && self.checkpoints.range(self.report.last_seq + 1..).next().is_some() {
            return Err(self.fail(self.report.last_seq + 1, Problem::Truncated));
        }
        Ok(self.report)
    }
}

/// The outcome of verifying a whole source.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Report {
    pub chains: Vec<ChainReport>,
    /// For an export: what its signed manifest proved (`None`: the source had no manifest,
    /// e.g. the store or the JSONL mirror, and was verified as whole chains).
    pub export: Option<ExportProof>,
}

/// What a verified export manifest establishes.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ExportProof {
    pub exported_at: String,
    /// The selection left gaps: records outside it are not in the export and not proven.
    pub filtered: bool,
    pub selection: crate::export::Selection,
}

impl Report {
    pub fn records(&self) -> u64 {
        self.chains.iter().map(|c| c.records).sum()
    }

    /// Records newer than their chain's last checkpoint (for an export with a manifest, its
    /// signed heads cover every record: 0).
    pub fn unsigned(&self) -> u64 {
        self.chains.iter().map(|c| c.last_seq.saturating_sub(c.signed_through.max(c.anchored_at))).sum()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error("{0}")]
    Broken(Failure),
    #[error("store: {0}")]
    Store(#[from] gatehouse_store::Error),
    #[error("file: {0}")]
    Io(#[from] std::io::Error),
    #[error("file line {0} is not an audit export line")]
    BadFile(u64),
    #[error("the file has more than one export manifest")]
    TwoManifests,
}

impl From<Failure> for VerifyError {
    fn from(f: Failure) -> Self {
        VerifyError::Broken(f)
    }
}

/// Verifies every chain in the store (or one), streaming records page by page; stops at the
/// first broken chain. `witnesses` are checkpoint notes saved earlier, per chain.
pub async fn verify_store(
    store: &Store,
    key: &CheckpointVerifier,
    only: Option<&str>,
    witnesses: &HashMap<String, Vec<(u64, String)>>,
) -> Result<Report, VerifyError> {
    let mut report = Report::default();
    for chain in store.audit_chains().await? {
        if only.is_some_and(|c| c != chain) {
            continue;
        }
        report.chains.push(verify_chain(store, key, &chain, witnesses.get(&chain).map(Vec::as_slice)).await?);
    }
    Ok(report)
}

/// Verifies one chain of the store from its retention anchor (or genesis) to its head, page by
/// page, so memory stays bounded by the page and the checkpoints.
pub async fn verify_chain(
    store: &Store,
    key: &CheckpointVerifier,
    chain: &str,
    witnesses: Option<&[(u64, String)]>,
) -> Result<ChainReport, VerifyError> {
    const PAGE: u32 = 1_000;
    // checkpoints before records: a checkpoint signed meanwhile cannot name a record we did
    // not read
    let anchor = store.audit_anchor(chain).await?;
    let cps = store.audit_checkpoints(chain).await?;
    let mut notes: Vec<(u64, &str)> = Vec::with_capacity(cps.len());
    for c in &cps {
        notes.push((u64::try_from(c.seq).map_err(|_| fail(chain, 0, Problem::Malformed))?, &c.note));
    }
    notes.extend(witnesses.unwrap_or_default().iter().map(|(s, n)| (*s, n.as_str())));
    let anchor_ref = match &anchor {
        Some(a) => Some((u64::try_from(a.seq).map_err(|_| fail(chain, 0, Problem::Malformed))?, &a.hash[..], &*a.note)),
        None => None,
    };
    let mut check = ChainCheck::new(chain, key, anchor_ref, notes, false)?;
    let filter = AuditFilter { chain: Some(chain.to_owned()), ..AuditFilter::default() };
    let mut after: Option<i64> = None;
    loop {
        let rows = store.audit_page(&filter, after.map(|s| (chain, s)), PAGE).await?;
        let Some(last) = rows.last() else { break };
        after = Some(last.seq);
        for r in &rows {
            let seq = u64::try_from(r.seq).map_err(|_| fail(chain, 0, Problem::SeqGap))?;
            check.push(seq, &r.prev_hash, &r.hash, r.line.as_bytes())?;
        }
        if rows.len() < PAGE as usize {
            break;
        }
    }
    Ok(check.finish()?)
}

fn fail(chain: &str, seq: u64, problem: Problem) -> Failure {
    Failure { chain: chain.to_owned(), seq, problem }
}

#[derive(Deserialize)]
struct FileLine<'a> {
    r#type: &'a str,
    chain: Option<String>,
    seq: Option<u64>,
    prev_hash: Option<&'a str>,
    hash: Option<&'a str>,
    note: Option<String>,
    #[serde(borrow, default)]
    event: Option<&'a RawValue>,
}

/// A line of an export is a few hundred bytes, a checkpoint note at most 16 KiB, the manifest
/// at most [`MAX_MANIFEST_BYTES`] (as JSON, with some escaping room).
const MAX_FILE_LINE: usize = MAX_MANIFEST_BYTES + MAX_MANIFEST_BYTES / 4;

/// Reads lines of at most `MAX_FILE_LINE` bytes.
fn for_each_line(path: &Path, mut f: impl FnMut(u64, &[u8]) -> Result<(), VerifyError>) -> Result<(), VerifyError> {
    let mut r = std::io::BufReader::new(std::fs::File::open(path)?);
    let mut buf = Vec::new();
    let mut n = 0u64;
    loop {
        buf.clear();
        let read = std::io::Read::take(&mut r, MAX_FILE_LINE as u64 + 1).read_until(b'\n', &mut buf)?;
        if read == 0 {
            return Ok(());
        }
        n += 1;
        if buf.len() > MAX_FILE_LINE {
            return Err(VerifyError::BadFile(n));
        }
        let line = buf.strip_suffix(b"\n").unwrap_or(&buf);
        if !line.is_empty() {
            f(n, line)?;
        }
    }
}

/// Verifies an NDJSON export or a JSONL mirror. Two passes over the file: anchors,
/// checkpoints and the manifest first, then records; memory stays bounded by the number of
/// checkpoints and chains.
///
/// Nothing unsigned changes the verdict: an export is judged by its signed manifest (which
/// says whether it is filtered, which chains it holds, each chain's head when it was taken,
/// and how many records with which hashes). A file without a manifest (the mirror, or an
/// export stripped of it) is held to the strictest reading: whole chains, no gaps.
pub fn verify_file(
    path: &Path,
    key: &CheckpointVerifier,
    witnesses: &HashMap<String, Vec<(u64, String)>>,
) -> Result<Report, VerifyError> {
    #[derive(Default)]
    struct Meta {
        anchor: Option<(u64, Vec<u8>, String)>,
        checkpoints: Vec<(u64, String)>,
    }
    let mut meta: BTreeMap<String, Meta> = BTreeMap::new();
    let mut manifest_note: Option<String> = None;
    let mut was_export = false;
    for_each_line(path, |n, line| {
        let l: FileLine<'_> = serde_json::from_slice(line).map_err(|_| VerifyError::BadFile(n))?;
        match (l.r#type, l.chain, l.seq) {
            // for people only: what it claims is judged from the manifest, which it requires
            ("export", _, _) => was_export = true,
            ("manifest", None, None) => {
                if manifest_note.replace(l.note.ok_or(VerifyError::BadFile(n))?).is_some() {
                    return Err(VerifyError::TwoManifests);
                }
            }
            ("anchor", Some(chain), Some(seq)) => {
                let hash = l.hash.and_then(|h| hex::decode(h).ok()).ok_or(VerifyError::BadFile(n))?;
                meta.entry(chain).or_default().anchor = Some((seq, hash, l.note.ok_or(VerifyError::BadFile(n))?));
            }
            ("checkpoint", Some(chain), Some(seq)) => {
                meta.entry(chain).or_default().checkpoints.push((seq, l.note.ok_or(VerifyError::BadFile(n))?));
            }
            ("record", Some(chain), Some(_)) => {
                meta.entry(chain).or_default();
            }
            _ => return Err(VerifyError::BadFile(n)),
        }
        Ok(())
    })?;
    if was_export && manifest_note.is_none() {
        // an export whose manifest was removed (or cut off in transfer) proves nothing
        return Err(fail("export", 0, Problem::ManifestForged).into());
    }
    let manifest = manifest_note.as_deref().map(|n| open_manifest(key, n)).transpose()?;
    let filtered = manifest.as_ref().is_some_and(|m| m.filtered);
    let listed: BTreeMap<&str, &ManifestChain> =
        manifest.iter().flat_map(|m| m.chains.iter().map(|c| (c.chain.as_str(), c))).collect();
    if manifest.is_some() {
        if let Some(extra) = meta.keys().find(|c| !listed.contains_key(c.as_str())) {
            return Err(fail(extra, 0, Problem::Unlisted).into());
        }
        for c in listed.keys() {
            meta.entry((*c).to_owned()).or_default();
        }
    }
    let mut checks: BTreeMap<String, (ChainCheck, Tally)> = BTreeMap::new();
    for (chain, m) in &meta {
        let mut notes: Vec<(u64, &str)> = m.checkpoints.iter().map(|(s, n)| (*s, n.as_str())).collect();
        if let Some(w) = witnesses.get(chain) {
            notes.extend(w.iter().map(|(s, n)| (*s, n.as_str())));
        }
        let anchor = m.anchor.as_ref().map(|(s, h, n)| (*s, &h[..], n.as_str()));
        checks.insert(chain.clone(), (ChainCheck::new(chain, key, anchor, notes, filtered)?, Tally::default()));
    }
    for_each_line(path, |n, line| {
        let l: FileLine<'_> = serde_json::from_slice(line).map_err(|_| VerifyError::BadFile(n))?;
        if l.r#type != "record" {
            return Ok(());
        }
        let (Some(chain), Some(seq), Some(prev), Some(hash), Some(event)) =
            (l.chain, l.seq, l.prev_hash, l.hash, l.event)
        else {
            return Err(VerifyError::BadFile(n));
        };
        let (check, tally) = checks.get_mut(&chain).ok_or(VerifyError::BadFile(n))?;
        let prev = hex::decode(prev).map_err(|_| fail(&chain, seq, Problem::Malformed))?;
        let hash = hex::decode(hash).map_err(|_| fail(&chain, seq, Problem::Malformed))?;
        if listed.get(chain.as_str()).is_some_and(|c| seq > c.head_seq) {
            return Err(fail(&chain, seq, Problem::Unlisted).into());
        }
        check.push(seq, &prev, &hash, event.get().as_bytes())?;
        tally.add(&hash);
        Ok(())
    })?;
    let mut report = Report::default();
    for (chain, (check, tally)) in checks {
        let mut r = check.finish()?;
        if let Some(c) = listed.get(chain.as_str()) {
            if !filtered && r.last_seq < c.head_seq {
                return Err(fail(&chain, r.last_seq + 1, Problem::Truncated).into());
            }
            if !filtered && tally.records > 0 && (r.last_seq != c.head_seq || hex::encode(tally.last) != c.head_hash) {
                return Err(fail(&chain, c.head_seq, Problem::Rewritten).into());
            }
            if tally.records != c.records || hex::encode(tally.digest) != c.digest {
                return Err(fail(&chain, r.last_seq, Problem::Missing).into());
            }
            if !filtered {
                // the manifest's head is a checkpoint taken at export time: nothing is unsigned
                r.signed_through = c.head_seq;
            }
        }
        report.chains.push(r);
    }
    report.export =
        manifest.map(|m| ExportProof { exported_at: m.exported_at, filtered: m.filtered, selection: m.selection });
    Ok(report)
}

/// Records of one chain as read from a file, for comparison with the manifest.
#[derive(Default)]
struct Tally {
    records: u64,
    digest: [u8; 32],
    last: [u8; 32],
}

impl Tally {
    fn add(&mut self, hash: &[u8]) {
        self.records += 1;
        self.digest = crate::export::fold_digest(&self.digest, hash);
        if let Ok(h) = <[u8; 32]>::try_from(hash) {
            self.last = h;
        }
    }
}

fn open_manifest(key: &CheckpointVerifier, note: &str) -> Result<Manifest, VerifyError> {
    let forged = || VerifyError::Broken(fail("export", 0, Problem::ManifestForged));
    let body = key.open_note(note, MAX_MANIFEST_BYTES).map_err(|_| forged())?;
    let (origin, rest) = body.split_once('\n').ok_or_else(forged)?;
    if origin != MANIFEST_ORIGIN {
        return Err(forged());
    }
    serde_json::from_str(rest.trim_end()).map_err(|_| forged())
}

/// Parses saved checkpoint notes (a file of notes separated by blank lines is awkward, so
/// witnesses are given as an NDJSON file of checkpoint lines, e.g. from an earlier export).
pub fn witnesses_from_file(path: &Path) -> Result<HashMap<String, Vec<(u64, String)>>, VerifyError> {
    let mut out: HashMap<String, Vec<(u64, String)>> = HashMap::new();
    for_each_line(path, |n, line| {
        let l: FileLine<'_> = serde_json::from_slice(line).map_err(|_| VerifyError::BadFile(n))?;
        if let ("checkpoint", Some(chain), Some(seq), Some(note)) = (l.r#type, l.chain, l.seq, l.note) {
            out.entry(chain).or_default().push((seq, note));
        }
        Ok(())
    })?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use gatehouse_security::chain::{Anchor, append};
    use gatehouse_security::checkpoint::CheckpointSigner;

    use super::*;

    #[test]
    fn a_line_that_names_another_position_is_malformed() {
        let key = CheckpointSigner::from_seed(crate::KEY_NAME, &[2; 32]).unwrap().verifier();
        let mut at = Anchor::GENESIS;
        let good = append(
            &mut at,
            br#"{"v":1,"seq":1,"chain":"platform","id":"a","at":"x","action":"a.b","actor":"s"}"#.to_vec(),
        );
        // correctly linked and hashed, but it claims to be seq 7 of another chain
        let bad = append(
            &mut at,
            br#"{"v":1,"seq":7,"chain":"org/x","id":"b","at":"x","action":"a.b","actor":"s"}"#.to_vec(),
        );
        let mut check = ChainCheck::new("platform", &key, None, [], false).unwrap();
        check.push(good.seq, &good.prev_hash, &good.hash, &good.line).unwrap();
        let err = check.push(bad.seq, &bad.prev_hash, &bad.hash, &bad.line).unwrap_err();
        assert_eq!((err.seq, err.problem), (2, Problem::Malformed));
    }
}
