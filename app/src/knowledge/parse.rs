//! Uploaded files to text: the kind is sniffed from the content (the name
//! only chooses between text kinds), each kind becomes Markdown-like text per
//! page, and every failure is a plain sentence about that file. Parsers run
//! on a blocking thread under `catch_unwind`: a PDF that panics its parser
//! or a zip bomb posing as a Word file fails alone and never takes the
//! server with it.

use std::{io::Read, panic::AssertUnwindSafe};

use super::DocKind;

/// The largest file accepted.
pub const MAX_FILE_BYTES: usize = 20 * 1024 * 1024;
/// The most text kept from one file (characters, after parsing).
pub const MAX_TEXT_CHARS: usize = 5_000_000;
/// A .docx is a zip: the most its parts may hold once unpacked, and how many
/// parts it may have.
const MAX_UNZIPPED_BYTES: u64 = 100 * 1024 * 1024;
const MAX_ZIP_ENTRIES: usize = 5_000;

/// A page of a parsed file (files without pages are one page, number None).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    pub number: Option<u32>,
    /// Markdown-like: headings (`# `) where the file had them.
    pub text: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parsed {
    pub kind: DocKind,
    pub pages: Vec<Page>,
}

impl Parsed {
    /// Numbered pages (PDFs), else None.
    pub fn page_count(&self) -> Option<u32> {
        (self.kind == DocKind::Pdf).then_some(self.pages.len() as u32)
    }
}

/// Why a file could not be used: shown beside it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("This file is larger than the 20 MiB limit.")]
    TooLarge,
    #[error("This file is empty.")]
    Empty,
    #[error(
        "Only text, Markdown, PDF, Word (.docx), HTML, CSV and JSON files can be added; this one is none of them."
    )]
    Unsupported,
    #[error("This file's name says {0}, but its content is not.")]
    Mislabelled(&'static str),
    #[error("This PDF could not be read: it may be damaged, encrypted, or made of images only.")]
    Pdf,
    #[error("This Word file could not be read: it may be damaged.")]
    Docx,
    #[error("This Word file unpacks to more than 100 MiB, so it was not opened.")]
    ZipBomb,
    #[error("This JSON file is not valid JSON.")]
    Json,
    #[error("This CSV file could not be read: its rows are not consistent.")]
    Csv,
    #[error("No text was found in this file.")]
    NoText,
}

/// What `bytes` is. `name` decides only between text kinds (and whether a
/// binary-looking name matches its content).
pub fn sniff(name: &str, bytes: &[u8]) -> Result<DocKind, ParseError> {
    if bytes.len() > MAX_FILE_BYTES {
        return Err(ParseError::TooLarge);
    }
    if bytes.is_empty() {
        return Err(ParseError::Empty);
    }
    let ext = name
        .rsplit_once('.')
        .map(|(_, e)| e.to_ascii_lowercase())
        .unwrap_or_default();
    if bytes.starts_with(b"%PDF-") {
        return Ok(DocKind::Pdf);
    }
    if bytes.starts_with(b"PK\x03\x04") {
        return if zip_has(bytes, "word/document.xml") {
            Ok(DocKind::Docx)
        } else if ext == "docx" {
            Err(ParseError::Mislabelled("Word (.docx)"))
        } else {
            Err(ParseError::Unsupported)
        };
    }
    match ext.as_str() {
        "pdf" => return Err(ParseError::Mislabelled("PDF")),
        "docx" => return Err(ParseError::Mislabelled("Word (.docx)")),
        _ => {}
    }
    let Some(text) = as_text(bytes) else {
        return Err(ParseError::Unsupported);
    };
    let start = text.trim_start();
    let lower: String = start.chars().take(512).collect::<String>().to_lowercase();
    if (start.starts_with('{') || start.starts_with('['))
        && serde_json::from_str::<serde_json::Value>(text).is_ok()
    {
        return Ok(DocKind::Json);
    }
    if ext == "json" {
        return Err(ParseError::Json);
    }
    if lower.starts_with("<!doctype html")
        || lower.starts_with("<html")
        || matches!(ext.as_str(), "html" | "htm") && lower.starts_with('<')
    {
        return Ok(DocKind::Html);
    }
    if matches!(ext.as_str(), "csv" | "tsv") {
        return Ok(DocKind::Csv);
    }
    if matches!(ext.as_str(), "md" | "markdown")
        || text.lines().any(|l| {
            let t = l.trim_start_matches('#');
            t.len() < l.len() && l.len() - t.len() <= 6 && t.starts_with(' ')
        })
    {
        return Ok(DocKind::Markdown);
    }
    Ok(DocKind::Text)
}

/// UTF-8 text (a BOM dropped), if it is text at all: no NUL bytes.
fn as_text(bytes: &[u8]) -> Option<&str> {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let text = std::str::from_utf8(bytes).ok()?;
    (!text.contains('\0')).then_some(text)
}

fn zip_has(bytes: &[u8], path: &str) -> bool {
    zip::ZipArchive::new(std::io::Cursor::new(bytes))
        .map(|mut z| z.by_name(path).is_ok())
        .unwrap_or(false)
}

