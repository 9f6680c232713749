//! Reading one-prompt-per-line text files with exact error locations.

use std::path::Path;

use crate::error::{DataError, Result};

/// Reads a UTF-8 text file as lines (without their `\n` / `\r\n`). A final empty line after the
/// last newline is not a prompt. Invalid UTF-8 is reported with its 1-based line number.
pub fn read_lines(path: &Path) -> Result<Vec<String>> {
    let bytes = std::fs::read(path).map_err(|e| DataError::io(path, e))?;
    let bytes = bytes.strip_prefix(b"\xef\xbb\xbf").unwrap_or(&bytes);
    let mut lines = Vec::new();
    let mut rest = bytes;
    let mut line_no = 0usize;
    while !rest.is_empty() {
        line_no += 1;
        let (line, next) = match rest.iter().position(|&b| b == b'\n') {
            Some(i) => (&rest[..i], &rest[i + 1..]),
            None => (rest, &rest[rest.len()..]),
        };
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        match std::str::from_utf8(line) {
            Ok(s) => lines.push(s.to_owned()),
            Err(e) => {
                return Err(DataError::InvalidUtf8 {
                    path: path.to_path_buf(),
                    line: line_no,
                    byte_offset: e.valid_up_to(),
                })
            }
        }
        rest = next;
    }
    Ok(lines)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(bytes: &[u8]) -> tempfile_path::TempPath {
        tempfile_path::TempPath::with(bytes)
    }

    /// Minimal temp-file helper so the crate needs no extra dependency.
    mod tempfile_path {
        use std::path::PathBuf;
        use std::sync::atomic::{AtomicUsize, Ordering};

        pub struct TempPath(pub PathBuf);
        static COUNTER: AtomicUsize = AtomicUsize::new(0);

        impl TempPath {
            pub fn with(bytes: &[u8]) -> Self {
                let n = COUNTER.fetch_add(1, Ordering::Relaxed);
                let p = std::env::temp_dir().join(format!(
                    "livo-text-{}-{}.txt",
                    std::process::id(),
                    n
                ));
                std::fs::write(&p, bytes).unwrap();
                TempPath(p)
            }
        }
        impl Drop for TempPath {
            fn drop(&mut self) {
                let _ = std::fs::remove_file(&self.0);
            }
        }
    }

    #[test]
    fn splits_lines_and_strips_crlf_and_bom() {
        let f = write(b"\xef\xbb\xbfa doctor\r\na nurse\n\nlast");
        assert_eq!(
            read_lines(&f.0).unwrap(),
            vec!["a doctor", "a nurse", "", "last"]
        );
    }

    #[test]
    fn invalid_utf8_names_the_line() {
        let f = write(b"ok\nalso ok\nbad \xff byte\n");
        match read_lines(&f.0) {
            Err(DataError::InvalidUtf8 {
                line, byte_offset, ..
            }) => {
                assert_eq!(line, 3);
                assert_eq!(byte_offset, 4);
            }
            other => panic!("expected InvalidUtf8, got {other:?}"),
        }
    }

    #[test]
    fn missing_file_is_an_io_error_naming_the_path() {
        let err = read_lines(Path::new("/nonexistent/prompts.txt")).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/prompts.txt"));
    }
}
