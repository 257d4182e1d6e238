//! The Merkle tree of RFC 9162 §2.1 with SM3 as the hash (docs/audit.md, "Tree").
//!
//! Leaves are hashed as `SM3(0x00 ‖ leaf)`, interior nodes as `SM3(0x01 ‖ left ‖ right)`; the
//! tree over `n` leaves splits at the largest power of two below `n`. Proof generation works
//! from the whole list of leaf hashes (O(n) per proof); verification follows the algorithms of
//! §2.1.3.2 and §2.1.4.2 step by step.

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
        let mut node = leaf;
        let mut size = self.size;
        while size & 1 == 1 {
            // from_parts and push keep one node per set bit, so a set bit has its node.
            let Some(left) = self.nodes.pop() else { break };
            node = node_hash(&left, &node);
            size >>= 1;
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
    }
}
