"""Everything a config file decides, checked at once: sections, adapter options, rules."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field

from bridge.config import (
    ConfigError,
    ConfigPath,
    Issue,
    issue_at,
    load_yaml,
    read_config_file,
    salvage,
    validate,
    validate_at,
)
from bridge.config.loader import Document
from bridge.config.models import Config, PluginInstance
from bridge.config.oncall import check_references as check_oncall
from bridge.plugin import Input, Output, PluginLoadError, Registry
from bridge.rules import CONVERSATION, Contacts, Groups, RuleError, Rules, RuleSet, check_references
from bridge.runtime.template_names import template_warnings

SMS_OUTPUT = "sms"  # the built-in output on the `gateway:` account (or the simulator)
GATEWAY_TYPE = "c123"  # the adapter behind SMS_OUTPUT, configured by the `gateway:` section
DEFAULT_SIGNATURE = "【smsbridge】"


@dataclass(frozen=True)
class Settings:
    """A loaded, fully checked config: building the daemon from it cannot fail on config."""

    config: Config
    path: Path | None
    inputs: dict[str, tuple[type[Input[Any]], BaseModel]] = field(default_factory=dict)
    outputs: dict[str, tuple[type[Output[Any]], BaseModel]] = field(default_factory=dict)
    rules: RuleSet = field(default_factory=lambda: RuleSet([]))
    # Things that load but are likely mistakes (a template naming no variable): told, not refused.
    warnings: tuple[Issue, ...] = ()
    # Where the adapter types came from: a reload looks them up in the same place.
    registry: Registry | None = None

    @property
    def signature(self) -> str:
        gateway = self.config.gateway
        return gateway.signature.text if gateway else DEFAULT_SIGNATURE

    @property
    def timezone(self) -> ZoneInfo:
        gateway = self.config.gateway
        return gateway.timezone if gateway else ZoneInfo("Asia/Shanghai")


def _adapter_options(
    document: Document,
    section: str,
    instances: Mapping[str, Any],
    load: Any,
    base_dir: Path | None,
    issues: list[Issue],
) -> dict[str, tuple[Any, BaseModel]]:
    built: dict[str, tuple[Any, BaseModel]] = {}
    for name, instance in instances.items():
        try:
            cls = load(instance.type)
        except PluginLoadError as exc:
            issues.append(issue_at(document, (section, name, "type"), str(exc)))
            continue
        # Validated once, from what the file says: the model's `model_fields_set` is then what
        # the user wrote, which options such as Grafana's signature header depend on.
        try:
            options = validate_at(
                document, (section, name), cls.config_class, base_dir=base_dir, omit={"type"}
            )
        except ConfigError as exc:
            issues.extend(exc.issues)
            continue
        built[name] = (cls, options)
    return built


# Stands in for a broken contact or group while references are checked: it is reported
# where it is written, and the rules naming it must not be told it does not exist.
_STAND_IN_NUMBER = "13800138000"


def _stand_in(path: ConfigPath, value: Any) -> Any:
    """A valid entry in place of the broken one at `path` (`rules[2]`, `contacts.bob`)."""
    section, entry = path
    if section == "contacts":
        return _STAND_IN_NUMBER
    if section == "groups":
        return [_STAND_IN_NUMBER]
    if section == "rules":
        name = value.get("name") if isinstance(value, dict) else None
        return {
            "name": name if isinstance(name, str) and name else f"rules[{entry}]",
            "post": {"to": CONVERSATION},
        }
    # inputs and outputs: a type that loads nothing; its report, under `path`, is dropped.
    return {"type": f"{section}.{entry}"}


class _Routing(BaseModel):
    """The sections cross-checked against each other, read even when others are broken."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    contacts: Contacts = Field(default_factory=dict)
    groups: Groups = Field(default_factory=dict)
    inputs: dict[str, PluginInstance] = Field(default_factory=dict)
    outputs: dict[str, PluginInstance] = Field(default_factory=dict)
    rules: Rules = Field(default_factory=list)


@dataclass(frozen=True)
class _Checked:
    issues: list[Issue]
    inputs: dict[str, tuple[type[Input[Any]], BaseModel]]
    outputs: dict[str, tuple[type[Output[Any]], BaseModel]]
    rules: RuleSet


