//! The agent's Telegram card.
