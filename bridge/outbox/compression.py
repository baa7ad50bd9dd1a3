"""How stored events are compressed: zlib with a preset dictionary of what alerts are made of.

An event is a small JSON document (one alert and its group's context is 2-4 KB) and most of it
is vocabulary every alert repeats: the keys of an event, of Alertmanager's payload and of the
usual Prometheus and Kubernetes labels. A preset dictionary lets the first occurrence of each
be a back-reference too, which takes a quarter off the stored size of a typical alert.
"""

from __future__ import annotations

import zlib

# Stores hold events compressed with this dictionary: never change it. A stream names the
# dictionary it needs by its Adler-32 in its header, so a new one would be told apart by that.
# Deflate codes near references more cheaply, so the most common text comes last.
EVENT_DICTIONARY = (
    b'"conversation":{"output":"","channel":"","thread":""}'
    b'"kind":"reply""kind":"delivery""kind":"command""kind":"system"'
    b'"mobile":"","ref":"","carrier_code":"","status":"delivered"'
    b'"severity":"critical""severity":"warning""severity":"info""severity":"none"'
    b'"job":"node-exporter""job":"kubelet""job":"apiserver"'
    b'"container":"","endpoint":"","service":"","deployment":"","node":"",'
    b'"prometheus":"","cluster":"","uid":"","pod":"","instance":"",'
    b".svc.cluster.local.compute.internal"
    b'"runbook_url":"https://runbooks.prometheus-operator.dev/runbooks/'
    b'"description":"","summary":"'
    b'"generatorURL":"http://:9090/graph?g0.expr=&g0.tab=1"'
    b'"group":{"groupKey":"{}/{}:{alertname=\\"","status":"firing","receiver":"",'
    b'"groupLabels":{"alertname":"","commonLabels":{"severity":"","commonAnnotations":{},'
    b'"externalURL":"http://:9093",'
    b'"truncatedAlerts":0}'
    b'"startsAt":"T00:00:00.000Z","endsAt":"0001-01-01T00:00:00Z",'
    b'"fingerprint":"","status":"firing","conversation":null,"received_at":"+00:00"}'
    b'"data":{"alert":{"status":"firing","labels":{"alertname":"","namespace":"'
    b'"annotations":{"summary":"'
    b'{"kind":"alert","source":"","labels":{"alertname":"","severity":"'
)


def compress(text: bytes) -> bytes:
    """A stored event's bytes from its JSON text."""
    packer = zlib.compressobj(6, zdict=EVENT_DICTIONARY)
    return packer.compress(text) + packer.flush()


def decompress(body: bytes) -> bytes:
    """The JSON text of a stored event, whether compressed with the dictionary or without
    (what stores written before it hold); raises zlib.error on a damaged body."""
    unpacker = zlib.decompressobj(zdict=EVENT_DICTIONARY)
    return unpacker.decompress(body) + unpacker.flush()
