//! SM2 signature verification through precomputed tables of the two fixed points (docs/security.md,
//! "Signature tables").
//!
//! A verify computes `s·G + t·P`. `G` never changes and `P` is the same for every report of one
//! device, so both products can be read from tables of `j·2^(w·i)·Q` (signed base-`2^w` digits)
//! and summed with `ceil(256/w) + 1` mixed additions each, no doublings. The sum and the
//! table lookups run in variable time: every input of a verify (key, message, signature) is
//! public, so there is nothing for timing to reveal.
//!
//! [`VerifyTables`] keeps the tables of device keys in a bounded LRU cache; a key is verified on
//! the plain `sm2` path until it has been seen [`TABLE_AFTER_SIGHTINGS`] times.

use std::cmp::Ordering;
use std::sync::{Arc, LazyLock, Mutex};

use hashlink::LruCache;
use primeorder::{PrimeCurveParams, PrimeField};
use sm2::dsa::Signature;
use sm2::elliptic_curve::ops::Reduce;
use sm2::elliptic_curve::point::AffineCoordinates;
use sm2::elliptic_curve::{BatchNormalize, Group};
use sm2::{AffinePoint, FieldBytes, ProjectivePoint, PublicKey, Scalar, Sm2};
use sm3::{Digest, Sm3};

use crate::sm2sig::{parse_der_signature, SignatureError, Sm2Verifier};

/// Window width of the generator's table: 33 windows of 128 points, about 300 KB, built once.
const GENERATOR_WIDTH: u32 = 8;
/// Window width of a device key's table: 65 windows of 8 points, 37,440 bytes, about 1 ms to
/// build.
pub const KEY_TABLE_WIDTH: u32 = 4;
/// A key is tabled on its second verify: a key seen once (a device that reports rarely) never
/// pays the build, one seen twice is likely to be seen often.
pub const TABLE_AFTER_SIGHTINGS: u32 = 2;
/// Memory for device-key tables in [`VerifyTables::default`]: 64 MiB, 1,792 tables of 37,440
/// bytes.
pub const DEFAULT_MEMORY_BUDGET: usize = 64 * 1024 * 1024;
/// Bits of an SM2 scalar.
const SCALAR_BITS: usize = 256;

static GENERATOR_TABLE: LazyLock<PointTable> =
    LazyLock::new(|| PointTable::new(ProjectivePoint::generator(), GENERATOR_WIDTH));

/// Multiples `j·2^(w·i)·Q` of one point `Q` for every window `i` and `j` in `1..=2^(w-1)`, affine
/// so that each addition is a mixed one.
pub struct PointTable {
    width: u32,
    points: Vec<AffinePoint>,
}

impl PointTable {
    /// Builds the table of `point` with windows of `width` bits (2 to 8).
    fn new(point: ProjectivePoint, width: u32) -> Self {
        debug_assert!((2..=8).contains(&width));
        let half = 1usize << (width - 1);
        let windows = window_count(width);
        let mut projective = Vec::with_capacity(windows * half);
        let mut base = point;
        for _ in 0..windows {
            let mut multiple = base;
            projective.push(multiple);
            for _ in 1..half {
                multiple += base;
                projective.push(multiple);
            }
            // 2^w·base = 2·(2^(w-1)·base), the last multiple of this window.
            base = multiple.double();
        }
        // One field inversion for the whole table instead of one per point.
        let points = <ProjectivePoint as BatchNormalize<[ProjectivePoint]>>::batch_normalize(
            projective.as_slice(),
        );
        Self { width, points }
    }

    /// The table of a device key, with [`KEY_TABLE_WIDTH`].
    pub fn for_key(public_key: &PublicKey) -> Self {
        Self::new(public_key.to_projective(), KEY_TABLE_WIDTH)
    }

    /// Memory held by the points.
    pub fn bytes(&self) -> usize {
        self.points.len() * std::mem::size_of::<AffinePoint>()
    }

    /// `accumulator + k·Q`.
    fn add_multiple(&self, accumulator: &mut ProjectivePoint, k: &Scalar) {
        let half = 1usize << (self.width - 1);
        for (window, digit) in signed_digits(k, self.width).into_iter().enumerate() {
            let magnitude = usize::from(digit.unsigned_abs());
            match digit.cmp(&0) {
                Ordering::Greater => *accumulator += &self.points[window * half + magnitude - 1],
                Ordering::Less => *accumulator -= &self.points[window * half + magnitude - 1],
                Ordering::Equal => {}
            }
        }
    }
}

/// Windows needed for a 256-bit scalar, plus one for the carry of the top window.
fn window_count(width: u32) -> usize {
    SCALAR_BITS.div_ceil(width as usize) + 1
}

