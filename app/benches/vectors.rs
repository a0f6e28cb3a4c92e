//! Knowledge search cost: exact top-10 over sealed 1,536-dimension vectors
//! at 1,000, 10,000 and 100,000 chunks in one base. "Cold" opens every
//! sealed vector into a matrix and then searches (the first query after a
//! change or a restart; the database read is not included); "warm"
//! searches a cached matrix (int8 scan and exact re-rank above
//! `EXACT_UP_TO` rows), beside the all-exact scan's p99 and the recall of
//! the true top 10. Prints p50/p99 in ms and the memory a cached matrix
//! takes. Figures only, never pass/fail on time. Run:
//! `cargo bench -p app --features ssr --bench vectors --profile bench-quick`.

use std::time::{Duration, Instant};

use app::{
    knowledge::vectors::{Matrix, encode, normalise},
    platform::crypto::{DataKey, Place, Sealed},
};
use uuid::Uuid;

const DIMS: usize = 1536;

/// A deterministic pseudo-random vector (xorshift), so runs compare.
fn vector(seed: u64) -> Vec<f32> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..DIMS)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 40) as f32 / (1u64 << 24) as f32 - 0.5
        })
        .collect()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let rank = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[rank]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn open_all(key: &DataKey, owner: Uuid, stored: &[(Uuid, Sealed)]) -> Matrix {
    let mut matrix = Matrix::with_capacity(DIMS, stored.len());
    for (id, sealed) in stored {
        let place = Place::new("knowledge_chunks", "embedding", *id, owner);
        let bytes = key.open(place, sealed).expect("opens");
        matrix.push_stored(*id, bytes).expect("a vector");
    }
    matrix
}

fn main() {
    let key = DataKey::generate();
    let owner = Uuid::new_v4();
    println!("knowledge search: exact top-10, {DIMS} dimensions, sealed per chunk");
    println!(
        "{:<8} {:>6} {:>11} {:>11} {:>11} {:>11} {:>12} {:>10} {:>12}",
        "chunks",
        "runs",
        "cold p50",
        "cold p99",
        "warm p50",
        "warm p99",
        "exact p99",
        "recall@10",
        "cached MiB"
    );
    for (chunks, cold_runs, warm_runs) in [
        (1_000usize, 50, 2_000),
        (10_000, 20, 500),
        (100_000, 5, 100),
    ] {
        let stored: Vec<(Uuid, Sealed)> = (0..chunks)
            .map(|i| {
                let id = Uuid::new_v4();
                let place = Place::new("knowledge_chunks", "embedding", id, owner);
                (id, key.seal(place, &encode(&vector(i as u64))))
            })
            .collect();
        let mut query = vector(u64::MAX - 1);
        normalise(&mut query).expect("a query");
        let mut cold = Vec::with_capacity(cold_runs);
        for _ in 0..cold_runs {
            let start = Instant::now();
            let matrix = open_all(&key, owner, &stored);
            std::hint::black_box(matrix.top_k(&query, 10));
            cold.push(start.elapsed());
        }
        let matrix = open_all(&key, owner, &stored);
        let mut warm = Vec::with_capacity(warm_runs);
        let mut exact_times = Vec::with_capacity(warm_runs);
        let (mut found, mut wanted) = (0usize, 0usize);
        for i in 0..warm_runs {
            let mut q = vector(i as u64 + 7_777_777);
            normalise(&mut q).expect("a query");
            let start = Instant::now();
            let fast = std::hint::black_box(matrix.top_k(std::hint::black_box(&q), 10));
            warm.push(start.elapsed());
            let start = Instant::now();
            let exact = std::hint::black_box(matrix.top_k_exact(std::hint::black_box(&q), 10));
            exact_times.push(start.elapsed());
            wanted += exact.len();
            found += exact
                .iter()
                .filter(|e| fast.iter().any(|f| f.0 == e.0))
                .count();
        }
        exact_times.sort();
        cold.sort();
        warm.sort();
        println!(
            "{:<8} {:>6} {:>11.2} {:>11.2} {:>11.3} {:>11.3} {:>12.3} {:>10.4} {:>12.1}",
            chunks,
            format!("{cold_runs}/{warm_runs}"),
            ms(percentile(&cold, 0.50)),
            ms(percentile(&cold, 0.99)),
            ms(percentile(&warm, 0.50)),
            ms(percentile(&warm, 0.99)),
            ms(percentile(&exact_times, 0.99)),
            found as f64 / wanted as f64,
            matrix.bytes() as f64 / (1024.0 * 1024.0)
        );
    }
}
