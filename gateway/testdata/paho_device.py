"""A device on Debian's python3-paho-mqtt (1.6), for the gateway's tests.

    paho_device.py subscribe|collect HOST PORT CAFILE CERT KEY ID v311|v5 RECEIVE_MAX [N]

subscribe: connects with a persistent session, subscribes at QoS 1 to
updates/device/ID/#, and disconnects, keeping the session.
collect: connects again to that session, prints the payload of each of the
first N deltas it gets (one per line), applies them in order as a device
does (the last one wins), reports what it applied, and exits.
"""
import ssl
import sys
import threading

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

mode, host, port, cafile, cert, key, dev, version, rmax = sys.argv[1:10]
n = int(sys.argv[10]) if len(sys.argv) > 10 else 0
v5 = version == "v5"

if v5:
    c = mqtt.Client(client_id=dev, protocol=mqtt.MQTTv5)
else:
    c = mqtt.Client(client_id=dev, clean_session=False, protocol=mqtt.MQTTv311)
c.tls_set(ca_certs=cafile, certfile=cert, keyfile=key, cert_reqs=ssl.CERT_REQUIRED)

done = threading.Event()
got = []
state = {}


def on_connect(client, userdata, flags, rc, properties=None):
    if mode == "subscribe":
        client.subscribe("updates/device/%s/#" % dev, qos=1)


def on_subscribe(client, userdata, mid, granted, properties=None):
    if mode == "subscribe":
        done.set()


def on_message(client, userdata, msg):
    if not msg.topic.endswith("/shadow/delta"):
        return
    got.append(msg.payload.decode())
    print(msg.payload.decode(), flush=True)
    if len(got) >= n:
        done.set()


c.on_connect = on_connect
c.on_subscribe = on_subscribe
c.on_message = on_message
props = None
if v5:
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = 3600
    props.ReceiveMaximum = int(rmax)
    c.connect(host, int(port), keepalive=30, clean_start=False, properties=props)
else:
    c.connect(host, int(port), keepalive=30)
c.loop_start()
if not done.wait(30):
    sys.exit("timed out: got %d of %d" % (len(got), n))
if mode == "collect":
    import json
    for p in got:  # apply in the order received: the last one wins
        state.update(json.loads(p))
    info = c.publish("devices/%s/shadow/reported" % dev, json.dumps(state), qos=1)
    info.wait_for_publish(10)
c.disconnect()
c.loop_stop()
