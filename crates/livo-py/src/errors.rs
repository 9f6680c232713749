//! Engine errors → Python exceptions, variant by variant.
//!
//! LiVO's exception classes are defined once, in Python (`livo.errors`), under one root,
//! `LivoError`; each also keeps its builtin base (`ValueError` or `OSError`). The engine raises
//! those same classes (imported on first use and cached), and `livo._native` exports them under
//! the same names, so `livo._native.X is livo.errors.X`. I/O errors on the user's paths stay the
//! builtin `FileNotFoundError`, `PermissionError` and `OSError`: they are not LiVO errors.

use livo_data::DataError;
use pyo3::exceptions::{PyFileNotFoundError, PyKeyboardInterrupt, PyOSError, PyPermissionError};
use pyo3::prelude::*;

/// The module defining LiVO's exception classes.
const ERRORS_MODULE: &str = "livo.errors";

pyo3::import_exception!(livo.errors, InvalidParameterError);
pyo3::import_exception!(livo.errors, InvalidUtf8Error);
pyo3::import_exception!(livo.errors, ManifestError);
pyo3::import_exception!(livo.errors, SchemaMismatchError);
pyo3::import_exception!(livo.errors, DatasetLockedError);
pyo3::import_exception!(livo.errors, ParquetFileError);

/// The engine's exception classes, exported by `livo._native` under these names.
const EXPORTED: [&str; 6] = [
    "InvalidParameterError",
    "InvalidUtf8Error",
    "ManifestError",
    "SchemaMismatchError",
    "DatasetLockedError",
    "ParquetFileError",
];

/// Adds the classes of `livo.errors` to the module. Importing `livo.errors` here, at module
/// initialisation, makes a broken install fail on import with Python's own error, instead of on
/// the first raise.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let errors = m.py().import(ERRORS_MODULE)?;
    for name in EXPORTED {
        m.add(name, errors.getattr(name)?)?;
    }
    Ok(())
}

pub fn to_py(err: DataError) -> PyErr {
    let message = err.to_string();
    match err {
        DataError::Io { source, .. } => match source.kind() {
            std::io::ErrorKind::NotFound => PyFileNotFoundError::new_err(message),
            std::io::ErrorKind::PermissionDenied => PyPermissionError::new_err(message),
            _ => PyOSError::new_err(message),
        },
        DataError::InvalidUtf8 { .. } => InvalidUtf8Error::new_err(message),
        DataError::InvalidParameter { .. } => InvalidParameterError::new_err(message),
        DataError::Cancelled => PyKeyboardInterrupt::new_err(message),
        DataError::Parquet { .. } => ParquetFileError::new_err(message),
        DataError::Manifest { .. } => ManifestError::new_err(message),
        DataError::Schema(_) => SchemaMismatchError::new_err(message),
        DataError::Locked { .. } => DatasetLockedError::new_err(message),
    }
}
