// MQTT 5 constants from libmosquitto's <mqtt_protocol.h> (which <mosquitto.h> does not include),
// exported to Swift as plain constants.
#ifndef OCELLUS_MOSQUITTO_SHIM_H
#define OCELLUS_MOSQUITTO_SHIM_H

#include <mosquitto.h>
#include <mqtt_protocol.h>

/// Property identifier: message expiry interval (uint32 seconds).
static const int ocl_mqtt_prop_message_expiry = MQTT_PROP_MESSAGE_EXPIRY_INTERVAL;
/// Property identifier: content type (UTF-8 string).
static const int ocl_mqtt_prop_content_type = MQTT_PROP_CONTENT_TYPE;
/// CONNACK reason code of a v5 broker (or libmosquitto's reading of a v3 CONNACK) refusing MQTT 5.
static const int ocl_mqtt_rc_unsupported_protocol_version = MQTT_RC_UNSUPPORTED_PROTOCOL_VERSION;
/// v3.1.1 CONNACK return code 1: unacceptable protocol version.
static const int ocl_connack_refused_protocol_version = CONNACK_REFUSED_PROTOCOL_VERSION;

/// Links the shim library (keeps the C target non-empty).
int ocl_mosquitto_shim_version(void);

#endif
