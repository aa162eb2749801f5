//! The export formats. NDJSON carries the chain (it is also the JSONL mirror's format) and
//! verifies offline; CSV is for spreadsheets and carries the hashes but cannot be verified
//! (it does not keep the line's exact bytes).
//!
//! NDJSON, one object per line:
//! - `{"type":"export", ...}` first (exports only): what was selected, for people; the
//!   verifier never trusts it;
//! - `{"type":"anchor","chain":..,"seq":..,"hash":..,"note":..}`: the signed state a pruned
//!   chain continues from;
//! - `{"type":"checkpoint","chain":..,"seq":..,"note":..}`: a signed note;
//! - `{"type":"record","chain":..,"seq":..,"prev_hash":..,"hash":..,"event":<the line>}`:
//!   the event line embedded byte for byte, so its hash can be recomputed;
//! - `{"type":"manifest","note":..}` last (exports only): a note signed with the checkpoint
//!   key over the selection and, per chain, the head taken when the export started (seq and
//!   hash: a fresh checkpoint, so no exported record is unsigned), the number of records
//!   exported and a digest of their hashes. Everything the verifier needs to judge the
//!   export (is it filtered, which chains, how many records) comes from this note.

use std::path::Path;

use serde::Serialize;

pub async fn open_append(path: &Path) -> std::io::Result<tokio::fs::File> {
    let mut opts = tokio::fs::OpenOptions::new();
    opts.create(true).append(true);
    #[cfg(unix)]
    opts.mode(0o600);
    opts.open(path).await
}

fn json_str(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_default()
}

pub fn record_line(chain: &str, seq: u64, prev_hash: &[u8], hash: &[u8], line: &str) -> String {
    format!(
        "{{\"type\":\"record\",\"chain\":{},\"seq\":{seq},\"prev_hash\":\"{}\",\"hash\":\"{}\",\"event\":{line}}}\n",
        json_str(chain),
        hex::encode(prev_hash),
        hex::encode(hash)
    )
}

pub fn checkpoint_line(chain: &str, seq: u64, note: &str) -> String {
    format!("{{\"type\":\"checkpoint\",\"chain\":{},\"seq\":{seq},\"note\":{}}}\n", json_str(chain), json_str(note))
}

pub fn anchor_line(chain: &str, seq: u64, hash: &[u8], note: &str) -> String {
    format!(
        "{{\"type\":\"anchor\",\"chain\":{},\"seq\":{seq},\"hash\":\"{}\",\"note\":{}}}\n",
        json_str(chain),
        hex::encode(hash),
        json_str(note)
    )
}

/// What an export selected.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Selection {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub org: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub actor: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
}

impl Selection {
    /// A time, actor or action filter leaves gaps inside chains; an org filter selects
    /// whole chains.
    pub fn leaves_gaps(&self) -> bool {
        self.from.is_some() || self.to.is_some() || self.actor.is_some() || self.action.is_some()
    }
}

#[derive(Serialize)]
struct Header<'a> {
    r#type: &'static str,
    format: &'static str,
    exported_at: String,
    filtered: bool,
    selection: &'a Selection,
    /// The verifier key the checkpoints should verify under (pin your own copy).
    key: &'a str,
}

pub const FORMAT: &str = "gatehouse-audit-export/1";

pub fn header_line(sel: &Selection, vkey: &str) -> String {
    let h = Header {
        r#type: "export",
        format: FORMAT,
        exported_at: humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string(),
        filtered: sel.leaves_gaps(),
        selection: sel,
        key: vkey,
    };
    let mut s = serde_json::to_string(&h).unwrap_or_default();
    s.push('\n');
    s
}

/// CSV columns: the line's fields, then the chain position and hash.
pub const CSV_COLUMNS: &[&str] = &[
    "chain",
    "seq",
    "at",
    "action",
    "category",
    "outcome",
    "status",
    "code",
    "org_id",
    "project_id",
    "actor",
    "target",
    "request_id",
    "source",
    "endpoint",
    "gate",
    "model",
    "stream_end",
    "latency_us",
    "prompt_tokens",
    "completion_tokens",
    "guardrails",
    "mcp",
    "hash",
];

