//! Parsed pages to passages: split along the Markdown structure (headings,
//! then paragraphs, then sentences) to a token budget with some overlap,
//! each passage keeping where it came from (page, nearest heading) for its
//! citation.

use serde::{Deserialize, Serialize};
use text_splitter::{ChunkConfig, MarkdownSplitter};

use super::parse::Parsed;

/// The most tokens in a passage (o200k, the tokenizer of current OpenAI
/// models; near enough for the others).
pub const CHUNK_TOKENS: usize = 400;
/// Tokens a passage repeats from the one before.
pub const OVERLAP_TOKENS: usize = 50;

/// Where a passage came from.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Location {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub page: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heading: Option<String>,
}

impl Location {
    /// "page 3 · Installation", "Installation", "page 3", or "".
    pub fn label(&self) -> String {
        match (&self.page, &self.heading) {
            (Some(p), Some(h)) => format!("page {p} · {h}"),
            (Some(p), None) => format!("page {p}"),
            (None, Some(h)) => h.clone(),
            (None, None) => String::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Passage {
    pub text: String,
    pub location: Location,
}

/// The passages of a parsed file, in order. Each page is cut into sections
/// at its headings first, so a passage never straddles two sections and its
/// citation names the one it is in; a section longer than the budget is
/// split along paragraphs, then sentences, with some overlap.
pub fn passages(parsed: &Parsed) -> Vec<Passage> {
    let config = ChunkConfig::new(CHUNK_TOKENS)
        .with_sizer(tiktoken_rs::o200k_base_singleton())
        .with_overlap(OVERLAP_TOKENS)
        .expect("the overlap is smaller than the passage");
    let splitter = MarkdownSplitter::new(config);
    let mut out = Vec::new();
    // A section before the first heading of a page is under the last
    // heading of the page before.
    let mut heading: Option<String> = None;
    for page in &parsed.pages {
        for (section_heading, text) in sections(&page.text) {
            if section_heading.is_some() {
                heading = section_heading;
            }
            for chunk in splitter.chunks(text) {
                let chunk = chunk.trim();
                if chunk.is_empty() {
                    continue;
                }
                out.push(Passage {
                    text: chunk.to_owned(),
                    location: Location {
                        page: page.number,
                        heading: heading.clone(),
                    },
                });
            }
        }
    }
    out
}

/// `text` cut at its headings: each section with its heading (None for
/// text before the first one). A heading with nothing under it before the
/// next one joins that next section ("# Guide" then "## Setup" is one
/// section, in Setup).
fn sections(text: &str) -> Vec<(Option<String>, &str)> {
    let headings = headings(text);
    let mut out = Vec::new();
    let mut start = 0;
    let mut current: Option<String> = None;
    for (offset, title) in headings {
        let body = &text[start..offset];
        if first_body_line(body) < body.len() {
            out.push((current.clone(), body));
            start = offset;
        }
        current = Some(title);
    }
    out.push((current, &text[start..]));
    out
}

/// The offset in `text` of its first line that is neither blank nor a heading.
fn first_body_line(text: &str) -> usize {
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        let trimmed = line.trim();
        let hashes = trimmed.len() - trimmed.trim_start_matches('#').len();
        let heading = (1..=6).contains(&hashes) && trimmed[hashes..].starts_with(' ');
        if !trimmed.is_empty() && !heading {
            return offset;
        }
        offset += line.len();
    }
    offset
}

/// The Markdown headings of `text` (ATX style, outside code fences) with
/// their byte offsets.
fn headings(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut offset = 0;
    let mut fenced = false;
    for line in text.split_inclusive('\n') {
        let trimmed = line.trim_end();
        if trimmed.trim_start().starts_with("```") {
            fenced = !fenced;
        } else if !fenced {
            let hashes = trimmed.len() - trimmed.trim_start_matches('#').len();
            if (1..=6).contains(&hashes) && trimmed[hashes..].starts_with(' ') {
                let title = trimmed[hashes..].trim().trim_end_matches('#').trim();
                if !title.is_empty() {
                    out.push((offset, title.chars().take(200).collect()));
                }
            }
        }
        offset += line.len();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::knowledge::{
        DocKind,
        parse::{Page, Parsed},
    };

    fn doc(pages: Vec<(Option<u32>, String)>) -> Parsed {
        Parsed {
            kind: DocKind::Markdown,
            pages: pages
                .into_iter()
                .map(|(number, text)| Page { number, text })
                .collect(),
        }
    }

    #[test]
    fn passages_keep_their_heading_and_page() {
        let filler = "A sentence that fills the section with words. ".repeat(80);
        let text = format!(
            "# Installation\n\n{filler}\n\n## Upgrading\n\nRun the upgrade command.\n\n```\n# not a heading\n```\n"
        );
        let out = passages(&doc(vec![(Some(2), text), (Some(3), "More words.".into())]));
        assert!(out.len() >= 3, "{out:#?}");
        assert_eq!(out[0].location.heading.as_deref(), Some("Installation"));
        assert!(out.iter().all(|p| p.text.len() < 4_000));
        let upgrade = out
            .iter()
            .find(|p| p.text.contains("Run the upgrade command"))
            .unwrap();
        assert_eq!(upgrade.location.heading.as_deref(), Some("Upgrading"));
        assert_eq!(upgrade.location.page, Some(2));
        let last = out.last().unwrap();
        assert_eq!(last.location.page, Some(3));
        assert_eq!(
            last.location.heading.as_deref(),
            Some("Upgrading"),
            "the heading carries over the page break"
        );
        assert_eq!(last.location.label(), "page 3 · Upgrading");
    }

    #[test]
    fn long_passages_overlap() {
        let words: String = (0..3000).map(|i| format!("w{i} ")).collect();
        let out = passages(&doc(vec![(None, words)]));
        assert!(out.len() > 2);
        let end_of_first = out[0].text.split_whitespace().last().unwrap();
        assert!(
            out[1].text.contains(end_of_first),
            "the next passage repeats the end of the one before"
        );
    }
}
