//! Embeddings, searched exactly. A knowledge base's vectors are stored
//! sealed (PostgreSQL never sees one); a search opens them into one
//! contiguous, normalised matrix and ranks every row by its dot product
//! with the query (cosine similarity, since both are unit length). The
//! inner loop works in eight independent lanes so the compiler vectorises
//! it without `unsafe` or a SIMD crate. Opened matrices are kept in a
//! bounded per-process cache, keyed by the base and its version (any
//! change to the base makes a new version), and wiped when they leave it.

use std::{
    cmp::Ordering,
    collections::{BinaryHeap, HashMap},
    sync::{Arc, Mutex},
};

use uuid::Uuid;
use zeroize::Zeroize;

/// A vector as stored: little-endian `f32`s.
pub fn encode(vector: &[f32]) -> Vec<u8> {
    let mut out = Vec::with_capacity(vector.len() * 4);
    for value in vector {
        out.extend_from_slice(&value.to_le_bytes());
    }
    out
}

/// Why stored bytes are not a vector of the base's size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum VectorError {
    #[error("a stored vector has {found} bytes; {expected} were expected")]
    Size { expected: usize, found: usize },
    #[error("a vector holds a value that is not a finite number")]
    NotFinite,
    #[error("a vector has no length (all zeros)")]
    Zero,
}

/// Scales `vector` to unit length (so a dot product is the cosine).
pub fn normalise(vector: &mut [f32]) -> Result<(), VectorError> {
    if vector.iter().any(|v| !v.is_finite()) {
        return Err(VectorError::NotFinite);
    }
    let norm = dot(vector, vector).sqrt();
    if norm == 0.0 || !norm.is_finite() {
        return Err(VectorError::Zero);
    }
    for value in vector.iter_mut() {
        *value /= norm;
    }
    Ok(())
}

/// The dot product, in eight lanes (vectorised by the compiler).
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    debug_assert_eq!(a.len(), b.len());
    let mut lanes = [0f32; 8];
    let (a8, a_rest) = a.split_at(a.len() - a.len() % 8);
    let (b8, b_rest) = b.split_at(a8.len());
    for (x, y) in a8.chunks_exact(8).zip(b8.chunks_exact(8)) {
        for i in 0..8 {
            lanes[i] += x[i] * y[i];
        }
    }
    let mut sum: f32 = lanes.iter().sum();
    for (x, y) in a_rest.iter().zip(b_rest) {
        sum += x * y;
    }
    sum
}

/// The dot product of two int8 codes, in sixteen lanes (the compiler turns
/// it into multiply-add instructions on 16-bit pairs).
pub fn dot_i8(a: &[i8], b: &[i8]) -> i32 {
    debug_assert_eq!(a.len(), b.len());
    let mut lanes = [0i32; 16];
    let (a16, a_rest) = a.split_at(a.len() - a.len() % 16);
    let (b16, b_rest) = b.split_at(a16.len());
    for (x, y) in a16.chunks_exact(16).zip(b16.chunks_exact(16)) {
        for i in 0..16 {
            lanes[i] += i32::from(x[i]) * i32::from(y[i]);
        }
    }
    let mut sum: i32 = lanes.iter().sum();
    for (x, y) in a_rest.iter().zip(b_rest) {
        sum += i32::from(*x) * i32::from(*y);
    }
    sum
}

/// A unit vector as int8 codes and the scale that undoes them.
fn quantise(vector: &[f32], codes: &mut Vec<i8>) -> f32 {
    let max = vector.iter().fold(0f32, |m, v| m.max(v.abs()));
    let scale = if max > 0.0 { max / 127.0 } else { 1.0 };
    let inverse = 1.0 / scale;
    // Round half away from zero with plain arithmetic (`f32::round` is a
    // library call per value); `as` saturates.
    codes.extend(vector.iter().map(|v| {
        let x = v * inverse;
        (x + 0.5f32.copysign(x)) as i8
    }));
    scale
}

/// Bases up to this many rows are scanned exactly; larger ones are scanned
/// on their int8 codes (a quarter of the bytes: the scan is bound by
/// memory bandwidth), and the best `RERANK` × k candidates ranked again on
/// the exact vectors.
pub const EXACT_UP_TO: usize = 2_048;
pub const RERANK: usize = 8;

/// One base's vectors, opened: row `i` is the vector of `ids[i]`, exact
/// (`data`) and as int8 codes with a scale each (`codes`, `scales`).
pub struct Matrix {
    dims: usize,
    ids: Vec<Uuid>,
    data: Vec<f32>,
    codes: Vec<i8>,
    scales: Vec<f32>,
}

