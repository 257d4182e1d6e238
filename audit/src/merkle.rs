//! The Merkle tree of RFC 9162 §2.1 with SM3 as the hash (docs/audit.md, "Tree").
//!
//! Leaves are hashed as `SM3(0x00 ‖ leaf)`, interior nodes as `SM3(0x01 ‖ left ‖ right)`; the
//! tree over `n` leaves splits at the largest power of two below `n`. Proofs come two ways: from
//! the whole list of leaf hashes (O(n) per proof, the reference), or as a [`ProofPlan`] that names
//! the O(log n) stored perfect subtrees ([`NodeId`]) a proof is made of. Verification follows the
//! algorithms of §2.1.3.2 and §2.1.4.2 step by step.

use sm3::{Digest, Sm3};
use thiserror::Error;

/// An SM3 digest.
pub type Hash = [u8; 32];

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ProofError {
    #[error("leaf index {index} is not below tree size {size}")]
    IndexOutOfRange { index: u64, size: u64 },
    #[error(
        "sizes {first} and {second} do not make a consistency proof (need 0 < first <= second)"
    )]
    BadSizes { first: u64, second: u64 },
    #[error("the tree has {have} leaves, fewer than {want}")]
    TooFewLeaves { have: u64, want: u64 },
    #[error("the proof does not lead to the root")]
    Mismatch,
}

/// `SM3(0x00 ‖ leaf)`.
pub fn leaf_hash(leaf: &[u8]) -> Hash {
    let mut hasher = Sm3::new();
    hasher.update([0x00]);
    hasher.update(leaf);
    hasher.finalize().into()
}

/// `SM3(0x01 ‖ left ‖ right)`.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut hasher = Sm3::new();
    hasher.update([0x01]);
    hasher.update(left);
    hasher.update(right);
    hasher.finalize().into()
}

/// The root of the empty tree: `SM3("")`.
pub fn empty_root() -> Hash {
    Sm3::digest([]).into()
}

/// The largest power of two strictly below `n` (n > 1).
fn split(n: usize) -> usize {
    let mut k = 1;
    while k << 1 < n {
        k <<= 1;
    }
    k
}

/// MTH over already-hashed leaves.
pub fn root(leaves: &[Hash]) -> Hash {
    match leaves.len() {
        0 => empty_root(),
        1 => leaves[0],
        n => {
            let k = split(n);
            node_hash(&root(&leaves[..k]), &root(&leaves[k..]))
        }
    }
}

/// The inclusion proof of leaf `index` in the tree of the first `size` leaves (RFC 9162
/// §2.1.3.1), nearest the leaf first.
pub fn inclusion_proof(leaves: &[Hash], index: u64, size: u64) -> Result<Vec<Hash>, ProofError> {
    if index >= size {
        return Err(ProofError::IndexOutOfRange { index, size });
    }
    let tree = prefix(leaves, size)?;
    let mut path = Vec::new();
    path_of(index as usize, tree, &mut path);
    Ok(path)
}

fn path_of(m: usize, tree: &[Hash], out: &mut Vec<Hash>) {
    let n = tree.len();
    if n <= 1 {
        return;
    }
    let k = split(n);
    if m < k {
        path_of(m, &tree[..k], out);
        out.push(root(&tree[k..]));
    } else {
        path_of(m - k, &tree[k..], out);
        out.push(root(&tree[..k]));
    }
}

/// The consistency proof between the trees of the first `first` and `second` leaves (RFC 9162
/// §2.1.4.1).
pub fn consistency_proof(
    leaves: &[Hash],
    first: u64,
    second: u64,
) -> Result<Vec<Hash>, ProofError> {
    if first == 0 || first > second {
        return Err(ProofError::BadSizes { first, second });
    }
    let tree = prefix(leaves, second)?;
    let mut proof = Vec::new();
    subproof(first as usize, tree, true, &mut proof);
    Ok(proof)
}

fn subproof(m: usize, tree: &[Hash], complete: bool, out: &mut Vec<Hash>) {
    let n = tree.len();
    if m == n {
        if !complete {
            out.push(root(tree));
        }
        return;
    }
    let k = split(n);
    if m <= k {
        subproof(m, &tree[..k], complete, out);
        out.push(root(&tree[k..]));
    } else {
        subproof(m - k, &tree[k..], false, out);
        out.push(root(&tree[..k]));
    }
}

