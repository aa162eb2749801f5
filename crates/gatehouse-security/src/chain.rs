//! The audit hash chain: `hash = SHA-256(prev_hash || line)` over the exact stored bytes of
//! each canonical event line, and a verifier that names the first broken sequence number and
//! the kind of break. Signed checkpoints (which also catch truncation and full rewrites) build
//! on this.

use aws_lc_rs::digest;

/// The `prev_hash` of the first record.
pub const GENESIS: [u8; 32] = [0; 32];

/// Links one line to the chain.
pub fn link(prev: &[u8; 32], line: &[u8]) -> [u8; 32] {
    let mut ctx = digest::Context::new(&digest::SHA256);
    ctx.update(prev);
    ctx.update(line);
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    out
}

/// One stored record as the verifier reads it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChainedRecord {
    pub seq: u64,
    pub prev_hash: [u8; 32],
    pub hash: [u8; 32],
    /// The canonical event line, byte for byte as stored.
    pub line: Vec<u8>,
}

/// How a chain is broken.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BreakKind {
    /// The line's bytes do not hash to the stored hash: the record was modified.
    Modified,
    /// The record does not point at its predecessor: records were deleted, inserted or swapped.
    Unlinked,
    /// Sequence numbers skip or repeat.
    SeqGap,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Break {
    pub seq: u64,
    pub kind: BreakKind,
}

/// Where verification starts: the chain's beginning, or a trusted anchor (the last record
/// before a pruned range, or a signed checkpoint).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Anchor {
    /// The sequence number the next record must have.
    pub next_seq: u64,
    pub hash: [u8; 32],
}

impl Anchor {
    pub const GENESIS: Anchor = Anchor { next_seq: 1, hash: GENESIS };
}

/// Verifies records in order from `anchor`; returns the anchor after the last record.
pub fn verify<I: IntoIterator<Item = ChainedRecord>>(anchor: Anchor, records: I) -> Result<Anchor, Break> {
    let mut at = anchor;
    for r in records {
        if r.seq != at.next_seq {
            return Err(Break { seq: r.seq, kind: BreakKind::SeqGap });
        }
        if r.prev_hash != at.hash {
            return Err(Break { seq: r.seq, kind: BreakKind::Unlinked });
        }
        if link(&r.prev_hash, &r.line) != r.hash {
            return Err(Break { seq: r.seq, kind: BreakKind::Modified });
        }
        at = Anchor { next_seq: r.seq + 1, hash: r.hash };
    }
    Ok(at)
}

/// Appends lines to a chain in memory (the single writer does the same against the store).
pub fn append(at: &mut Anchor, line: Vec<u8>) -> ChainedRecord {
    let hash = link(&at.hash, &line);
    let r = ChainedRecord { seq: at.next_seq, prev_hash: at.hash, hash, line };
    *at = Anchor { next_seq: r.seq + 1, hash };
    r
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn chain(n: usize) -> Vec<ChainedRecord> {
        let mut at = Anchor::GENESIS;
        (0..n)
            .map(|i| append(&mut at, format!("{{\"seq\":{},\"action\":\"key.create\"}}", i + 1).into_bytes()))
            .collect()
    }

    #[test]
    fn an_intact_chain_verifies_from_genesis_and_from_an_anchor() {
        let c = chain(5);
        let end = verify(Anchor::GENESIS, c.clone()).unwrap();
        assert_eq!(end.next_seq, 6);
        assert_eq!(end.hash, c[4].hash);
        let mid = Anchor { next_seq: 3, hash: c[1].hash };
        assert_eq!(verify(mid, c[2..].to_vec()).unwrap(), end, "a pruned prefix with its anchor still verifies");
    }

    #[test]
    fn a_modified_byte_is_found_at_its_record() {
        let mut c = chain(5);
        c[2].line[3] ^= 1;
        assert_eq!(verify(Anchor::GENESIS, c), Err(Break { seq: 3, kind: BreakKind::Modified }));
    }

    #[test]
    fn a_recomputed_hash_still_breaks_the_next_link() {
        let mut c = chain(5);
        c[2].line[3] ^= 1;
        c[2].hash = link(&c[2].prev_hash, &c[2].line);
        assert_eq!(verify(Anchor::GENESIS, c), Err(Break { seq: 4, kind: BreakKind::Unlinked }));
    }

    #[test]
    fn deleted_and_swapped_records_are_found() {
        let mut deleted = chain(5);
        deleted.remove(2);
        assert_eq!(verify(Anchor::GENESIS, deleted), Err(Break { seq: 4, kind: BreakKind::SeqGap }));

        let mut swapped = chain(5);
        swapped.swap(1, 2);
        assert_eq!(verify(Anchor::GENESIS, swapped), Err(Break { seq: 3, kind: BreakKind::SeqGap }));

        // renumbered after a deletion: the link still gives it away
        let mut renumbered = chain(5);
        renumbered.remove(2);
        for r in renumbered.iter_mut().skip(2) {
            r.seq -= 1;
        }
        assert_eq!(verify(Anchor::GENESIS, renumbered), Err(Break { seq: 3, kind: BreakKind::Unlinked }));
    }

    proptest! {
        #[test]
        fn any_single_byte_change_is_detected(n in 1usize..8, which in 0usize..8, pos in 0usize..64, bit in 0u8..8) {
            let mut c = chain(n);
            let r = &mut c[which % n];
            let pos = pos % r.line.len();
            r.line[pos] ^= 1 << bit;
            prop_assert!(verify(Anchor::GENESIS, c).is_err());
        }
    }
}
