//! Cofactored ed25519 verification, single and batched, that always agree.
//!
//! A signature `(R, S)` by key `A` on message `M` is valid iff
//! `[8]([S]B − R − [k]A)` is the identity, with `k = SHA-512(R || A || M) mod L`, `S < L`,
//! `A` and `R` valid point encodings and `A` not of small order (docs/PROOFS.md §2.4).
//!
//! The batch check computes `[8] Σ z_i ([S_i]B − R_i − [k_i]A_i)` with 128-bit `z_i` derived
//! from all inputs. Multiplying by the cofactor removes every small-order component, so a batch
//! accepts (up to a negligible probability) exactly when each signature passes the single check.
//! ed25519-dalek's `verify_batch` omits the cofactor, so a crafted signature with a small-order
//! error term passes it for some `z` and fails for others — which is why this module exists.

use curve25519_dalek::constants::ED25519_BASEPOINT_POINT;
use curve25519_dalek::edwards::{CompressedEdwardsY, EdwardsPoint};
use curve25519_dalek::scalar::Scalar;
use curve25519_dalek::traits::{IsIdentity, VartimeMultiscalarMul};
use sha2::{Digest, Sha512};

/// A signature's parts, decoded and checked for shape.
struct Parsed {
    a: EdwardsPoint,
    r: EdwardsPoint,
    s: Scalar,
    k: Scalar,
}

/// Why a signature is refused (before any equation is checked).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Malformed {
    Key,
    WeakKey,
    R,
    S,
}

fn parse(key: &[u8; 32], message: &[u8], sig: &[u8; 64]) -> Result<Parsed, Malformed> {
    let a = CompressedEdwardsY(*key)
        .decompress()
        .ok_or(Malformed::Key)?;
    if a.is_small_order() {
        return Err(Malformed::WeakKey);
    }
    let mut r_bytes = [0u8; 32];
    r_bytes.copy_from_slice(&sig[..32]);
    let r = CompressedEdwardsY(r_bytes)
        .decompress()
        .ok_or(Malformed::R)?;
    let mut s_bytes = [0u8; 32];
    s_bytes.copy_from_slice(&sig[32..]);
    let s = Option::<Scalar>::from(Scalar::from_canonical_bytes(s_bytes)).ok_or(Malformed::S)?;
    let mut h = Sha512::new();
    h.update(r_bytes);
    h.update(key);
    h.update(message);
    let k = Scalar::from_hash(h);
    Ok(Parsed { a, r, s, k })
}

/// Single cofactored verification.
pub fn verify(key: &[u8; 32], message: &[u8], sig: &[u8; 64]) -> Result<bool, Malformed> {
    let p = parse(key, message, sig)?;
    let sb_minus_ka = EdwardsPoint::vartime_double_scalar_mul_basepoint(&(-p.k), &p.a, &p.s);
    Ok((sb_minus_ka - p.r).mul_by_cofactor().is_identity())
}

/// Batch cofactored verification: `Ok(true)` iff every signature verifies (with overwhelming
/// probability). The `z_i` are derived from every input, so a signer cannot choose them.
pub fn verify_batch(items: &[(&[u8; 32], &[u8], &[u8; 64])]) -> Result<bool, (usize, Malformed)> {
    if items.is_empty() {
        return Ok(true);
    }
    let mut parsed = Vec::with_capacity(items.len());
    let mut transcript = blake3::Hasher::new();
    transcript.update(b"stateledger:batch-verify:v1\0");
    for (i, (key, message, sig)) in items.iter().enumerate() {
        let p = parse(key, message, sig).map_err(|m| (i, m))?;
        transcript.update(&key[..]);
        transcript.update(&sig[..]);
        transcript.update(p.k.as_bytes());
        parsed.push(p);
    }
    let mut xof = transcript.finalize_xof();
    let mut scalars = Vec::with_capacity(2 * parsed.len() + 1);
    let mut points = Vec::with_capacity(2 * parsed.len() + 1);
    let mut s_sum = Scalar::ZERO;
    for p in &parsed {
        let mut z_bytes = [0u8; 32];
        xof.fill(&mut z_bytes[..16]);
        let z = Scalar::from_bytes_mod_order(z_bytes);
        s_sum += z * p.s;
        scalars.push(-(z * p.k));
        points.push(p.a);
        scalars.push(-z);
        points.push(p.r);
    }
    scalars.push(s_sum);
    points.push(ED25519_BASEPOINT_POINT);
    let sum = EdwardsPoint::vartime_multiscalar_mul(scalars.iter(), points.iter());
    Ok(sum.mul_by_cofactor().is_identity())
}