/// Parses `bytes` as `kind` on a blocking thread; a panic in a parser is
/// that file's error.
pub async fn parse(kind: DocKind, bytes: Vec<u8>) -> Result<Parsed, ParseError> {
    let fallback = match kind {
        DocKind::Pdf => ParseError::Pdf,
        DocKind::Docx => ParseError::Docx,
        _ => ParseError::Unsupported,
    };
    tokio::task::spawn_blocking(move || {
        std::panic::catch_unwind(AssertUnwindSafe(|| parse_now(kind, &bytes)))
            .unwrap_or(Err(fallback))
    })
    .await
    .unwrap_or(Err(ParseError::Unsupported))
}

/// Parses on this thread (tests, and the blocking task above).
pub fn parse_now(kind: DocKind, bytes: &[u8]) -> Result<Parsed, ParseError> {
    if bytes.len() > MAX_FILE_BYTES {
        return Err(ParseError::TooLarge);
    }
    let pages = match kind {
        DocKind::Pdf => pdf(bytes)?,
        DocKind::Docx => vec![unnumbered(docx(bytes)?)],
        DocKind::Html => {
            let text = as_text(bytes).ok_or(ParseError::Unsupported)?;
            vec![unnumbered(html(text))]
        }
        DocKind::Csv => {
            let text = as_text(bytes).ok_or(ParseError::Unsupported)?;
            vec![unnumbered(csv(text)?)]
        }
        DocKind::Json => {
            let text = as_text(bytes).ok_or(ParseError::Unsupported)?;
            let value: serde_json::Value =
                serde_json::from_str(text).map_err(|_| ParseError::Json)?;
            vec![unnumbered(
                serde_json::to_string_pretty(&value).unwrap_or_default(),
            )]
        }
        DocKind::Text | DocKind::Markdown => {
            let text = as_text(bytes).ok_or(ParseError::Unsupported)?;
            vec![unnumbered(text.replace("\r\n", "\n"))]
        }
    };
    let mut budget = MAX_TEXT_CHARS;
    let pages: Vec<Page> = pages
        .into_iter()
        .map(|mut page| {
            if page.text.len() > budget {
                let mut cut = budget;
                while !page.text.is_char_boundary(cut) {
                    cut -= 1;
                }
                page.text.truncate(cut);
            }
            budget -= page.text.len();
            page
        })
        .collect();
    if pages.iter().all(|p| p.text.trim().is_empty()) {
        return Err(ParseError::NoText);
    }
    Ok(Parsed { kind, pages })
}

fn unnumbered(text: String) -> Page {
    Page { number: None, text }
}

fn pdf(bytes: &[u8]) -> Result<Vec<Page>, ParseError> {
    let pages = pdf_extract::extract_text_from_mem_by_pages(bytes).map_err(|_| ParseError::Pdf)?;
    Ok(pages
        .into_iter()
        .enumerate()
        .map(|(i, text)| Page {
            number: Some(i as u32 + 1),
            text,
        })
        .collect())
}

fn docx(bytes: &[u8]) -> Result<String, ParseError> {
    // The sizes a zip declares are checked before anything is unpacked,
    // then each part is read with a cap (a declared size can lie).
    let mut archive =
        zip::ZipArchive::new(std::io::Cursor::new(bytes)).map_err(|_| ParseError::Docx)?;
    if archive.len() > MAX_ZIP_ENTRIES {
        return Err(ParseError::ZipBomb);
    }
    let mut total: u64 = 0;
    for i in 0..archive.len() {
        let mut entry = archive.by_index(i).map_err(|_| ParseError::Docx)?;
        let mut sink = std::io::sink();
        let read = std::io::copy(
            &mut (&mut entry).take(MAX_UNZIPPED_BYTES - total + 1),
            &mut sink,
        )
        .map_err(|_| ParseError::Docx)?;
        total += read;
        if total > MAX_UNZIPPED_BYTES {
            return Err(ParseError::ZipBomb);
        }
    }
    let doc = docx_rs::read_docx(bytes).map_err(|_| ParseError::Docx)?;
    let mut out = String::new();
    for child in &doc.document.children {
        match child {
            docx_rs::DocumentChild::Paragraph(p) => paragraph(p, &mut out),
            docx_rs::DocumentChild::Table(t) => table(t, &mut out),
            _ => {}
        }
    }
    Ok(out)
}

fn paragraph(p: &docx_rs::Paragraph, out: &mut String) {
    let mut text = String::new();
    for child in &p.children {
        paragraph_child(child, &mut text);
    }
    let text = text.trim();
    if text.is_empty() {
        return;
    }
    let level = p.property.style.as_ref().and_then(|s| {
        let style = s.val.to_ascii_lowercase();
        if style == "title" {
            Some(1)
        } else {
            style
                .strip_prefix("heading")
                .and_then(|n| n.trim().parse::<usize>().ok())
                .map(|n| n.clamp(1, 6))
        }
    });
    if let Some(level) = level {
        out.push_str(&"#".repeat(level));
        out.push(' ');
    }
    out.push_str(text);
    out.push_str("\n\n");
}