pub fn csv_header() -> String {
    let mut s = CSV_COLUMNS.join(",");
    s.push('\n');
    s
}

/// One CSV row from a stored line. Cells that a spreadsheet would run as a formula are
/// prefixed with `'` (CSV injection).
pub fn csv_row(line: &str, hash: &[u8]) -> String {
    let v: serde_json::Value = serde_json::from_str(line).unwrap_or(serde_json::Value::Null);
    let mut w = csv::WriterBuilder::new().has_headers(false).from_writer(Vec::new());
    let cells = CSV_COLUMNS.iter().map(|c| match *c {
        "hash" => hex::encode(hash),
        c => match v.get(c) {
            Some(serde_json::Value::String(s)) => defuse(s),
            Some(serde_json::Value::Null) | None => String::new(),
            Some(other) => other.to_string(),
        },
    });
    let _ = w.write_record(cells);
    w.into_inner().map(|b| String::from_utf8_lossy(&b).into_owned()).unwrap_or_default()
}

fn defuse(s: &str) -> String {
    if s.starts_with(['=', '+', '-', '@', '\t', '\r']) { format!("'{s}") } else { s.to_owned() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_line_embeds_the_event_line_exactly() {
        let line = r#"{"v":1,"seq":3,"chain":"platform","action":"key.create"}"#;
        let out = record_line("platform", 3, &[0; 32], &[1; 32], line);
        assert!(out.ends_with(&format!("\"event\":{line}}}\n")));
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["event"]["action"], "key.create");
    }

    #[test]
    fn csv_rows_quote_and_defuse() {
        let line = r#"{"chain":"platform","seq":1,"action":"key.create","target":"=cmd|' /C calc'!A0","actor":"a,b"}"#;
        let row = csv_row(line, &[0xab; 32]);
        assert!(row.starts_with("platform,1,,key.create,"));
        assert!(row.contains(",'=cmd|' /C calc'!A0,"), "{row}");
        assert!(row.contains("\"a,b\""));
        assert!(row.trim_end().ends_with(&"ab".repeat(32)));
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Ndjson,
    Csv,
}

/// What to export: whole chains (`None`: every chain), narrowed by the filter.
#[derive(Clone, Debug)]
pub struct ExportRequest {
    pub chains: Option<Vec<String>>,
    pub filter: gatehouse_store::AuditFilter,
    pub selection: Selection,
    pub format: Format,
}

/// The origin line of an export manifest (no chain's checkpoints use it).
pub const MANIFEST_ORIGIN: &str = "gatehouse/audit-export/1";
/// A manifest names every exported chain: room for many thousands of orgs.
pub const MAX_MANIFEST_BYTES: usize = 8 * 1024 * 1024;

/// What an export's signed manifest says about one chain.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct ManifestChain {
    pub chain: String,
    /// The chain's head when the export started; records after it are not part of the export.
    pub head_seq: u64,
    pub head_hash: String,
    /// Records in the export.
    pub records: u64,
    /// [`fold_digest`] over the exported records' hashes, in order (hex).
    pub digest: String,
}

/// The signed part of an export.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Manifest {
    pub exported_at: String,
    pub filtered: bool,
    pub selection: Selection,
    pub chains: Vec<ManifestChain>,
}

/// The running digest of exported records: a hash chain over their hashes.
pub fn fold_digest(acc: &[u8; 32], hash: &[u8]) -> [u8; 32] {
    gatehouse_security::chain::link(acc, hash)
}

pub fn manifest_line(note: &str) -> String {
    format!("{{\"type\":\"manifest\",\"note\":{}}}\n", json_str(note))
}

/// Rows per store page, and so per chunk sent.
const PAGE: u32 = 500;

/// Streams an export as chunks through a small bounded channel: one store page at a time, so
/// memory stays bounded whatever the size, and a client that stops reading stops the query.
/// An NDJSON export ends with its manifest, signed by `signer`; a transfer cut before it is
/// visibly incomplete.
pub fn spawn(
    store: gatehouse_store::Store,
    req: ExportRequest,
    signer: std::sync::Arc<gatehouse_security::checkpoint::CheckpointSigner>,
) -> tokio::sync::mpsc::Receiver<Result<String, gatehouse_store::Error>> {
    let (tx, rx) = tokio::sync::mpsc::channel(2);
    tokio::spawn(async move {
        if let Err(e) = produce(&store, &req, &signer, &tx).await {
            let _ = tx.send(Err(e)).await;
        }
    });
    rx
}

