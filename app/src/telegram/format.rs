//! A reply's Markdown as Telegram shows it: converted to Telegram's
//! MarkdownV2 (bold, italics, strikethrough, code, code blocks, links, lists,
//! headings as bold; every other reserved character escaped), and cut into
//! messages under Telegram's 4,096 characters at paragraph or line ends.

use pulldown_cmark::{CodeBlockKind, Event, Options, Parser, Tag, TagEnd};

use super::botapi::MAX_MESSAGE_CHARS;

/// The longest piece of source cut for one message: its MarkdownV2 (with
/// escapes) still fits; one that does not is sent as plain text.
const PIECE_CHARS: usize = 3_500;

/// Characters MarkdownV2 reserves, escaped in text.
const RESERVED: &str = "_*[]()~`>#+-=|{}.!\\";

pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if RESERVED.contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Inside code, only the backtick and the backslash are escaped.
fn escape_code(text: &str) -> String {
    text.replace('\\', "\\\\").replace('`', "\\`")
}

/// Inside a link's address, only `)` and the backslash.
fn escape_url(url: &str) -> String {
    url.replace('\\', "\\\\").replace(')', "\\)")
}

/// Markdown as MarkdownV2.
pub fn to_markdown_v2(markdown: &str) -> String {
    let mut out = String::new();
    let mut in_code_block = false;
    let mut lists: Vec<Option<u64>> = Vec::new();
    let mut links: Vec<String> = Vec::new();
    for event in Parser::new_ext(markdown, Options::ENABLE_STRIKETHROUGH) {
        match event {
            Event::Start(Tag::Strong) | Event::End(TagEnd::Strong) => out.push('*'),
            Event::Start(Tag::Emphasis) | Event::End(TagEnd::Emphasis) => out.push('_'),
            Event::Start(Tag::Strikethrough) | Event::End(TagEnd::Strikethrough) => out.push('~'),
            Event::Start(Tag::Heading { .. }) => out.push('*'),
            Event::End(TagEnd::Heading(_)) => out.push_str("*\n\n"),
            Event::End(TagEnd::Paragraph) => {
                out.push_str(if lists.is_empty() { "\n\n" } else { "\n" })
            }
            Event::Start(Tag::CodeBlock(kind)) => {
                in_code_block = true;
                out.push_str("```");
                if let CodeBlockKind::Fenced(lang) = kind {
                    out.push_str(&escape_code(lang.split_whitespace().next().unwrap_or("")));
                }
                out.push('\n');
            }
            Event::End(TagEnd::CodeBlock) => {
                in_code_block = false;
                out.push_str("```\n\n");
            }
            Event::Start(Tag::List(first)) => lists.push(first),
            Event::End(TagEnd::List(_)) => {
                lists.pop();
                if lists.is_empty() {
                    out.push('\n');
                }
            }
            Event::Start(Tag::Item) => {
                let depth = lists.len().saturating_sub(1);
                out.push_str(&"  ".repeat(depth));
                match lists.last_mut() {
                    Some(Some(n)) => {
                        out.push_str(&format!("{n}\\. "));
                        *n += 1;
                    }
                    _ => out.push_str("• "),
                }
            }
            Event::End(TagEnd::Item) if !out.ends_with('\n') => out.push('\n'),
            Event::Start(Tag::Link { dest_url, .. }) => {
                links.push(dest_url.to_string());
                out.push('[');
            }
            Event::End(TagEnd::Link) => {
                let url = links.pop().unwrap_or_default();
                out.push_str(&format!("]({})", escape_url(&url)));
            }
            Event::Code(code) => {
                out.push('`');
                out.push_str(&escape_code(&code));
                out.push('`');
            }
            Event::Text(text) if in_code_block => out.push_str(&escape_code(&text)),
            Event::Text(text) | Event::Html(text) | Event::InlineHtml(text) => {
                out.push_str(&escape(&text))
            }
            Event::SoftBreak | Event::HardBreak => out.push('\n'),
            Event::Rule => out.push_str("\\-\\-\\-\n\n"),
            _ => {}
        }
    }
    out.trim_end().to_owned()
}

