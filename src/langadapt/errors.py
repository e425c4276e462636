"""Errors the user can cause and fix. The CLI prints them as one line and exits 2."""


class UserError(Exception):
    """Something the user got wrong (path, format, config, method inputs).

    The message says what is wrong and what to do; it is printed as
    ``langadapt: error: <message>`` without a traceback.
    """


class InputError(UserError):
    """A missing, empty or malformed input file, folder, dataset or model."""


class ConfigError(UserError):
    """An invalid configuration value or combination of values."""


class StoreError(UserError):
    """A token store that is missing, truncated, or does not match its tokenizer."""


class OptionError(ConfigError):
    """A value of one named option is invalid. ``option`` is the field's dotted name (``train.lr``);
    the CLI shows it as the flag (``--train.lr``)."""

    def __init__(self, option: str, message: str):
        super().__init__(f"{option}: {message}")
        self.option, self.detail = option, message
