"""Routing rules: matchers, templates, rule and directory config, and the pure RuleSet."""
