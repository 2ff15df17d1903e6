//! Rules for text people type that other people (or moderators' tools) see: what counts
//! as visible, what is stripped before anything is stored, and how an excerpt of
//! untrusted input is quoted in an error message.

/// Whether `c` draws nothing by itself: whitespace, controls, formatting characters
/// (zero-width spaces and joiners, bidirectional controls, the BOM), combining marks,
/// variation selectors, tags, and the fillers that render as blanks (Hangul fillers,
/// the Braille blank, ...). A name made only of these looks empty.
pub fn is_invisible(c: char) -> bool {
    c.is_whitespace()
        || c.is_control()
        || matches!(
            c,
            '\u{00AD}'                  // soft hyphen
            | '\u{034F}'                // combining grapheme joiner
            | '\u{061C}'                // Arabic letter mark
            | '\u{115F}' | '\u{1160}'   // Hangul choseong/jungseong fillers
            | '\u{17B4}' | '\u{17B5}'   // Khmer inherent vowels
            | '\u{180B}'..='\u{180F}'   // Mongolian variation selectors and vowel separator
            | '\u{200B}'..='\u{200F}'   // zero-width space/joiners, LRM, RLM
            | '\u{202A}'..='\u{202E}'   // bidi embeddings and overrides
            | '\u{2060}'..='\u{206F}'   // word joiner, invisible operators, bidi isolates
            | '\u{2800}'                // Braille pattern blank
            | '\u{3164}'                // Hangul filler
            | '\u{FE00}'..='\u{FE0F}'   // variation selectors
            | '\u{FEFF}'                // zero-width no-break space (BOM)
            | '\u{FFA0}'                // halfwidth Hangul filler
            | '\u{FFF9}'..='\u{FFFB}'   // interlinear annotation controls
            | '\u{1D159}' | '\u{1D173}'..='\u{1D17A}' // musical symbol nulls and controls
            | '\u{E0000}'..='\u{E007F}' // tags
            | '\u{E0100}'..='\u{E01EF}' // variation selectors supplement
        )
        || is_combining_mark(c)
}

/// Combining marks (the common blocks): they attach to the character before them and
/// show nothing on their own.
fn is_combining_mark(c: char) -> bool {
    matches!(
        c,
        '\u{0300}'..='\u{036F}'
            | '\u{0483}'..='\u{0489}'
            | '\u{1AB0}'..='\u{1AFF}'
            | '\u{1DC0}'..='\u{1DFF}'
            | '\u{20D0}'..='\u{20FF}'
            | '\u{FE20}'..='\u{FE2F}'
    )
}

/// Whether `c` changes the direction of the text around it (bidirectional embeddings,
/// overrides, isolates and marks): used to make a name read as something else.
pub fn is_bidi_control(c: char) -> bool {
    matches!(
        c,
        '\u{061C}' | '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}'
    )
}

/// Free text to store (a report's note): control characters (terminal escapes, NUL,
/// ...) and bidirectional controls removed, tabs and carriage returns turned into
/// spaces, line breaks kept, surrounding whitespace trimmed.
pub fn sanitize(text: &str) -> String {
    text.chars()
        .filter_map(|c| match c {
            '\n' => Some('\n'),
            '\t' | '\r' => Some(' '),
            c if c.is_control() || is_bidi_control(c) => None,
            c => Some(c),
        })
        .collect::<String>()
        .trim()
        .to_owned()
}

/// At most `max_chars` of untrusted `text`, escaped (quotes, controls and invisible
/// characters shown as escapes) and marked when cut, for quoting in an error message.
pub fn excerpt(text: &str, max_chars: usize) -> String {
    let mut out = String::new();
    for (shown, c) in text.chars().enumerate() {
        if shown == max_chars {
            out.push('…');
            break;
        }
        if c.is_control() || is_invisible(c) && c != ' ' {
            out.extend(c.escape_unicode());
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blank_looking_characters_are_invisible() {
        for c in [
            ' ',
            '\u{200B}',
            '\u{3164}',
            '\u{2800}',
            '\u{0301}',
            '\u{FEFF}',
            '\u{115F}',
            '\u{202E}',
            '\u{E0041}',
        ] {
            assert!(is_invisible(c), "{:?}", c.escape_unicode().to_string());
        }
        for c in ['a', '가', 'あ', '😀', '!'] {
            assert!(!is_invisible(c), "{c}");
        }
    }

    #[test]
    fn stored_text_loses_controls_and_direction_overrides() {
        assert_eq!(
            sanitize("  ok\u{1b}[31m red\u{0} \u{202E}desrever\ttab\r\nline  "),
            "ok[31m red desrever tab \nline"
        );
        assert_eq!(sanitize("\u{7}\u{2066}"), "");
    }

    #[test]
    fn excerpts_are_short_and_escaped() {
        assert_eq!(excerpt("abc", 5), "abc");
        assert_eq!(excerpt("abcdef", 3), "abc…");
        assert_eq!(excerpt("a\u{1b}b", 5), "a\\u{1b}b");
        assert_eq!(excerpt(&"x".repeat(40_000), 64).chars().count(), 65);
    }
}
