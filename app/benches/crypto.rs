//! Seal and open cost per value: prints µs per operation (p50, p99, mean) for
//! 1 KiB and 64 KiB values. A benchmark that prints figures, never a pass/fail
//! on time. Run: `cargo bench -p app --features ssr --bench crypto`.

use std::time::{Duration, Instant};

use app::platform::crypto::{DataKey, Place};
use uuid::Uuid;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let rank = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[rank]
}

fn report(label: &str, mut times: Vec<Duration>) {
    times.sort();
    let mean = times.iter().sum::<Duration>() / times.len() as u32;
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    println!(
        "{label:<16} {:>9.2} {:>9.2} {:>9.2} {:>10}",
        us(percentile(&times, 0.50)),
        us(percentile(&times, 0.99)),
        us(mean),
        times.len()
    );
}

fn main() {
    // `cargo bench` passes `--bench`; any other argument is a filter we ignore.
    let key = DataKey::generate();
    let place = Place::new("messages", "body", Uuid::new_v4(), Uuid::new_v4());
    println!("seal/open with AES-256-GCM (random nonce, AAD bound to its place)");
    println!(
        "{:<16} {:>9} {:>9} {:>9} {:>10}",
        "operation", "p50 µs", "p99 µs", "mean µs", "samples"
    );
    for (size, iterations) in [(1024usize, 200_000usize), (64 * 1024, 5_000)] {
        let plaintext = vec![0x5au8; size];
        // Warm up caches and the allocator.
        for _ in 0..iterations / 10 {
            std::hint::black_box(key.seal(place, &plaintext));
        }
        let mut seal_times = Vec::with_capacity(iterations);
        let mut sealed = None;
        for _ in 0..iterations {
            let start = Instant::now();
            let value = key.seal(place, std::hint::black_box(&plaintext));
            seal_times.push(start.elapsed());
            sealed = Some(value);
        }
        let sealed = sealed.expect("at least one iteration");
        let mut open_times = Vec::with_capacity(iterations);
        for _ in 0..iterations {
            let start = Instant::now();
            let opened = key.open(place, std::hint::black_box(&sealed));
            open_times.push(start.elapsed());
            assert_eq!(opened.as_deref(), Ok(plaintext.as_slice()));
        }
        let label = if size >= 1024 * 1024 {
            format!("{} MiB", size / (1024 * 1024))
        } else {
            format!("{} KiB", size / 1024)
        };
        report(&format!("seal {label}"), seal_times);
        report(&format!("open {label}"), open_times);
    }
}