type Chunks = tokio::sync::mpsc::Sender<Result<String, gatehouse_store::Error>>;

async fn produce(
    store: &gatehouse_store::Store,
    req: &ExportRequest,
    signer: &gatehouse_security::checkpoint::CheckpointSigner,
    tx: &Chunks,
) -> Result<(), gatehouse_store::Error> {
    let first = match req.format {
        Format::Ndjson => header_line(&req.selection, &signer.verifier().to_vkey()),
        Format::Csv => csv_header(),
    };
    if tx.send(Ok(first)).await.is_err() {
        return Ok(());
    }
    let chains = match &req.chains {
        Some(c) => c.clone(),
        None => store.audit_chains().await?,
    };
    // Every chain's head is fixed before any record is read: the export is exactly the
    // chains' state at this moment, whatever is appended while it streams.
    let mut heads = Vec::with_capacity(chains.len());
    for chain in chains {
        let head = store.audit_head(&chain).await?;
        heads.push((chain, head));
    }
    let mut manifest = Manifest {
        exported_at: humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string(),
        filtered: req.selection.leaves_gaps(),
        selection: req.selection.clone(),
        chains: Vec::with_capacity(heads.len()),
    };
    for (chain, head) in heads {
        let Some(head) = head else { continue };
        let mut listed = ManifestChain {
            chain: chain.clone(),
            head_seq: head.seq,
            head_hash: hex::encode(head.hash),
            ..ManifestChain::default()
        };
        let mut digest = [0u8; 32];
        let mut chunk = String::new();
        if req.format == Format::Ndjson {
            // signed state first, so a verifier reading top to bottom has it before records
            if let Some(a) = store.audit_anchor(&chain).await? {
                chunk.push_str(&anchor_line(&chain, u64::try_from(a.seq).unwrap_or(0), &a.hash, &a.note));
            }
            for c in store.audit_checkpoints(&chain).await? {
                chunk.push_str(&checkpoint_line(&chain, u64::try_from(c.seq).unwrap_or(0), &c.note));
            }
        }
        let filter = gatehouse_store::AuditFilter { chain: Some(chain.clone()), ..req.filter.clone() };
        let mut after = None;
        'pages: loop {
            let rows = store.audit_page(&filter, after.map(|s| (chain.as_str(), s)), PAGE).await?;
            for r in &rows {
                let seq = u64::try_from(r.seq).unwrap_or(u64::MAX);
                if seq > head.seq {
                    break 'pages;
                }
                digest = fold_digest(&digest, &r.hash);
                listed.records += 1;
                match req.format {
                    Format::Ndjson => chunk.push_str(&record_line(&r.chain, seq, &r.prev_hash, &r.hash, &r.line)),
                    Format::Csv => chunk.push_str(&csv_row(&r.line, &r.hash)),
                }
            }
            if !chunk.is_empty() && tx.send(Ok(std::mem::take(&mut chunk))).await.is_err() {
                return Ok(());
            }
            match rows.last() {
                Some(last) if rows.len() == PAGE as usize => after = Some(last.seq),
                _ => break,
            }
        }
        if !chunk.is_empty() && tx.send(Ok(chunk)).await.is_err() {
            return Ok(());
        }
        listed.digest = hex::encode(digest);
        manifest.chains.push(listed);
    }
    if req.format == Format::Ndjson {
        let body = serde_json::to_string(&manifest).map_err(|_| gatehouse_store::Error::Corrupt("export manifest"))?;
        let note = signer
            .sign_note(&format!("{MANIFEST_ORIGIN}\n{body}\n"))
            .map_err(|_| gatehouse_store::Error::Corrupt("export manifest"))?;
        let _ = tx.send(Ok(manifest_line(&note))).await;
    }
    Ok(())
}