/// `k` in signed base-`2^w` digits, least significant first, each in `[-2^(w-1), 2^(w-1)]`:
/// `k = Σ digit_i · 2^(w·i)`.
fn signed_digits(k: &Scalar, width: u32) -> Vec<i16> {
    let big_endian = k.to_repr();
    let mut limbs = [0u64; 4];
    for (limb, chunk) in limbs.iter_mut().zip(big_endian.rchunks_exact(8)) {
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(chunk);
        *limb = u64::from_be_bytes(bytes);
    }
    let width_bits = width as usize;
    let radix = 1i16 << width;
    let half = radix / 2;
    let mut carry = 0i16;
    (0..window_count(width))
        .map(|window| {
            let value = bits(&limbs, window * width_bits, width_bits) + carry;
            if value >= half {
                carry = 1;
                value - radix
            } else {
                carry = 0;
                value
            }
        })
        .collect()
}

/// The `width` bits of `limbs` (little-endian) starting at bit `position`; zero past the top.
fn bits(limbs: &[u64; 4], position: usize, width: usize) -> i16 {
    let limb = position / 64;
    if limb >= limbs.len() {
        return 0;
    }
    let offset = position % 64;
    let mut value = limbs[limb] >> offset;
    if offset + width > 64 && limb + 1 < limbs.len() {
        value |= limbs[limb + 1] << (64 - offset);
    }
    // At most 8 bits: fits.
    (value & ((1u64 << width) - 1)) as i16
}

/// `Z_A = SM3(ENTL_A ‖ ID_A ‖ a ‖ b ‖ x_G ‖ y_G ‖ x_A ‖ y_A)` (GM/T 0003.2 §5.5), the prefix of
/// every hashed message; the `sm2` crate computes the same but does not expose it.
pub(crate) fn identity_hash(
    distinguishing_id: &str,
    public_key: &PublicKey,
) -> Result<[u8; 32], SignatureError> {
    let id_bits = distinguishing_id
        .len()
        .checked_mul(8)
        .and_then(|bits| u16::try_from(bits).ok())
        .ok_or(SignatureError::BadDistinguishingId)?;
    let point = public_key.as_affine();
    let mut sm3 = Sm3::new();
    sm3.update(id_bits.to_be_bytes());
    sm3.update(distinguishing_id.as_bytes());
    sm3.update(Sm2::EQUATION_A.to_repr());
    sm3.update(Sm2::EQUATION_B.to_repr());
    sm3.update(Sm2::GENERATOR.0.to_repr());
    sm3.update(Sm2::GENERATOR.1.to_repr());
    sm3.update(point.x());
    sm3.update(point.y());
    Ok(sm3.finalize().into())
}

/// Steps B4 to B7 of GM/T 0003.2 verification with `s·G + t·P` from tables; the same checks
/// and the same answer as `sm2`'s `verify_prehash` (r, s in `[1, n-1]` were checked when the
/// signature was parsed).
pub(crate) fn verify_tabled(
    key_table: &PointTable,
    identity_hash: &[u8; 32],
    message: &[u8],
    signature: &Signature,
) -> Result<(), SignatureError> {
    let digest: FieldBytes = Sm3::new_with_prefix(identity_hash)
        .chain_update(message)
        .finalize();
    let e = <Scalar as Reduce<FieldBytes>>::reduce(&digest);
    let r: Scalar = *signature.r();
    let s: Scalar = *signature.s();
    let t = r + s;
    if bool::from(t.is_zero()) {
        return Err(SignatureError::Mismatch);
    }
    let mut point = ProjectivePoint::identity();
    GENERATOR_TABLE.add_multiple(&mut point, &s);
    key_table.add_multiple(&mut point, &t);
    if bool::from(point.is_identity()) {
        return Err(SignatureError::Mismatch);
    }
    let x = point.to_affine().x();
    if r == e + <Scalar as Reduce<FieldBytes>>::reduce(&x) {
        Ok(())
    } else {
        Err(SignatureError::Mismatch)
    }
}

/// The cache key: the device's public key, uncompressed SEC1.
type KeyBytes = [u8; 65];

#[derive(Clone, Copy)]
enum Sighting {
    /// Verified this many times on the plain path.
    Seen(u32),
    /// One verify is building the table; the others stay on the plain path meanwhile.
    Building,
}

struct Cache {
    tables: LruCache<KeyBytes, Arc<PointTable>>,
    sightings: LruCache<KeyBytes, Sighting>,
}

/// What a verify does with one key.
enum Route {
    Tabled(Arc<PointTable>),
    Build,
    Plain,
}

/// Bounded cache of device-key tables, shared by every ingress verify.
///
/// Holds at most `budget / 37,440 bytes` tables (the least recently used evicted) and remembers
/// up to four times as many keys seen once (about 100 bytes each) to decide when to table one.
pub struct VerifyTables {
    capacity: usize,
    cache: Mutex<Cache>,
}