/// `text` cut into pieces of at most `max` characters, at a paragraph end
/// where there is one, else a line end, else a space, else anywhere.
fn pieces(text: &str, max: usize) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = text.trim();
    while rest.chars().count() > max {
        let cut_at = rest
            .char_indices()
            .nth(max)
            .map(|(i, _)| i)
            .unwrap_or(rest.len());
        let window = &rest[..cut_at];
        let cut = window
            .rfind("\n\n")
            .or_else(|| window.rfind('\n'))
            .or_else(|| window.rfind(' '))
            .filter(|&i| i > 0)
            .unwrap_or(cut_at);
        out.push(rest[..cut].trim_end().to_owned());
        rest = rest[cut..].trim_start();
    }
    if !rest.is_empty() {
        out.push(rest.to_owned());
    }
    out
}

/// A reply as Telegram messages: each with whether it is MarkdownV2.
pub fn messages(reply: &str) -> Vec<(String, bool)> {
    pieces(reply, PIECE_CHARS)
        .into_iter()
        .map(|piece| {
            let formatted = to_markdown_v2(&piece);
            if !formatted.is_empty() && formatted.chars().count() <= MAX_MESSAGE_CHARS {
                (formatted, true)
            } else {
                (piece, false)
            }
        })
        .collect()
}

/// A reply cut as `messages` cuts it, as plain text.
pub fn plain_pieces(reply: &str) -> Vec<String> {
    pieces(reply, PIECE_CHARS)
}

/// A reply still being written, as plain text that fits one message.
pub fn preview(text: &str) -> String {
    let text = text.trim();
    if text.chars().count() <= MAX_MESSAGE_CHARS {
        return text.to_owned();
    }
    let mut cut: String = text.chars().take(MAX_MESSAGE_CHARS - 1).collect();
    cut.push('…');
    cut
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markdown_becomes_markdown_v2_with_everything_else_escaped() {
        assert_eq!(
            to_markdown_v2(
                "**Total:** 3.5 (approx.) - see [docs](https://x.example/a_(b)) and `a_b`!"
            ),
            "*Total:* 3\\.5 \\(approx\\.\\) \\- see [docs](https://x.example/a_(b\\)) and `a_b`\\!"
        );
        assert_eq!(
            to_markdown_v2("# Plan\n\n1. one\n2. two\n\n- a\n- b\n\n```rust\nlet x = a`b;\n```"),
            "*Plan*\n\n1\\. one\n2\\. two\n\n• a\n• b\n\n```rust\nlet x = a\\`b;\n```"
        );
        assert_eq!(to_markdown_v2("_it_ and ~~gone~~"), "_it_ and ~gone~");
    }

    #[test]
    fn long_replies_are_cut_at_paragraphs_under_the_limit() {
        let paragraph = "word ".repeat(300);
        let reply = [paragraph.trim(); 12].join("\n\n");
        let sent = messages(&reply);
        assert!(sent.len() >= 3, "{}", sent.len());
        assert!(
            sent.iter()
                .all(|(m, _)| m.chars().count() <= MAX_MESSAGE_CHARS)
        );
        assert!(
            sent.iter()
                .all(|(m, markdown)| *markdown && !m.starts_with(' '))
        );
        let joined: String = sent
            .iter()
            .map(|(m, _)| m.replace("\n\n", " "))
            .collect::<Vec<_>>()
            .join(" ");
        assert_eq!(joined.split_whitespace().count(), 300 * 12, "nothing lost");
        // No break anywhere: cut at the limit.
        let solid = "x".repeat(9_000);
        let cut = pieces(&solid, PIECE_CHARS);
        assert_eq!(cut.iter().map(|p| p.len()).sum::<usize>(), 9_000);
        assert!(preview(&solid).chars().count() == MAX_MESSAGE_CHARS);
    }
}