#[cfg(test)]
mod tests {
    use curve25519_dalek::constants::EIGHT_TORSION;
    use ed25519_dalek::{Signer as _, SigningKey};

    use super::*;

    fn honest(seed: u8, msg: &[u8]) -> ([u8; 32], [u8; 64]) {
        let k = SigningKey::from_bytes(&[seed; 32]);
        (k.verifying_key().to_bytes(), k.sign(msg).to_bytes())
    }

    /// A signature whose error term `[S]B − R − [k]A` is the torsion point `t`: made by signing
    /// honestly with nonce point `R0` and publishing `R = R0 − t`, so k changes with R.
    fn with_torsion(
        secret_seed: u8,
        msg: &[u8],
        t: EdwardsPoint,
        nonce: u64,
    ) -> ([u8; 32], [u8; 64]) {
        let sk = SigningKey::from_bytes(&[secret_seed; 32]);
        let a_bytes = sk.verifying_key().to_bytes();
        let x = sk.to_scalar();
        let r0_scalar = Scalar::from(nonce + 7);
        let r0 = &r0_scalar * curve25519_dalek::constants::ED25519_BASEPOINT_TABLE;
        let r = r0 - t;
        let r_bytes = r.compress().to_bytes();
        let mut h = Sha512::new();
        h.update(r_bytes);
        h.update(a_bytes);
        h.update(msg);
        let k = Scalar::from_hash(h);
        let s = r0_scalar + k * x;
        let mut sig = [0u8; 64];
        sig[..32].copy_from_slice(&r_bytes);
        sig[32..].copy_from_slice(s.as_bytes());
        (a_bytes, sig)
    }

    #[test]
    fn honest_signatures_verify_alone_and_in_batches() {
        let msgs: Vec<Vec<u8>> = (0..20u8).map(|i| vec![i; 10]).collect();
        let sigs: Vec<([u8; 32], [u8; 64])> = msgs
            .iter()
            .enumerate()
            .map(|(i, m)| honest(i as u8 + 1, m))
            .collect();
        for ((k, s), m) in sigs.iter().zip(&msgs) {
            assert_eq!(verify(k, m, s), Ok(true));
        }
        let items: Vec<(&[u8; 32], &[u8], &[u8; 64])> = sigs
            .iter()
            .zip(&msgs)
            .map(|((k, s), m)| (k, m.as_slice(), s))
            .collect();
        assert_eq!(verify_batch(&items), Ok(true));
        // One wrong message fails the batch and the single check.
        let mut bad = items.clone();
        bad[7].1 = b"other";
        assert_eq!(verify_batch(&bad), Ok(false));
        assert_eq!(verify(bad[7].0, bad[7].1, bad[7].2), Ok(false));
    }

    #[test]
    fn small_order_error_terms_get_the_same_verdict_alone_and_batched() {
        // The cofactored equation accepts these; batches must never disagree with it.
        for (ti, t) in EIGHT_TORSION.iter().enumerate().skip(1) {
            for nonce in 0..30u64 {
                let msg = format!("m{ti}-{nonce}");
                let (k, s) = with_torsion(9, msg.as_bytes(), *t, nonce);
                assert_eq!(
                    verify(&k, msg.as_bytes(), &s),
                    Ok(true),
                    "single, torsion {ti}"
                );
                let (k2, s2) = honest(3, b"x");
                let items = [(&k, msg.as_bytes(), &s), (&k2, &b"x"[..], &s2)];
                assert_eq!(
                    verify_batch(&items),
                    Ok(true),
                    "batch, torsion {ti} nonce {nonce}"
                );
            }
        }
    }

    #[test]
    fn malformed_parts_are_refused() {
        let (k, mut s) = honest(1, b"m");
        s[63] |= 0xf0; // S >= L
        assert_eq!(verify(&k, b"m", &s), Err(Malformed::S));
        let identity = EdwardsPoint::default().compress().to_bytes();
        let (_, s) = honest(1, b"m");
        assert_eq!(verify(&identity, b"m", &s), Err(Malformed::WeakKey));
    }
}
