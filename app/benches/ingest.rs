//! Knowledge ingestion cost, without the network: a document's pages
//! parsed (Markdown), split into passages (text-splitter sized by the o200k
//! tokenizer), embedded by a toy in-process embedder (hashed words into
//! 1,536 dimensions: stands in for the fake provider so the figure is the
//! server's own work), and each passage's text, place and vector sealed, as
//! the ingestion job stores them. Prints pages per second for a 50-page and
//! a 500-page document, and the time each stage took. Figures only, never
//! pass/fail. Run:
//! `cargo bench -p app --features ssr --bench ingest --profile bench-quick`.

use std::time::Instant;

use app::{
    knowledge::{
        DocKind, chunk,
        parse::{self, Page, Parsed},
        vectors::encode,
    },
    platform::crypto::{DataKey, Place},
};
use uuid::Uuid;

const DIMS: usize = 1536;
/// Words on a page of the synthetic document (a dense printed page).
const WORDS_PER_PAGE: usize = 450;

/// A page of Markdown: a heading, then paragraphs of varied words.
fn page(n: usize) -> String {
    let mut out = format!("## Section {n}\n\n");
    let mut state = (n as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    for w in 0..WORDS_PER_PAGE {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        out.push_str(&format!("word{} ", state % 5_000));
        if w % 60 == 59 {
            out.push_str(".\n\n");
        }
    }
    out
}

/// Hashed words into `DIMS` buckets (what the fake provider's embeddings do).
fn toy_embedding(text: &str) -> Vec<f32> {
    let mut v = vec![0f32; DIMS];
    for word in text
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
    {
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        for b in word.bytes() {
            hash ^= u64::from(b);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
        v[(hash % DIMS as u64) as usize] += if hash >> 63 == 1 { -1.0 } else { 1.0 };
    }
    v
}

fn main() {
    let key = DataKey::generate();
    let owner = Uuid::new_v4();
    println!("knowledge ingestion (no network): parse, split, embed (toy), seal");
    println!(
        "{:>6} | {:>9} | {:>9} | {:>9} | {:>9} | {:>9} | {:>10}",
        "pages", "passages", "parse ms", "split ms", "embed ms", "seal ms", "pages/s"
    );
    for pages in [50usize, 500] {
        let text: String = (0..pages).map(page).collect::<Vec<_>>().join("\n\n");
        let bytes = text.into_bytes();
        let started = Instant::now();
        let t = Instant::now();
        let kind = parse::sniff("book.md", &bytes).unwrap();
        assert_eq!(kind, DocKind::Markdown);
        let parsed = parse::parse_now(kind, &bytes).unwrap();
        let parse_ms = t.elapsed().as_secs_f64() * 1e3;
        let t = Instant::now();
        // Split by pages as a paged document would be.
        let paged = Parsed {
            kind,
            pages: parsed.pages[0]
                .text
                .split("\n\n## ")
                .enumerate()
                .map(|(i, p)| Page {
                    number: Some(i as u32 + 1),
                    text: if i == 0 {
                        p.to_owned()
                    } else {
                        format!("## {p}")
                    },
                })
                .collect(),
        };
        let passages = chunk::passages(&paged);
        let split_ms = t.elapsed().as_secs_f64() * 1e3;
        let t = Instant::now();
        let vectors: Vec<Vec<f32>> = passages.iter().map(|p| toy_embedding(&p.text)).collect();
        let embed_ms = t.elapsed().as_secs_f64() * 1e3;
        let t = Instant::now();
        let mut sealed_bytes = 0usize;
        for (p, v) in passages.iter().zip(&vectors) {
            let id = Uuid::new_v4();
            let place = |column| Place::new("knowledge_chunks", column, id, owner);
            let location = serde_json::to_string(&p.location).unwrap();
            sealed_bytes += key.seal_str(place("text"), &p.text).as_bytes().len();
            sealed_bytes += key.seal_str(place("location"), &location).as_bytes().len();
            sealed_bytes += key.seal(place("vector"), &encode(v)).as_bytes().len();
        }
        let seal_ms = t.elapsed().as_secs_f64() * 1e3;
        let total = started.elapsed().as_secs_f64();
        assert!(sealed_bytes > 0);
        println!(
            "{:>6} | {:>9} | {:>9.1} | {:>9.1} | {:>9.1} | {:>9.1} | {:>10.0}",
            pages,
            passages.len(),
            parse_ms,
            split_ms,
            embed_ms,
            seal_ms,
            pages as f64 / total
        );
    }
}
