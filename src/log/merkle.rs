//! RFC 9162 Merkle tree hashing, proofs and proof verification.
//!
//! The tree is read through [`HashSource`]: the hash of each complete,
//! aligned subtree (level `l`, index `i` covers leaves `i·2^l .. (i+1)·2^l`),
//! as Go's sumdb/tlog stores them. Appending stores O(1) new hashes per leaf
//! (amortised), and any root or proof needs O(log² n) look-ups.

use crate::digest::sha256;

pub type Hash = [u8; 32];

/// SHA-256(0x00 ‖ entry bytes).
pub fn leaf_hash(entry_bytes: &[u8]) -> Hash {
    let mut buf = Vec::with_capacity(entry_bytes.len() + 1);
    buf.push(0u8);
    buf.extend_from_slice(entry_bytes);
    sha256(&buf)
}

/// SHA-256(0x01 ‖ left ‖ right).
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut buf = [0u8; 65];
    buf[0] = 1;
    buf[1..33].copy_from_slice(left);
    buf[33..].copy_from_slice(right);
    sha256(&buf)
}

/// The root of the empty tree: SHA-256 of nothing.
pub fn empty_root() -> Hash {
    sha256(b"")
}

/// Subtree levels `1..=DERIVABLE_LEVELS` may be missing from a store:
/// such a hash is computed from its 2 to 8 leaf hashes ([`derived_subtree`])
/// when a proof or an append needs it. The embedded engines leave them out
/// of a log that keeps its entries in an entry file (no binary from before
/// this rule can open such a log anyway) and store them in older logs and
/// in a fleet's database, which binaries from before may still read.
pub const DERIVABLE_LEVELS: u8 = 3;

/// The hash of subtree (`level`, `index`), `level` ≤ [`DERIVABLE_LEVELS`],
/// from the leaf hashes `leaf` gives.
pub fn derived_subtree<E>(
    level: u8,
    index: u64,
    mut leaf: impl FnMut(u64) -> Result<Hash, E>,
) -> Result<Hash, E> {
    let first = index << level;
    let mut hashes = (first..first + (1 << level))
        .map(&mut leaf)
        .collect::<Result<Vec<Hash>, E>>()?;
    while hashes.len() > 1 {
        hashes = hashes
            .chunks_exact(2)
            .map(|pair| node_hash(&pair[0], &pair[1]))
            .collect();
    }
    Ok(hashes[0])
}

/// Stored hashes of complete subtrees.
pub trait HashSource {
    type Error;
    fn subtree(&self, level: u8, index: u64) -> Result<Hash, Self::Error>;
}

/// The largest power of two strictly below `n` (n ≥ 2).
fn split_point(n: u64) -> u64 {
    1 << (63 - (n - 1).leading_zeros())
}

/// MTH of leaves `lo..hi` (hi > lo), following RFC 9162's decomposition, so
/// every left part is an aligned complete subtree found in the source.
pub fn range_hash<S: HashSource>(source: &S, lo: u64, hi: u64) -> Result<Hash, S::Error> {
    let n = hi - lo;
    if n.is_power_of_two() && lo.is_multiple_of(n) {
        return source.subtree(n.trailing_zeros() as u8, lo >> n.trailing_zeros());
    }
    let k = split_point(n);
    Ok(node_hash(
        &range_hash(source, lo, lo + k)?,
        &range_hash(source, lo + k, hi)?,
    ))
}

/// The root of the tree of the first `size` leaves.
pub fn root<S: HashSource>(source: &S, size: u64) -> Result<Hash, S::Error> {
    if size == 0 {
        return Ok(empty_root());
    }
    range_hash(source, 0, size)
}

