//! The CSV reader of the directory import: small, RFC 4180 (quoted fields may hold commas,
//! quotes as `""` and line breaks), and it knows the line each record starts on, for error
//! messages. It depends on nothing else in the crate, so the fuzz targets (`fuzz/`)
//! compile this file alone.

/// A CSV record's fields and the (1-based) line it starts on.
pub type Record = (usize, Vec<String>);
/// A problem and the line it is on.
pub type LineError = (usize, String);

/// Splits CSV text into records, each with the (1-based) line it starts on. Blank lines
/// are skipped. Fails on an unterminated quote or a quote inside an unquoted field.
pub fn parse_csv(text: &str) -> Result<Vec<Record>, LineError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut records = Vec::new();
    let mut chars = text.chars().peekable();
    let mut line = 1;
    while chars.peek().is_some() {
        let start = line;
        let mut fields = Vec::new();
        let mut field = String::new();
        let mut quoted = false;
        let mut was_quoted = false;
        loop {
            let Some(c) = chars.next() else {
                if quoted {
                    return Err((start, "a quoted field is not closed".into()));
                }
                break;
            };
            if quoted {
                match c {
                    '"' if chars.peek() == Some(&'"') => {
                        chars.next();
                        field.push('"');
                    }
                    '"' => quoted = false,
                    '\n' => {
                        line += 1;
                        field.push('\n');
                    }
                    _ => field.push(c),
                }
                continue;
            }
            match c {
                '"' if field.is_empty() && !was_quoted => {
                    quoted = true;
                    was_quoted = true;
                }
                '"' => return Err((line, "a quote inside an unquoted field".into())),
                ',' => {
                    fields.push(std::mem::take(&mut field));
                    was_quoted = false;
                }
                '\r' if chars.peek() == Some(&'\n') => {}
                '\n' => {
                    line += 1;
                    break;
                }
                _ if was_quoted => {
                    return Err((line, "text after a closing quote".into()));
                }
                _ => field.push(c),
            }
        }
        fields.push(field);
        if !(fields.len() == 1 && fields[0].trim().is_empty()) {
            records.push((start, fields));
        }
    }
    Ok(records)
}