fn paragraph_child(child: &docx_rs::ParagraphChild, text: &mut String) {
    match child {
        docx_rs::ParagraphChild::Run(run) => {
            for c in &run.children {
                match c {
                    docx_rs::RunChild::Text(t) => text.push_str(&t.text),
                    docx_rs::RunChild::Tab(_) => text.push('\t'),
                    docx_rs::RunChild::Break(_) => text.push('\n'),
                    _ => {}
                }
            }
        }
        docx_rs::ParagraphChild::Hyperlink(link) => {
            for c in &link.children {
                paragraph_child(c, text);
            }
        }
        docx_rs::ParagraphChild::Insert(_) => {}
        _ => {}
    }
}

fn table(t: &docx_rs::Table, out: &mut String) {
    for row in &t.rows {
        let docx_rs::TableChild::TableRow(row) = row;
        let cells: Vec<String> = row
            .cells
            .iter()
            .map(|cell| {
                let docx_rs::TableRowChild::TableCell(cell) = cell;
                let mut text = String::new();
                for content in &cell.children {
                    if let docx_rs::TableCellContent::Paragraph(p) = content {
                        paragraph(p, &mut text);
                    }
                }
                text.split_whitespace().collect::<Vec<_>>().join(" ")
            })
            .collect();
        out.push_str("| ");
        out.push_str(&cells.join(" | "));
        out.push_str(" |\n");
    }
    out.push('\n');
}

fn html(text: &str) -> String {
    html2text::config::plain()
        .string_from_read(text.as_bytes(), 100)
        .unwrap_or_default()
}

/// Each row as `column: value` lines under the header's names, rows apart,
/// so a passage stands on its own.
fn csv(text: &str) -> Result<String, ParseError> {
    let delimiter = if text.lines().next().is_some_and(|l| l.contains('\t')) {
        b'\t'
    } else {
        b','
    };
    let mut reader = csv::ReaderBuilder::new()
        .delimiter(delimiter)
        .from_reader(text.as_bytes());
    let headers = reader.headers().map_err(|_| ParseError::Csv)?.clone();
    let mut out = String::new();
    for record in reader.records() {
        let record = record.map_err(|_| ParseError::Csv)?;
        for (name, value) in headers.iter().zip(record.iter()) {
            if !value.trim().is_empty() {
                out.push_str(name.trim());
                out.push_str(": ");
                out.push_str(value.trim());
                out.push('\n');
            }
        }
        out.push('\n');
        if out.len() > MAX_TEXT_CHARS {
            break;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_content_decides_not_the_name() {
        assert_eq!(sniff("a.txt", b"%PDF-1.4 ..."), Ok(DocKind::Pdf));
        assert_eq!(
            sniff("a.pdf", b"just text"),
            Err(ParseError::Mislabelled("PDF"))
        );
        assert_eq!(sniff("a.txt", b"{\"a\": 1}"), Ok(DocKind::Json));
        assert_eq!(sniff("a.json", b"{\"a\": "), Err(ParseError::Json));
        assert_eq!(
            sniff("page.txt", b"<!DOCTYPE html><p>x</p>"),
            Ok(DocKind::Html)
        );
        assert_eq!(sniff("notes", b"# Title\n\nBody"), Ok(DocKind::Markdown));
        assert_eq!(sniff("notes.txt", b"plain words"), Ok(DocKind::Text));
        assert_eq!(sniff("t.csv", b"a,b\n1,2\n"), Ok(DocKind::Csv));
        assert_eq!(
            sniff("image.png", b"\x89PNG\r\n\x1a\n\0\0"),
            Err(ParseError::Unsupported)
        );
        assert_eq!(sniff("x.txt", b""), Err(ParseError::Empty));
        assert_eq!(
            sniff("a.docx", b"PK\x03\x04 not really"),
            Err(ParseError::Mislabelled("Word (.docx)"))
        );
    }

    #[test]
    fn csv_rows_become_named_values() {
        let parsed = parse_now(DocKind::Csv, b"city,country\nParis,France\nLima,Peru\n").unwrap();
        assert_eq!(
            parsed.pages[0].text,
            "city: Paris\ncountry: France\n\ncity: Lima\ncountry: Peru\n\n"
        );
        assert_eq!(
            parse_now(DocKind::Csv, b"a,b\n1,2,3\n"),
            Err(ParseError::Csv)
        );
    }

    #[test]
    fn html_loses_its_markup() {
        let parsed = parse_now(
            DocKind::Html,
            b"<html><body><h1>Plan</h1><p>Ship <b>on</b> Monday.</p><script>x()</script></body></html>",
        )
        .unwrap();
        let text = &parsed.pages[0].text;
        assert!(text.contains("# Plan"), "headings stay headings: {text}");
        assert!(text.contains("Ship **on** Monday."), "{text}");
        assert!(!text.contains("x()"), "scripts go: {text}");
        assert!(!text.contains('<'), "{text}");
    }

    #[test]
    fn text_without_words_is_refused() {
        assert_eq!(parse_now(DocKind::Text, b" \n\n "), Err(ParseError::NoText));
    }
}
