// smsbridge webhook media type for Zabbix 6.0 and later (Duktape: ES5 only, no let/const/=>).
//
// Administration → Media types → Create media type, Type: Webhook; paste this file as Script.
// Parameters (name = value); README.md in this folder lists them with their meaning:
//   URL               = https://smsbridge.example.com/hooks/zabbix
//   Token             = the input's auth.token (Authorization: Bearer <Token>)
//   HTTPProxy         = (optional) http://proxy.example.com:3128
//   To                = {ALERT.SENDTO}
//   Subject           = {ALERT.SUBJECT}
//   Message           = {ALERT.MESSAGE}
//   EventID           = {EVENT.ID}
//   EventValue        = {EVENT.VALUE}
//   EventUpdateStatus = {EVENT.UPDATE.STATUS}
//   EventName         = {EVENT.NAME}
//   EventSeverity     = {EVENT.SEVERITY}
//   EventTags         = {EVENT.TAGSJSON}
//   EventTime         = {EVENT.DATE} {EVENT.TIME}
//   EventRecoveryID   = {EVENT.RECOVERY.ID}
//   EventRecoveryTime = {EVENT.RECOVERY.DATE} {EVENT.RECOVERY.TIME}
//   HostName          = {HOST.NAME}
//   TriggerID         = {TRIGGER.ID}
//
// It posts one JSON object (version 1, see README.md) and throws on any answer but 2xx, so
// Zabbix retries as the media type's Attempts and Attempt interval say. The token is never logged.

var SmsBridge = {
    // A macro Zabbix could not resolve arrives as its own text ({EVENT.RECOVERY.ID} in a
    // problem) or as *UNKNOWN*: a value made only of those means "no value".
    clean: function (text) {
        if (typeof text !== 'string') {
            return '';
        }
        if (/^(\s|\{[A-Z0-9_.$#:"]+\}|\*UNKNOWN\*)*$/.test(text)) {
            return '';
        }
        return text;
    },

    tags: function (text) {
        var tags = [];
        var parsed;
        text = SmsBridge.clean(text);
        if (text === '') {
            return tags;
        }
        try {
            parsed = JSON.parse(text);
        } catch (error) {
            Zabbix.log(4, '[ smsbridge ] EventTags is not JSON; sending no tags');
            return tags;
        }
        if (!(parsed instanceof Array)) {
            return tags;
        }
        for (var i = 0; i < parsed.length; i++) {
            if (parsed[i] && typeof parsed[i].tag === 'string') {
                tags.push({
                    tag: parsed[i].tag,
                    value: typeof parsed[i].value === 'string' ? parsed[i].value : ''
                });
            }
        }
        return tags;
    },

    body: function (params) {
        var value = SmsBridge.clean(params.EventValue);
        if (value !== '0' && value !== '1') {
            throw 'EventValue must be {EVENT.VALUE} (1 problem, 0 recovery), got "' + value + '"';
        }
        var eventId = SmsBridge.clean(params.EventID);
        if (eventId === '') {
            throw 'EventID must be {EVENT.ID}';
        }
        var name = SmsBridge.clean(params.EventName);
        return {
            version: '1',
            event_id: eventId,
            value: value,
            update: SmsBridge.clean(params.EventUpdateStatus) === '1',
            name: name !== '' ? name : SmsBridge.clean(params.Subject) || 'Zabbix event ' + eventId,
            severity: SmsBridge.clean(params.EventSeverity),
            host: SmsBridge.clean(params.HostName),
            trigger_id: SmsBridge.clean(params.TriggerID),
            tags: SmsBridge.tags(params.EventTags),
            to: SmsBridge.clean(params.To),
            subject: SmsBridge.clean(params.Subject),
            message: SmsBridge.clean(params.Message),
            time: SmsBridge.clean(params.EventTime),
            recovery_id: SmsBridge.clean(params.EventRecoveryID),
            recovery_time: SmsBridge.clean(params.EventRecoveryTime)
        };
    },

    send: function (params, body) {
        var request = new HttpRequest();
        var response;
        var status;
        request.addHeader('Content-Type: application/json');
        request.addHeader('Authorization: Bearer ' + params.Token);
        if (typeof params.HTTPProxy === 'string' && SmsBridge.clean(params.HTTPProxy) !== '') {
            request.setProxy(params.HTTPProxy);
        }
        Zabbix.log(4, '[ smsbridge ] sending event ' + body.event_id + ' value ' + body.value);
        response = request.post(params.URL, JSON.stringify(body));
        status = request.getStatus();
        if (status < 200 || status >= 300) {
            // smsbridge answers {"error": "..."}: keep it short, it ends up in the action log.
            throw 'smsbridge answered HTTP ' + status + ': ' + String(response).substring(0, 300);
        }
        return response;
    }
};

try {
    var params = JSON.parse(value);
    if (typeof params.URL !== 'string' || !/^https?:\/\//.test(params.URL)) {
        throw 'the URL parameter must be the smsbridge input, e.g. https://host/hooks/zabbix';
    }
    if (typeof params.Token !== 'string' || SmsBridge.clean(params.Token) === '') {
        throw 'the Token parameter must be the input\'s auth.token';
    }
    SmsBridge.send(params, SmsBridge.body(params));
    return 'OK';
} catch (error) {
    Zabbix.log(3, '[ smsbridge ] sending failed: ' + error);
    throw 'Sending to smsbridge failed: ' + error;
}