def _check(
    document: Document,
    sections: Config | _Routing,
    base_dir: Path,
    registry: Registry,
    zone: ZoneInfo,
    signature: str,
) -> _Checked:
    """Adapter options, cross-references and rules: the checks beyond each section's shape."""
    issues: list[Issue] = []
    inputs = _adapter_options(
        document, "inputs", sections.inputs, registry.input_type, base_dir, issues
    )
    # The gateway has one place in the file: an output of its type would get no poller and
    # escape the daily budget.
    elsewhere = {name for name, entry in sections.outputs.items() if entry.type == GATEWAY_TYPE}
    for name in sorted(elsewhere):
        issues.append(
            issue_at(
                document,
                ("outputs", name, "type"),
                "the c123 gateway is configured under gateway: (account, key, ...), not as an "
                "output; its output is the built-in 'sms'",
            )
        )
    outputs = _adapter_options(
        document,
        "outputs",
        {name: entry for name, entry in sections.outputs.items() if name not in elsewhere},
        registry.output_type,
        base_dir,
        issues,
    )
    if SMS_OUTPUT in sections.outputs:
        issues.append(
            issue_at(
                document,
                ("outputs", SMS_OUTPUT),
                "'sms' is the built-in output of the gateway: section; choose another name",
            )
        )
    output_names = {SMS_OUTPUT, *sections.outputs}
    for name, (_, options) in inputs.items():
        target = getattr(options, "reply_output", None)
        if isinstance(target, str) and target not in output_names:
            issues.append(
                issue_at(
                    document,
                    ("inputs", name, "reply_output"),
                    f"unknown output {target!r}; defined outputs: "
                    f"{', '.join(sorted(output_names))}",
                )
            )
    default = getattr(getattr(sections, "conversations", None), "default", None)
    if default is not None and default.output not in output_names:
        issues.append(
            issue_at(
                document,
                ("conversations", "default", "output"),
                f"unknown output {default.output!r}; defined outputs: "
                f"{', '.join(sorted(output_names))}",
            )
        )
    # A broken file is cross-checked from its routing sections only (`_Routing`).
    oncall = sections.oncall if isinstance(sections, Config) else None
    policies = (oncall.policies if oncall else {}) if isinstance(sections, Config) else None
    for where, message in check_references(
        sections.contacts, sections.groups, sections.rules, output_names, sections.inputs, policies
    ):
        issues.append(issue_at(document, where, message))
    if oncall is not None:
        for where, message in check_oncall(oncall, sections.contacts, sections.groups):
            issues.append(issue_at(document, where, message))
    rules = RuleSet([])
    if not issues:
        try:
            rules = RuleSet.build(
                sections.rules, sections.contacts, sections.groups, zone, signature
            )
        except RuleError as exc:
            issues.append(issue_at(document, exc.path, exc.message))
    return _Checked(issues, inputs, outputs, rules)


def load_settings(
    path: Path | None,
    *,
    environ: Mapping[str, str] | None = None,
    registry: Registry | None = None,
) -> Settings:
    """Load and check a config file (None: defaults); raises ConfigError with every problem."""
    if path is None:
        return Settings(config=Config(), path=None)
    text = read_config_file(path)
    base_dir = path.absolute().parent
    document = load_yaml(text, str(path), environ)
    registry = registry or Registry.discover()
    try:
        config = validate(document, Config, base_dir=base_dir)
    except ConfigError as broken:
        # Report the cross-section problems too, from what of those sections is usable.
        salvaged = salvage(document, _Routing, _stand_in, base_dir=base_dir)
        if salvaged is None:
            raise broken from None
        routing, changed = salvaged
        default = Settings(config=Config(), path=path)
        extra = _check(document, routing, base_dir, registry, default.timezone, default.signature)
        found = [
            issue
            for issue in extra.issues
            if not any(issue.path[: len(where)] == where for where in changed)
        ]
        raise ConfigError(dict.fromkeys([*broken.issues, *found])) from None
    settings = Settings(config=config, path=path)
    checked = _check(document, config, base_dir, registry, settings.timezone, settings.signature)
    if checked.issues:
        raise ConfigError(checked.issues)
    return Settings(
        config=config,
        path=path,
        inputs=checked.inputs,
        outputs=checked.outputs,
        rules=checked.rules,
        warnings=template_warnings(document, config.rules),
        registry=registry,
    )