impl Default for VerifyTables {
    fn default() -> Self {
        Self::with_memory_budget(DEFAULT_MEMORY_BUDGET)
    }
}

impl VerifyTables {
    /// A cache holding as many key tables as fit in `bytes`; 0 keeps every verify plain.
    pub fn with_memory_budget(bytes: usize) -> Self {
        let capacity = bytes / key_table_bytes();
        Self {
            capacity,
            cache: Mutex::new(Cache {
                tables: LruCache::new(capacity),
                sightings: LruCache::new(capacity.saturating_mul(4)),
            }),
        }
    }

    /// How many key tables the cache may hold.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// How many key tables it holds now.
    pub fn len(&self) -> usize {
        self.lock().tables.len()
    }

    /// Whether it holds no table.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Checks a DER signature over `message` with `verifier`'s key and distinguishing ID: the
    /// answer of [`Sm2Verifier::verify`], through the key's table once it has one.
    pub fn verify(
        &self,
        verifier: &Sm2Verifier,
        message: &[u8],
        der_signature: &[u8],
    ) -> Result<(), SignatureError> {
        let signature = parse_der_signature(der_signature)?;
        let key = verifier.key_bytes();
        match self.route(key) {
            Route::Tabled(table) => {
                verify_tabled(&table, verifier.identity_hash(), message, &signature)
            }
            Route::Plain => verifier.verify_parsed(message, &signature),
            Route::Build => {
                let table = Arc::new(PointTable::for_key(&verifier.public_key()));
                let verdict = verify_tabled(&table, verifier.identity_hash(), message, &signature);
                let mut cache = self.lock();
                cache.sightings.remove(key);
                cache.tables.insert(*key, table);
                verdict
            }
        }
    }

    fn route(&self, key: &KeyBytes) -> Route {
        if self.capacity == 0 {
            return Route::Plain;
        }
        let mut cache = self.lock();
        if let Some(table) = cache.tables.get(key) {
            return Route::Tabled(Arc::clone(table));
        }
        let seen = match cache.sightings.get(key) {
            Some(Sighting::Building) => return Route::Plain,
            Some(Sighting::Seen(times)) => *times,
            None => 0,
        };
        if seen + 1 >= TABLE_AFTER_SIGHTINGS {
            cache.sightings.insert(*key, Sighting::Building);
            Route::Build
        } else {
            cache.sightings.insert(*key, Sighting::Seen(seen + 1));
            Route::Plain
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Cache> {
        // The cache holds no invariant a panicking holder could break half-way.
        self.cache
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl std::fmt::Debug for VerifyTables {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerifyTables")
            .field("capacity", &self.capacity)
            .field("tables", &self.len())
            .finish()
    }
}

/// Bytes of one device-key table.
pub fn key_table_bytes() -> usize {
    window_count(KEY_TABLE_WIDTH)
        * (1usize << (KEY_TABLE_WIDTH - 1))
        * std::mem::size_of::<AffinePoint>()
}

/// Bytes of the generator's table (built on the first tabled verify).
pub fn generator_table_bytes() -> usize {
    GENERATOR_TABLE.bytes()
}

/// Builds the generator's table now rather than on the first tabled verify.
pub fn warm_generator_table() {
    LazyLock::force(&GENERATOR_TABLE);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scalar_from(digits: &[i16], width: u32) -> Scalar {
        let radix = Scalar::from(1u64 << width);
        digits.iter().rev().fold(Scalar::ZERO, |acc, &digit| {
            let magnitude = Scalar::from(u64::from(digit.unsigned_abs()));
            acc * radix + if digit < 0 { -magnitude } else { magnitude }
        })
    }

    #[test]
    fn signed_digits_recompose_to_the_scalar() {
        let minus_one = -Scalar::ONE;
        for width in [4, 6, 8] {
            for k in [Scalar::ZERO, Scalar::ONE, minus_one, Scalar::from(0x7fu64)] {
                let digits = signed_digits(&k, width);
                let half = 1i16 << (width - 1);
                assert!(digits.iter().all(|d| (-half..=half).contains(d)));
                assert_eq!(scalar_from(&digits, width), k, "width {width}");
            }
        }
    }

    #[test]
    fn table_multiples_match_scalar_multiplication() {
        let k = -Scalar::from(12345u64);
        for width in [4, 8] {
            let table = PointTable::new(ProjectivePoint::generator(), width);
            let mut point = ProjectivePoint::identity();
            table.add_multiple(&mut point, &k);
            assert_eq!(point, ProjectivePoint::generator() * k);
        }
    }

    #[test]
    fn key_table_size_is_what_the_docs_say() {
        // 65 windows × 8 points × 72 bytes.
        assert_eq!(key_table_bytes(), 37_440);
    }
}
