//! Text cut to fit: a status message, a condition's message, an Event's note.

/// What ends a cut message.
pub const TRUNCATED: &str = "… (truncated)";

/// `text`, cut to at most `max` bytes (on a character boundary) and ending with [`TRUNCATED`]
/// when it was longer.
pub fn truncate(mut text: String, max: usize) -> String {
    if text.len() <= max {
        return text;
    }
    let mut end = max.saturating_sub(TRUNCATED.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.truncate(end);
    if TRUNCATED.len() <= max {
        text.push_str(TRUNCATED);
    }
    text
}
