"""Exceptions raised by LiVO. Every message names the input and what is wrong with it."""

from livo._native import InvalidParameterError, InvalidUtf8Error


class LivoError(Exception):
    """Base class of LiVO's own errors."""


class InputError(LivoError, ValueError):
    """An input file or value cannot be used as given (bad format, missing column, wrong type)."""


class ConfigError(LivoError, ValueError):
    """A configuration is invalid; the message names the field."""


__all__ = ["LivoError", "InputError", "ConfigError", "InvalidParameterError", "InvalidUtf8Error"]