/// RFC 9162 §2.1.3.1 PATH(index, D[0:size]). Requires index < size.
pub fn inclusion_proof<S: HashSource>(
    source: &S,
    index: u64,
    size: u64,
) -> Result<Vec<Hash>, S::Error> {
    fn path<S: HashSource>(
        s: &S,
        m: u64,
        lo: u64,
        hi: u64,
        out: &mut Vec<Hash>,
    ) -> Result<(), S::Error> {
        let n = hi - lo;
        if n == 1 {
            return Ok(());
        }
        let k = split_point(n);
        if m < lo + k {
            path(s, m, lo, lo + k, out)?;
            out.push(range_hash(s, lo + k, hi)?);
        } else {
            path(s, m, lo + k, hi, out)?;
            out.push(range_hash(s, lo, lo + k)?);
        }
        Ok(())
    }
    let mut proof = Vec::new();
    path(source, index, 0, size, &mut proof)?;
    Ok(proof)
}

/// RFC 9162 §2.1.4.1 PROOF(first, D[0:second]). Requires 0 < first ≤ second.
pub fn consistency_proof<S: HashSource>(
    source: &S,
    first: u64,
    second: u64,
) -> Result<Vec<Hash>, S::Error> {
    fn subproof<S: HashSource>(
        s: &S,
        m: u64,
        lo: u64,
        hi: u64,
        complete: bool,
        out: &mut Vec<Hash>,
    ) -> Result<(), S::Error> {
        let n = hi - lo;
        if m == n {
            if !complete {
                out.push(range_hash(s, lo, hi)?);
            }
            return Ok(());
        }
        let k = split_point(n);
        if m <= k {
            subproof(s, m, lo, lo + k, complete, out)?;
            out.push(range_hash(s, lo + k, hi)?);
        } else {
            subproof(s, m - k, lo + k, hi, false, out)?;
            out.push(range_hash(s, lo, lo + k)?);
        }
        Ok(())
    }
    let mut proof = Vec::new();
    subproof(source, first, 0, second, true, &mut proof)?;
    Ok(proof)
}

/// RFC 9162 §2.1.3.2: does `proof` show `leaf` at `index` in the tree of
/// `size` leaves with `root`?
pub fn verify_inclusion(index: u64, size: u64, leaf: &Hash, proof: &[Hash], root: &Hash) -> bool {
    if index >= size {
        return false;
    }
    let (mut fn_, mut sn) = (index, size - 1);
    let mut r = *leaf;
    for p in proof {
        if sn == 0 {
            return false;
        }
        if fn_ & 1 == 1 || fn_ == sn {
            r = node_hash(p, &r);
            while fn_ & 1 == 0 && fn_ != 0 {
                fn_ >>= 1;
                sn >>= 1;
            }
        } else {
            r = node_hash(&r, p);
        }
        fn_ >>= 1;
        sn >>= 1;
    }
    sn == 0 && r == *root
}

/// RFC 9162 §2.1.4.2: does `proof` show the tree of `first` leaves with
/// `first_root` is a prefix of the tree of `second` leaves with `second_root`?
pub fn verify_consistency(
    first: u64,
    second: u64,
    proof: &[Hash],
    first_root: &Hash,
    second_root: &Hash,
) -> bool {
    if first > second {
        return false;
    }
    if first == second {
        return proof.is_empty() && first_root == second_root;
    }
    if first == 0 {
        return proof.is_empty();
    }
    let mut path: Vec<Hash> = Vec::with_capacity(proof.len() + 1);
    if first.is_power_of_two() {
        path.push(*first_root);
    }
    path.extend_from_slice(proof);
    let Some((start, rest)) = path.split_first() else {
        return false;
    };
    let (mut fn_, mut sn) = (first - 1, second - 1);
    while fn_ & 1 == 1 {
        fn_ >>= 1;
        sn >>= 1;
    }
    let (mut fr, mut sr) = (*start, *start);
    for c in rest {
        if sn == 0 {
            return false;
        }
        if fn_ & 1 == 1 || fn_ == sn {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            while fn_ & 1 == 0 && fn_ != 0 {
                fn_ >>= 1;
                sn >>= 1;
            }
        } else {
            sr = node_hash(&sr, c);
        }
        fn_ >>= 1;
        sn >>= 1;
    }
    fr == *first_root && sr == *second_root && sn == 0
}

