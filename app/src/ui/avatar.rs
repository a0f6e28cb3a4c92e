//! An agent's avatar as every page shows it. An emoji is drawn in the
//! system's emoji font, else in Noto Emoji, which the site bundles
//! (`app/public/fonts/noto-emoji`, fetched by the browser only for the
//! emoji it lacks). A colour (`#rrggbb`), or no avatar at all, becomes the
//! agent's initials on that colour (or on one picked from its name), drawn
//! as SVG: the CSP allows no inline style.

use leptos::{either::Either, prelude::*};

/// What an avatar shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Look {
    Emoji(String),
    Initials {
        text: String,
        background: String,
        /// Black or white, whichever reads better on `background`.
        ink: &'static str,
    },
}

/// Colours for agents without one: white initials on each reach 4.5:1.
const PALETTE: [&str; 8] = [
    "#3b5bdb", "#0b7285", "#2b7a3b", "#5f3dc4", "#c2255c", "#c2410c", "#495057", "#1864ab",
];

/// Up to two initials: the first letters of the name's first two words.
pub fn initials(name: &str) -> String {
    let letters: String = name
        .split_whitespace()
        .filter_map(|word| word.chars().find(|c| c.is_alphanumeric()))
        .take(2)
        .flat_map(char::to_uppercase)
        .collect();
    if letters.is_empty() {
        "?".to_owned()
    } else {
        letters
    }
}

fn parse_colour(avatar: &str) -> Option<(u8, u8, u8)> {
    let hex = avatar.strip_prefix('#').filter(|h| h.len() == 6)?;
    let byte = |i: usize| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok();
    Some((byte(0)?, byte(2)?, byte(4)?))
}

/// WCAG relative luminance.
fn luminance((r, g, b): (u8, u8, u8)) -> f64 {
    let linear = |c: u8| {
        let c = f64::from(c) / 255.0;
        if c <= 0.039_28 {
            c / 12.92
        } else {
            ((c + 0.055) / 1.055).powf(2.4)
        }
    };
    0.2126 * linear(r) + 0.7152 * linear(g) + 0.0722 * linear(b)
}

fn contrast_with_white(rgb: (u8, u8, u8)) -> f64 {
    1.05 / (luminance(rgb) + 0.05)
}

/// White on dark colours, black on light ones.
fn ink_for(rgb: (u8, u8, u8)) -> &'static str {
    // Contrast with black: (L + 0.05) / 0.05.
    if contrast_with_white(rgb) >= (luminance(rgb) + 0.05) / 0.05 {
        "#ffffff"
    } else {
        "#000000"
    }
}

/// What `avatar` (an agent's setting) shows for an agent called `name`.
pub fn look(avatar: &str, name: &str) -> Look {
    let avatar = avatar.trim();
    if let Some(rgb) = parse_colour(avatar) {
        return Look::Initials {
            text: initials(name),
            background: avatar.to_ascii_lowercase(),
            ink: ink_for(rgb),
        };
    }
    if !avatar.is_empty() {
        return Look::Emoji(avatar.to_owned());
    }
    let hash = name
        .bytes()
        .fold(0u32, |h, b| h.wrapping_mul(31).wrapping_add(u32::from(b)));
    let background = PALETTE[hash as usize % PALETTE.len()];
    Look::Initials {
        text: initials(name),
        background: background.to_owned(),
        ink: parse_colour(background).map_or("#ffffff", ink_for),
    }
}

/// An agent's avatar (decorative: the agent's name is always next to it).
#[component]
pub fn Avatar(
    #[prop(into)] avatar: String,
    #[prop(into)] name: String,
    #[prop(optional)] big: bool,
) -> impl IntoView {
    match look(&avatar, &name) {
        Look::Emoji(emoji) => Either::Left(view! {
            <span class="avatar" class:big=big aria-hidden="true" data-testid="avatar">{emoji}</span>
        }),
        Look::Initials {
            text,
            background,
            ink,
        } => {
            let size = if text.chars().count() > 1 { "15" } else { "18" };
            Either::Right(view! {
                <svg
                    class="avatar initials"
                    class:big=big
                    viewBox="0 0 40 40"
                    aria-hidden="true"
                    data-testid="avatar"
                >
                    <circle cx="20" cy="20" r="20" fill=background></circle>
                    <text
                        x="20"
                        y="20"
                        dy="0.35em"
                        text-anchor="middle"
                        font-size=size
                        font-weight="600"
                        fill=ink
                    >
                        {text}
                    </text>
                </svg>
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_emoji_stays_an_emoji() {
        assert_eq!(look("🦉", "Owl"), Look::Emoji("🦉".into()));
        assert_eq!(look(" 🤖 ", "Bot"), Look::Emoji("🤖".into()));
    }

    #[test]
    fn a_colour_becomes_initials_in_the_ink_that_reads() {
        assert_eq!(
            look("#3B5BDB", "blue heron keeper"),
            Look::Initials {
                text: "BH".into(),
                background: "#3b5bdb".into(),
                ink: "#ffffff"
            }
        );
        let Look::Initials { ink, .. } = look("#ffe066", "Sunny") else {
            panic!("a colour");
        };
        assert_eq!(ink, "#000000", "black on yellow");
    }

    #[test]
    fn no_avatar_picks_a_colour_from_the_name_the_same_each_time() {
        let first = look("", "Research helper");
        assert_eq!(first, look("", "Research helper"));
        let Look::Initials {
            text, background, ..
        } = first
        else {
            panic!("initials");
        };
        assert_eq!(text, "RH");
        assert!(PALETTE.contains(&background.as_str()));
        for colour in PALETTE {
            let rgb = parse_colour(colour).unwrap();
            assert_eq!(ink_for(rgb), "#ffffff", "{colour}");
            assert!(contrast_with_white(rgb) >= 4.5, "{colour}");
        }
    }

    #[test]
    fn initials_skip_punctuation_and_never_come_out_empty() {
        assert_eq!(initials("(draft) élan vital"), "DÉ");
        assert_eq!(initials("   "), "?");
        assert_eq!(initials("x"), "X");
    }
}