fn prefix(leaves: &[Hash], size: u64) -> Result<&[Hash], ProofError> {
    usize::try_from(size)
        .ok()
        .and_then(|size| leaves.get(..size))
        .ok_or(ProofError::TooFewLeaves {
            have: leaves.len() as u64,
            want: size,
        })
}

/// A perfect subtree: the `2^level` leaves from `index * 2^level`. Level 0 is a leaf.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NodeId {
    pub level: u32,
    pub index: u64,
}

/// The leaves `[start, end)` of a subtree that RFC 9162's recursion visits: `start` is a multiple
/// of a power of two at least `end - start`, so the subtree is its perfect parts (one per set bit
/// of its width, largest first) folded from the right, like a [`Frontier`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Subtree {
    pub start: u64,
    pub end: u64,
}

impl Subtree {
    /// Its perfect parts, largest first (O(log n) of them).
    pub fn parts(&self) -> Vec<NodeId> {
        let mut parts = Vec::new();
        let mut start = self.start;
        let width = self.end - self.start;
        for level in (0..u64::BITS).rev() {
            if (width >> level) & 1 == 1 {
                parts.push(NodeId {
                    level,
                    index: start >> level,
                });
                start += 1 << level;
            }
        }
        parts
    }
}

/// The subtrees whose roots make a proof, in the proof's order; [`ProofPlan::nodes`] is what to
/// read from storage and [`ProofPlan::assemble`] the proof from it. Gives the same bytes as
/// [`inclusion_proof`] and [`consistency_proof`] over the whole list of leaves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProofPlan {
    pub subtrees: Vec<Subtree>,
}

impl ProofPlan {
    /// The plan of the inclusion proof of leaf `index` in the tree of `size` leaves.
    pub fn inclusion(index: u64, size: u64) -> Result<ProofPlan, ProofError> {
        if index >= size {
            return Err(ProofError::IndexOutOfRange { index, size });
        }
        let mut subtrees = Vec::new();
        plan_path(index, 0, size, &mut subtrees);
        Ok(ProofPlan { subtrees })
    }

    /// The plan of the consistency proof between the trees of `first` and `second` leaves.
    pub fn consistency(first: u64, second: u64) -> Result<ProofPlan, ProofError> {
        if first == 0 || first > second {
            return Err(ProofError::BadSizes { first, second });
        }
        let mut subtrees = Vec::new();
        plan_subproof(first, 0, second, true, &mut subtrees);
        Ok(ProofPlan { subtrees })
    }

    /// Every perfect subtree the proof needs, sorted, without repeats.
    pub fn nodes(&self) -> Vec<NodeId> {
        let mut nodes: Vec<NodeId> = self.subtrees.iter().flat_map(Subtree::parts).collect();
        nodes.sort_unstable();
        nodes.dedup();
        nodes
    }

    /// The proof from the perfect subtrees' hashes; `None` when `node` lacks one.
    pub fn assemble(&self, node: impl Fn(NodeId) -> Option<Hash>) -> Option<Vec<Hash>> {
        self.subtrees
            .iter()
            .map(|subtree| subtree_root(subtree, &node))
            .collect()
    }
}

/// The root of the tree of `size` leaves, from its perfect parts (the frontier's nodes).
pub fn root_from_nodes(size: u64, node: impl Fn(NodeId) -> Option<Hash>) -> Option<Hash> {
    if size == 0 {
        return Some(empty_root());
    }
    subtree_root(
        &Subtree {
            start: 0,
            end: size,
        },
        &node,
    )
}

fn subtree_root(subtree: &Subtree, node: &impl Fn(NodeId) -> Option<Hash>) -> Option<Hash> {
    let parts: Option<Vec<Hash>> = subtree.parts().into_iter().map(node).collect();
    let mut parts = parts?.into_iter().rev();
    let last = parts.next()?;
    Some(parts.fold(last, |right, left| node_hash(&left, &right)))
}