/// Builds the stored hashes incrementally: appending leaf `n` yields the
/// new (level, index, hash) triples, computed from the left siblings it
/// is given. Shared by the log writer and `log verify`.
pub fn hashes_for_append<E>(
    index: u64,
    leaf: Hash,
    mut left_sibling: impl FnMut(u8, u64) -> Result<Hash, E>,
) -> Result<Vec<(u8, u64, Hash)>, E> {
    let mut out = vec![(0u8, index, leaf)];
    let (mut level, mut i, mut cur) = (0u8, index, leaf);
    while i & 1 == 1 {
        let left = left_sibling(level, i - 1)?;
        cur = node_hash(&left, &cur);
        level += 1;
        i >>= 1;
        out.push((level, i, cur));
    }
    Ok(out)
}

/// The hashes of entries appended in one batch, before the batch is
/// stored: a left sibling made earlier in the batch is taken from here,
/// an older one from the store.
#[derive(Default)]
pub struct BatchHashes {
    fresh: std::collections::HashMap<(u8, u64), Hash>,
}

impl BatchHashes {
    /// The (level, index, hash) triples appending leaf `index` stores.
    pub fn append<S: HashSource>(
        &mut self,
        stored: &S,
        index: u64,
        leaf: Hash,
    ) -> Result<Vec<(u8, u64, Hash)>, S::Error> {
        let hashes =
            hashes_for_append(index, leaf, |level, i| match self.fresh.get(&(level, i)) {
                Some(h) => Ok(*h),
                None => stored.subtree(level, i),
            })?;
        self.fresh
            .extend(hashes.iter().map(|(l, i, h)| ((*l, *i), *h)));
        Ok(hashes)
    }

    /// What the next batch needs of this one, once this one is stored as
    /// a tree of `size` leaves: the right edge's subtree hashes, the only
    /// left siblings an append at `size` or later can ask for. A stored
    /// hash never changes, so these stay right however long they are kept
    /// (another replica's appends in between are read from the store).
    pub fn frontier(mut self, size: u64) -> Self {
        self.fresh.retain(|&(level, index), _| {
            let whole = size.checked_shr(u32::from(level)).unwrap_or(0);
            whole & 1 == 1 && index == whole - 1
        });
        self
    }
}

/// Stored hashes held in memory: used by `log verify`, exports and tests.
#[derive(Default)]
pub struct MemoryTree {
    levels: Vec<Vec<Hash>>,
}

impl MemoryTree {
    pub fn size(&self) -> u64 {
        self.levels.first().map_or(0, |l| l.len() as u64)
    }

    pub fn push(&mut self, leaf: Hash) {
        let index = self.size();
        let levels = &self.levels;
        let new = hashes_for_append::<()>(index, leaf, |l, i| Ok(levels[l as usize][i as usize]))
            .expect("in-memory siblings exist");
        for (level, _, hash) in new {
            if self.levels.len() <= level as usize {
                self.levels.push(Vec::new());
            }
            self.levels[level as usize].push(hash);
        }
    }
}

