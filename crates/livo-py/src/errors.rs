//! Engine errors → Python exceptions, variant by variant.

use livo_data::DataError;
use pyo3::exceptions::{
    PyFileNotFoundError, PyKeyboardInterrupt, PyOSError, PyPermissionError, PyValueError,
};
use pyo3::prelude::*;

pyo3::create_exception!(
    livo._native,
    InvalidParameterError,
    PyValueError,
    "A parameter is outside its valid range; the message names it."
);
pyo3::create_exception!(
    livo._native,
    InvalidUtf8Error,
    PyValueError,
    "A text input is not valid UTF-8; the message names the file and line."
);

pyo3::create_exception!(
    livo._native,
    ManifestError,
    PyValueError,
    "A dataset manifest is malformed or does not fit the writer's settings; the message names it."
);
pyo3::create_exception!(
    livo._native,
    SchemaMismatchError,
    PyValueError,
    "Written rows lack a required column or differ from the dataset's columns; the message names it."
);
pyo3::create_exception!(
    livo._native,
    DatasetLockedError,
    PyOSError,
    "Another writer holds the dataset directory."
);
pyo3::create_exception!(
    livo._native,
    ParquetFileError,
    PyOSError,
    "A Parquet file could not be written or read; the message names it."
);

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add(
        "InvalidParameterError",
        py.get_type::<InvalidParameterError>(),
    )?;
    m.add("InvalidUtf8Error", py.get_type::<InvalidUtf8Error>())?;
    m.add("ManifestError", py.get_type::<ManifestError>())?;
    m.add("SchemaMismatchError", py.get_type::<SchemaMismatchError>())?;
    m.add("DatasetLockedError", py.get_type::<DatasetLockedError>())?;
    m.add("ParquetFileError", py.get_type::<ParquetFileError>())?;
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