/// [`path_of`] over leaf indices instead of a slice.
fn plan_path(m: u64, start: u64, end: u64, out: &mut Vec<Subtree>) {
    let n = end - start;
    if n <= 1 {
        return;
    }
    let k = split_u64(n);
    if m < k {
        plan_path(m, start, start + k, out);
        out.push(Subtree {
            start: start + k,
            end,
        });
    } else {
        plan_path(m - k, start + k, end, out);
        out.push(Subtree {
            start,
            end: start + k,
        });
    }
}

/// [`subproof`] over leaf indices instead of a slice.
fn plan_subproof(m: u64, start: u64, end: u64, complete: bool, out: &mut Vec<Subtree>) {
    let n = end - start;
    if m == n {
        if !complete {
            out.push(Subtree { start, end });
        }
        return;
    }
    let k = split_u64(n);
    if m <= k {
        plan_subproof(m, start, start + k, complete, out);
        out.push(Subtree {
            start: start + k,
            end,
        });
    } else {
        plan_subproof(m - k, start + k, end, false, out);
        out.push(Subtree {
            start,
            end: start + k,
        });
    }
}

/// The largest power of two strictly below `n` (n > 1).
fn split_u64(n: u64) -> u64 {
    1 << (u64::BITS - 1 - (n - 1).leading_zeros())
}

