//! Settings → API keys (to come).
