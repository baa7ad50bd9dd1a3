"""The `zabbix` input: what the smsbridge media type (media_type.js) posts in, one Event out.

Zabbix has no payload of its own: its webhook media types are scripts. `media_type.js` in this
folder is ours; it posts one JSON object per alert with `Authorization: Bearer <Token>`:

    {
      "version": "1",                        optional; only "1" exists
      "event_id": "4211",                    {EVENT.ID}, required (the problem's, in recovery too)
      "value": "1",                          {EVENT.VALUE}: "1" problem, "0" recovery
      "recovery": false,                     instead of value: true for a recovery
      "update": false,                       {EVENT.UPDATE.STATUS} is 1 (acknowledged, commented)
      "name": "High CPU load on web1",       {EVENT.NAME}, required: the alertname label
      "severity": "High",                    {EVENT.SEVERITY}
      "host": "web1",                        {HOST.NAME}
      "trigger_id": "23711",                 {TRIGGER.ID}
      "tags": [{"tag": "service", "value": "nginx"}],      {EVENT.TAGSJSON}
      "to": "+8615102110086",                {ALERT.SENDTO}
      "subject": "Problem: High CPU load",   {ALERT.SUBJECT}
      "message": "Problem started at ...",   {ALERT.MESSAGE}: the Event's text
      "time": "2024.05.01 10:00:00",         {EVENT.DATE} {EVENT.TIME}
      "recovery_id": "",                     {EVENT.RECOVERY.ID}
      "recovery_time": ""                    {EVENT.RECOVERY.DATE} {EVENT.RECOVERY.TIME}
    }

Ids may also be JSON numbers; unknown keys are ignored (and kept in the Event's data). One of
`value` or `recovery` is required. The Event: kind alert, status firing (value 1) or resolved
(value 0); labels alertname (the event name), severity, host and instance (both the host name),
every tag (a tag given several values: sorted and comma-joined; tags never replace those four),
and zabbix_update="1" on updates; fingerprint a hash of trigger id and host, so a problem and its
recovery pair up; text the message, else the subject, else the name; data {"event": the posted
object, "tags": the tags as above}.

Dedupe: event id + status (+ the message, for updates), within `dedupe_window` (10 minutes), so
a Zabbix retry after a lost answer does not page twice. Answers as the other inputs: 200 after
storing, 503 when storing failed (the script throws, Zabbix retries), 400/401/403/413/415, and
422 naming the field.
"""

from __future__ import annotations

from aiohttp import web

from bridge.plugin import (
    HttpInput,
    Parsed,
    check_authorization,
    check_content_type,
    load_json,
    parse_json,
    read_body,
    reject,
)
from bridge.plugins.zabbix.config import ZabbixConfig
from bridge.plugins.zabbix.payload import PayloadError, read_payload


class ZabbixInput(HttpInput[ZabbixConfig]):
    """Receives the smsbridge Zabbix media type's POSTs at /hooks/<name>."""

    type_name = "zabbix"
    config_class = ZabbixConfig

    async def receive(self, request: web.Request) -> web.Response:
        self._authenticate(request)
        check_content_type(request)
        body = await read_body(request, self.config.max_body)
        raw = parse_json(body)
        try:
            payload = read_payload(raw)
        except PayloadError as exc:
            reject(422, str(exc))
        return await self.accept(
            body,
            Parsed([payload.event(raw, self.ctx.name)]),
            dedupe_key=payload.dedupe_key(self.ctx.name),
            dedupe_window=self.config.dedupe_window.total_seconds(),
        )

    def parse(self, body: bytes) -> Parsed:
        raw = load_json(body)
        try:
            return Parsed([read_payload(raw).event(raw, self.ctx.name)])
        except PayloadError as exc:
            raise ValueError(str(exc)) from None

    def _authenticate(self, request: web.Request) -> None:
        if self.config.auth is not None:
            check_authorization(request, self.log, bearer=self.config.auth.token, what="token")