/// Checks an inclusion proof (RFC 9162 §2.1.3.2).
pub fn verify_inclusion(
    leaf: &Hash,
    index: u64,
    size: u64,
    proof: &[Hash],
    root_hash: &Hash,
) -> Result<(), ProofError> {
    if index >= size {
        return Err(ProofError::IndexOutOfRange { index, size });
    }
    let (mut fn_, mut sn) = (index, size - 1);
    let mut r = *leaf;
    for p in proof {
        if sn == 0 {
            return Err(ProofError::Mismatch);
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
    if sn == 0 && r == *root_hash {
        Ok(())
    } else {
        Err(ProofError::Mismatch)
    }
}

/// Checks a consistency proof (RFC 9162 §2.1.4.2). Equal sizes need an empty proof and equal
/// roots.
pub fn verify_consistency(
    first: u64,
    second: u64,
    first_root: &Hash,
    second_root: &Hash,
    proof: &[Hash],
) -> Result<(), ProofError> {
    if first == 0 || first > second {
        return Err(ProofError::BadSizes { first, second });
    }
    if first == second {
        return if proof.is_empty() && first_root == second_root {
            Ok(())
        } else {
            Err(ProofError::Mismatch)
        };
    }
    let mut path: Vec<Hash> = Vec::with_capacity(proof.len() + 1);
    if first.is_power_of_two() {
        path.push(*first_root);
    }
    path.extend_from_slice(proof);
    let Some((seed, rest)) = path.split_first() else {
        return Err(ProofError::Mismatch);
    };
    let (mut fn_, mut sn) = (first - 1, second - 1);
    while fn_ & 1 == 1 {
        fn_ >>= 1;
        sn >>= 1;
    }
    let (mut fr, mut sr) = (*seed, *seed);
    for c in rest {
        if sn == 0 {
            return Err(ProofError::Mismatch);
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
    if fr == *first_root && sr == *second_root && sn == 0 {
        Ok(())
    } else {
        Err(ProofError::Mismatch)
    }
}

/// The right edge of a tree: the roots of its perfect subtrees, largest first (one per set bit
/// of the size). Enough to append leaves and get the new root without the old leaves.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Frontier {
    size: u64,
    nodes: Vec<Hash>,
}

impl Frontier {
    /// A stored frontier; `None` when the node count does not match the size's set bits.
    pub fn from_parts(size: u64, nodes: Vec<Hash>) -> Option<Frontier> {
        (size.count_ones() as usize == nodes.len()).then_some(Frontier { size, nodes })
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    pub fn nodes(&self) -> &[Hash] {
        &self.nodes
    }

    /// Appends one leaf hash: merges equal-sized subtrees, as many as the size's trailing ones.
    pub fn push(&mut self, leaf: Hash) {
        self.push_recording(leaf, |_, _| {});
    }

    /// [`Frontier::push`], handing `completed` each perfect subtree above the leaf (level 1 and
    /// up) that the leaf completes, lowest first: what storage keeps for proofs.
    pub fn push_recording(&mut self, leaf: Hash, mut completed: impl FnMut(NodeId, &Hash)) {
        let mut node = leaf;
        let mut size = self.size;
        let mut level = 0;
        while size & 1 == 1 {
            // from_parts and push keep one node per set bit, so a set bit has its node.
            let Some(left) = self.nodes.pop() else { break };
            node = node_hash(&left, &node);
            size >>= 1;
            level += 1;
            completed(
                NodeId {
                    level,
                    index: ((self.size + 1) >> level) - 1,
                },
                &node,
            );
        }
        self.nodes.push(node);
        self.size += 1;
    }

    /// The tree's root: the subtrees folded from the right.
    pub fn root(&self) -> Hash {
        let mut nodes = self.nodes.iter().rev();
        let Some(last) = nodes.next() else {
            return empty_root();
        };
        nodes.fold(*last, |right, left| node_hash(left, &right))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaves(n: usize) -> Vec<Hash> {
        (0..n)
            .map(|i| leaf_hash(&(i as u64).to_be_bytes()))
            .collect()
    }

    /// Every root, inclusion and consistency proof for sizes up to 33 verifies, and fails for a
    /// changed byte in the proof, the leaf or the root.
    #[test]
    fn proofs_verify_and_one_byte_breaks_them() {
        let all = leaves(33);
        let mut frontier = Frontier::default();
        for n in 1..=all.len() {
            frontier.push(all[n - 1]);
            let tree = &all[..n];
            let size = n as u64;
            let r = root(tree);
            assert_eq!(frontier.root(), r, "frontier root of {n}");
            for i in 0..size {
                let proof = inclusion_proof(&all, i, size).unwrap();
                verify_inclusion(&all[i as usize], i, size, &proof, &r).unwrap();
                let mut bad_root = r;
                bad_root[0] ^= 1;
                assert!(verify_inclusion(&all[i as usize], i, size, &proof, &bad_root).is_err());
                let mut bad_leaf = all[i as usize];
                bad_leaf[31] ^= 0x80;
                assert!(verify_inclusion(&bad_leaf, i, size, &proof, &r).is_err());
                for j in 0..proof.len() {
                    let mut bad = proof.clone();
                    bad[j][5] ^= 4;
                    assert!(verify_inclusion(&all[i as usize], i, size, &bad, &r).is_err());
                }
            }
            for m in 1..=size {
                let first_root = root(&all[..m as usize]);
                let proof = consistency_proof(&all, m, size).unwrap();
                verify_consistency(m, size, &first_root, &r, &proof).unwrap();
                for j in 0..proof.len() {
                    let mut bad = proof.clone();
                    bad[j][0] ^= 1;
                    assert!(verify_consistency(m, size, &first_root, &r, &bad).is_err());
                }
                let mut bad_first = first_root;
                bad_first[9] ^= 2;
                assert!(verify_consistency(m, size, &bad_first, &r, &proof).is_err());
            }
        }
    }

    /// The vectors docs/audit.md prints (from `openssl dgst -sm3`).
    #[test]
    fn documented_vectors() {
        let l = leaf_hash(&[0; 32]);
        assert_eq!(
            hex::encode(empty_root()),
            "1ab21d8355cfa17f8e61194831e81a8f22bec8c728fefb747ed035eb5082aa2b"
        );
        assert_eq!(
            hex::encode(l),
            "8fa0dd2c798c5bbada415e5d1167a37072ee65558a2cea408bc5214c9fd28f3c"
        );
        assert_eq!(
            hex::encode(node_hash(&l, &l)),
            "f575dec99818a9204e968ab939be204da50b3acb58a906125b10fd430510e231"
        );
    }

    #[test]
    fn structure_is_rfc_9162() {
        let l = leaves(3);
        assert_eq!(root(&[]), empty_root());
        assert_eq!(root(&l[..1]), l[0]);
        assert_eq!(
            root(&l),
            node_hash(&node_hash(&l[0], &l[1]), &l[2]),
            "three leaves split at two"
        );
        assert_eq!(
            inclusion_proof(&l, 2, 3).unwrap(),
            vec![node_hash(&l[0], &l[1])]
        );
        assert_eq!(consistency_proof(&l, 2, 3).unwrap(), vec![l[2]]);
        assert_eq!(
            consistency_proof(&l, 1, 3).unwrap(),
            vec![l[1], l[2]],
            "RFC 9162 §2.1.4.1: PROOF(1, D[3])"
        );
    }

    #[test]
    fn bad_arguments_are_typed() {
        let l = leaves(4);
        assert!(matches!(
            inclusion_proof(&l, 4, 4),
            Err(ProofError::IndexOutOfRange { .. })
        ));
        assert!(matches!(
            inclusion_proof(&l, 0, 5),
            Err(ProofError::TooFewLeaves { .. })
        ));
        assert!(matches!(
            consistency_proof(&l, 0, 4),
            Err(ProofError::BadSizes { .. })
        ));
        assert!(Frontier::from_parts(3, vec![l[0]]).is_none());
        assert!(matches!(
            ProofPlan::inclusion(4, 4),
            Err(ProofError::IndexOutOfRange { .. })
        ));
        assert!(matches!(
            ProofPlan::consistency(5, 4),
            Err(ProofError::BadSizes { .. })
        ));
    }

    /// Every perfect subtree `push_recording` hands out, as storage keeps them (level 0 being
    /// the leaves themselves).
    fn stored_nodes(all: &[Hash]) -> std::collections::HashMap<NodeId, Hash> {
        let mut nodes = std::collections::HashMap::new();
        let mut frontier = Frontier::default();
        for (i, leaf) in all.iter().enumerate() {
            nodes.insert(
                NodeId {
                    level: 0,
                    index: i as u64,
                },
                *leaf,
            );
            frontier.push_recording(*leaf, |id, hash| {
                assert!(nodes.insert(id, *hash).is_none(), "{id:?} recorded twice");
            });
        }
        nodes
    }

    #[test]
    fn recorded_nodes_are_the_perfect_subtrees() {
        let all = leaves(70);
        let nodes = stored_nodes(&all);
        assert_eq!(nodes.len(), 70 + 35 + 17 + 8 + 4 + 2 + 1);
        for (id, hash) in &nodes {
            let start = (id.index << id.level) as usize;
            assert_eq!(root(&all[start..start + (1 << id.level)]), *hash, "{id:?}");
        }
    }

    /// A proof at any size reads O(log n) perfect subtrees, not the leaves.
    #[test]
    fn plans_read_logarithmically_many_nodes() {
        for size in [2u64, 1_000_000, (1 << 40) + 12_345, u64::MAX >> 1] {
            let bound = 2 * (u64::BITS - size.leading_zeros()) as usize + 2;
            for index in [0, size / 3, size - 1] {
                let plan = ProofPlan::inclusion(index, size).unwrap();
                assert!(plan.nodes().len() <= bound, "inclusion {index} of {size}");
            }
            for first in [1, size / 2 + 1, size - 1] {
                let plan = ProofPlan::consistency(first, size).unwrap();
                assert!(plan.nodes().len() <= bound, "consistency {first} to {size}");
            }
        }
    }

    proptest::proptest! {
        /// Proofs assembled from the stored perfect subtrees are byte for byte the reference
        /// proofs over the whole list of leaves, and so are the roots.
        #[test]
        fn node_proofs_equal_the_reference(
            n in 1usize..1200,
            a in proptest::prelude::any::<u64>(),
            b in proptest::prelude::any::<u64>(),
        ) {
            let all = leaves(n);
            let nodes = stored_nodes(&all);
            let node = |id: NodeId| nodes.get(&id).copied();
            let size = 1 + b % n as u64;
            let index = a % size;
            let first = 1 + a % size;
            let plan = ProofPlan::inclusion(index, size).unwrap();
            proptest::prop_assert_eq!(
                plan.assemble(node),
                Some(inclusion_proof(&all, index, size).unwrap())
            );
            let plan = ProofPlan::consistency(first, size).unwrap();
            proptest::prop_assert_eq!(
                plan.assemble(node),
                Some(consistency_proof(&all, first, size).unwrap())
            );
            proptest::prop_assert_eq!(
                root_from_nodes(size, node),
                Some(root(&all[..size as usize]))
            );
        }
    }
}
