//! Errors of the data engine. Each variant names the input and the problem so the Python layer can
//! map it to a specific exception with a message a user can act on.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: line {line} is not valid UTF-8 (byte offset {byte_offset} in the line)")]
    InvalidUtf8 {
        path: PathBuf,
        line: usize,
        byte_offset: usize,
    },
    #[error("invalid parameter {name}={value}: {reason}")]
    InvalidParameter {
        name: &'static str,
        value: String,
        reason: String,
    },
    #[error("interrupted")]
    Cancelled,
    #[error("{path}: {source}")]
    Parquet {
        path: PathBuf,
        #[source]
        source: parquet::errors::ParquetError,
    },
    #[error("{path}: {reason}")]
    Manifest { path: PathBuf, reason: String },
    #[error("{0}")]
    Schema(String),
    #[error("{path}: another writer holds this dataset (lock file)")]
    Locked { path: PathBuf },
}

impl DataError {
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        DataError::Io {
            path: path.into(),
            source,
        }
    }

    pub fn parameter(name: &'static str, value: impl ToString, reason: impl Into<String>) -> Self {
        DataError::InvalidParameter {
            name,
            value: value.to_string(),
            reason: reason.into(),
        }
    }
}

pub type Result<T> = std::result::Result<T, DataError>;
