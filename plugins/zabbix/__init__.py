"""Zabbix through a webhook media type (media_type.js here): one Event per problem or recovery."""

from bridge.plugins.zabbix.config import ZabbixAuth, ZabbixConfig
from bridge.plugins.zabbix.input import ZabbixInput
from bridge.plugins.zabbix.payload import ZabbixPayload

__all__ = ["ZabbixAuth", "ZabbixConfig", "ZabbixInput", "ZabbixPayload"]
