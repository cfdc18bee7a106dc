"""Configuration at the edge: service settings and the routing rules file."""

from callrouter.config.durations import format_duration, parse_duration
from callrouter.config.errors import ConfigError, RulesError, SettingsError
from callrouter.config.rules_file import load_rules, parse_rules, parse_rules_toml, rules_to_dict
from callrouter.config.rules_holder import LoadedRules, RejectedRules, RulesHolder
from callrouter.config.settings import Settings, config_path, load_settings

__all__ = [
    "ConfigError",
    "LoadedRules",
    "RejectedRules",
    "RulesError",
    "RulesHolder",
    "Settings",
    "SettingsError",
    "config_path",
    "format_duration",
    "load_rules",
    "load_settings",
    "parse_duration",
    "parse_rules",
    "parse_rules_toml",
    "rules_to_dict",
]