impl std::fmt::Debug for Matrix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Matrix")
            .field("dims", &self.dims)
            .field("rows", &self.ids.len())
            .finish_non_exhaustive()
    }
}

impl Drop for Matrix {
    fn drop(&mut self) {
        self.data.zeroize();
        self.codes.zeroize();
        self.scales.zeroize();
    }
}

impl Matrix {
    pub fn with_capacity(dims: usize, rows: usize) -> Self {
        Matrix {
            dims,
            ids: Vec::with_capacity(rows),
            data: Vec::with_capacity(dims * rows),
            codes: Vec::with_capacity(dims * rows),
            scales: Vec::with_capacity(rows),
        }
    }

    pub fn dims(&self) -> usize {
        self.dims
    }

    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Bytes held (what the cache counts).
    pub fn bytes(&self) -> usize {
        self.data.len() * 4 + self.codes.len() + self.scales.len() * 4 + self.ids.len() * 16
    }

    /// Adds a row from stored bytes, normalising it. The bytes are wiped.
    pub fn push_stored(&mut self, id: Uuid, mut bytes: Vec<u8>) -> Result<(), VectorError> {
        let expected = self.dims * 4;
        if bytes.len() != expected {
            let found = bytes.len();
            bytes.zeroize();
            return Err(VectorError::Size { expected, found });
        }
        let start = self.data.len();
        self.data.extend(
            bytes
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
        );
        bytes.zeroize();
        if let Err(err) = normalise(&mut self.data[start..]) {
            self.data[start..].zeroize();
            self.data.truncate(start);
            return Err(err);
        }
        let scale = quantise(&self.data[start..], &mut self.codes);
        self.scales.push(scale);
        self.ids.push(id);
        Ok(())
    }

    /// The `k` rows most similar to `query` (unit length), best first, with
    /// their cosine similarity: exact for small bases; for large ones the
    /// int8 scan picks `RERANK` × k candidates that are ranked exactly
    /// (the benchmark measures how often that misses one of the true k).
    pub fn top_k(&self, query: &[f32], k: usize) -> Vec<(Uuid, f32)> {
        if k == 0 || query.len() != self.dims {
            return Vec::new();
        }
        if self.len() <= EXACT_UP_TO {
            return self.top_k_exact(query, k);
        }
        let mut codes = Vec::with_capacity(self.dims);
        let query_scale = quantise(query, &mut codes);
        let candidates = top(
            self.codes
                .chunks_exact(self.dims)
                .zip(&self.scales)
                .map(|(row, scale)| dot_i8(row, &codes) as f32 * scale * query_scale),
            (k * RERANK).max(64),
        );
        let rescored = candidates.iter().map(|s| {
            let row = &self.data[s.row * self.dims..(s.row + 1) * self.dims];
            Scored {
                score: dot(row, query),
                row: s.row,
            }
        });
        self.ranked(rescored.collect(), k)
    }

    /// `top_k`, always by the exact vectors.
    pub fn top_k_exact(&self, query: &[f32], k: usize) -> Vec<(Uuid, f32)> {
        if k == 0 || query.len() != self.dims {
            return Vec::new();
        }
        let best = top(
            self.data
                .chunks_exact(self.dims)
                .map(|vector| dot(vector, query)),
            k,
        );
        self.ranked(best, k)
    }

    fn ranked(&self, mut scored: Vec<Scored>, k: usize) -> Vec<(Uuid, f32)> {
        scored.sort_by(|a, b| b.score.total_cmp(&a.score).then(a.row.cmp(&b.row)));
        scored.truncate(k);
        scored
            .into_iter()
            .map(|s| (self.ids[s.row], s.score))
            .collect()
    }
}

/// The best `k` of `scores` (by row number), in no order.
fn top(scores: impl Iterator<Item = f32>, k: usize) -> Vec<Scored> {
    // A min-heap of the best k so far.
    let mut best: BinaryHeap<Scored> = BinaryHeap::with_capacity(k + 1);
    for (row, score) in scores.enumerate() {
        if best.len() < k {
            best.push(Scored { score, row });
        } else if best.peek().is_some_and(|worst| score > worst.score) {
            best.pop();
            best.push(Scored { score, row });
        }
    }
    best.into_vec()
}

/// A row and its score, ordered so that the heap's top is the worst.
#[derive(Debug, Clone, Copy)]
struct Scored {
    score: f32,
    row: usize,
}

