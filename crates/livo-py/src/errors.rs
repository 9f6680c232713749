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

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("InvalidParameterError", py.get_type::<InvalidParameterError>())?;
    m.add("InvalidUtf8Error", py.get_type::<InvalidUtf8Error>())?;
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
    }
}