impl HashSource for MemoryTree {
    type Error = std::convert::Infallible;
    fn subtree(&self, level: u8, index: u64) -> Result<Hash, Self::Error> {
        Ok(self.levels[level as usize][index as usize])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 9162's MTH, literally, as the reference the stored-hash path must match.
    fn mth(leaves: &[Hash]) -> Hash {
        match leaves.len() {
            0 => empty_root(),
            1 => leaves[0],
            n => {
                let k = split_point(n as u64) as usize;
                node_hash(&mth(&leaves[..k]), &mth(&leaves[k..]))
            }
        }
    }

    /// A store with nothing in it: every read fails.
    struct Nothing;
    impl HashSource for Nothing {
        type Error = (u8, u64);
        fn subtree(&self, level: u8, index: u64) -> Result<Hash, Self::Error> {
            Err((level, index))
        }
    }

    #[test]
    fn a_batch_finds_every_left_sibling_in_the_last_ones_frontier() {
        let leaves: Vec<Hash> = (0..300u32).map(|i| leaf_hash(&i.to_be_bytes())).collect();
        let mut reference = MemoryTree::default();
        let mut carried = BatchHashes::default();
        let mut start = 0;
        // Batches of uneven sizes, each starting from the last one's
        // frontier alone: a read would fail.
        for size in [1, 2, 3, 5, 8, 13, 21, 34, 55, 89, 69] {
            let mut batch = std::mem::take(&mut carried);
            for (i, leaf) in leaves.iter().enumerate().skip(start).take(size) {
                let ours = batch.append(&Nothing, i as u64, *leaf).unwrap();
                reference.push(*leaf);
                assert_eq!(ours[0], (0, i as u64, *leaf));
                for (level, index, hash) in ours {
                    assert_eq!(reference.levels[level as usize][index as usize], hash);
                }
            }
            start += size;
            carried = batch.frontier(start as u64);
            assert_eq!(carried.fresh.len(), (start as u64).count_ones() as usize);
        }
        assert_eq!(start, 300);
    }

    #[test]
    fn a_derived_subtree_is_the_stored_one() {
        let leaves: Vec<Hash> = (0..64u32).map(|i| leaf_hash(&i.to_be_bytes())).collect();
        let tree = tree(&leaves);
        for level in 0..=DERIVABLE_LEVELS {
            for index in 0..(64u64 >> level) {
                let derived =
                    derived_subtree::<()>(level, index, |i| Ok(leaves[i as usize])).unwrap();
                assert_eq!(derived, tree.levels[level as usize][index as usize]);
            }
        }
        assert_eq!(
            derived_subtree(2, 1, |i| if i == 6 { Err(i) } else { Ok(leaves[0]) }),
            Err(6),
            "a missing leaf is reported"
        );
    }

    fn h(s: &str) -> Hash {
        hex::decode(s).unwrap().try_into().unwrap()
    }

    /// The Certificate Transparency test inputs (RFC 6962 / 9162 test vectors).
    fn ct_leaves() -> Vec<Hash> {
        [
            "",
            "00",
            "10",
            "2021",
            "3031",
            "40414243",
            "5051525354555657",
            "606162636465666768696a6b6c6d6e6f",
        ]
        .iter()
        .map(|s| leaf_hash(&hex::decode(s).unwrap()))
        .collect()
    }

    const CT_ROOTS: [&str; 9] = [
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
        "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
        "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
        "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
        "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
    ];

    fn tree(leaves: &[Hash]) -> MemoryTree {
        let mut t = MemoryTree::default();
        for l in leaves {
            t.push(*l);
        }
        t
    }

    #[test]
    fn roots_match_the_known_answers_for_sizes_0_to_8() {
        let leaves = ct_leaves();
        let t = tree(&leaves);
        for size in 0..=8u64 {
            assert_eq!(
                root(&t, size).unwrap(),
                h(CT_ROOTS[size as usize]),
                "size {size}"
            );
            assert_eq!(mth(&leaves[..size as usize]), h(CT_ROOTS[size as usize]));
        }
    }

    #[test]
    fn inclusion_proofs_match_the_known_answers() {
        let t = tree(&ct_leaves());
        // (0-based index, tree size, audit path) from the CT test vectors.
        let vectors: [(u64, u64, &[&str]); 4] = [
            (
                0,
                8,
                &[
                    "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                    "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                    "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
                ],
            ),
            (
                5,
                8,
                &[
                    "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
                    "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
                ],
            ),
            (
                2,
                3,
                &["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"],
            ),
            (
                1,
                5,
                &[
                    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
                    "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                    "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
                ],
            ),
        ];
        for (index, size, path) in vectors {
            let proof = inclusion_proof(&t, index, size).unwrap();
            assert_eq!(
                proof,
                path.iter().map(|s| h(s)).collect::<Vec<_>>(),
                "{index}/{size}"
            );
        }
    }

    #[test]
    fn consistency_proofs_match_the_known_answers() {
        let t = tree(&ct_leaves());
        let vectors: [(u64, u64, &[&str]); 4] = [
            (1, 1, &[]),
            (
                1,
                8,
                &[
                    "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                    "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                    "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
                ],
            ),
            (
                6,
                8,
                &[
                    "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
                    "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
                ],
            ),
            (
                2,
                5,
                &[
                    "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                    "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
                ],
            ),
        ];
        for (first, second, path) in vectors {
            let proof = consistency_proof(&t, first, second).unwrap();
            assert_eq!(
                proof,
                path.iter().map(|s| h(s)).collect::<Vec<_>>(),
                "{first}->{second}"
            );
        }
    }

    #[test]
    fn every_proof_in_trees_of_size_1_to_8_verifies() {
        let leaves = ct_leaves();
        let t = tree(&leaves);
        for size in 1..=8u64 {
            let r = h(CT_ROOTS[size as usize]);
            for index in 0..size {
                let proof = inclusion_proof(&t, index, size).unwrap();
                assert!(verify_inclusion(
                    index,
                    size,
                    &leaves[index as usize],
                    &proof,
                    &r
                ));
                let mut wrong = leaves[index as usize];
                wrong[0] ^= 1;
                assert!(!verify_inclusion(index, size, &wrong, &proof, &r));
            }
            for first in 1..=size {
                let proof = consistency_proof(&t, first, size).unwrap();
                let fr = h(CT_ROOTS[first as usize]);
                assert!(
                    verify_consistency(first, size, &proof, &fr, &r),
                    "{first}->{size}"
                );
            }
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]

        /// Proofs from the stored hashes verify for random sizes, and any
        /// single-byte change to the leaf, a proof hash or a root breaks them.
        #[test]
        fn proofs_verify_and_any_byte_change_breaks_them(
            size in 1u64..300, pick in 0u64..u64::MAX, first_pick in 0u64..u64::MAX, byte in 0usize..32,
        ) {
            let leaves: Vec<Hash> = (0..size).map(|i| leaf_hash(&i.to_be_bytes())).collect();
            let t = tree(&leaves);
            let r = root(&t, size).unwrap();
            proptest::prop_assert_eq!(r, mth(&leaves));

            let index = pick % size;
            let proof = inclusion_proof(&t, index, size).unwrap();
            let leaf = leaves[index as usize];
            proptest::prop_assert!(verify_inclusion(index, size, &leaf, &proof, &r));
            let flip = |h: &Hash| { let mut h = *h; h[byte] ^= 0x01; h };
            proptest::prop_assert!(!verify_inclusion(index, size, &flip(&leaf), &proof, &r));
            proptest::prop_assert!(!verify_inclusion(index, size, &leaf, &proof, &flip(&r)));
            for i in 0..proof.len() {
                let mut bad = proof.clone();
                bad[i] = flip(&bad[i]);
                proptest::prop_assert!(!verify_inclusion(index, size, &leaf, &bad, &r));
            }

            let first = 1 + first_pick % size;
            let fr = root(&t, first).unwrap();
            let proof = consistency_proof(&t, first, size).unwrap();
            proptest::prop_assert!(verify_consistency(first, size, &proof, &fr, &r));
            if first < size {
                proptest::prop_assert!(!verify_consistency(first, size, &proof, &flip(&fr), &r));
                proptest::prop_assert!(!verify_consistency(first, size, &proof, &fr, &flip(&r)));
                for i in 0..proof.len() {
                    let mut bad = proof.clone();
                    bad[i] = flip(&bad[i]);
                    proptest::prop_assert!(!verify_consistency(first, size, &bad, &fr, &r));
                }
            }
        }
    }
}