impl PartialEq for Scored {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Scored {}
impl PartialOrd for Scored {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Scored {
    fn cmp(&self, other: &Self) -> Ordering {
        // Reversed: a lower score (then a later row) is "greater".
        other
            .score
            .total_cmp(&self.score)
            .then(self.row.cmp(&other.row))
    }
}

/// Which opened matrix: a base and the version of its contents.
pub type CacheKey = (Uuid, i64);

/// Opened matrices, at most `max_bytes` in all, least recently used first
/// out (and wiped, by `Matrix`'s `Drop`, once no search holds it).
#[derive(Clone)]
pub struct Cache {
    inner: Arc<Mutex<CacheInner>>,
}

struct CacheInner {
    max_bytes: usize,
    bytes: usize,
    tick: u64,
    entries: HashMap<CacheKey, (Arc<Matrix>, u64)>,
}

impl Cache {
    pub fn new(max_bytes: usize) -> Self {
        Cache {
            inner: Arc::new(Mutex::new(CacheInner {
                max_bytes,
                bytes: 0,
                tick: 0,
                entries: HashMap::new(),
            })),
        }
    }

    pub fn get(&self, key: CacheKey) -> Option<Arc<Matrix>> {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner.tick += 1;
        let tick = inner.tick;
        inner.entries.get_mut(&key).map(|(matrix, used)| {
            *used = tick;
            matrix.clone()
        })
    }

    /// Keeps `matrix` (dropping older versions of the same base, then the
    /// least recently used, until it fits). One larger than the whole cache
    /// is not kept.
    pub fn put(&self, key: CacheKey, matrix: Arc<Matrix>) {
        let size = matrix.bytes();
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if size > inner.max_bytes {
            return;
        }
        let stale: Vec<CacheKey> = inner
            .entries
            .keys()
            .filter(|(base, _)| *base == key.0)
            .copied()
            .collect();
        for old in stale {
            inner.remove(old);
        }
        while inner.bytes + size > inner.max_bytes {
            let Some(oldest) = inner
                .entries
                .iter()
                .min_by_key(|(_, (_, used))| *used)
                .map(|(k, _)| *k)
            else {
                break;
            };
            inner.remove(oldest);
        }
        inner.tick += 1;
        let tick = inner.tick;
        inner.bytes += size;
        inner.entries.insert(key, (matrix, tick));
    }

    /// Forgets every version of `base` (it changed or went).
    pub fn forget(&self, base: Uuid) {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let stale: Vec<CacheKey> = inner
            .entries
            .keys()
            .filter(|(b, _)| *b == base)
            .copied()
            .collect();
        for old in stale {
            inner.remove(old);
        }
    }

    /// Bytes held now.
    pub fn bytes(&self) -> usize {
        self.inner.lock().unwrap_or_else(|e| e.into_inner()).bytes
    }
}

impl CacheInner {
    fn remove(&mut self, key: CacheKey) {
        if let Some((matrix, _)) = self.entries.remove(&key) {
            self.bytes -= matrix.bytes();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matrix(rows: &[Vec<f32>]) -> (Matrix, Vec<Uuid>) {
        let dims = rows[0].len();
        let mut m = Matrix::with_capacity(dims, rows.len());
        let mut ids = Vec::new();
        for row in rows {
            let id = Uuid::new_v4();
            m.push_stored(id, encode(row)).unwrap();
            ids.push(id);
        }
        (m, ids)
    }

    #[test]
    fn dot_matches_the_plain_sum_for_every_length() {
        for len in [0, 1, 7, 8, 9, 16, 1536, 1537] {
            let a: Vec<f32> = (0..len).map(|i| (i as f32 * 0.37).sin()).collect();
            let b: Vec<f32> = (0..len).map(|i| (i as f32 * 0.11).cos()).collect();
            let plain: f32 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
            assert!((dot(&a, &b) - plain).abs() < 1e-3, "length {len}");
        }
    }

    #[test]
    fn the_most_similar_rows_come_first_with_their_cosine() {
        let (m, ids) = matrix(&[
            vec![1.0, 0.0, 0.0],
            vec![0.0, 1.0, 0.0],
            vec![2.0, 2.0, 0.0],
            vec![-1.0, 0.0, 0.0],
        ]);
        let mut query = vec![1.0, 0.1, 0.0];
        normalise(&mut query).unwrap();
        let top = m.top_k(&query, 2);
        assert_eq!(
            top.iter().map(|t| t.0).collect::<Vec<_>>(),
            [ids[0], ids[2]]
        );
        assert!((top[0].1 - 0.995).abs() < 0.001, "{top:?}");
        assert_eq!(m.top_k(&query, 10).len(), 4);
        assert_eq!(m.top_k(&query, 10)[3].0, ids[3], "the opposite comes last");
        assert!(
            m.top_k(&[1.0, 0.0], 2).is_empty(),
            "a query of another size finds nothing"
        );
    }

    #[test]
    fn dot_i8_matches_the_plain_sum_for_every_length() {
        for len in [0, 1, 15, 16, 17, 1536, 1537] {
            let a: Vec<i8> = (0..len).map(|i| ((i * 37) % 255) as i8).collect();
            let b: Vec<i8> = (0..len).map(|i| ((i * 11 + 3) % 255) as i8).collect();
            let plain: i32 = a
                .iter()
                .zip(&b)
                .map(|(x, y)| i32::from(*x) * i32::from(*y))
                .sum();
            assert_eq!(dot_i8(&a, &b), plain, "length {len}");
        }
    }

    /// A deterministic pseudo-random vector (xorshift).
    fn noise(seed: u64, dims: usize) -> Vec<f32> {
        let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        (0..dims)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                (state >> 40) as f32 / (1u64 << 24) as f32 - 0.5
            })
            .collect()
    }

    #[test]
    fn a_large_base_finds_what_the_exact_search_finds() {
        // Enough rows for the int8 scan and re-rank.
        let dims = 256;
        let rows: Vec<Vec<f32>> = (0..EXACT_UP_TO as u64 + 500)
            .map(|r| noise(r, dims))
            .collect();
        let (m, ids) = matrix(&rows);
        let (mut found, mut wanted) = (0, 0);
        for q in 0..40u64 {
            // A query near a known row, as a question is near its passage.
            let target = (q * 53) as usize % rows.len();
            let mut query: Vec<f32> = rows[target]
                .iter()
                .zip(noise(q + 1_000_000, dims))
                .map(|(a, b)| a + 0.5 * b)
                .collect();
            normalise(&mut query).unwrap();
            let fast = m.top_k(&query, 10);
            let exact = m.top_k_exact(&query, 10);
            assert_eq!(fast[0].0, ids[target], "query {q}: the passage comes first");
            assert_eq!(fast[0], exact[0]);
            // Whatever it returns carries its exact score, best first.
            for pair in fast.windows(2) {
                assert!(pair[0].1 >= pair[1].1);
            }
            wanted += exact.len();
            found += exact.iter().filter(|e| fast.contains(e)).count();
        }
        assert!(found * 100 >= wanted * 95, "recall@10 {found}/{wanted}");
    }

    #[test]
    fn bad_stored_vectors_are_refused_and_leave_nothing_behind() {
        let mut m = Matrix::with_capacity(2, 2);
        assert_eq!(
            m.push_stored(Uuid::new_v4(), vec![0; 4]),
            Err(VectorError::Size {
                expected: 8,
                found: 4
            })
        );
        assert_eq!(
            m.push_stored(Uuid::new_v4(), encode(&[0.0, 0.0])),
            Err(VectorError::Zero)
        );
        assert_eq!(
            m.push_stored(Uuid::new_v4(), encode(&[f32::NAN, 1.0])),
            Err(VectorError::NotFinite)
        );
        assert!(m.is_empty());
        assert_eq!(m.bytes(), 0);
    }

    #[test]
    fn the_cache_keeps_the_newest_version_within_its_budget() {
        let (a, _) = matrix(&[vec![1.0; 8]]);
        let size = a.bytes();
        let cache = Cache::new(size * 2);
        let (base_a, base_b, base_c) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
        cache.put((base_a, 1), Arc::new(a));
        cache.put((base_a, 2), Arc::new(matrix(&[vec![1.0; 8]]).0));
        assert!(cache.get((base_a, 1)).is_none(), "an old version goes");
        assert!(cache.get((base_a, 2)).is_some());
        cache.put((base_b, 1), Arc::new(matrix(&[vec![1.0; 8]]).0));
        assert_eq!(cache.bytes(), size * 2);
        // A is used more recently than B, so B goes for C.
        assert!(cache.get((base_a, 2)).is_some());
        cache.put((base_c, 1), Arc::new(matrix(&[vec![1.0; 8]]).0));
        assert!(cache.get((base_b, 1)).is_none());
        assert!(cache.get((base_a, 2)).is_some() && cache.get((base_c, 1)).is_some());
        cache.forget(base_a);
        assert!(cache.get((base_a, 2)).is_none());
        assert_eq!(cache.bytes(), size);
        // Larger than the whole cache: not kept.
        let (big, _) = matrix(&[vec![1.0; 64]]);
        cache.put((base_b, 2), Arc::new(big));
        assert!(cache.get((base_b, 2)).is_none());
    }
}
